/**
 * The cluster store under faults (issue 15), on a private 3-master cluster of its own: a master
 * killed in the middle of dispatch, its replica promoted. Delivery from a cluster store is at
 * least once (publish, then acknowledge): every job reaches the broker, none is lost; a job whose
 * acknowledgement the dead master took with it may be sent again, and is counted.
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { Dispatcher } from '../../../src/exports/dispatch.js';
import { RedisBroker } from '../../../src/exports/brokers.js';
import { RedisClusterStore } from '../../../src/stores/redis/cluster-store.js';
import { ClusterConnections } from '../../../src/redis/cluster.js';
import { encodeEntry } from '../../../src/job/entry.js';
import { resolveTaskCall } from '../../../src/job/options.js';
import { parseRedisEnvelope } from '../../../src/celery/kombu-redis.js';
import { startPrivateCluster, type RedisClusterService } from '../../helpers/redis-cluster.js';
import { requireService, sharedRedis, uniquePrefix, type RedisService } from '../../helpers/services.js';

const shared = await sharedRedis();
const cluster = shared ? await startPrivateCluster(3).catch(() => undefined) : undefined;
const skip = requireService(cluster && shared, 'Redis Cluster (redis-server and redis-cli) and Redis');

describe.skipIf(skip)('the cluster store under faults', () => {
  const c = cluster as RedisClusterService;
  afterAll(async () => {
    await c?.stop();
  });

  it('a master killed during dispatch: every job is sent, none lost; the ones sent again are few and counted', async () => {
    const N = 10_000;
    const prefix = uniquePrefix('faults');
    const queue = `${prefix}q`;
    const url = `${c.url}?shards=6`;
    const store = new RedisClusterStore(url, { keyPrefix: prefix, socketTimeout: 2 });
    const brokerUrl = (shared as RedisService).urlFor(0);
    const broker = new RedisBroker(brokerUrl);
    const raw = new Redis(brokerUrl);
    const ids: string[] = [];
    try {
      for (let i = 0; i < N; i += 1000) {
        const jobs = Array.from({ length: 1000 }, (_, k) => {
          const { job } = resolveTaskCall('t.fault', [i + k], {}, { queue });
          return { id: job.id, dueAt: 1000 + i + k, entry: encodeEntry(job) };
        });
        ids.push(...jobs.map((j) => j.id));
        await store.add(jobs);
      }
      // every add replicated before the kill (replication is asynchronous, a failover loses what a replica lacks)
      const probe = new ClusterConnections(c.url, 'probe');
      for (const node of (await probe.client()).nodes('master')) expect(await node.wait(1, 5000)).toBe(1);
      await probe.closeAll();

      const victim = (await c.masters())[1]!;
      let sent = 0;
      let failures = 0;
      let killed = false;
      const deadline = Date.now() + 60_000;
      const dispatcher = new Dispatcher({ store, broker, leaseMs: 2000, batchSize: 100 });
      // the kill comes once 1,500 messages arrived, in the middle of the first run
      let sentAtKill = 0;
      const watcher = setInterval(() => {
        void raw.llen(queue).then((n) => {
          if (killed || n < 1500) return;
          killed = true;
          sentAtKill = n;
          clearInterval(watcher);
          void c.kill!(victim);
        });
      }, 2);
      for (;;) {
        try {
          sent += (await dispatcher.dispatchDue()).sent;
        } catch {
          failures++; // the store failing over: tried again, as the daemon does
        }
        const left = await store.count().catch(() => undefined);
        if (left && left.scheduled === 0 && left.inFlight === 0) break;
        if (Date.now() > deadline) throw new Error(`not drained after 60 s: ${JSON.stringify(left)}, sent ${sent}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      clearInterval(watcher);
      expect(killed).toBe(true);
      expect(sentAtKill).toBeLessThan(N); // the master died while jobs were still being sent
      expect(await c.masters()).toHaveLength(3); // the replica took over
      const arrived: string[] = [];
      for (;;) {
        const got = await raw.rpop(queue, 1000);
        if (!got || got.length === 0) break;
        for (const r of got) arrived.push(String(parseRedisEnvelope(r).headers.id));
      }
      const unique = new Set(arrived);
      expect([...ids].filter((id) => !unique.has(id))).toEqual([]); // none lost
      expect(unique.size).toBe(N);
      const again = arrived.length - N;
      // at most what was claimed or acknowledged on the dead master around the kill: a few batches
      expect(again).toBeLessThan(1000);
      console.log(`[cluster faults] ${N} jobs, master killed after ${sentAtKill} had arrived: ${again} sent again, ${failures} dispatch runs failed over`);
    } finally {
      await store.close();
      await broker.close();
      await raw.del(queue);
      raw.disconnect();
    }
  }, 120_000);
});
