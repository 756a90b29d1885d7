/**
 * The fault campaign: one batch per broker setup, each with one poisoned job of every kind that
 * setup can meet, between ordinary jobs, on the real services. Every ordinary job must reach the
 * broker exactly once, and each poisoned one must end a dead letter with its reason, after its
 * attempts (three here, one attempt per dispatch run; the dispatcher's clock is moved past each
 * backoff instead of sleeping through it).
 *
 * - Redis store and Redis broker on one server (atomic hand-off): a broker queue key of another
 *   type, an exchange with no queue bound, an entry nested 100,000 deep, an entry that is not JSON.
 * - Redis store, Redis broker on another server (publish then acknowledge): the same.
 * - SQLite store and RabbitMQ: a 70,000-character task id, a 70 KB header, an `expires` in 2099
 *   (beyond RabbitMQ's TTL: sent without `expiration`, not poison any more), a queue that does not
 *   exist (returned), a `CC` header that is not a list (RabbitMQ closes the channel), an entry
 *   nested 100,000 deep.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import type { Channel, ChannelModel } from 'amqplib';
import type { Broker } from '../../src/brokers/broker.js';
import { AmqpBroker } from '../../src/brokers/amqp/amqp-broker.js';
import { RedisBroker } from '../../src/brokers/redis/redis-broker.js';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';
import { Dispatcher, type DispatchSummary } from '../../src/dispatch/dispatcher.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import type { DeadReason, ScheduleStore } from '../../src/stores/store.js';
import type { NewJob } from '../../src/job/types.js';
import { RedisStore } from '../../src/stores/redis/redis-store.js';
import { SqliteStore } from '../../src/stores/sqlite/sqlite-store.js';
import { privateRedis, rabbitmq, requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';

const redis = await sharedRedis();
const amqpUrl = await rabbitmq();
const skipRedis = requireService(redis, 'Redis');
const skipAmqp = requireService(amqpUrl, 'RabbitMQ');

const ATTEMPTS = 3;
const RETRY_MS = 1000;
const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

/** An ordinary job for `queue`, due a little in the past. */
function ordinary(i: number, queue: string, now: number): NewJob {
  const { job } = resolveTaskCall('campaign.ok', [i], {}, { queue, taskId: `ok-${i}-${randomBytes(3).toString('hex')}` });
  return { id: job.id, dueAt: now - 10, entry: encodeEntry(job) };
}

/** A raw entry as another writer would store it (bypassing our validation, as the Python package may). */
function raw(id: string, now: number, options: Record<string, unknown>, args: string = '[1]'): NewJob {
  const kw = JSON.stringify({ task_id: id, ...options });
  return { id, dueAt: now - 10, entry: `[["campaign.poison"],{"args":${args},${kw.slice(1, -1)}}]` };
}

/** Interleaves the poisoned jobs between ordinary ones: o o P o o P ... o o */
function interleave(ok: NewJob[], poison: NewJob[]): NewJob[] {
  const out: NewJob[] = [];
  const step = Math.floor(ok.length / (poison.length + 1));
  let p = 0;
  ok.forEach((j, i) => {
    out.push(j);
    if ((i + 1) % step === 0 && p < poison.length) out.push(poison[p++]!);
  });
  while (p < poison.length) out.push(poison[p++]!);
  return out;
}

/** Runs the dispatcher once per attempt, moving its clock past each backoff; returns every summary. */
async function campaign(store: ScheduleStore, broker: Broker): Promise<DispatchSummary[]> {
  let skew = 0;
  const dispatcher = new Dispatcher({
    store,
    broker,
    batchSize: 500,
    maxAttempts: ATTEMPTS,
    retryDelayMs: RETRY_MS,
    retryDelayMaxMs: 60_000,
    clock: () => new Date(Date.now() + skew * 1000),
  });
  const summaries: DispatchSummary[] = [];
  for (let attempt = 1; attempt <= ATTEMPTS + 1; attempt++) {
    summaries.push(await dispatcher.dispatchDue());
    skew += (RETRY_MS / 1000) * 2 ** (attempt - 1) + 1; // past the next attempt's time
  }
  return summaries;
}

async function expectDead(store: ScheduleStore, expected: Record<string, { reason: DeadReason; attempts: number; error: RegExp }>): Promise<void> {
  for (const [id, want] of Object.entries(expected)) {
    const d = await store.getDead(id);
    expect(d, `${id.slice(0, 40)} is a dead letter`).toBeDefined();
    expect({ id: id.slice(0, 40), reason: d!.reason, attempts: d!.attempts }).toEqual({ id: id.slice(0, 40), reason: want.reason, attempts: want.attempts });
    expect(d!.error).toMatch(want.error);
    expect(d!.entry).not.toBeNull();
  }
  expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: Object.keys(expected).length });
}

describe.skipIf(skipRedis)('poison campaign: Redis store, Redis broker', () => {
  const opened: { close(): Promise<void> }[] = [];
  let rawClient: Redis;
  beforeAll(() => {
    rawClient = new Redis((redis as RedisService).urlFor(0));
  });
  afterAll(async () => {
    for (const o of opened) await o.close();
    rawClient.disconnect();
  });

  async function run(brokerUrl: string, brokerRaw: Redis, label: string): Promise<void> {
    const prefix = uniquePrefix(`poison-${label}`);
    const queue = `${prefix}q`;
    const wrong = `${prefix}wrongq`;
    const exchange = `${prefix}ex`;
    const store = new RedisStore((redis as RedisService).urlFor(0), { keyPrefix: prefix });
    const broker = new RedisBroker(brokerUrl);
    opened.push(store, broker);
    await brokerRaw.set(wrong, 'not a list');
    const now = Date.now() / 1000;
    const ok = Array.from({ length: 60 }, (_, i) => ordinary(i, queue, now));
    const poison = [
      raw('p-wrongtype', now, { queue: wrong }),
      raw('p-unroutable', now, { exchange, routing_key: 'nobody' }),
      raw('p-deep', now, { queue }, deep(100_000)),
      raw('p-unknown', now, { queue, stamped_headers: ['x'] }),
    ];
    await store.add(interleave(ok, poison));
    await rawClient.set(`${prefix}p-notjson`, '{{{ not json');
    await rawClient.zadd(`${prefix}scheduled_task_id_by_time`, now - 10, 'p-notjson');

    const summaries = await campaign(store, broker);
    expect(summaries[0]).toMatchObject({ sent: 60, failed: 2, dead: 3, corrupt: 2 });
    expect(summaries.slice(1, ATTEMPTS - 1).every((s) => s.sent === 0 && s.failed === 2 && s.dead === 0)).toBe(true);
    expect(summaries[ATTEMPTS - 1]).toMatchObject({ sent: 0, failed: 0, dead: 2 });
    expect(summaries[ATTEMPTS]).toMatchObject({ sent: 0, failed: 0, dead: 0 });
    expect(summaries.every((s) => s.error === undefined)).toBe(true);

    const sent = (await brokerRaw.lrange(queue, 0, -1)).map((m) => String(parseRedisEnvelope(m).headers.id));
    expect(sent.length).toBe(60);
    expect(new Set(sent)).toEqual(new Set(ok.map((j) => j.id)));
    expect(await brokerRaw.get(wrong)).toBe('not a list');
    await expectDead(store, {
      'p-wrongtype': { reason: 'max_attempts', attempts: ATTEMPTS, error: /WRONGTYPE/ },
      'p-unroutable': { reason: 'max_attempts', attempts: ATTEMPTS, error: /no queue bound for routing key "nobody"/ },
      'p-deep': { reason: 'corrupt', attempts: 0, error: /nested more than 256 levels/ },
      'p-notjson': { reason: 'corrupt', attempts: 0, error: /not JSON/ },
      'p-unknown': { reason: 'unsupported', attempts: 0, error: /"stamped_headers" is not one of Celery's send_task keywords/ },
    });
    await brokerRaw.del(queue, wrong, `_kombu.binding.${queue}`);
  }

  it('one server (atomic hand-off): every ordinary job once, each poisoned one dead with its reason', async () => {
    await run((redis as RedisService).urlFor(0), rawClient, 'atomic');
  });

  it('another server (publish then acknowledge): the same', async () => {
    const other = await privateRedis();
    if (!other) return expect(process.env.CI).not.toBe('true');
    const r = new Redis(other.urlFor(0));
    try {
      await run(other.urlFor(0), r, 'pta');
    } finally {
      r.disconnect();
      await other.stop();
    }
  });
});

describe.skipIf(skipAmqp)('poison campaign: SQLite store, RabbitMQ', () => {
  let conn: ChannelModel;
  let ch: Channel;
  const dir = mkdtempSync(join(tmpdir(), 'cls-poison-'));
  const tag = randomBytes(4).toString('hex');
  const queue = `cls-poison-${tag}`;
  beforeAll(async () => {
    conn = await amqp.connect(amqpUrl as string);
    ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true });
  });
  afterAll(async () => {
    await ch.deleteQueue(queue).catch(() => undefined);
    await conn.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every ordinary job once; the TTL job goes without expiration; each poisoned one dead with its reason', async () => {
    const store = new SqliteStore(`sqlite:///${join(dir, 'campaign.db')}`);
    const broker = new AmqpBroker(amqpUrl as string);
    try {
      const now = Date.now() / 1000;
      const ok = Array.from({ length: 70 }, (_, i) => ordinary(i, queue, now));
      const longId = `p-longid-${'x'.repeat(70_000)}`;
      const poison = [
        raw(longId, now, { queue }),
        raw('p-bigheader', now, { queue, headers: { x: 'h'.repeat(70_000) } }),
        raw('p-ttl', now, { queue, expires: '2099-01-01T00:00:00+00:00' }),
        raw('p-noqueue', now, { queue: `cls-poison-missing-${tag}` }),
        raw('p-cc', now, { queue, headers: { CC: 5 } }),
        raw('p-deep', now, { queue }, deep(100_000)),
        raw('p-serializer', now, { queue, serializer: 'pickle' }),
      ];
      await store.add(interleave(ok, poison));

      const summaries = await campaign(store, broker);
      expect(summaries[0]).toMatchObject({ sent: 71, failed: 1, dead: 5, corrupt: 1 });
      expect(summaries[ATTEMPTS - 1]).toMatchObject({ sent: 0, failed: 0, dead: 1 });
      expect(summaries.every((s) => s.error === undefined)).toBe(true);

      const got: { id: string; expiration: unknown; expires: unknown }[] = [];
      for (let m = await ch.get(queue, { noAck: true }); m; m = await ch.get(queue, { noAck: true })) {
        got.push({ id: String(m.properties.correlationId), expiration: m.properties.expiration, expires: m.properties.headers?.expires });
      }
      expect(got.length).toBe(71);
      expect(new Set(got.map((g) => g.id))).toEqual(new Set([...ok.map((j) => j.id), 'p-ttl']));
      expect(got.find((g) => g.id === 'p-ttl')).toEqual({ id: 'p-ttl', expiration: undefined, expires: '2099-01-01T00:00:00.000000+00:00' });
      await expectDead(store, {
        [longId]: { reason: 'rejected', attempts: 1, error: /task id \(correlation_id\) is 70009 bytes, over AMQP's 255-byte/ },
        'p-bigheader': { reason: 'rejected', attempts: 1, error: /headers take \d+ bytes encoded, over the 65535/ },
        'p-noqueue': { reason: 'max_attempts', attempts: ATTEMPTS, error: /no queue bound/ },
        'p-cc': { reason: 'rejected', attempts: 1, error: /RabbitMQ closed the channel for it: .*PRECONDITION_FAILED.*CC/ },
        'p-deep': { reason: 'corrupt', attempts: 0, error: /nested more than 256 levels/ },
        'p-serializer': { reason: 'unsupported', attempts: 0, error: /serializer "pickle" cannot be honoured/ },
      });
    } finally {
      await broker.close();
      await store.close();
    }
  });
});
