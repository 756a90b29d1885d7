/**
 * The cluster store under faults (issue 15), on a private 3-master cluster of its own: a master
 * killed in the middle of dispatch, its replica promoted. Delivery from a cluster store is at
 * least once (publish, then acknowledge): every job reaches the broker, none is lost; a job whose
 * acknowledgement the dead master took with it may be sent again, and is counted.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Dispatcher } from '../../../src/exports/dispatch.js';
import { ClusterConnections } from '../../../src/redis/cluster.js';
import { clusterDispatchRig } from '../../helpers/cluster-dispatch.js';
import { startPrivateCluster, type RedisClusterService } from '../../helpers/redis-cluster.js';
import { requireService, sharedRedis, type RedisService } from '../../helpers/services.js';

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
    const rig = clusterDispatchRig(`${c.url}?shards=6`, (shared as RedisService).urlFor(0), 'faults');
    try {
      await rig.seed(N, (k) => 1000 + k);
      // every add replicated before the kill (replication is asynchronous, a failover loses what a replica lacks)
      const probe = new ClusterConnections(c.url, 'probe');
      for (const node of (await probe.client()).nodes('master')) expect(await node.wait(1, 5000)).toBe(1);
      await probe.closeAll();

      const victim = (await c.masters())[1]!;
      // the kill comes once 1,500 messages arrived, in the middle of the first run
      let killed = false;
      let sentAtKill = 0;
      const watcher = setInterval(() => {
        void rig.raw.llen(rig.queue).then((n) => {
          if (killed || n < 1500) return;
          killed = true;
          sentAtKill = n;
          clearInterval(watcher);
          void c.kill!(victim);
        });
      }, 2);
      const dispatcher = new Dispatcher({ store: rig.store, broker: rig.broker, leaseMs: 2000, batchSize: 100 });
      const { failures } = await rig.drain(dispatcher, { timeoutMs: 60_000 });
      clearInterval(watcher);
      expect(killed).toBe(true);
      expect(sentAtKill).toBeLessThan(N); // the master died while jobs were still being sent
      expect(await c.masters()).toHaveLength(3); // the replica took over
      const arrived = await rig.arrived();
      const unique = new Set(arrived);
      expect(rig.ids.filter((id) => !unique.has(id))).toEqual([]); // none lost
      expect(unique.size).toBe(N);
      const again = arrived.length - N;
      // at most what was claimed or acknowledged on the dead master around the kill: a few batches
      expect(again).toBeLessThan(1000);
      console.log(`[cluster faults] ${N} jobs, master killed after ${sentAtKill} had arrived: ${again} sent again, ${failures} dispatch runs failed over`);
    } finally {
      await rig.close();
    }
  }, 120_000);
});
