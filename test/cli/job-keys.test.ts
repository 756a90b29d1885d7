/**
 * `applyAsync(..., { jobKey, jobKeyMode })` and `schedule --job-key`, on the SQLite and Redis
 * stores (the store-level races for every store are in the contract suite).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Celery, JobKeyTakenError, ValidationError } from '../../src/index.js';
import { cli as runCli } from '../helpers/cli.js';
import { requireService, sharedRedis, uniquePrefix } from '../helpers/services.js';

const redis = await sharedRedis();
const dir = mkdtempSync(join(tmpdir(), 'cls-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = (...argv: string[]) => runCli(argv);

let n = 0;
const targets = [
  { name: 'SQLite', skip: false, config: () => ({ longtermSchedulerBackend: `sqlite:///${join(dir, `k${n++}.db`)}` }) },
  {
    name: 'Redis',
    skip: requireService(redis, 'Redis'),
    config: () => ({ longtermSchedulerBackend: redis!.urlFor(0), longtermSchedulerKeyPrefix: uniquePrefix('keys') }),
  },
];

for (const t of targets) {
  describe.skipIf(t.skip)(`job keys on the ${t.name} store`, () => {
    it('reject, keep and replace through applyAsync', async () => {
      const app = new Celery(t.config());
      try {
        const remind = app.task('proj.remind');
        const first = await remind.applyAsync(['v1'], {}, { countdown: 3600, jobKey: 'user:7:reminder' });
        expect(first.keyOutcome).toBe('added');
        const err = await remind.applyAsync(['v2'], {}, { countdown: 60, jobKey: 'user:7:reminder' }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(JobKeyTakenError);
        expect((err as Error).message).toBe(
          `a job with key "user:7:reminder" is already scheduled (id "${first.id}"); pass jobKeyMode 'replace' or 'keep', or revoke it first`,
        );

        const kept = await remind.applyAsync(['v3'], {}, { countdown: 60, jobKey: 'user:7:reminder', jobKeyMode: 'keep' });
        expect(kept).toMatchObject({ id: first.id, keyOutcome: 'kept' });
        expect(kept.dueAt?.getTime()).toBe(first.dueAt?.getTime());

        const replaced = await remind.applyAsync(['v4'], {}, { countdown: 120, jobKey: 'user:7:reminder', jobKeyMode: 'replace' });
        expect(replaced).toMatchObject({ keyOutcome: 'replaced', replacedId: first.id });
        expect(await app.store.get(first.id)).toBeUndefined();
        const now = await app.store.get(replaced.id);
        expect(JSON.parse(now!.entry)).toMatchObject([['proj.remind'], { args: ['v4'] }]);
        expect(Math.abs(now!.dueAt * 1000 - (Date.now() + 120_000))).toBeLessThan(5000);
        expect((await app.store.count()).scheduled).toBe(1);
      } finally {
        await app.close();
      }
    });

    it('bad key options change nothing and say what to do', async () => {
      const app = new Celery(t.config());
      try {
        const task = app.task('proj.x');
        await expect(task.applyAsync([], {}, { jobKey: 'k' })).rejects.toThrow('jobKey needs an eta or countdown: only scheduled jobs hold keys');
        await expect(task.applyAsync([], {}, { countdown: 5, jobKey: 'k', jobKeyMode: 'merge' as never })).rejects.toBeInstanceOf(ValidationError);
        await expect(task.applyAsync([], {}, { countdown: 5, jobKeyMode: 'keep' })).rejects.toThrow('jobKeyMode needs a jobKey');
        await expect(app.sendTasks([{ name: 'proj.x', options: { countdown: 5, jobKey: 'k' } }])).rejects.toThrow(/jobKey is not supported by sendTasks/);
        expect(await app.store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      } finally {
        await app.close();
      }
    });

    it('schedule --job-key with --job-key-mode keep prints the id already holding the key', async () => {
      const c: { longtermSchedulerBackend: string; longtermSchedulerKeyPrefix?: string } = t.config();
      const g = ['--backend', c.longtermSchedulerBackend, ...(c.longtermSchedulerKeyPrefix ? ['--key-prefix', c.longtermSchedulerKeyPrefix] : [])];
      const a = await cli(...g, 'schedule', 'proj.y', '--countdown', '600', '--job-key', 'nightly');
      expect(a.code).toBe(0);
      const kept = await cli(...g, 'schedule', 'proj.y', '--countdown', '60', '--job-key', 'nightly', '--job-key-mode', 'keep');
      expect(kept.stdout).toBe(a.stdout);
      const taken = await cli(...g, 'schedule', 'proj.y', '--countdown', '60', '--job-key', 'nightly');
      expect(taken.code).toBe(1);
      expect(taken.stderr).toMatch(/^error: a job with key "nightly" is already scheduled/);
      expect((await cli(...g, 'schedule', 'proj.y', '--countdown', '60', '--job-key', 'nightly', '--job-key-mode', 'merge')).code).toBe(2);
    });
  });
}
