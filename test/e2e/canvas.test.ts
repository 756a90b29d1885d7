/**
 * End to end with a real Python worker (Debian's Celery 5.2) and its Redis result backend:
 * canvas entries the Python package wrote (captured fixture), and canvas we schedule from
 * TypeScript, both sent by our dispatcher. Every step runs once, in order, with the right
 * arguments; a chord's body runs once, after its header.
 *
 * One private Redis server: broker in db 0, the store in db 1 (the original's bare layout), the
 * result backend in db 2, so the fixture's fixed ids collide with nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, chain, chord, getScheduler, group, type CanvasResult, type DispatchSummary } from '../../src/index.js';
import { pickleUtcDatetime } from '../../src/celery/pickle.js';
import { pythonCeleryAvailable, startCeleryWorker, type CeleryWorker, type WorkerRecord } from '../helpers/celery-worker.js';
import { privateRedis, requireService, type RedisService } from '../helpers/services.js';
import { canvasFixture } from '../helpers/fixture.js';

const server = await privateRedis();
const skip =
  requireService(server, 'redis-server (for a private Redis)') ||
  requireService(pythonCeleryAvailable() ? true : undefined, 'Python Celery (/usr/bin/python3 -m celery)');

const RECORDS = 'e2e:canvas-records';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip)('canvas runs on a real Python worker, dispatched by us', () => {
  let redis: RedisService;
  let broker: Redis;
  let store: Redis;
  let results: Redis;
  let app: Celery;
  let worker: CeleryWorker | undefined;

  beforeAll(async () => {
    redis = server as RedisService;
    broker = new Redis(redis.urlFor(0));
    store = new Redis(redis.urlFor(1));
    results = new Redis(redis.urlFor(2));
    app = new Celery({ broker: redis.urlFor(0), longtermSchedulerBackend: redis.urlFor(1), resultBackend: redis.urlFor(2) });
    worker = await startCeleryWorker({ brokerUrl: redis.urlFor(0), queues: ['celery', 'reports'], recordKey: RECORDS, resultBackend: redis.urlFor(2) });
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    broker?.disconnect();
    store?.disconnect();
    results?.disconnect();
    await redis?.stop();
  });

  /** Dispatches what is due, then waits for `n` records (and a moment more, so an extra run would show). */
  async function dispatchAndWait(n: number): Promise<{ summary: DispatchSummary; records: WorkerRecord[] }> {
    const summary = await getScheduler(app).dispatchDue();
    await (worker as CeleryWorker).waitForRecords(n, 45_000);
    await sleep(1500);
    const records = await (worker as CeleryWorker).records();
    await broker.del(RECORDS); // each phase reads only its own records (the worker writes them beside the broker)
    return { summary, records };
  }

  describe('entries the Python package wrote', () => {
    let summary: DispatchSummary;
    let records: WorkerRecord[];
    const ran = (task: string, args: unknown[]) => records.filter((r) => r.task === task && JSON.stringify(r.args) === JSON.stringify(args));

    beforeAll(async () => {
      const now = Date.now() / 1000;
      for (const e of canvasFixture.entries) {
        let value = e.value;
        if (e.description.startsWith('chord:')) {
          // The package copies the chord's eta (2031) into the body's options; dispatched at that
          // time it is past, and the body runs at once. We dispatch now, so give the body a past
          // eta of the same form (a pickled aware datetime), or the worker would hold it until 2031.
          const [head, kw] = JSON.parse(value) as [unknown, { chord: { options: Record<string, unknown> } }];
          kw.chord.options.eta = pickleUtcDatetime(new Date(Date.now() - 60_000));
          value = JSON.stringify([head, kw]);
        }
        await store.set(e.key, value);
        await store.zadd('scheduled_task_id_by_time', now - 1, e.key);
      }
      // What the package's chord.apply_async wrote into the result backend at schedule time.
      await results.set('celery-taskset-meta-2c7e2e11-ba91-4747-9e33-629fbc0d24a0.s', '2');
      ({ summary, records } = await dispatchAndWait(15));
    }, 90_000);

    it('sends every entry, none a dead letter', () => {
      expect(summary).toMatchObject({ sent: canvasFixture.entries.length, failed: 0, dead: 0 });
    });

    it('a chain runs every step once, in order, each with its parent result first (unless immutable)', () => {
      const steps = [ran('bench.add', [1, 2]), ran('bench.add', [3, 10]), ran('bench.note', ['done'])];
      expect(steps.map((s) => s.length)).toEqual([1, 1, 1]);
      const at = steps.map((s) => s[0]?.at as number);
      expect([...at].sort((a, b) => a - b)).toEqual(at);
      expect(steps[2]?.[0]?.id).toBe('ef532c9b-4093-4616-9ad8-808f17182154'); // the id frozen in the entry
    });

    it('a group runs each member once, with the group id', () => {
      for (const args of [
        [1, 1],
        [2, 2],
      ]) {
        expect(ran('bench.add', args).filter((r) => r.group === 'ceccfd2a-cf0c-47bf-bad6-d8f37802f2d4')).toHaveLength(1);
      }
    });

    it('a chord runs its header, then its body once with the header results', () => {
      const header = records.filter((r) => r.group === '2c7e2e11-ba91-4747-9e33-629fbc0d24a0');
      expect(header.map((r) => r.args).sort()).toEqual([
        [1, 1],
        [2, 2],
      ]);
      const body = records.filter((r) => r.task === 'bench.tsum');
      expect(body).toHaveLength(1);
      expect(body[0]?.args).toEqual([[2, 4]]);
      expect(body[0]?.id).toBe('51d41011-4772-41ef-a6d2-6b9a72d0a734');
      expect(body[0]?.at as number).toBeGreaterThanOrEqual(Math.max(...header.map((r) => r.at)));
    });

    it('links as a list each run once (immutable: no parent result); the errback does not', () => {
      expect(ran('bench.add', [3, 4])).toHaveLength(1);
      expect(ran('bench.note', ['a'])).toHaveLength(1);
      expect(ran('bench.note', ['b'])).toHaveLength(1);
      expect(ran('bench.note', ['err'])).toHaveLength(0);
    });

    it("a link's own options route it: queue reports, priority 3", () => {
      const [cb] = ran('bench.note', ['q']);
      expect(cb?.queue).toBe('reports');
      expect(cb?.priority).toBe(3);
    });

    it('retries, root and parent ids reach the worker', () => {
      expect(ran('bench.add', [7, 8])[0]).toMatchObject({ retries: 2, root_id: 'root-1', parent_id: 'parent-1' });
    });

    it('a zone-named expires reaches the worker as that instant', () => {
      const [r] = ran('bench.add', [9, 9]);
      expect(Date.parse(String(r?.expires).replace(' ', 'T'))).toBe(Date.parse('2031-03-05T04:06:07Z'));
    });

    it('runs nothing else, and leaves the store empty', async () => {
      expect(records).toHaveLength(15);
      expect(await store.zcard('scheduled_task_id_by_time')).toBe(0);
    });
  });

  describe('canvas scheduled from TypeScript', () => {
    let summary: DispatchSummary;
    let records: WorkerRecord[];
    let chained: CanvasResult;
    let grouped: CanvasResult;
    let chorded: CanvasResult;
    let linkedId: string;
    const byId = (id: string | undefined) => records.filter((r) => r.id === id);

    beforeAll(async () => {
      const add = app.task('bench.add');
      const note = app.task('bench.note');
      const soon = { eta: new Date(Date.now() + 300) };
      chained = await chain(add.s([100, 1]), add.s([10]), note.si(['chained'])).applyAsync(soon);
      grouped = await group(add.s([200, 1]), add.s([200, 2]), add.s([200, 3])).applyAsync(soon);
      chorded = await chord([add.s([300, 1]), add.s([300, 2])], app.task('bench.tsum').s()).applyAsync(soon);
      // a link with its own queue and countdown runs there, that much later
      linkedId = (await add.applyAsync([400, 1], {}, { ...soon, link: note.si(['linked'], {}, { queue: 'reports', countdown: 1 }) })).id;
      expect(await results.get(`celery-taskset-meta-${chorded.groupId}.s`)).toBe('2');
      expect(await results.ttl(`celery-taskset-meta-${chorded.groupId}.s`)).toBeGreaterThan(86_000);
      await sleep(350);
      ({ summary, records } = await dispatchAndWait(3 + 3 + 3 + 2));
    }, 90_000);

    it('sends one job per chain, group member and chord header task', () => {
      expect(summary).toMatchObject({ sent: 1 + 3 + 2 + 1, failed: 0, dead: 0 });
    });

    it('a chain runs in order, each result passed on, under the ids it returned', () => {
      const steps = chained.results.map((r) => byId(r.id));
      expect(steps.map((s) => s.length)).toEqual([1, 1, 1]);
      expect(steps.map((s) => s[0]?.args)).toEqual([[100, 1], [101, 10], ['chained']]);
      const at = steps.map((s) => s[0]?.at as number);
      expect([...at].sort((a, b) => a - b)).toEqual(at);
      expect(chained.result?.id).toBe(chained.results[2]?.id);
    });

    it('a group runs each member once with its group id', () => {
      for (const r of grouped.results) expect(byId(r.id).map((x) => x.group)).toEqual([grouped.groupId]);
    });

    it('a chord runs its body once, after its header, with the header results', async () => {
      const body = byId(chorded.result?.id);
      expect(body).toHaveLength(1);
      expect(body[0]?.args).toEqual([[301, 302]]);
      const header = chorded.results.slice(0, 2).map((r) => byId(r.id)[0]?.at as number);
      expect(body[0]?.at as number).toBeGreaterThanOrEqual(Math.max(...header));
      expect(await chorded.result?.get({ timeoutMs: 5000 })).toBe(603);
    });

    it("a link's own queue and countdown are honoured by the worker", () => {
      const [parent] = byId(linkedId);
      const cb = records.filter((r) => r.task === 'bench.note' && JSON.stringify(r.args) === '["linked"]');
      expect(cb).toHaveLength(1);
      expect(cb[0]?.queue).toBe('reports');
      expect(cb[0]?.eta).not.toBeNull();
      expect((cb[0]?.at as number) - (parent?.at as number)).toBeGreaterThanOrEqual(0.9);
    });
  });
});
