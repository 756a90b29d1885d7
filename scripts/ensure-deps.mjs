// Runs `npm ci` once when the dependencies are missing, so that `npm run demo` and `npm test`
// each work as the first command on a fresh clone. A no-op when node_modules is already there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const needed = ['node_modules/.bin/tsc', 'node_modules/.bin/vitest', 'node_modules/ioredis', 'node_modules/commander'];
if (!needed.every((p) => existsSync(join(root, p)))) {
  console.error('Installing dependencies (npm ci)…');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
