/**
 * What the cluster fault tests share: a cluster store (every job seeded for later kept compact,
 * so a claim moves it on first), a Redis broker and a raw client on the
 * shared Redis, jobs seeded for one queue, a dispatcher run until the store is empty (a failed
 * run tried again, as the daemon does), and the ids that reached the queue.
 */
import { Redis } from 'ioredis';
import { Dispatcher } from '../../src/exports/dispatch.js';
import { RedisBroker } from '../../src/exports/brokers.js';
import { RedisClusterStore } from '../../src/stores/redis/cluster-store.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';
import { uniquePrefix } from './services.js';

export interface ClusterDispatchRig {
  store: RedisClusterStore;
  broker: RedisBroker;
  /** a plain client on the broker's Redis */
  raw: Redis;
  queue: string;
  /** the ids seeded, in due order */
  ids: string[];
  /** seeds `n` jobs for the queue, job k due at `dueAt(k)`, 1,000 per add */
  seed(n: number, dueAt: (k: number) => number): Promise<void>;
  /**
   * Runs `dispatcher` until nothing is scheduled or in flight (and `done()` says so too),
   * each failed run counted and tried again 10 ms later; throws after `timeoutMs`.
   */
  drain(dispatcher: Dispatcher, o: { timeoutMs: number; done?: () => boolean }): Promise<{ runs: number; failures: number; why: string[] }>;
  /** every message's task id in the queue, emptying it */
  arrived(): Promise<string[]>;
  close(): Promise<void>;
}

export function clusterDispatchRig(clusterUrl: string, brokerUrl: string, label: string): ClusterDispatchRig {
  const prefix = uniquePrefix(label);
  const queue = `${prefix}q`;
  // no hot window: every job seeded for later is compact, and moves on when a claim reaches it
  const store = new RedisClusterStore(clusterUrl, { keyPrefix: prefix, socketTimeout: 2, hotSeconds: 0 });
  const broker = new RedisBroker(brokerUrl);
  const raw = new Redis(brokerUrl);
  const ids: string[] = [];
  return {
    store,
    broker,
    raw,
    queue,
    ids,
    async seed(n, dueAt) {
      for (let i = 0; i < n; i += 1000) {
        const jobs = Array.from({ length: Math.min(1000, n - i) }, (_, k) => {
          const { job } = resolveTaskCall(`t.${label}`, [i + k], {}, { queue });
          return { id: job.id, dueAt: dueAt(i + k), entry: encodeEntry(job) };
        });
        ids.push(...jobs.map((j) => j.id));
        await store.add(jobs);
      }
    },
    async drain(dispatcher, o) {
      const why = new Set<string>();
      let runs = 0;
      let failures = 0;
      const deadline = Date.now() + o.timeoutMs;
      for (;;) {
        try {
          await dispatcher.dispatchDue();
        } catch (err) {
          failures++;
          why.add(String((err as Error).message).slice(0, 160));
        }
        runs++;
        const left = await store.count().catch((err: unknown) => {
          why.add(`count: ${String((err as Error).message).slice(0, 160)}`);
          return undefined;
        });
        if (left && left.scheduled === 0 && left.inFlight === 0 && (o.done?.() ?? true)) return { runs, failures, why: [...why] };
        if (Date.now() > deadline) throw new Error(`not drained after ${o.timeoutMs} ms: ${JSON.stringify(left)}; ${[...why].join(' | ')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async arrived() {
      const out: string[] = [];
      for (;;) {
        const got = await raw.rpop(queue, 1000);
        if (!got || got.length === 0) return out;
        for (const r of got) out.push(String(parseRedisEnvelope(r).headers.id));
      }
    },
    async close() {
      await store.close();
      await broker.close();
      await raw.del(queue);
      raw.disconnect();
    },
  };
}
