/**
 * End to end: results and revoking with a real Python Celery worker (Debian's Celery 5.2) on a
 * Redis broker, with a Redis result backend. The worker runs with remote control on (a unique
 * control_exchange), so it hears our revoke broadcast exactly as it hears `app.control.revoke`.
 * The broker uses a kombu global_keyprefix, so the broadcast's channel prefixing is checked too.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, TaskFailedError, TaskRevokedError, getScheduler } from '../../src/index.js';
import { revokedMeta } from '../../src/exports/protocol.js';
import { pythonCeleryAvailable, startCeleryWorker, waitForWorkerLog, type CeleryWorker } from '../helpers/celery-worker.js';
import amqp from 'amqplib';
import { privateRedis, rabbitmq, requireService, type RedisService } from '../helpers/services.js';

const server = await privateRedis();
const skip =
  requireService(server, 'redis-server (for a private Redis)') ||
  requireService(pythonCeleryAvailable() ? true : undefined, 'Python Celery (/usr/bin/python3 -m celery)');
const amqpUrl = await rabbitmq();
const skipAmqp = skip || requireService(amqpUrl, 'RabbitMQ');

afterAll(async () => {
  await server?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PREFIX = 'pfx:';

describe.skipIf(skip)('results and revoke with a real Python Celery worker (Redis broker)', () => {
  let redis: RedisService;
  let app: Celery;
  let worker: CeleryWorker;
  let results: Redis;
  const queue = `results-${randomBytes(3).toString('hex')}`;
  const ctl = `ctl${randomBytes(3).toString('hex')}`;

  const waitForLog = (pattern: RegExp) => waitForWorkerLog(worker, pattern);

  beforeAll(async () => {
    redis = server as RedisService;
    results = new Redis(redis.urlFor(2));
    app = new Celery({
      broker: redis.urlFor(0),
      brokerTransportOptions: { global_keyprefix: PREFIX },
      longtermSchedulerBackend: redis.urlFor(1),
      resultBackend: redis.urlFor(2),
      taskDefaultQueue: queue,
      controlExchange: ctl,
    });
    worker = await startCeleryWorker({
      brokerUrl: redis.urlFor(0),
      queues: [queue],
      recordKey: 'e2e:results:records',
      recordRedisUrl: redis.urlFor(3),
      resultBackend: redis.urlFor(2),
      transportOptions: { global_keyprefix: PREFIX },
      remoteControl: true,
      controlExchange: ctl,
    });
  });

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    results?.disconnect();
  });

  it('get() returns the real return value; state goes SCHEDULED → SUCCESS', async () => {
    const result = await app.task('e2e.add').applyAsync([2, 3], {}, { eta: new Date(Date.now() + 1500) });
    expect(await result.state()).toBe('SCHEDULED');
    expect(await result.ready()).toBe(false);
    const waiting = result.get({ timeoutMs: 25_000 }); // waits through SCHEDULED
    await sleep(1600);
    const summary = await getScheduler(app).dispatchDue();
    expect(summary.sent).toBe(1);
    expect(await waiting).toBe(5);
    expect(await result.state()).toBe('SUCCESS');
    expect(await result.ready()).toBe(true);
    const meta = await result.meta();
    expect(meta).toMatchObject({ status: 'SUCCESS', result: 5, task_id: result.id });
  });

  it('a failing task: get() rejects with TaskFailedError carrying the Python exception', async () => {
    const result = await app.task('e2e.fail').applyAsync(['kaboom'], {}, { countdown: 1 });
    await sleep(1100);
    await getScheduler(app).dispatchDue();
    const err = await result.get({ timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskFailedError);
    const failed = err as TaskFailedError;
    expect(failed.excType).toBe('ValueError');
    expect(failed.excMessage).toBe('kaboom');
    expect(failed.excModule).toBe('builtins');
    expect(failed.traceback).toContain('ValueError: kaboom');
    expect(failed.message).toBe(`task "${result.id}" failed: ValueError: kaboom`);
    expect(await result.state()).toBe('FAILURE');
  });

  it("revoke() of a scheduled job returns 'removed' and the worker never runs it", async () => {
    const eta = new Date(Date.now() + 1200);
    const revoked = await app.task('e2e.record').applyAsync(['never'], {}, { eta });
    const control = await app.task('e2e.record').applyAsync(['control'], {}, { eta });
    expect(await revoked.revoke()).toBe('removed');
    expect(await revoked.state()).toBe('REVOKED');
    await expect(revoked.get({ timeoutMs: 2000 })).rejects.toBeInstanceOf(TaskRevokedError);
    await sleep(1300);
    const summary = await getScheduler(app).dispatchDue();
    expect(summary.sent).toBe(1);
    expect(await control.get({ timeoutMs: 20_000 })).toBeNull();
    const records = await worker.records();
    expect(records.some((r) => r.id === control.id)).toBe(true);
    expect(records.some((r) => r.id === revoked.id)).toBe(false);
    // a second revoke finds nothing in the store: it broadcasts (harmless)
    expect(await revoked.revoke()).toBe('broadcast');
  });

  it("revoke() of a message the worker already holds returns 'broadcast'; the worker discards it and records REVOKED", async () => {
    // dispatched early: the message carries Celery's own eta, so the worker receives and holds it
    const eta = new Date(Date.now() + 4000);
    const held = await app.task('e2e.record').applyAsync(['held'], {}, { eta });
    const summary = await getScheduler(app).dispatchDue(new Date(Date.now() + 10_000));
    expect(summary.sent).toBe(1);
    expect(await held.state()).toBe('PENDING'); // gone from the store, not yet run
    await waitForLog(new RegExp(`e2e\\.record\\[${held.id}\\] received`));

    expect(await held.revoke()).toBe('broadcast');
    await waitForLog(new RegExp(`Tasks flagged as revoked: ${held.id}`));

    // at the eta the worker discards it and writes REVOKED itself
    const err = await held.get({ timeoutMs: 15_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskRevokedError);
    expect(Date.now()).toBeGreaterThanOrEqual(eta.getTime() - 50);
    await waitForLog(new RegExp(`Discarding revoked task: e2e\\.record\\[${held.id}\\]`));
    expect(await held.state()).toBe('REVOKED');
    // the record the worker wrote has the shape we write for a removed job
    const meta = await held.meta();
    expect(meta?.result).toEqual(revokedMeta(held.id, new Date()).result);
    await sleep(500);
    expect((await worker.records()).some((r) => r.id === held.id)).toBe(false);
  });
});

describe.skipIf(skipAmqp)('revoke broadcast with a real Python Celery worker (RabbitMQ broker)', () => {
  let redis: RedisService;
  let app: Celery;
  let worker: CeleryWorker;
  const queue = `cls-results-${randomBytes(3).toString('hex')}`;
  const ctl = `cls-ctl-${randomBytes(3).toString('hex')}`;

  const waitForLog = (pattern: RegExp) => waitForWorkerLog(worker, pattern);

  beforeAll(async () => {
    redis = server as RedisService;
    app = new Celery({
      broker: amqpUrl as string,
      longtermSchedulerBackend: redis.urlFor(5),
      resultBackend: redis.urlFor(4),
      taskDefaultQueue: queue,
      controlExchange: ctl,
    });
    worker = await startCeleryWorker({
      brokerUrl: amqpUrl as string,
      queues: [queue],
      recordKey: 'e2e:results:amqp-records',
      recordRedisUrl: redis.urlFor(3),
      resultBackend: redis.urlFor(4),
      remoteControl: true,
      controlExchange: ctl,
    });
  });

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    // the worker declared a durable queue and the pidbox exchanges on the shared RabbitMQ
    const conn = await amqp.connect(amqpUrl as string);
    try {
      const ch = await conn.createChannel();
      await ch.deleteQueue(queue);
      await ch.deleteExchange(queue);
      await ch.deleteExchange(`${ctl}.pidbox`);
      await ch.deleteExchange(`reply.${ctl}.pidbox`);
      await ch.close();
    } finally {
      await conn.close();
    }
  });

  it("a held message: revoke() returns 'broadcast' on the fanout exchange and the worker discards it", async () => {
    const eta = new Date(Date.now() + 4000);
    const held = await app.task('e2e.record').applyAsync(['held'], {}, { eta });
    const control = await app.task('e2e.add').applyAsync([20, 22], {}, { eta });
    const summary = await getScheduler(app).dispatchDue(new Date(Date.now() + 10_000));
    expect(summary.sent).toBe(2);
    await waitForLog(new RegExp(`e2e\\.record\\[${held.id}\\] received`));

    expect(await held.revoke()).toBe('broadcast');
    await waitForLog(new RegExp(`Tasks flagged as revoked: ${held.id}`));

    await expect(held.get({ timeoutMs: 15_000 })).rejects.toBeInstanceOf(TaskRevokedError);
    expect(await control.get({ timeoutMs: 15_000 })).toBe(42);
    expect(await held.state()).toBe('REVOKED');
    const records = await worker.records();
    expect(records.some((r) => r.id === control.id)).toBe(true);
    expect(records.some((r) => r.id === held.id)).toBe(false);
  });
});
