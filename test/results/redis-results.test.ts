/**
 * AsyncResult against a real Redis: records are written here as Celery's Redis backend writes
 * them (SETEX, then PUBLISH on the key's name); the revoke broadcast is caught with PSUBSCRIBE
 * as a worker's pidbox would. Unique prefixes everywhere; nothing else is touched.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, ResultTimeoutError, TaskFailedError, TaskRevokedError, getScheduler } from '../../src/index.js';
import { requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';

const server = await sharedRedis();
const skip = requireService(server, 'Redis');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip)('AsyncResult with the Redis result backend', () => {
  let redis: RedisService;
  let raw: Redis;
  let app: Celery;
  const prefix = uniquePrefix('results');
  const ctl = `cls-test-ctl-${randomUUID().slice(0, 8)}`;
  const written = new Set<string>();

  const key = (id: string) => `${prefix}celery-task-meta-${id}`;
  /** as Celery's RedisBackend._set: SETEX then PUBLISH (in one pipeline) */
  const celeryWrites = async (id: string, meta: Record<string, unknown>, publish = true) => {
    const value = JSON.stringify({ traceback: null, children: [], date_done: '2030-01-01T00:00:00.000000', task_id: id, result: null, ...meta });
    written.add(key(id));
    const m = raw.multi().setex(key(id), 3600, value);
    if (publish) m.publish(key(id), value);
    await m.exec();
  };

  beforeAll(async () => {
    redis = server as RedisService;
    raw = new Redis(redis.urlFor(0));
    app = new Celery({
      broker: redis.urlFor(0),
      brokerTransportOptions: { global_keyprefix: prefix },
      longtermSchedulerBackend: redis.urlFor(0),
      longtermSchedulerKeyPrefix: prefix,
      resultBackend: redis.urlFor(0),
      resultBackendTransportOptions: { global_keyprefix: prefix },
      controlExchange: ctl,
    });
  });

  afterAll(async () => {
    await app?.close();
    if (raw) {
      const keys = await raw.keys(`${prefix}*`);
      if (keys.length) await raw.del(...keys);
      raw.disconnect();
    }
  });

  it('state(): SCHEDULED while in the store, then the backend status; PENDING without a record', async () => {
    const result = await app.task('t.add').applyAsync([1, 2], {}, { countdown: 3600 });
    expect(await result.state()).toBe('SCHEDULED');
    expect(await result.ready()).toBe(false);
    // the store wins while the job is there
    await celeryWrites(result.id, { status: 'SUCCESS', result: 3 });
    expect(await result.state()).toBe('SCHEDULED');
    expect(await getScheduler(app).revoke(result.id)).toBe(true);
    expect(await result.state()).toBe('SUCCESS');
    expect(await result.ready()).toBe(true);

    const unknown = app.asyncResult(randomUUID());
    expect(await unknown.state()).toBe('PENDING');
    await celeryWrites(unknown.id, { status: 'STARTED', result: { pid: 1 } });
    expect(await unknown.state()).toBe('STARTED');
    expect(await unknown.ready()).toBe(false);
  });

  it('get() resolves at once when the record is already there', async () => {
    const r = app.asyncResult(randomUUID());
    await celeryWrites(r.id, { status: 'SUCCESS', result: { sum: [1, 'two'] } }, false);
    expect(await r.get({ timeoutMs: 1000 })).toEqual({ sum: [1, 'two'] });
  });

  it('get() is woken by the PUBLISH, not by polling', async () => {
    const r = app.asyncResult(randomUUID());
    const started = Date.now();
    const got = r.get({ timeoutMs: 10_000, intervalMs: 60_000 });
    await sleep(300);
    await celeryWrites(r.id, { status: 'STARTED' });
    await sleep(100);
    await celeryWrites(r.id, { status: 'SUCCESS', result: 42 });
    expect(await got).toBe(42);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('get() also finds a record written without a PUBLISH, by re-reading every intervalMs', async () => {
    const r = app.asyncResult(randomUUID());
    const got = r.get({ timeoutMs: 5000, intervalMs: 100 });
    await sleep(250);
    await celeryWrites(r.id, { status: 'SUCCESS', result: 'quiet' }, false);
    expect(await got).toBe('quiet');
  });

  it('get() times out with a ResultTimeoutError naming the id, the wait and the state', async () => {
    const scheduled = await app.task('t.add').applyAsync([1, 2], {}, { countdown: 3600 });
    const started = Date.now();
    const err = await scheduled.get({ timeoutMs: 400, intervalMs: 100 }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(err).toBeInstanceOf(ResultTimeoutError);
    expect((err as Error).message).toContain(scheduled.id);
    expect((err as Error).message).toContain('400 ms');
    expect((err as ResultTimeoutError).state).toBe('SCHEDULED');
    expect((err as Error).message).not.toContain('\n');
  });

  it('get() rejects with TaskFailedError for a FAILURE record', async () => {
    const r = app.asyncResult(randomUUID());
    const got = r.get({ timeoutMs: 5000 }).catch((e: unknown) => e);
    await sleep(100);
    await celeryWrites(r.id, {
      status: 'FAILURE',
      result: { exc_type: 'ZeroDivisionError', exc_message: ['division by zero'], exc_module: 'builtins' },
      traceback: 'Traceback (most recent call last):\nZeroDivisionError: division by zero\n',
    });
    const err = (await got) as TaskFailedError;
    expect(err).toBeInstanceOf(TaskFailedError);
    expect(err.excType).toBe('ZeroDivisionError');
    expect(err.excMessage).toBe('division by zero');
    expect(err.traceback).toContain('ZeroDivisionError');
    expect(await r.state()).toBe('FAILURE');
  });

  it('get() rejects with TaskRevokedError for a REVOKED record', async () => {
    const r = app.asyncResult(randomUUID());
    await celeryWrites(r.id, { status: 'REVOKED', result: { exc_type: 'TaskRevokedError', exc_message: ['expired'], exc_module: 'celery.exceptions' } });
    const err = await r.get({ timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskRevokedError);
    expect((err as TaskRevokedError).reason).toBe('expired');
  });

  it('many get()s of one id share one subscription, and it is dropped when they are done', async () => {
    const r = app.asyncResult(randomUUID());
    const waits = [r.get(), r.get(), app.asyncResult(r.id).get()];
    await sleep(200);
    const [, subscribers] = (await raw.pubsub('NUMSUB', key(r.id))) as [string, number];
    expect(Number(subscribers)).toBe(1);
    await celeryWrites(r.id, { status: 'SUCCESS', result: 'all' });
    expect(await Promise.all(waits)).toEqual(['all', 'all', 'all']);
    await sleep(100);
    const [, after] = (await raw.pubsub('NUMSUB', key(r.id))) as [string, number];
    expect(Number(after)).toBe(0);
  });

  it("revoke() of a scheduled job removes it ('removed') and records REVOKED as a worker would", async () => {
    const result = await app.task('t.add').applyAsync([1, 2], {}, { countdown: 3600 });
    expect(await result.revoke()).toBe('removed');
    expect(await app.store.get(result.id)).toBeUndefined();
    expect(await result.state()).toBe('REVOKED');
    const ttl = await raw.ttl(key(result.id));
    expect(ttl).toBeGreaterThan(86_000);
    expect(ttl).toBeLessThanOrEqual(86_400);
    await expect(result.get({ timeoutMs: 1000 })).rejects.toBeInstanceOf(TaskRevokedError);
  });

  it("revoke() of a job no longer in the store PUBLISHes Celery's revoke on the pidbox fanout channel ('broadcast')", async () => {
    const sub = new Redis(redis.urlFor(0));
    try {
      const heard: Array<{ channel: string; message: string }> = [];
      sub.on('pmessage', (_p: string, channel: string, message: string) => heard.push({ channel, message }));
      // what a worker with this global_keyprefix and control_exchange subscribes to (kombu PSUBSCRIBEs)
      await sub.psubscribe(`${prefix}/0.${ctl}.pidbox`);
      const published = await app.task('t.add').applyAsync([1, 2]); // published at once
      expect(await published.revoke()).toBe('broadcast');
      const gone = app.asyncResult(randomUUID()); // unknown: not in the store either
      expect(await gone.revoke()).toBe('broadcast');
      for (let i = 0; i < 50 && heard.length < 2; i++) await sleep(20);
      expect(heard.map((h) => h.channel)).toEqual([`${prefix}/0.${ctl}.pidbox`, `${prefix}/0.${ctl}.pidbox`]);
      const envelope = JSON.parse(heard[0]?.message ?? '{}') as { body: string; properties: Record<string, unknown> };
      expect(JSON.parse(Buffer.from(envelope.body, 'base64').toString('utf8'))).toEqual({
        method: 'revoke',
        arguments: { task_id: published.id, terminate: false, signal: 'SIGTERM' },
        destination: null,
        pattern: null,
        matcher: null,
      });
      expect(envelope.properties.delivery_info).toEqual({ exchange: `${ctl}.pidbox`, routing_key: '' });
      // nothing was written for a broadcast: the worker writes REVOKED when it discards the task
      expect(await raw.exists(key(published.id))).toBe(0);
      // the task message itself is still in the queue (a worker would discard it)
      expect(await raw.llen(`${prefix}celery`)).toBeGreaterThanOrEqual(1);
    } finally {
      sub.disconnect();
    }
  });

  it('honours fanout_prefix=false (a bare channel name)', async () => {
    const other = new Celery({
      broker: redis.urlFor(0),
      brokerTransportOptions: { global_keyprefix: prefix, fanout_prefix: false },
      longtermSchedulerBackend: redis.urlFor(0),
      longtermSchedulerKeyPrefix: prefix,
      controlExchange: ctl,
    });
    const sub = new Redis(redis.urlFor(0));
    try {
      const heard: string[] = [];
      sub.on('message', (channel: string) => heard.push(channel));
      await sub.subscribe(`${prefix}${ctl}.pidbox`);
      expect(await other.asyncResult(randomUUID()).revoke()).toBe('broadcast');
      for (let i = 0; i < 50 && heard.length < 1; i++) await sleep(20);
      expect(heard).toEqual([`${prefix}${ctl}.pidbox`]);
    } finally {
      sub.disconnect();
      await other.close();
    }
  });

  it('close() ends waits and drops the backend connections; a later get() reconnects', async () => {
    const r = app.asyncResult(randomUUID());
    await celeryWrites(r.id, { status: 'SUCCESS', result: 1 }, false);
    expect(await r.get()).toBe(1);
    const waiter = app.asyncResult(randomUUID());
    const started = Date.now();
    const waiting = waiter.get({ timeoutMs: 10_000 }).catch((e: unknown) => e);
    await sleep(200);
    const [, before] = (await raw.pubsub('NUMSUB', key(waiter.id))) as [string, number];
    expect(Number(before)).toBe(1);
    await app.close();
    // a wait in progress ends at once, and its subscription went with the connection
    expect(String(await waiting)).toMatch(/app was closed while waiting/);
    expect(Date.now() - started).toBeLessThan(2000);
    const [, after] = (await raw.pubsub('NUMSUB', key(waiter.id))) as [string, number];
    expect(Number(after)).toBe(0);
    expect(await r.get()).toBe(1);
  });
});
