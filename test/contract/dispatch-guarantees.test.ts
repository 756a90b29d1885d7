/**
 * The dispatcher's guarantees on the SQLite and PostgreSQL stores, with real `run` processes and
 * a real Redis broker (the Redis store's own, stronger, versions are in test/dispatch/run-process):
 *
 * - racing daemons split the work and never send a job twice;
 * - SIGKILL at any moment loses nothing (at least once: a killed batch may be sent again once its
 *   lease ends, at most one batch per kill);
 * - `run` wakes up for a sooner job: PostgreSQL through LISTEN/NOTIFY, from any process;
 *   SQLite from other processes only by its poll (SQLite has no notifications; documented).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createStore } from '../../src/stores/registry.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import type { ScheduleStore } from '../../src/stores/store.js';
import { children, drainQueue, duplicates, sleep, spawnRun, stopRun, waitFor, type RunProcess } from '../helpers/run-process.js';
import { dropSchema, schemaUrl } from '../helpers/postgres.js';
import { postgres, requireService, sharedRedis, uniquePrefix, uniqueSchema } from '../helpers/services.js';

const redis = await sharedRedis();
const pgService = redis ? await postgres() : undefined;
const skipRedis = requireService(redis, 'Redis');
const skipPg = skipRedis || requireService(pgService, 'PostgreSQL');
const TEST_MS = 90_000;

const dir = mkdtempSync(join(tmpdir(), 'cls-guarantees-'));
const schemas: string[] = [];
afterAll(async () => {
  for (const c of [...children]) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  for (const s of schemas) await dropSchema(pgService!.url, s);
});

interface Kind {
  name: string;
  skip: boolean;
  /** a fresh store URL (migrated) */
  url(): Promise<string>;
}

let files = 0;
const kinds: Kind[] = [
  { name: 'SQLite', skip: skipRedis, url: async () => `sqlite:///${join(dir, `g${files++}.db`)}` },
  {
    name: 'PostgreSQL',
    skip: skipPg,
    async url() {
      const schema = uniqueSchema('g');
      schemas.push(schema);
      const url = schemaUrl(pgService!.url, schema);
      const store = createStore(url, { migrate: true });
      await store.count(); // creates the schema
      await store.close();
      return url;
    },
  },
];

async function seed(store: ScheduleStore, queue: string, n: number, dueAt = Date.now() / 1000 - 60): Promise<string[]> {
  const jobs = Array.from({ length: n }, (_, k) => {
    const { job } = resolveTaskCall('t.guarantee', [k], {}, { queue });
    return { id: job.id, dueAt, entry: encodeEntry(job) };
  });
  await store.add(jobs);
  return jobs.map((j) => j.id);
}

for (const kind of kinds) {
  describe.skipIf(kind.skip)(`dispatcher guarantees on the ${kind.name} store`, () => {
    const brokerUrl = () => redis!.urlFor(0);

    it(
      'three racing run processes send 3,000 jobs, each exactly once, and share the work',
      async () => {
        const url = await kind.url();
        const queue = `${uniquePrefix('race')}q`;
        const store = createStore(url);
        const broker = new Redis(brokerUrl());
        const runs: RunProcess[] = [];
        try {
          const ids = await seed(store, queue, 3000);
          for (let i = 0; i < 3; i++) runs.push(spawnRun({ backend: url, broker: brokerUrl(), batchSize: 50, leaseMs: 30_000 }));
          await waitFor('every job to arrive', async () => (await broker.llen(queue)) >= 3000 && (await store.count()).inFlight === 0, 60_000, 100);
          await sleep(300); // nothing more may arrive
          const got = await drainQueue(broker, queue);
          expect(got.length).toBe(3000);
          expect(duplicates(got)).toBe(0);
          expect(new Set(got)).toEqual(new Set(ids));
          expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
          const sentBy = runs.map((r) => r.logs.filter((l) => l.msg === 'dispatched').reduce((n, l) => n + Number(l.sent), 0));
          expect(sentBy.reduce((a, b) => a + b, 0)).toBe(3000);
          expect(sentBy.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
        } finally {
          for (const r of runs) await stopRun(r);
          await broker.del(queue, `_kombu.binding.${queue}`);
          broker.disconnect();
          await store.close();
        }
      },
      TEST_MS,
    );

    it(
      'SIGKILL in the middle of sending loses nothing; what a killed batch re-sends is at most one batch',
      async () => {
        const url = await kind.url();
        const queue = `${uniquePrefix('kill')}q`;
        const store = createStore(url);
        const broker = new Redis(brokerUrl());
        try {
          const ids = await seed(store, queue, 4000);
          const opts = { backend: url, broker: brokerUrl(), batchSize: 100, leaseMs: 1500 };
          const victim = spawnRun(opts);
          await waitFor('the first messages', async () => (await broker.llen(queue)) >= 300, 30_000, 5);
          victim.child.kill('SIGKILL');
          expect((await victim.exited).signal).toBe('SIGKILL');
          const survivor = spawnRun(opts);
          try {
            await waitFor(
              'the store to empty',
              async () => {
                const c = await store.count();
                return c.scheduled + c.inFlight === 0;
              },
              60_000,
              100,
            );
          } finally {
            await stopRun(survivor);
          }
          const got = await drainQueue(broker, queue);
          expect(new Set(got)).toEqual(new Set(ids)); // none lost
          expect(duplicates(got)).toBeLessThanOrEqual(2 * opts.batchSize); // the killed batch (and the one claimed behind it)
        } finally {
          await broker.del(queue, `_kombu.binding.${queue}`);
          broker.disconnect();
          await store.close();
        }
      },
      TEST_MS,
    );

    it(
      kind.name === 'PostgreSQL'
        ? 'run sleeps with a 60 s poll, and a sooner job added by another process wakes it (NOTIFY)'
        : 'run finds a sooner job added by another process within its poll interval (SQLite has no notifications)',
      async () => {
        const url = await kind.url();
        const queue = `${uniquePrefix('wake')}q`;
        const store = createStore(url);
        const broker = new Redis(brokerUrl());
        const pollIntervalMs = kind.name === 'PostgreSQL' ? 60_000 : 300;
        const run = spawnRun({ backend: url, broker: brokerUrl(), batchSize: 100, leaseMs: 30_000, pollIntervalMs });
        try {
          await seed(store, queue, 1, Date.now() / 1000 + 3600); // far away: run sleeps until then, or until woken
          await waitFor('run to start', () => run.logs.some((l) => l.msg === 'dispatcher started'), 20_000);
          await sleep(500);
          const due = Date.now() + 400;
          await seed(store, queue, 1, due / 1000);
          const msg = await broker.brpop(queue, 5);
          const late = Date.now() - due;
          expect(msg).not.toBeNull();
          expect(late).toBeLessThan(kind.name === 'PostgreSQL' ? 250 : pollIntervalMs + 250);
        } finally {
          await stopRun(run);
          await broker.del(queue, `_kombu.binding.${queue}`);
          broker.disconnect();
          await store.close();
        }
      },
      TEST_MS,
    );
  });
}
