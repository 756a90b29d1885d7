/**
 * Proves the Celery worker harness itself, without the project's code: a hand-built kombu Redis
 * envelope (Celery protocol 2) is LPUSHed onto a fresh queue, and the real Python worker must run it.
 *
 * Skips locally, and fails under CI=true, when Redis or /usr/bin/python3 + celery is missing.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';
import { pythonCeleryAvailable, startCeleryWorker, type CeleryWorker } from '../helpers/celery-worker.js';

const redisService = await sharedRedis();
const skip = requireService(redisService, 'Redis') || requireService(pythonCeleryAvailable() ? true : undefined, 'Python Celery (/usr/bin/python3 -m celery)');

describe.skipIf(skip)('python celery worker harness', () => {
  const prefix = uniquePrefix('e2e-harness');
  const queue = `${prefix}queue`;
  const recordKey = `${prefix}records`;
  let service: RedisService;
  let worker: CeleryWorker | undefined;
  let client: Redis;

  beforeAll(async () => {
    service = redisService as RedisService;
    client = new Redis(service.urlFor(0));
    const started = Date.now();
    worker = await startCeleryWorker({ brokerUrl: service.urlFor(0), queues: [queue], recordKey });
    console.info(`[e2e] celery worker ready in ${Date.now() - started} ms`);
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    if (client) {
      await client.del(queue, recordKey);
      client.disconnect();
    }
    await service?.stop();
  }, 30_000);

  it('runs a hand-built protocol-2 message LPUSHed onto the queue', async () => {
    const id = randomUUID();
    const body = [[2, 3], {}, { callbacks: null, errbacks: null, chain: null, chord: null }];
    const envelope = {
      body: Buffer.from(JSON.stringify(body), 'utf8').toString('base64'),
      'content-encoding': 'utf-8',
      'content-type': 'application/json',
      headers: {
        lang: 'py',
        task: 'e2e.add',
        id,
        root_id: id,
        parent_id: null,
        group: null,
        retries: 0,
        eta: null,
        expires: null,
        timelimit: [null, null],
        shadow: null,
        argsrepr: '(2, 3)',
        kwargsrepr: '{}',
        origin: 'gen1@test',
        ignore_result: true,
      },
      properties: {
        correlation_id: id,
        reply_to: '',
        delivery_mode: 2,
        priority: 0,
        body_encoding: 'base64',
        delivery_tag: randomUUID(),
        delivery_info: { exchange: '', routing_key: queue },
      },
    };
    await client.lpush(queue, JSON.stringify(envelope));

    if (!worker) throw new Error('worker did not start');
    const records = await worker.waitForRecords(1, 30_000);
    expect(records).toHaveLength(1);
    const [rec] = records;
    expect(rec).toMatchObject({ task: 'e2e.add', id, args: [2, 3], kwargs: {}, queue, eta: null, expires: null });
    expect(rec?.priority).toBe(0);
    expect(await client.llen(queue)).toBe(0);
  }, 60_000);
});
