/**
 * End to end: jobs scheduled through our API, dispatched by our dispatcher, run by a real
 * Python Celery worker (Debian's python3-celery). Also the entries that the Python package itself
 * wrote (test/data fixture), dispatched by us to that worker.
 *
 * A private Redis server keeps the original's bare layout (store in db 1, broker in db 0) and
 * plain queue names without colliding with anything else on the machine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, getScheduler, type DispatchSummary } from '../../src/index.js';
import { pythonCeleryAvailable, startCeleryWorker, type CeleryWorker, type WorkerRecord } from '../helpers/celery-worker.js';
import { privateRedis, requireService, type RedisService } from '../helpers/services.js';
import { fixture } from '../helpers/fixture.js';

const server = await privateRedis();
const skip =
  requireService(server, 'redis-server (for a private Redis)') ||
  requireService(pythonCeleryAvailable() ? true : undefined, 'Python Celery (/usr/bin/python3 -m celery)');

const SEP = '\x06\x16';

describe.skipIf(skip)('a real Python Celery worker runs what we scheduled and dispatched', () => {
  let redis: RedisService;
  let broker: Redis;
  let store: Redis;
  let app: Celery;
  let worker: CeleryWorker | undefined;
  let records: WorkerRecord[] = [];
  let summary: DispatchSummary;
  const ids: Record<string, string> = {};
  let dispatchedAt = 0;
  let priorityLists: Record<string, number> = {};

  const byId = (id: string | undefined) => records.find((r) => r.id === id);

  beforeAll(async () => {
    redis = server as RedisService;
    broker = new Redis(redis.urlFor(0));
    store = new Redis(redis.urlFor(1));
    app = new Celery({ broker: redis.urlFor(0), longtermSchedulerBackend: redis.urlFor(1) });
    const soon = new Date(Date.now() + 300);
    const sched = async (name: string, task: string, args: unknown[], kwargs: Record<string, unknown>, options: object) => {
      ids[name] = (await app.task(task).applyAsync(args, kwargs, { eta: soon, ...options })).id;
    };
    await sched('argsKwargs', 'e2e.record', [1, 'two', { three: [3] }], { k: 'v', n: null }, {});
    await sched('queue', 'e2e.record', ['q'], {}, { queue: 'other' });
    await sched('priority', 'e2e.record', ['p'], {}, { priority: 7 });
    await sched('expiresRel', 'e2e.record', ['e'], {}, { expires: 3600 });
    await sched('expired', 'e2e.record', ['too late'], {}, { expires: new Date(Date.now() - 60_000) });
    await sched('link', 'e2e.add', [2, 3], {}, { link: app.task('e2e.echo').s(['cb']), timeLimit: 30, softTimeLimit: 20, headers: { 'x-tenant': 'acme' } });
    await sched('revoked', 'e2e.record', ['never'], {}, {});
    await sched('future', 'e2e.record', ['later'], {}, { eta: new Date(Date.now() + 3_600_000) });
    expect(await getScheduler(app).revoke(ids.revoked as string)).toBe(true);

    // The Python package's own entries, due now (their stored score is in 2031).
    const now = Date.now() / 1000;
    for (const e of fixture.entries) {
      await store.set(e.key, e.value);
      await store.zadd('scheduled_task_id_by_time', now - 1, e.key);
    }
    // The fixture with exchange "billing": bind it the way a worker declaring the queue would.
    await broker.sadd('_kombu.binding.billing', `billing.reminders${SEP}${SEP}billing-q`);

    // Dispatch before the worker starts, so the broker lists can be inspected.
    await new Promise((r) => setTimeout(r, 350));
    dispatchedAt = Date.now() / 1000;
    summary = await getScheduler(app).dispatchDue();

    for (const key of ['celery', `celery${SEP}6`, `reports${SEP}6`]) priorityLists[key] = await broker.llen(key);

    worker = await startCeleryWorker({
      brokerUrl: redis.urlFor(0),
      queues: ['celery', 'other', 'reports', 'billing-q'],
      recordKey: 'e2e:records',
    });
    // 5 of ours run (the expired one is discarded; revoked and future are never sent)
    // + the echo callback + 13 fixture entries + 1 fixture link callback (tasks.notify)
    records = await worker.waitForRecords(5 + 1 + 13 + 1, 45_000);
    // give a wrongly-run job a moment to show up before the negative assertions
    await new Promise((r) => setTimeout(r, 500));
    records = await worker.records();
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    broker?.disconnect();
    store?.disconnect();
    await redis?.stop();
  });

  it('dispatched every due job and nothing else', () => {
    expect(summary).toMatchObject({ sent: 6 + 13, failed: 0, corrupt: 0 });
  });

  it('passes args and kwargs through unchanged', () => {
    expect(byId(ids.argsKwargs)).toMatchObject({ task: 'e2e.record', args: [1, 'two', { three: [3] }], kwargs: { k: 'v', n: null } });
  });

  it('routes to the named queue', () => {
    expect(byId(ids.queue)?.queue).toBe('other');
  });

  it('puts a priority-7 message on the \\x06\\x166 list, and the worker sees priority 7', () => {
    expect(priorityLists[`celery${SEP}6`]).toBe(1);
    expect(priorityLists[`reports${SEP}6`]).toBe(1);
    expect(byId(ids.priority)?.priority).toBe(7);
  });

  it('sends a relative expires counted from dispatch', () => {
    const expires = Date.parse(String(byId(ids.expiresRel)?.expires).replace(' ', 'T')) / 1000;
    expect(expires).toBeGreaterThan(dispatchedAt + 3600 - 5);
    expect(expires).toBeLessThan(dispatchedAt + 3600 + 5);
  });

  it('an expired job is discarded by the worker, not run', () => {
    expect(byId(ids.expired)).toBeUndefined();
  });

  it('runs the link callback with the parent result first, and carries time limits and headers', () => {
    const parent = byId(ids.link);
    expect(parent?.time_limits).toEqual([30, 20]);
    expect(parent?.headers).toEqual({ 'x-tenant': 'acme' });
    const cb = records.find((r) => r.task === 'e2e.echo');
    expect(cb?.args).toEqual([5, 'cb']);
    expect(cb?.parent_id).toBe(ids.link);
  });

  it('a revoked job never runs', () => {
    expect(byId(ids.revoked)).toBeUndefined();
  });

  it('a future job stays stored and is not sent', async () => {
    expect(byId(ids.future)).toBeUndefined();
    expect(Number(await store.zscore('scheduled_task_id_by_time', ids.future as string))).toBeGreaterThan(Date.now() / 1000 + 3000);
    expect(await store.get(ids.future as string)).toContain('"later"');
  });

  it('runs every entry the Python package wrote, with its options', () => {
    for (const e of fixture.entries) {
      const rec = byId(e.key);
      expect(rec, e.description).toBeDefined();
      const [, kw] = JSON.parse(e.value) as [unknown, { args: unknown[]; kwargs: Record<string, unknown> | null }];
      expect(rec?.args, e.description).toEqual(kw.args);
      expect(rec?.kwargs, e.description).toEqual(kw.kwargs ?? {});
    }
    expect(byId('6f2dc667-47e7-4f03-8928-dae9cd66c426')).toMatchObject({ queue: 'reports', priority: 7 });
    // reached billing-q (the only queue bound to it) through exchange "billing"
    expect(byId('invoice-42-reminder')).toMatchObject({ exchange: 'billing', queue: 'billing.reminders' });
    expect(byId('06b28f6c-661e-443f-aae0-06293d91f10a')).toMatchObject({ time_limits: [30, 20], headers: { 'x-tenant': 'acme' } });
    // the callback gets the parent's result first: bench.add(7, 8) returns 15
    expect(records.find((r) => r.task === 'tasks.notify')).toMatchObject({ args: [15, 'done'], parent_id: '8e76b39c-586f-48dd-8368-52b8210f88ff' });
  });

  it('honours the pickled expires datetimes of old entries', () => {
    const expiresOf = (id: string) => Date.parse(String(byId(id)?.expires).replace(' ', 'T'));
    expect(expiresOf('a799d06c-0aaf-4183-b199-419055d43e5a')).toBe(Date.parse('2031-03-05T00:00:00Z'));
    expect(expiresOf('7595b638-b96e-4b65-a365-dc81e044d43d')).toBe(Date.parse('2031-03-05T05:00:00Z'));
    expect(expiresOf('109a840c-6fc5-4a8a-a209-f999cb181ebf')).toBe(Date.parse('2031-03-05T10:00:00Z'));
  });

  it('leaves the store empty of everything it sent', async () => {
    expect(await store.zrange('scheduled_task_id_by_time', 0, -1)).toEqual([ids.future]);
    expect(await store.zcard('celery_longterm_scheduler:in_flight')).toBe(0);
    for (const e of fixture.entries) expect(await store.exists(e.key)).toBe(0);
  });
});
