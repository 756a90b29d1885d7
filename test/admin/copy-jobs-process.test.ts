/**
 * `migrate` as a real process (the built CLI): that it exits at all after an error, with one
 * line; and `--move` racing real `run` dispatcher processes on both stores, every message
 * counted per task id on a Redis broker queue of the test's own.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createStore } from '../../src/stores/registry.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { HOLD_AT, readHold } from '../../src/admin/copy-jobs.js';
import type { ScheduleStore, StoredJob } from '../../src/stores/store.js';
import { children, drainQueue, sleep, spawnRun, stopRun, waitFor, type RunProcess } from '../helpers/run-process.js';
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
function cliProcess(argv: readonly string[], killAfterMs = 60_000, onSpawn?: (child: ReturnType<typeof spawn>) => void): Promise<Exit> {
  const started = Date.now();
  const child = spawn(process.execPath, [bin, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  onSpawn?.(child);
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

describe.skipIf(skipRedis)('migrate --move racing dispatchers on a SQLite source and a SQLite target', () => {
  const JOBS = 4000;

  it(`sends each of ${JOBS} due jobs exactly once, and loses none, while both stores' dispatchers claim`, async () => {
    const fromUrl = `sqlite:///${join(dir, 'race-from.db')}`;
    const toUrl = `sqlite:///${join(dir, 'race-to.db')}`;
    const brokerUrl = redis!.urlFor(0);
    const queue = `${uniquePrefix('migrate-race')}q`;
    const broker = new Redis(brokerUrl);
    const from = createStore(fromUrl);
    const to = createStore(toUrl);
    const runs: RunProcess[] = [];
    try {
      await to.count(); // the target exists, empty, before anything runs
      const now = Date.now() / 1000;
      const jobs = Array.from({ length: JOBS }, (_, k) => {
        const { job } = resolveTaskCall('t.migrate_race', [k], {}, { queue });
        return { id: job.id, dueAt: now - 60 + k / 1000, entry: encodeEntry(job) };
      });
      await from.add(jobs);
      // every job is due: the move and the source's dispatcher work on the same jobs at once,
      // in small batches so that they overlap for the whole move
      const migrating = cliProcess(['migrate', '--from', fromUrl, '--to', toUrl, '--move', '--batch-size', '20', '--json']);
      runs.push(spawnRun({ backend: fromUrl, broker: brokerUrl, batchSize: 5, leaseMs: 30_000, pollIntervalMs: 20 }));
      runs.push(spawnRun({ backend: toUrl, broker: brokerUrl, batchSize: 5, leaseMs: 30_000, pollIntervalMs: 20 }));
      const migrated = await migrating;
      expect(migrated.stderr).toBe('');
      expect(migrated.code).toBe(0);
      await waitFor(
        'both stores to empty',
        async () => {
          const [a, b] = await Promise.all([from.count(), to.count()]);
          return a.scheduled + a.inFlight + b.scheduled + b.inFlight === 0;
        },
        60_000,
        50,
      );
      await sleep(300); // nothing more may arrive
      const got = await drainQueue(broker, queue);
      const times = new Map<string, number>();
      for (const id of got) times.set(id, (times.get(id) ?? 0) + 1);
      const twice = [...times.values()].filter((n) => n > 1).length;
      const lost = jobs.filter((j) => !times.has(j.id)).length;
      const summary = JSON.parse(migrated.stdout) as { copied: number; removed: number; leftToSource: number };
      const sentBy = runs.map((r) => r.logs.filter((l) => l.msg === 'dispatched').reduce((n, l) => n + Number(l.sent), 0));
      console.log(
        `migrate race: ${JOBS} jobs, ${got.length} messages, ${twice} sent twice, ${lost} lost; ` +
          `moved ${summary.copied}, left to the source's dispatcher ${summary.leftToSource}; sent by source/target ${sentBy.join('/')}`,
      );
      expect({ twice, lost, messages: got.length }).toEqual({ twice: 0, lost: 0, messages: JOBS });
      // the race really happened: both dispatchers sent jobs, and the source's claimed some the move had already held
      expect(sentBy.every((n) => n > 0)).toBe(true);
      expect(summary.leftToSource).toBeGreaterThan(0);
      expect(summary.copied).toBe(sentBy[1]);
    } finally {
      for (const r of runs) await stopRun(r);
      await broker.del(queue, `_kombu.binding.${queue}`);
      broker.disconnect();
      await from.close();
      await to.close();
    }
  }, 120_000);
});

async function everyJob(store: ScheduleStore): Promise<StoredJob[]> {
  const out: StoredJob[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ limit: 1000, ...(cursor !== undefined && { cursor }) });
    out.push(...page.jobs);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}

describe('migrate --move SIGKILLed in the middle of a page', () => {
  it('leaves every job in one store or both, and the next run finishes the held ones: each job once, at its due time', async () => {
    const fromUrl = `sqlite:///${join(dir, 'kill-from.db')}`;
    const toUrl = `sqlite:///${join(dir, 'kill-to.db')}`;
    const from = createStore(fromUrl);
    const to = createStore(toUrl);
    try {
      await to.count();
      const soon = Date.now() / 1000 + 3600; // due within a day: held while they move
      const jobs = Array.from({ length: 5000 }, (_, k) => ({ id: `k${k}`, dueAt: soon + k / 7, entry: `[["t.kill"],{"task_id":"k${k}","args":[${k}]}]` }));
      await from.add(jobs);
      let held: StoredJob[] = [];
      const killed = await cliProcess(['migrate', '--from', fromUrl, '--to', toUrl, '--move', '--batch-size', '500'], 60_000, (child) => {
        // freeze the move the moment the target holds copies, and kill it there
        void (async () => {
          while (child.exitCode === null) {
            if ((await to.list({ from: HOLD_AT, limit: 1 })).jobs.length > 0) {
              child.kill('SIGSTOP');
              held = (await everyJob(to)).filter((j) => readHold(j.entry) !== undefined);
              if (held.length > 0) return void child.kill('SIGKILL');
              child.kill('SIGCONT');
            }
            await sleep(5);
          }
        })();
      });
      expect(killed.code).toBeNull(); // killed, not finished
      console.log(`migrate killed mid-page: ${held.length} jobs held in the target`);
      expect(held.length).toBeGreaterThan(0);
      // never in neither: every job is in the source, or in the target (held or not)
      const [inSource, inTarget] = [await everyJob(from), await everyJob(to)];
      const where = new Set([...inSource, ...inTarget].map((j) => j.id));
      expect(jobs.filter((j) => !where.has(j.id))).toEqual([]);
      const again = await cliProcess(['migrate', '--from', fromUrl, '--to', toUrl, '--move', '--json']);
      expect(again.stderr).toBe('');
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ resumed: held.length, held: 0, leftToSource: 0 });
      expect((await everyJob(to)).map(({ id, dueAt, entry }) => ({ id, dueAt, entry }))).toEqual(jobs);
      expect(await from.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    } finally {
      await from.close();
      await to.close();
    }
  }, 120_000);
});
