/**
 * `run --metrics-port` end to end in-process, against real Redis: the store on the shared Redis
 * (own key prefix), the broker on a private redis-server this file can kill and restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, getScheduler } from '../../src/index.js';
import { RedisBroker } from '../../src/exports/brokers.js';
import { RedisStore } from '../../src/exports/stores.js';
import { Dispatcher } from '../../src/dispatch/dispatcher.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { DispatcherMetrics } from '../../src/metrics/prometheus.js';
import { startMetricsServer, type MetricsServer } from '../../src/metrics/server.js';
import { privateRedis, requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';
import { parseExposition, valueOf } from './exposition.js';

const shared = await sharedRedis();
const brokerServer = shared ? await privateRedis() : undefined;
const skip = requireService(shared, 'Redis') || requireService(brokerServer, 'redis-server (private, for broker outages)');

describe.skipIf(skip)('dispatcher metrics with Redis store and broker', () => {
  const prefix = uniquePrefix('metrics');
  const queue = `${prefix}q`;
  let storeUrl: string;
  let brokerUrl: string;
  let raw: Redis;
  let app: Celery;
  let metrics: DispatcherMetrics;
  let server: MetricsServer;
  let base: string;
  const stop = new AbortController();
  let done: Promise<void>;

  beforeAll(async () => {
    storeUrl = (shared as RedisService).urlFor(0);
    brokerUrl = (brokerServer as RedisService).urlFor(0);
    raw = new Redis(storeUrl);
    app = new Celery({
      broker: brokerUrl,
      longtermSchedulerBackend: storeUrl,
      longtermSchedulerKeyPrefix: prefix,
      redisSocketConnectTimeout: 1,
      redisSocketTimeout: 2,
    });
    metrics = new DispatcherMetrics({ store: app.store, broker: app.broker, clock: () => app.now(), checkTimeoutMs: 500 });
    // what the CLI does: the server first, then the daemon, its events counted by the metrics
    server = await startMetricsServer({ port: 0, host: '127.0.0.1', metrics, health: () => metrics.health() });
    base = `http://127.0.0.1:${server.port}`;
    const daemon = getScheduler(app).daemon({ pollIntervalMs: 100, backoffInitialMs: 20, backoffMaxMs: 200 });
    metrics.listen(daemon.events);
    done = daemon.run(stop.signal);
  });

  afterAll(async () => {
    stop.abort();
    await done;
    await server?.close();
    await app?.close();
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await brokerServer?.stop();
  });

  const scrape = async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    return parseExposition(await res.text());
  };
  const healthz = async () => {
    const res = await fetch(`${base}/healthz`);
    return { status: res.status, body: (await res.json()) as { status: string; store: string; broker: string; errors?: Record<string, string> } };
  };

  it('scrapes dispatched jobs, their lateness and the jobs still scheduled', async () => {
    const task = app.task('metrics.t');
    const soon = new Date(Date.now() + 200);
    for (let i = 0; i < 3; i++) await task.applyAsync([i], {}, { eta: soon, queue });
    await task.applyAsync([], {}, { countdown: 3600, queue });
    await task.applyAsync([], {}, { countdown: 7200, queue });

    await expect.poll(async () => valueOf(await scrape(), 'cls_jobs_dispatched_total'), { timeout: 5000 }).toBe(3);
    const m = await scrape();
    expect(valueOf(m, 'cls_dispatch_lateness_seconds_count')).toBe(3);
    const sum = valueOf(m, 'cls_dispatch_lateness_seconds_sum') as number;
    expect(sum).toBeGreaterThanOrEqual(0);
    expect(sum / 3).toBeLessThan(1); // woken by the store's watch, not late by whole seconds
    expect(valueOf(m, 'cls_dispatch_batch_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(valueOf(m, 'cls_jobs_scheduled')).toBe(2);
    expect(valueOf(m, 'cls_jobs_in_flight')).toBe(0);
    expect(valueOf(m, 'cls_overdue_lag_seconds')).toBe(0);
    expect(valueOf(m, 'cls_store_up')).toBe(1);
    expect(valueOf(m, 'cls_broker_up')).toBe(1);
    const broker = new Redis(brokerUrl);
    try {
      expect(await broker.llen(queue)).toBe(3); // what the counter says did reach the broker
    } finally {
      broker.disconnect();
    }
  });

  it('/healthz: 200, then 503 naming the broker while it is down, then 200 once it is back', async () => {
    expect(await healthz()).toEqual({ status: 200, body: { status: 'ok', store: 'up', broker: 'up' } });

    await brokerServer?.kill?.();
    // nothing is due: only the live check at request time can tell
    const down = await healthz();
    expect(down.status).toBe(503);
    expect(down.body).toMatchObject({ status: 'unavailable', store: 'up', broker: 'down' });
    expect(down.body.errors?.broker).toContain(brokerUrl); // the live check's error names the broker's (redacted) URL
    expect(down.body.errors?.store).toBeUndefined();
    expect(valueOf(await scrape(), 'cls_broker_up')).toBe(0);

    // a job falls due during the outage: the daemon fails to send it and says so
    await app.task('metrics.t').applyAsync(['late'], {}, { eta: new Date(Date.now() + 100), queue });
    await expect.poll(async () => valueOf(await scrape(), 'cls_jobs_failed_total', { reason: 'broker_unavailable' }), { timeout: 8000 }).toBeGreaterThan(0);
    const dispatchedBefore = valueOf(await scrape(), 'cls_jobs_dispatched_total');
    expect(dispatchedBefore).toBe(3);

    await brokerServer?.restart?.();
    await expect.poll(async () => (await healthz()).status, { timeout: 15_000, interval: 200 }).toBe(200);
    expect((await healthz()).body).toEqual({ status: 'ok', store: 'up', broker: 'up' });
    const m = await scrape();
    expect(valueOf(m, 'cls_jobs_dispatched_total')).toBe(4); // the late job went out once the broker was back
    expect(valueOf(m, 'cls_dispatch_lateness_seconds_count')).toBe(4);
    expect(valueOf(m, 'cls_broker_up')).toBe(1);
    expect(valueOf(m, 'cls_jobs_scheduled')).toBe(2);
  });
});

describe.skipIf(requireService(shared, 'Redis'))('metrics in atomic hand-off mode (store and broker on one Redis)', () => {
  it('counts every handed-off job and its lateness', async () => {
    const url = (shared as RedisService).urlFor(0);
    const prefix = uniquePrefix('metrics-atomic');
    const store = new RedisStore(url, { keyPrefix: prefix });
    const broker = new RedisBroker(url);
    const raw = new Redis(url);
    try {
      const nowS = Date.now() / 1000;
      const jobs = [2, 30, 400].map((late) => {
        const { job } = resolveTaskCall('metrics.atomic', [late], {}, { queue: `${prefix}q` });
        return { id: job.id, dueAt: nowS - late, entry: encodeEntry(job) };
      });
      await store.add(jobs);
      const metrics = new DispatcherMetrics({ store, broker });
      const dispatcher = new Dispatcher({ store, broker });
      metrics.listen(dispatcher.events);
      expect(await dispatcher.dispatchDue()).toMatchObject({ sent: 3, failed: 0 });
      expect(dispatcher.mode).toBe('atomic');
      const m = parseExposition(await metrics.render());
      expect(valueOf(m, 'cls_jobs_dispatched_total')).toBe(3);
      expect(valueOf(m, 'cls_dispatch_lateness_seconds_count')).toBe(3);
      expect(valueOf(m, 'cls_dispatch_lateness_seconds_bucket', { le: '1' })).toBe(0);
      expect(valueOf(m, 'cls_dispatch_lateness_seconds_bucket', { le: '5' })).toBe(1);
      expect(valueOf(m, 'cls_dispatch_lateness_seconds_bucket', { le: '60' })).toBe(2);
      expect(valueOf(m, 'cls_dispatch_lateness_seconds_bucket', { le: '900' })).toBe(3);
      expect(await raw.llen(`${prefix}q`)).toBe(3);
    } finally {
      await store.close();
      await broker.close();
      const keys = await raw.keys(`${prefix}*`);
      await raw.del(`_kombu.binding.${prefix}q`, ...keys);
      raw.disconnect();
    }
  });
});
