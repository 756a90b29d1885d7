/**
 * The dispatcher's metrics through prom-client: the families a dashboard depends on keep their
 * names, types and help text exactly (pinned in test/data/metric-families.txt, as the hand-written
 * registry wrote them before prom-client), they register into the registry the caller passes, one
 * scrape reads the store once however many gauges it feeds, and `processMetrics` adds
 * prom-client's default process and event-loop metrics.
 */
import { readFileSync } from 'node:fs';
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { Broker } from '../../src/brokers/broker.js';
import { DispatcherMetrics, METRICS_CONTENT_TYPE } from '../../src/metrics/prometheus.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import type { ListOptions, StoreCounts } from '../../src/stores/store.js';
import { parseExposition, valueOf } from './exposition.js';

const broker: Broker = { description: 'fake://', publish: () => Promise.resolve([]), ping: () => Promise.resolve(), close: () => Promise.resolve() };
const pinned = readFileSync(new URL('../data/metric-families.txt', import.meta.url), 'utf8');

class CountingStore extends MemoryStore {
  counts = 0;
  lists = 0;
  override count(): Promise<StoreCounts> {
    this.counts++;
    return super.count();
  }
  override list(o: ListOptions) {
    this.lists++;
    return super.list(o);
  }
}

describe('DispatcherMetrics through prom-client', () => {
  it('keeps every family’s name, type and help text as documented', async () => {
    const text = await new DispatcherMetrics({ store: new MemoryStore(), broker }).render();
    const families = text.split('\n').filter((l) => l.startsWith('# '));
    expect(families.join('\n') + '\n').toBe(pinned);
    expect(METRICS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('registers into the registry it is given, beside the app’s own metrics', async () => {
    const registry = new Registry();
    new Counter({ name: 'app_requests_total', help: 'the app’s own', registers: [registry] }).inc(3);
    const metrics = new DispatcherMetrics({ store: new MemoryStore(), broker, registry });
    expect(metrics.registry).toBe(registry);
    const m = parseExposition(await registry.metrics());
    expect(valueOf(m, 'app_requests_total')).toBe(3);
    expect(valueOf(m, 'cls_jobs_dispatched_total')).toBe(0);
    expect(valueOf(m, 'cls_jobs_scheduled')).toBe(0);
    // a second dispatcher's metrics cannot share it: prom-client refuses the duplicate names
    expect(() => new DispatcherMetrics({ store: new MemoryStore(), broker, registry })).toThrow(/cls_jobs_dispatched_total/);
  });

  it('reads the store once per scrape, however many gauges it feeds', async () => {
    const store = new CountingStore();
    await store.add([{ id: 'a', dueAt: 1, entry: '[["t"],{"args":[],"task_id":"a"}]' }]);
    const metrics = new DispatcherMetrics({ store, broker, clock: () => new Date(11_000) });
    const m = parseExposition(await metrics.render());
    expect(valueOf(m, 'cls_jobs_scheduled')).toBe(1);
    expect(valueOf(m, 'cls_overdue_lag_seconds')).toBe(10);
    expect(valueOf(m, 'cls_store_up')).toBe(1);
    expect([store.counts, store.lists]).toEqual([1, 1]);
    await metrics.render();
    expect([store.counts, store.lists]).toEqual([2, 2]);
  });

  it('adds the default process and event-loop metrics only when asked', async () => {
    const without = parseExposition(await new DispatcherMetrics({ store: new MemoryStore(), broker }).render());
    expect([...without.keys()].every((name) => name.startsWith('cls_'))).toBe(true);
    const withProcess = parseExposition(await new DispatcherMetrics({ store: new MemoryStore(), broker, processMetrics: true }).render());
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(withProcess.has(name), name).toBe(true);
    }
    expect(withProcess.has('cls_jobs_dispatched_total')).toBe(true);
  });
});
