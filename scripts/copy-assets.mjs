// Copies non-TypeScript assets (the Redis store's Lua scripts and their includes/) next to the compiled code.
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const dir of ['stores/redis']) {
  const from = join(root, 'src', dir);
  const to = join(root, 'dist', dir);
  mkdirSync(to, { recursive: true });
  for (const file of readdirSync(from, { recursive: true })) {
    if (!String(file).endsWith('.lua')) continue;
    mkdirSync(dirname(join(to, String(file))), { recursive: true });
    cpSync(join(from, String(file)), join(to, String(file)));
  }
}
