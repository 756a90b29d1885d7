// Copies non-TypeScript assets next to the compiled code: the Redis store's Lua scripts (and their
// includes/), and the dashboard's page, style sheet and icon (its scripts are compiled by tsc -p src/ui/web).
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const [dir, kinds] of [
  ['stores/redis', ['.lua']],
  ['ui/web', ['.html', '.css', '.svg']],
]) {
  const from = join(root, 'src', dir);
  const to = join(root, 'dist', dir);
  mkdirSync(to, { recursive: true });
  for (const file of readdirSync(from, { recursive: true })) {
    if (!kinds.some((k) => String(file).endsWith(k))) continue;
    mkdirSync(dirname(join(to, String(file))), { recursive: true });
    cpSync(join(from, String(file)), join(to, String(file)));
  }
}
