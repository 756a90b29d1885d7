/**
 * The Redis broker's kombu transport options, end to end: a real Python Celery worker with
 * `global_keyprefix`, a custom `sep` and custom `priority_steps` runs what our dispatcher sent
 * with the same options (they must match between producer and workers: docs/protocol.md §2.3, docs/protocol.md §2.6).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, getScheduler } from '../../src/index.js';
import { pythonCeleryAvailable, startCeleryWorker, type CeleryWorker, type WorkerRecord } from '../helpers/celery-worker.js';
import { privateRedis, requireService, type RedisService } from '../helpers/services.js';

const server = await privateRedis();
const skip =
  requireService(server, 'redis-server (for a private Redis)') ||
  requireService(pythonCeleryAvailable() ? true : undefined, 'Python Celery (/usr/bin/python3 -m celery)');

const transport = { global_keyprefix: 'pfx:', sep: '::', priority_steps: [0, 5, 9] };

describe.skipIf(skip)('global_keyprefix, sep and priority_steps shared with a Python worker', () => {
  let redis: RedisService;
  let raw: Redis;
  let app: Celery;
  let worker: CeleryWorker | undefined;
  let records: WorkerRecord[] = [];
  const lists: Record<string, number> = {};
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    redis = server as RedisService;
    raw = new Redis(redis.urlFor(0));
    app = new Celery({ broker: redis.urlFor(0), longtermSchedulerBackend: redis.urlFor(1), brokerTransportOptions: transport });
    const soon = new Date(Date.now() + 100);
    ids.plain = (await app.task('e2e.record').applyAsync(['plain'], {}, { eta: soon, queue: 'opts' })).id;
    ids.p6 = (await app.task('e2e.record').applyAsync(['p6'], {}, { eta: soon, queue: 'opts', priority: 6 })).id;
    ids.p9 = (await app.task('e2e.record').applyAsync(['p9'], {}, { eta: soon, queue: 'opts', priority: 9 })).id;
    await new Promise((r) => setTimeout(r, 150));
    expect(await getScheduler(app).dispatchDue()).toMatchObject({ sent: 3, failed: 0 });
    for (const key of ['opts', 'pfx:opts', 'pfx:opts::5', 'pfx:opts::9', 'opts\x06\x166']) lists[key] = await raw.llen(key);
    worker = await startCeleryWorker({ brokerUrl: redis.urlFor(0), queues: ['opts'], recordKey: 'e2e:records', transportOptions: transport });
    records = await worker.waitForRecords(3, 30_000);
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await app?.close();
    raw?.disconnect();
    await redis?.stop();
  });

  it('puts messages on the prefixed lists for the custom steps and separator', () => {
    expect(lists).toEqual({ opts: 0, 'pfx:opts': 1, 'pfx:opts::5': 1, 'pfx:opts::9': 1, 'opts\x06\x166': 0 });
  });

  it('the worker with the same options runs all of them', () => {
    expect(records.map((r) => r.id).sort()).toEqual(Object.values(ids).sort());
    expect(records.find((r) => r.id === ids.p9)?.priority).toBe(9);
  });
});
