/**
 * `migrate` as a real process (the built CLI), where what matters is how the process ends: that
 * it exits at all after an error, with one line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createStore } from '../../src/connect.js';
import { children } from '../helpers/run-process.js';
import { postgres, requireService, sharedRedis, uniquePrefix, uniqueSchema } from '../helpers/services.js';

const redis = await sharedRedis();
const pgService = await postgres();
const skipRedis = requireService(redis, 'Redis');
const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'cls-migrate-process-'));
afterAll(() => {
  for (const c of [...children]) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** `celery-longterm-scheduler ...argv` as a child process, SIGKILLed after `killAfterMs`. */
function cliProcess(argv: readonly string[], killAfterMs = 60_000): Promise<Exit> {
  const started = Date.now();
  const child = spawn(process.execPath, [bin, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    }),
  );
}

describe.skipIf(skipRedis)('migrate from a Redis source exits promptly when the target fails', () => {
  const targets: [string, () => string, number][] = [
    ['a PostgreSQL server that is not there', () => 'postgres://u:secret@127.0.0.1:1/x', 1],
    ['a SQLite file in a missing directory', () => `sqlite:///${join(dir, 'no-such-dir', 'x.db')}`, 1],
    ['a bad URL', () => 'mysql://u:secret@h/db', 2],
  ];
  if (pgService) targets.push(['a PostgreSQL schema that was never created', () => `${pgService.url}?schema=${uniqueSchema('none')}`, 1]);

  for (const [what, target, code] of targets) {
    it(`${what}: one line, exit ${code}, within seconds`, async () => {
      const prefix = uniquePrefix('migrate-exit');
      const url = redis!.urlFor(0);
      const source = createStore(url, { keyPrefix: prefix });
      try {
        await source.add([{ id: 'j1', dueAt: 2_000_000_000, entry: '[["t"],{"task_id":"j1"}]' }]);
        const r = await cliProcess(['migrate', '--from', url, '--from-key-prefix', prefix, '--to', target(), '--move'], 20_000);
        expect(r.ms).toBeLessThan(10_000); // it hung until killed before: the source's connection was never closed
        expect(r.code).toBe(code);
        expect(r.stderr).toMatch(/^error: [^\n]+\n$/);
        expect(r.stdout).toBe('');
        expect(await source.get('j1')).toMatchObject({ state: 'scheduled' }); // the job stays in the source
      } finally {
        await source.remove('j1');
        await source.close();
      }
    });
  }
});
