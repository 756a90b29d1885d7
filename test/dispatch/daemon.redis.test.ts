/**
 * The long-running dispatcher in-process, against real Redis: wake-up on sooner jobs, the poll
 * backstop for other writers, long timers under a virtual clock, and outages of broker and store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, getScheduler, type Logger } from '../../src/index.js';
import { DispatcherDaemon, MAX_TIMER_MS } from '../../src/exports/dispatch.js';
import { RedisBroker } from '../../src/exports/brokers.js';
import { RedisStore } from '../../src/exports/stores.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';
import { privateRedis, requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';

const shared = await sharedRedis();
const skip = requireService(shared, 'Redis');

function memoryLogger() {
  const lines: { level: string; message: string }[] = [];
  const log = (level: string) => (message: string) => void lines.push({ level, message });
  const logger: Logger = { info: log('info'), warn: log('warn'), error: log('error') };
  return { logger, lines };
}

describe.skipIf(skip)('DispatcherDaemon', () => {
  let url: string;
  let raw: Redis;
  const cleanup: (() => Promise<unknown>)[] = [];

  beforeAll(() => {
    url = (shared as RedisService).urlFor(0);
    raw = new Redis(url);
  });
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await fn();
    raw.disconnect();
  });

  /** An app on the shared Redis with its own prefix and queue, a running daemon, and arrival times. */
  async function running(pollIntervalMs: number) {
    const prefix = uniquePrefix('daemon');
    const queue = `${prefix}q`;
    const app = new Celery({ broker: url, longtermSchedulerBackend: url, longtermSchedulerKeyPrefix: prefix });
    const stop = new AbortController();
    const daemon = getScheduler(app).daemon({ pollIntervalMs });
    const done = daemon.run(stop.signal);
    const reader = new Redis(url);
    const arrivals = new Map<string, number>();
    let reading = true;
    const readLoop = (async () => {
      while (reading) {
        const got = await reader.brpop(queue, 0.05);
        if (got) arrivals.set(String(parseRedisEnvelope(got[1]).headers.id), Date.now());
      }
    })();
    cleanup.push(async () => {
      stop.abort();
      await done;
      reading = false;
      await readLoop;
      reader.disconnect();
      await app.close();
      const keys = await raw.keys(`${prefix}*`);
      await raw.del(queue, `_kombu.binding.${queue}`, ...keys);
    });
    await new Promise((r) => setTimeout(r, 100)); // let it subscribe
    return { prefix, queue, app, arrivals };
  }

  it('wakes up for a sooner job scheduled from another process, not at the next poll', async () => {
    const { prefix, queue, arrivals } = await running(60_000);
    const other = new Celery({ broker: url, longtermSchedulerBackend: url, longtermSchedulerKeyPrefix: prefix });
    cleanup.push(() => other.close());
    const due = Date.now() + 300;
    const { id } = await other.task('t.soon').applyAsync([], {}, { eta: new Date(due), queue });
    await expect.poll(() => arrivals.get(id), { timeout: 3000 }).toBeDefined();
    const lateness = (arrivals.get(id) as number) - due;
    expect(lateness).toBeGreaterThanOrEqual(0);
    expect(lateness).toBeLessThan(200);
  });

  it('finds jobs written by other writers (no wake-up message) within the poll interval', async () => {
    const { prefix, queue, arrivals } = await running(200);
    const { job } = resolveTaskCall('t.foreign', [1], {}, { queue });
    const due = Date.now() + 100;
    await raw.set(`${prefix}${job.id}`, encodeEntry(job)); // as redis-cli or the Python package would
    await raw.zadd(`${prefix}scheduled_task_id_by_time`, due / 1000, job.id);
    await expect.poll(() => arrivals.get(job.id), { timeout: 3000 }).toBeDefined();
    expect((arrivals.get(job.id) as number) - due).toBeLessThan(200 + 150);
  });

  it('sends a job due in 400 days on time, never sleeping past it, with timers clamped to 2^31-1 ms', async () => {
    const prefix = uniquePrefix('daemon-clock');
    const store = new RedisStore(url, { keyPrefix: prefix });
    const broker = new RedisBroker(url);
    cleanup.push(async () => {
      await store.close();
      await broker.close();
      const keys = await raw.keys(`${prefix}*`);
      if (keys.length) await raw.del(...keys);
    });
    let now = Date.parse('2026-01-01T00:00:00Z');
    const due = now + 400 * 86_400_000;
    const { job } = resolveTaskCall('t.far', [], {}, { queue: `${prefix}q` });
    await store.add([{ id: job.id, dueAt: due / 1000, entry: encodeEntry(job) }]);
    const sleeps: number[] = [];
    const stop = new AbortController();
    let sentAt: number | undefined;
    const daemon = new DispatcherDaemon({
      store,
      broker,
      clock: () => new Date(now),
      pollIntervalMs: 10 * 365 * 86_400_000, // a poll interval far beyond Node's timer limit
      sleep: async (ms) => {
        sleeps.push(ms);
        now += ms; // virtual time: the sleep takes exactly as long as asked
      },
    });
    daemon.events.on('pass', ({ summary }) => {
      if (summary.sent) {
        sentAt = now;
        stop.abort();
      }
    });
    await daemon.run(stop.signal);
    expect(sentAt).toBe(due);
    expect(Math.max(...sleeps)).toBeLessThanOrEqual(MAX_TIMER_MS);
    expect(sleeps.length).toBeGreaterThan(400 / 24.9);
    expect(await raw.llen(`${prefix}q`)).toBe(1);
  });

  it('keeps jobs through a broker outage, logs it once each way, and sends them when the broker is back', async () => {
    const brokerServer = await privateRedis();
    if (!brokerServer) return expect(process.env.CI).not.toBe('true');
    const prefix = uniquePrefix('daemon-broker');
    const queue = `${prefix}q`;
    const store = new RedisStore(url, { keyPrefix: prefix });
    const broker = new RedisBroker(brokerServer.urlFor(0), { socketConnectTimeout: 1 });
    const { logger, lines } = memoryLogger();
    const stop = new AbortController();
    const daemon = new DispatcherDaemon({ store, broker, logger, pollIntervalMs: 50, backoffInitialMs: 20, backoffMaxMs: 200 });
    const done = daemon.run(stop.signal);
    cleanup.push(async () => {
      stop.abort();
      await done;
      await store.close();
      await broker.close();
      await brokerServer.stop();
      const keys = await raw.keys(`${prefix}*`);
      if (keys.length) await raw.del(...keys);
    });

    await brokerServer.kill?.();
    const ids: string[] = [];
    const jobs = Array.from({ length: 50 }, (_, i) => {
      const { job } = resolveTaskCall('t.outage', [i], {}, { queue });
      ids.push(job.id);
      return { id: job.id, dueAt: Date.now() / 1000, entry: encodeEntry(job) };
    });
    await store.add(jobs);
    await expect.poll(() => lines.some((l) => l.message.startsWith('broker unavailable')), { timeout: 5000 }).toBe(true);
    await new Promise((r) => setTimeout(r, 700)); // several retries while down
    // nothing lost while the broker is down (a batch may be in flight between two retries)
    const during = await store.count();
    expect(during.scheduled + during.inFlight).toBe(50);
    await brokerServer.restart?.();
    const reader = new Redis(brokerServer.urlFor(0));
    await expect.poll(() => reader.llen(queue), { timeout: 10_000 }).toBe(50);
    const sent = (await reader.lrange(queue, 0, -1)).map((r) => String(parseRedisEnvelope(r).headers.id));
    reader.disconnect();
    expect(sent.sort()).toEqual(ids.sort());
    expect(lines.filter((l) => l.message.startsWith('broker unavailable'))).toHaveLength(1);
    expect(lines.filter((l) => l.message.startsWith('broker available again'))).toHaveLength(1);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('survives a store outage: logs it once, reconnects, and goes on dispatching', async () => {
    const storeServer = await privateRedis();
    if (!storeServer) return expect(process.env.CI).not.toBe('true');
    const prefix = uniquePrefix('daemon-store');
    const queue = `${prefix}q`;
    const store = new RedisStore(storeServer.urlFor(0), { socketConnectTimeout: 1 });
    const broker = new RedisBroker(url);
    const { logger, lines } = memoryLogger();
    const stop = new AbortController();
    const daemon = new DispatcherDaemon({ store, broker, logger, pollIntervalMs: 50, backoffInitialMs: 20, backoffMaxMs: 200 });
    const done = daemon.run(stop.signal);
    cleanup.push(async () => {
      stop.abort();
      await done;
      await store.close();
      await broker.close();
      await storeServer.stop();
      await raw.del(queue, `_kombu.binding.${queue}`);
    });
    await new Promise((r) => setTimeout(r, 200));
    await storeServer.kill?.();
    await expect.poll(() => lines.some((l) => l.message.startsWith('store unavailable')), { timeout: 5000 }).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    await storeServer.restart?.(); // empty again: a fresh store
    const { job } = resolveTaskCall('t.after', [], {}, { queue });
    const writer = new RedisStore(storeServer.urlFor(0));
    await writer.add([{ id: job.id, dueAt: Date.now() / 1000, entry: encodeEntry(job) }]);
    await writer.close();
    await expect.poll(() => raw.llen(queue), { timeout: 10_000 }).toBe(1);
    expect(lines.filter((l) => l.message.startsWith('store unavailable'))).toHaveLength(1);
    expect(lines.filter((l) => l.message.startsWith('store available again'))).toHaveLength(1);
  });

  it('stops with the configuration error instead of retrying it as an outage', async () => {
    const prefix = uniquePrefix('daemon-config');
    // run needs a second connection (the wake-up subscriber); one is too few
    const store = new RedisStore(url, { keyPrefix: prefix, maxConnections: 1 });
    const broker = new RedisBroker(url);
    const { logger, lines } = memoryLogger();
    try {
      const daemon = new DispatcherDaemon({ store, broker, logger, pollIntervalMs: 50 });
      await expect(daemon.run(new AbortController().signal)).rejects.toThrow(/raise maxConnections/);
      expect(lines.filter((l) => l.message.startsWith('store unavailable'))).toHaveLength(0);
    } finally {
      await store.close();
      await broker.close();
    }
  });

  it('starts while the store is down, and dispatches once it comes up', async () => {
    const storeServer = await privateRedis();
    if (!storeServer) return expect(process.env.CI).not.toBe('true');
    const queue = `${uniquePrefix('daemon-late-store')}q`;
    await storeServer.kill?.();
    const store = new RedisStore(storeServer.urlFor(0), { socketConnectTimeout: 1 });
    const broker = new RedisBroker(url);
    const { logger, lines } = memoryLogger();
    const stop = new AbortController();
    const done = new DispatcherDaemon({ store, broker, logger, pollIntervalMs: 50, backoffInitialMs: 20, backoffMaxMs: 200 }).run(stop.signal);
    cleanup.push(async () => {
      stop.abort();
      await done;
      await store.close();
      await broker.close();
      await storeServer.stop();
      await raw.del(queue, `_kombu.binding.${queue}`);
    });
    await expect.poll(() => lines.some((l) => l.message.startsWith('store unavailable')), { timeout: 5000 }).toBe(true);
    // a lookup that fails while the store is down must not be remembered as the answer
    await expect(store.redisLocation()).rejects.toThrow(/cannot reach/);
    await storeServer.restart?.();
    expect(await store.redisLocation()).toMatchObject({ db: 0 });
    const { job } = resolveTaskCall('t.late', [], {}, { queue });
    const writer = new RedisStore(storeServer.urlFor(0));
    await writer.add([{ id: job.id, dueAt: Date.now() / 1000, entry: encodeEntry(job) }]);
    await writer.close();
    await expect.poll(() => raw.llen(queue), { timeout: 10_000 }).toBe(1);
    expect(lines.filter((l) => l.message.startsWith('store available again'))).toHaveLength(1);
  });
});
