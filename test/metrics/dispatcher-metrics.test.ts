/**
 * DispatcherMetrics fed by a real Dispatcher/DispatcherDaemon over a memory store and a fake
 * broker (no service needed), and the HTTP endpoint in front of it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Broker, PublishOutcome } from '../../src/brokers/broker.js';
import type { TaskMessage } from '../../src/celery/message.js';
import { Dispatcher, type DispatcherOptions } from '../../src/dispatch/dispatcher.js';
import { DispatchEvents } from '../../src/dispatch/events.js';
import { DispatcherDaemon } from '../../src/dispatch/daemon.js';
import { ConnectionError, UnroutableError } from '../../src/util/errors.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { DispatcherMetrics, METRICS_CONTENT_TYPE } from '../../src/metrics/prometheus.js';
import { startMetricsServer, type MetricsServer } from '../../src/metrics/server.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import type { ClaimOptions, ClaimedJob } from '../../src/stores/store.js';
import { bucketsOf, parseExposition, valueOf } from './exposition.js';

/** Accepts every message except tasks named `refuse.*`; `down` makes publish and ping reject; `hang` makes ping never answer. */
class FakeBroker implements Broker {
  readonly description = 'fake://';
  readonly published: TaskMessage[] = [];
  down = false;
  hang = false;
  async publish(messages: readonly TaskMessage[]): Promise<PublishOutcome[]> {
    if (this.down) throw new ConnectionError('Celery broker (fake)', 'redis://user:s3cret@broker.example:6379/0', new Error('ECONNREFUSED'));
    return messages.map((m) => {
      if (String(m.headers.task).startsWith('refuse.')) return { ok: false, error: new UnroutableError('ex', 'rk') };
      this.published.push(m);
      return { ok: true };
    });
  }
  ping(): Promise<void> {
    if (this.hang) return new Promise(() => {});
    return this.down
      ? Promise.reject(new ConnectionError('Celery broker (fake)', 'redis://user:s3cret@broker.example:6379/0', new Error('ECONNREFUSED')))
      : Promise.resolve();
  }
  async close(): Promise<void> {}
}

function job(task: string, dueAt: number, id?: string) {
  const { job: j } = resolveTaskCall(task, [], {}, id === undefined ? {} : { taskId: id });
  return { id: j.id, dueAt, entry: encodeEntry(j) };
}

const NOW = Date.parse('2030-06-01T12:00:00Z');
const now = NOW / 1000;
const clock = () => new Date(NOW);

/** A dispatcher whose events the metrics count. */
function metered(metrics: DispatcherMetrics, o: DispatcherOptions): Dispatcher {
  const d = new Dispatcher(o);
  metrics.listen(d.events);
  return d;
}

const servers: MetricsServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

describe('DispatcherMetrics listening to the dispatcher’s events', () => {
  it('counts sent, refused and dead jobs, one batch observation, and each sent job’s lateness', async () => {
    const store = new MemoryStore();
    const broker = new FakeBroker();
    await store.add([
      job('ok.a', now - 5),
      job('ok.b', now - 0.02),
      job('refuse.c', now - 100, 'refused-1'),
      { id: 'corrupt-1', dueAt: now - 1, entry: 'not json' },
      job('ok.later', now + 3600),
    ]);
    const metrics = new DispatcherMetrics({ store, broker, clock });
    const summary = await metered(metrics, { store, broker, clock }).dispatchDue();
    expect(summary).toMatchObject({ sent: 2, failed: 1, dead: 1, corrupt: 1 });

    const m = parseExposition(await metrics.render());
    expect(valueOf(m, 'cls_jobs_dispatched_total')).toBe(2);
    expect(valueOf(m, 'cls_jobs_failed_total', { reason: 'refused' })).toBe(1);
    expect(valueOf(m, 'cls_jobs_failed_total', { reason: 'broker_unavailable' })).toBe(0);
    expect(valueOf(m, 'cls_jobs_moved_aside_total')).toBe(1);
    expect(valueOf(m, 'cls_jobs_dead_total', { reason: 'corrupt' })).toBe(1);
    expect(valueOf(m, 'cls_jobs_dead_total', { reason: 'rejected' })).toBe(0);
    expect(valueOf(m, 'cls_jobs_dead_total', { reason: 'max_attempts' })).toBe(0);
    expect(valueOf(m, 'cls_jobs_dead')).toBe(1);
    expect(valueOf(m, 'cls_dispatch_batch_seconds_count')).toBe(1);
    expect(valueOf(m, 'cls_dispatch_lateness_seconds_count')).toBe(2);
    expect(valueOf(m, 'cls_dispatch_lateness_seconds_sum')).toBeCloseTo(5.02, 6);
    const lateness = new Map(bucketsOf(m, 'cls_dispatch_lateness_seconds'));
    expect(lateness.get(0.01)).toBe(0);
    expect(lateness.get(0.025)).toBe(1); // ok.b, 20 ms late
    expect(lateness.get(2.5)).toBe(1);
    expect(lateness.get(5)).toBe(2); // ok.a, 5 s late (le is inclusive)
    expect(lateness.get(Infinity)).toBe(2);
    // the refused job is back in the store, due at its next attempt (10 s on); the later one waits
    expect(valueOf(m, 'cls_jobs_scheduled')).toBe(2);
    expect(valueOf(m, 'cls_jobs_in_flight')).toBe(0);
    expect(valueOf(m, 'cls_overdue_lag_seconds')).toBe(0);
    expect((await store.get('refused-1'))?.dueAt).toBeCloseTo(now + 10, 6);
    expect(valueOf(m, 'cls_store_up')).toBe(1);
    expect(valueOf(m, 'cls_broker_up')).toBe(1);
  });

  it('counts jobs given back during a broker outage as broker_unavailable, and observes no lateness', async () => {
    const store = new MemoryStore();
    const broker = new FakeBroker();
    broker.down = true;
    await store.add([job('ok.a', now - 1), job('ok.b', now - 2), job('ok.c', now - 3)]);
    const metrics = new DispatcherMetrics({ store, broker, clock });
    const summary = await metered(metrics, { store, broker, clock }).dispatchDue();
    expect(summary.error).toBeInstanceOf(ConnectionError);
    const m = parseExposition(await metrics.render());
    expect(valueOf(m, 'cls_jobs_failed_total', { reason: 'broker_unavailable' })).toBe(3);
    expect(valueOf(m, 'cls_jobs_failed_total', { reason: 'refused' })).toBe(0);
    expect(valueOf(m, 'cls_jobs_dispatched_total')).toBe(0);
    expect(valueOf(m, 'cls_dispatch_lateness_seconds_count')).toBe(0);
    expect(valueOf(m, 'cls_overdue_lag_seconds')).toBeCloseTo(3, 6);
    expect(valueOf(m, 'cls_broker_up')).toBe(0); // the live ping fails
  });

  it('does not observe runs that found nothing due; overdue lag is 0 when the earliest job is in the future', async () => {
    const store = new MemoryStore();
    const broker = new FakeBroker();
    await store.add([job('ok.later', now + 60)]);
    const metrics = new DispatcherMetrics({ store, broker, clock });
    const d = metered(metrics, { store, broker, clock });
    await d.dispatchDue();
    await d.dispatchDue();
    const m = parseExposition(await metrics.render());
    expect(valueOf(m, 'cls_dispatch_batch_seconds_count')).toBe(0);
    expect(valueOf(m, 'cls_overdue_lag_seconds')).toBe(0);
    expect(valueOf(m, 'cls_jobs_scheduled')).toBe(1);
  });

  it('a listener that throws changes nothing about dispatch', async () => {
    const store = new MemoryStore();
    const broker = new FakeBroker();
    await store.add([job('ok.a', now - 1), job('ok.b', now - 1)]);
    let calls = 0;
    const events = new DispatchEvents();
    events.on('run', () => {
      calls++;
      throw new Error('listener bug');
    });
    const summary = await new Dispatcher({ store, broker, clock, events }).dispatchDue();
    expect(calls).toBe(1);
    expect(summary).toMatchObject({ sent: 2, failed: 0 });
    expect(broker.published).toHaveLength(2);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('reports the daemon’s store outage and recovery, and lateness reaches the metrics through the daemon', async () => {
    let failing = true;
    class FlakyStore extends MemoryStore {
      override claimDue(o: ClaimOptions): Promise<ClaimedJob[]> {
        if (failing) return Promise.reject(new ConnectionError('store (flaky)', 'redis://:pw@store.example:6379/1', new Error('ECONNRESET')));
        return super.claimDue(o);
      }
    }
    const store = new FlakyStore();
    const broker = new FakeBroker();
    await store.add([job('ok.a', Date.now() / 1000 - 0.5)]);
    const metrics = new DispatcherMetrics({ store, broker });
    const states: boolean[] = [];
    const stop = new AbortController();
    const daemon = new DispatcherDaemon({ store, broker, pollIntervalMs: 20, backoffInitialMs: 10, backoffMaxMs: 20 });
    metrics.listen(daemon.events);
    daemon.events.on('storeState', (e) => states.push(e.up));
    const done = daemon.run(stop.signal);
    try {
      await expect.poll(() => states, { timeout: 3000 }).toEqual([false]);
      expect(daemon.health.store).toBe('down');
      const h = await metrics.health(); // the live count() works, the daemon's claims do not
      expect(h.ok).toBe(false);
      expect(h.store.up).toBe(false);
      expect(h.store.error).toContain('redis://:***@store.example:6379/1');
      expect(h.store.error).not.toContain('pw@');
      expect(h.broker.up).toBe(true);
      failing = false;
      await expect.poll(() => states, { timeout: 3000 }).toEqual([false, true]);
      await expect.poll(async () => (await metrics.dispatched.get()).values[0]?.value, { timeout: 3000 }).toBe(1);
      expect(valueOf(parseExposition(await metrics.render()), 'cls_dispatch_lateness_seconds_count')).toBe(1);
      expect((await metrics.health()).ok).toBe(true);
    } finally {
      stop.abort();
      await done;
    }
  });
});

describe('health', () => {
  it('a broker whose ping does not answer is down after the check timeout, with a message saying so', async () => {
    const broker = new FakeBroker();
    broker.hang = true;
    const metrics = new DispatcherMetrics({ store: new MemoryStore(), broker, checkTimeoutMs: 50 });
    const started = Date.now();
    const h = await metrics.health();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(h).toMatchObject({ ok: false, store: { up: true }, broker: { up: false } });
    expect(h.broker.error).toBe('the broker at fake:// did not answer within 50 ms');
  });

  it('a store that cannot be read: store down, its gauges absent from /metrics, cls_store_up 0', async () => {
    const store = new MemoryStore();
    await store.close(); // every call rejects now
    const metrics = new DispatcherMetrics({ store, broker: new FakeBroker() });
    const m = parseExposition(await metrics.render());
    expect(valueOf(m, 'cls_store_up')).toBe(0);
    expect(valueOf(m, 'cls_broker_up')).toBe(1);
    expect(m.get('cls_jobs_scheduled')?.samples).toEqual([]);
    expect(m.get('cls_overdue_lag_seconds')?.samples).toEqual([]);
    expect((await metrics.health()).store.up).toBe(false);
  });

  it('the daemon’s broker state counts even when a live ping succeeds', async () => {
    const metrics = new DispatcherMetrics({ store: new MemoryStore(), broker: new FakeBroker() });
    const events = new DispatchEvents();
    metrics.listen(events);
    events.emit('brokerState', { up: false, broker: 'fake://', error: new Error('publish to amqp://guest:guest@rabbit:5672// failed') });
    const h = await metrics.health();
    expect(h.broker).toEqual({ up: false, error: 'publish to amqp://guest:***@rabbit:5672// failed' });
    events.emit('brokerState', { up: true, broker: 'fake://' });
    expect((await metrics.health()).ok).toBe(true);
  });
});

describe('startMetricsServer', () => {
  async function serve(broker = new FakeBroker(), store = new MemoryStore()) {
    const metrics = new DispatcherMetrics({ store, broker, checkTimeoutMs: 200 });
    const server = await startMetricsServer({ port: 0, host: '127.0.0.1', metrics, health: () => metrics.health() });
    servers.push(server);
    const base = `http://127.0.0.1:${server.port}`;
    return { metrics, server, base, broker, store };
  }

  it('port 0 picks a free port; GET /metrics serves the exposition format with its content type', async () => {
    const { server, base, store } = await serve();
    await store.add([job('ok.a', Date.now() / 1000 + 60)]);
    expect(server.port).toBeGreaterThan(0);
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(METRICS_CONTENT_TYPE);
    const m = parseExposition(await res.text());
    expect(valueOf(m, 'cls_jobs_scheduled')).toBe(1);
    expect(m.get('cls_dispatch_lateness_seconds')?.type).toBe('histogram');
  });

  it('GET /healthz: 200 with both up, 503 naming the broker (URL redacted) when it is down', async () => {
    const { base, broker } = await serve();
    const ok = await fetch(`${base}/healthz`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('application/json');
    expect(await ok.json()).toEqual({ status: 'ok', store: 'up', broker: 'up' });
    broker.down = true;
    const down = await fetch(`${base}/healthz`);
    expect(down.status).toBe(503);
    const body = (await down.json()) as { status: string; store: string; broker: string; errors: Record<string, string> };
    expect(body).toMatchObject({ status: 'unavailable', store: 'up', broker: 'down' });
    expect(body.errors.broker).toContain('redis://user:***@broker.example:6379/0');
    expect(JSON.stringify(body)).not.toContain('s3cret');
    expect(body.errors.store).toBeUndefined();
  });

  it('404 for other paths, 405 for other methods, HEAD without a body, 500 when rendering fails', async () => {
    const { base } = await serve();
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metricsx`)).status).toBe(404);
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    const head = await fetch(`${base}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);

    const failing = await startMetricsServer({
      port: 0,
      host: '127.0.0.1',
      metrics: { render: () => Promise.reject(new Error('boom at redis://:hunter2@h:1/0')) },
      health: () => Promise.reject(new Error('x')),
    });
    servers.push(failing);
    const res = await fetch(`http://127.0.0.1:${failing.port}/metrics`);
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('boom at redis://:***@h:1/0\n');
  });

  it('close() stops listening, even with a keep-alive connection open; a taken port is an error', async () => {
    const { server, base } = await serve();
    expect((await fetch(`${base}/metrics`)).status).toBe(200); // leaves a keep-alive socket
    await expect(
      startMetricsServer({ port: server.port, host: '127.0.0.1', metrics: { render: () => '' }, health: () => Promise.reject(new Error('x')) }),
    ).rejects.toThrow(/EADDRINUSE/);
    await server.close();
    await server.close(); // idempotent
    await expect(fetch(`${base}/metrics`)).rejects.toThrow();
  });
});
