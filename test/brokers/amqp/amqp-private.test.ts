/**
 * RabbitMQ faults that would disturb other tests on the machine's broker, on a RabbitMQ node of
 * this file's own: the broker going away and coming back, and a memory alarm that blocks
 * publishers. Jobs stay scheduled while RabbitMQ cannot take them, and each is sent exactly once
 * afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import amqp from 'amqplib';
import { AmqpBroker } from '../../../src/exports/brokers.js';
import { Dispatcher } from '../../../src/exports/dispatch.js';
import { RedisStore } from '../../../src/exports/stores.js';
import { encodeEntry } from '../../../src/job/entry.js';
import { resolveTaskCall } from '../../../src/job/options.js';
import { privateRabbitmq, requireService, sharedRedis, uniquePrefix, type RabbitService, type RedisService } from '../../helpers/services.js';

const redis = await sharedRedis();
const rabbit = redis ? await privateRabbitmq() : undefined;
const skip = requireService(redis, 'Redis') || requireService(rabbit, 'rabbitmq-server (for a private node)');

describe.skipIf(skip)('a private RabbitMQ that restarts', () => {
  const prefix = uniquePrefix('amqp-private');
  const queue = `${prefix}q`;
  let node: RabbitService;
  let store: RedisStore;
  let broker: AmqpBroker;

  async function queued(): Promise<string[]> {
    const conn = await amqp.connect(node.url);
    const ch = await conn.createChannel();
    const ids: string[] = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (!m) break;
      ids.push(String(m.properties.headers?.id));
    }
    await conn.close();
    return ids;
  }

  async function seed(n: number): Promise<string[]> {
    const jobs = Array.from({ length: n }, (_, i) => {
      const { job } = resolveTaskCall('t.p', [i], {}, { queue });
      return { id: job.id, dueAt: Date.now() / 1000 - 1, entry: encodeEntry(job) };
    });
    await store.add(jobs);
    return jobs.map((j) => j.id);
  }

  beforeAll(async () => {
    node = rabbit as RabbitService;
    const conn = await amqp.connect(node.url);
    const ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true });
    await conn.close();
    store = new RedisStore((redis as RedisService).urlFor(0), { keyPrefix: prefix });
    broker = new AmqpBroker(node.url, { connectTimeout: 2 });
  }, 90_000);

  afterAll(async () => {
    await broker?.close();
    await store?.close();
    await node?.stop();
  }, 60_000);

  it('keeps jobs while the broker is down, and sends each once after it restarts', async () => {
    const ids = await seed(250);
    node.halt();
    const d = new Dispatcher({ store, broker, batchSize: 100 });
    const down = await d.dispatchDue();
    expect(down.sent).toBe(0);
    expect(down.error?.message).toMatch(/Celery broker \(RabbitMQ\) at amqp:\/\/guest:\*\*\*@127\.0\.0\.1/);
    expect(await store.count()).toEqual({ scheduled: 250, inFlight: 0, dead: 0 });
    await node.start();
    expect(await d.dispatchDue()).toMatchObject({ sent: 250, failed: 0 });
    expect((await queued()).sort()).toEqual(ids.sort());
  }, 90_000);

  it('a memory alarm longer than the lease: the dispatcher keeps its leases, a rival takes nothing, each job is sent once', async () => {
    const ids = await seed(50);
    // RabbitMQ stops reading from publishers while the alarm lasts; confirms wait until it clears
    node.ctl('set_vm_memory_high_watermark', '0.0000001');
    try {
      const deadline = Date.now() + 20_000;
      while (!/memory/.test(node.ctl('eval', 'rabbit_alarm:get_alarms().'))) {
        if (Date.now() > deadline) throw new Error('the memory alarm did not go off');
        await new Promise((r) => setTimeout(r, 200));
      }
      const leaseMs = 1500;
      const run = new Dispatcher({ store, broker, batchSize: 100, leaseMs }).dispatchDue();
      const rival = new RedisStore((redis as RedisService).urlFor(0), { keyPrefix: prefix });
      const stolen: string[] = [];
      try {
        for (const end = Date.now() + 3 * leaseMs + 500; Date.now() < end;) {
          await new Promise((r) => setTimeout(r, 250));
          const now = Date.now() / 1000;
          stolen.push(...(await rival.claimDue({ until: now, now, limit: 100, leaseMs })).map((c) => c.id));
        }
      } finally {
        await rival.close();
      }
      expect(stolen).toEqual([]);
      expect(await store.count()).toEqual({ scheduled: 0, inFlight: 50, dead: 0 });
      node.ctl('set_vm_memory_high_watermark', '0.4');
      expect(await run).toMatchObject({ sent: 50, failed: 0 });
    } finally {
      node.ctl('set_vm_memory_high_watermark', '0.4');
    }
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    const got = await queued();
    expect(got.length).toBe(50);
    expect(got.sort()).toEqual(ids.sort());
  }, 90_000);
});
