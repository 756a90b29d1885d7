/**
 * The other direction: jobs and canvas WE schedule, sent by the Python package's own dispatcher
 * (a cron written like the package's, `pyapp/python_cron.py`, on Debian's Celery 5.2), run by a
 * real worker. Every job runs once, as it would had we sent it.
 *
 * One private Redis server: broker in db 0, the store in db 1 (the package's bare layout), the
 * result backend in db 2; dbs 3 and 4 for the helper's own check at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, chain, chord, group, type CanvasResult } from '../../src/index.js';
import { pythonCeleryAvailable, startCeleryWorker, type CeleryWorker, type WorkerRecord } from '../helpers/celery-worker.js';
import { runPythonCron, type PythonCronRun } from '../helpers/python-cron.js';
import { privateRedis, requireService, type RedisService } from '../helpers/services.js';

const server = await privateRedis();
const skip =
  requireService(server, 'redis-server (for a private Redis)') ||
  requireService(pythonCeleryAvailable() ? true : undefined, 'Python Celery (/usr/bin/python3 -m celery)');

const RECORDS = 'e2e:cron-records';
/** kombu's Redis transport separates routing key, pattern and queue in a binding with this */
const SEP = '\x06\x16';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// after every describe below: they share this server, on databases of their own
afterAll(async () => {
  await server?.stop();
});

describe.skipIf(skip)("the Python package's dispatcher sends what we scheduled", () => {
  let redis: RedisService;
  let store: Redis;
  let app: Celery;
  let worker: CeleryWorker | undefined;
  let cron: PythonCronRun;
  let records: WorkerRecord[] = [];
  const ids: Record<string, string> = {};
  let chained: CanvasResult;
  let grouped: CanvasResult;
  let chorded: CanvasResult;
  let cronAt = 0;
  const byId = (id: string | undefined) => records.filter((r) => r.id === id);

  beforeAll(async () => {
    redis = server as RedisService;
    store = new Redis(redis.urlFor(1));
    app = new Celery({ broker: redis.urlFor(0), longtermSchedulerBackend: redis.urlFor(1), resultBackend: redis.urlFor(2) });
    const eta = new Date(Date.now() + 200);
    const sched = async (name: string, task: string, args: unknown[], options: object) => {
      ids[name] = (await app.task(task).applyAsync(args, task === 'e2e.record' ? { k: name } : {}, { eta, ...options })).id;
    };
    const echo = app.task('e2e.echo');
    await sched('plain', 'e2e.record', [1, 'two', { three: [3] }], {});
    await sched('routed', 'e2e.record', ['q'], { queue: 'other', priority: 7 });
    await sched('viaExchange', 'e2e.record', ['x'], { exchange: 'billing', routingKey: 'billing.reminders' });
    await sched('expiresRel', 'e2e.record', ['rel'], { expires: 3600 });
    await sched('expiresAbs', 'e2e.record', ['abs'], { expires: new Date('2031-03-05T04:06:07.250Z') });
    await sched('expired', 'e2e.record', ['late'], { expires: new Date(Date.now() - 60_000) });
    await sched('limits', 'e2e.record', ['lim'], { timeLimit: 30, softTimeLimit: 20, shadow: 'shadowed', headers: { 'x-tenant': 'acme' }, ignoreResult: true });
    await sched('linked', 'e2e.add', [2, 3], { link: echo.s(['cb']), linkError: echo.s(['eb']), taskId: 'our-chosen-id' });
    const add = app.task('bench.add');
    chained = await chain(add.s([100, 1]), add.s([10]), app.task('bench.note').si(['chained'])).applyAsync({ eta });
    grouped = await group(add.s([200, 1]), add.s([200, 2])).applyAsync({ eta });
    chorded = await chord([add.s([300, 1]), add.s([300, 2])], app.task('bench.tsum').s()).applyAsync({ eta });
    await sleep(250);

    // Exchange "billing" routes "billing.reminders" to billing-q: the binding a worker declaring
    // that queue on that exchange would leave in kombu's Redis transport.
    const broker = new Redis(redis.urlFor(0));
    await broker.sadd('_kombu.binding.billing', `billing.reminders${SEP}${SEP}billing-q`);
    broker.disconnect();

    worker = await startCeleryWorker({
      brokerUrl: redis.urlFor(0),
      queues: ['celery', 'other', 'billing-q'],
      recordKey: RECORDS,
      resultBackend: redis.urlFor(2),
    });
    cronAt = Date.now() / 1000;
    cron = await runPythonCron({ storeUrl: redis.urlFor(1), brokerUrl: redis.urlFor(0), resultBackend: redis.urlFor(2) });
    // 7 of ours (the expired one is discarded) + the link callback, 3 chain steps, 2 group members, 2 + 1 of the chord
    records = await worker.waitForRecords(7 + 1 + 3 + 2 + 3, 45_000).catch(async (err: Error) => {
      throw new Error(`${err.message}\ncron exit ${cron.code}, stderr:\n${cron.stderr.slice(-3000)}`);
    });
    await sleep(1500); // an extra run would show by now
    records = await worker.records();
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    store?.disconnect();
  });

  it('the cron sends every job we wrote and exits cleanly (no TypeError on our expires)', async () => {
    expect(cron.stderr).not.toContain('Traceback');
    expect(cron.code).toBe(0);
    // 8 plain jobs, the chain's first step, the group's 2 and the chord header's 2
    expect(cron.sent).toHaveLength(8 + 1 + 2 + 2);
    expect(cron.sent).toEqual(expect.arrayContaining(Object.values(ids)));
    expect(await store.zcard('scheduled_task_id_by_time')).toBe(0);
  });

  it('passes args, kwargs, routing and priority through', () => {
    expect(byId(ids.plain)).toMatchObject([{ task: 'e2e.record', args: [1, 'two', { three: [3] }], kwargs: { k: 'plain' } }]);
    expect(byId(ids.routed)).toMatchObject([{ queue: 'other', priority: 7 }]);
    // through exchange "billing" to billing-q, the only queue bound to it
    expect(byId(ids.viaExchange)).toMatchObject([{ exchange: 'billing', queue: 'billing.reminders', args: ['x'] }]);
  });

  it('an absolute expires arrives as that instant, a relative one counts from the cron run', () => {
    const parse = (s: unknown) => Date.parse(String(s).replace(' ', 'T'));
    expect(parse(byId(ids.expiresAbs)[0]?.expires)).toBe(Date.parse('2031-03-05T04:06:07.250Z'));
    const rel = parse(byId(ids.expiresRel)[0]?.expires) / 1000;
    expect(Math.abs(rel - (cronAt + 3600))).toBeLessThan(30);
  });

  it('an expired job is discarded by the worker', () => {
    expect(byId(ids.expired)).toEqual([]);
  });

  it('time limits, shadow and headers reach the worker', () => {
    expect(byId(ids.limits)[0]).toMatchObject({ time_limits: [30, 20], shadow: 'shadowed', headers: { 'x-tenant': 'acme' } });
  });

  it('keeps our task id, and runs the link with the parent result first (not the errback)', () => {
    expect(byId('our-chosen-id')).toHaveLength(1);
    const cbs = records.filter((r) => r.task === 'e2e.echo');
    expect(cbs.map((r) => r.args)).toEqual([[5, 'cb']]);
  });

  it('a chain runs in order, results passed on', () => {
    const steps = chained.results.map((r) => byId(r.id));
    expect(steps.map((s) => s.map((x) => x.args))).toEqual([[[100, 1]], [[101, 10]], [['chained']]]);
    const at = steps.map((s) => s[0]?.at as number);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });

  it('a group runs each member once', () => {
    for (const r of grouped.results) expect(byId(r.id).map((x) => x.group)).toEqual([grouped.groupId]);
  });

  it('a chord runs its body once, with the header results', async () => {
    const body = byId(chorded.result?.id);
    expect(body.map((b) => b.args)).toEqual([[[301, 302]]]);
    expect(await chorded.result?.get({ timeoutMs: 5000 })).toBe(603);
  });

  it('ran each job exactly once', () => {
    const counts = new Map<string, number>();
    for (const r of records) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    expect(records).toHaveLength(7 + 1 + 3 + 2 + 3);
  });

  it('an entry with expires as an ISO string, as versions before this one wrote, stops the Python cron (why we write a pickle)', async () => {
    await store.set('old-style', JSON.stringify([['e2e.record'], { args: ['old'], task_id: 'old-style', expires: '2031-03-05T04:06:07.000000+00:00' }]));
    await store.zadd('scheduled_task_id_by_time', Date.now() / 1000 - 1, 'old-style');
    const run = await runPythonCron({ storeUrl: redis.urlFor(1), brokerUrl: redis.urlFor(0) });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("TypeError: '<' not supported between instances of 'str' and 'int'");
    expect(await store.zscore('scheduled_task_id_by_time', 'old-style')).not.toBeNull(); // stuck, with every job after it
  });
});

/**
 * The helper on its own, no worker: one job of ours without expires, store in db 3, broker in
 * db 4. Whatever the rest of the file finds, this shows the cron reads our entries, honours
 * `--timestamp`, publishes a message Celery would, and empties the store.
 */
describe.skipIf(skip)('the Python cron helper', () => {
  let redis: RedisService;
  let store: Redis;
  let broker: Redis;
  let app: Celery;

  beforeAll(() => {
    redis = server as RedisService;
    store = new Redis(redis.urlFor(3));
    broker = new Redis(redis.urlFor(4));
    app = new Celery({ broker: redis.urlFor(4), longtermSchedulerBackend: redis.urlFor(3) });
  });

  afterAll(async () => {
    await app?.close();
    store?.disconnect();
    broker?.disconnect();
  });

  it('sends a job without expires once it is due by --timestamp, then deletes it', async () => {
    const due = new Date(Date.now() + 3_600_000);
    const { id } = await app.task('e2e.record').applyAsync([1, 'a'], { k: 'v' }, { eta: due, taskId: 'cron-helper-1' });
    const cron = (timestamp?: number) => runPythonCron({ storeUrl: redis.urlFor(3), brokerUrl: redis.urlFor(4), timestamp });

    const early = await cron(); // now: not due yet
    expect([early.code, early.sent, early.stderr]).toEqual([0, [], '']);
    expect(await store.get(id)).not.toBeNull();

    const late = await cron(due.getTime() / 1000 + 1);
    expect(late.stderr).toBe('');
    expect(late.code).toBe(0);
    expect(late.stdout).toBe('sent cron-helper-1 e2e.record\n');
    expect(await store.exists(id, 'scheduled_task_id_by_time')).toBe(0);

    // one kombu message on the default queue: protocol-2 headers and a [args, kwargs, embed] body
    const raw = await broker.lrange('celery', 0, -1);
    expect(raw).toHaveLength(1);
    const envelope = JSON.parse(raw[0] as string) as { body: string; headers: Record<string, unknown> };
    expect(envelope.headers).toMatchObject({ lang: 'py', task: 'e2e.record', id, expires: null, timelimit: [null, null] });
    const [args, kwargs] = JSON.parse(Buffer.from(envelope.body, 'base64').toString('utf8')) as [unknown, unknown];
    expect([args, kwargs]).toEqual([[1, 'a'], { k: 'v' }]);
  });
});
