/**
 * End to end on RabbitMQ: jobs scheduled through our API (store: Redis, unique key prefix),
 * dispatched by our dispatcher through AmqpBroker, run by a real Python Celery worker
 * (Debian's python3-celery with py-amqp) consuming from RabbitMQ.
 *
 * The test declares a unique queue (durable, `x-max-priority: 10`) before the worker starts, and
 * the worker is configured with `task_queue_max_priority=10` so its own declare is equivalent
 * (a mismatch would close its channel with 406, docs/protocol.md §3.4). The worker writes its
 * records to the store's Redis (E2E_RECORD_REDIS_URL), since the broker is not Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import type { Channel, ChannelModel } from 'amqplib';
import { Celery, getScheduler, type DispatchSummary, type HandoffMode } from '../../src/index.js';
import { pythonCeleryAvailable, startCeleryWorker, type CeleryWorker, type WorkerRecord } from '../helpers/celery-worker.js';
import { rabbitmq, requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';

const amqpUrl = await rabbitmq();
const redisService = await sharedRedis();
const skip =
  requireService(amqpUrl, 'RabbitMQ') ||
  requireService(redisService, 'Redis (for the store)') ||
  requireService(pythonCeleryAvailable() ? true : undefined, 'Python Celery (/usr/bin/python3 -m celery)');

describe.skipIf(skip)('a real Python Celery worker on RabbitMQ runs what we scheduled and dispatched', () => {
  const tag = randomBytes(4).toString('hex');
  const queue = `cls-e2e-${tag}`;
  const recordKey = `${uniquePrefix('amqp-e2e')}records`;
  let redis: RedisService;
  let conn: ChannelModel | undefined;
  let ch: Channel | undefined;
  let app: Celery | undefined;
  let worker: CeleryWorker | undefined;
  let records: WorkerRecord[] = [];
  let summary: DispatchSummary;
  let mode: HandoffMode | undefined;
  let dispatchedAt = 0;
  const ids: Record<string, string> = {};

  const byId = (id: string | undefined) => records.find((r) => r.id === id);

  beforeAll(async () => {
    redis = redisService as RedisService;
    conn = await amqp.connect(amqpUrl as string);
    ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-max-priority': 10 } });

    worker = await startCeleryWorker({
      brokerUrl: amqpUrl as string,
      queues: [queue],
      recordKey,
      recordRedisUrl: redis.urlFor(0),
      queueMaxPriority: 10,
    });

    app = new Celery({
      broker: amqpUrl as string,
      longtermSchedulerBackend: redis.urlFor(0),
      longtermSchedulerKeyPrefix: uniquePrefix('amqp-e2e-store'),
      taskDefaultQueue: queue,
    });
    const soon = new Date(Date.now() + 300);
    const sched = async (name: string, task: string, args: unknown[], kwargs: Record<string, unknown>, options: object) => {
      ids[name] = (await (app as Celery).task(task).applyAsync(args, kwargs, { eta: soon, ...options })).id;
    };
    await sched('argsKwargs', 'e2e.record', [1, 'two', { three: [3] }, 1.5, true, null], { k: 'v', n: null }, {});
    await sched('priority', 'e2e.record', ['p'], {}, { priority: 7 });
    await sched('expiresRel', 'e2e.record', ['e'], {}, { expires: 3600 });
    await sched('link', 'e2e.add', [2, 3], {}, { link: app.task('e2e.echo').s(['cb']), timeLimit: 30, softTimeLimit: 20, headers: { 'x-tenant': 'acme' } });
    // beyond RabbitMQ's TTL limit: sent without `expiration` (it closed the channel before, failing the batch)
    await sched('expiresFar', 'e2e.record', ['far'], {}, { expires: '2099-01-01T00:00:00Z' });
    // RabbitMQ closes the channel for a CC header that is not a list: a dead letter, the batch still goes
    await sched('poisonCc', 'e2e.record', ['cc'], {}, { headers: { CC: 5 } });
    await sched('revoked', 'e2e.record', ['never'], {}, {});
    expect(await getScheduler(app).revoke(ids.revoked as string)).toBe(true);

    await new Promise((r) => setTimeout(r, 350));
    dispatchedAt = Date.now() / 1000;
    const dispatcher = getScheduler(app).dispatcher();
    summary = await dispatcher.dispatchDue();
    mode = dispatcher.mode;

    // 5 of ours + the echo callback
    records = await worker.waitForRecords(5 + 1, 30_000);
    // give a wrongly-run job a moment to show up before the negative assertions
    await new Promise((r) => setTimeout(r, 500));
    records = await worker.records();
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    if (ch) {
      await ch.deleteQueue(queue).catch(() => undefined);
      // the worker declared a direct exchange named after the queue (docs/protocol.md §3.1)
      await ch.deleteExchange(queue).catch(() => undefined);
    }
    await conn?.close().catch(() => undefined);
    await redis?.stop();
  });

  it('dispatched every due job (publish-then-ack: the store and broker are different systems)', () => {
    expect(summary).toMatchObject({ sent: 5, failed: 0, dead: 1, corrupt: 0 });
    expect(summary.error).toBeUndefined();
    expect(mode).toBe('publish-then-ack');
  });

  it('passes args and kwargs through unchanged, from the default exchange to our queue', () => {
    expect(byId(ids.argsKwargs)).toMatchObject({
      task: 'e2e.record',
      args: [1, 'two', { three: [3] }, 1.5, true, null],
      kwargs: { k: 'v', n: null },
      queue,
      exchange: '',
      correlation_id: ids.argsKwargs,
    });
  });

  it('the worker sees priority 7', () => {
    expect(byId(ids.priority)?.priority).toBe(7);
  });

  it('sends a relative expires counted from dispatch', () => {
    const expires = Date.parse(String(byId(ids.expiresRel)?.expires).replace(' ', 'T')) / 1000;
    expect(expires).toBeGreaterThan(dispatchedAt + 3600 - 5);
    expect(expires).toBeLessThan(dispatchedAt + 3600 + 5);
  });

  it('runs the link callback with the parent result first, and carries time limits and headers', () => {
    const parent = byId(ids.link);
    expect(parent?.time_limits).toEqual([30, 20]);
    expect(parent?.headers).toEqual({ 'x-tenant': 'acme' });
    const cb = records.find((r) => r.task === 'e2e.echo');
    expect(cb?.args).toEqual([5, 'cb']);
    expect(cb?.parent_id).toBe(ids.link);
  });

  it('runs a job whose expires is further off than RabbitMQ can hold, with its expires header', () => {
    expect(byId(ids.expiresFar)?.args).toEqual(['far']);
    expect(String(byId(ids.expiresFar)?.expires)).toMatch(/^2099-01-01[ T]00:00:00/);
  });

  it('a job that makes RabbitMQ close the channel is a dead letter; it never runs, and the rest of its batch ran once', async () => {
    expect(byId(ids.poisonCc)).toBeUndefined();
    const dead = await getScheduler(app as Celery).deadLetter(ids.poisonCc as string);
    expect(dead).toMatchObject({ reason: 'rejected', task: 'e2e.record', error: expect.stringMatching(/PRECONDITION_FAILED.*CC/) });
  });

  it('a revoked job never runs, and nothing ran twice', () => {
    expect(byId(ids.revoked)).toBeUndefined();
    expect(records).toHaveLength(6);
    expect(new Set(records.map((r) => r.id)).size).toBe(6);
  });

  it('leaves nothing scheduled or in flight in the store', async () => {
    expect(await (app as Celery).store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 1 });
  });
});
