/**
 * One shard of the cluster layout (issue 15): the Redis store's own layout and scripts under one
 * hash tag, and the compact tier beside them, on a private 3-master Redis Cluster, through a
 * shared ioredis `Cluster`. The whole store contract passes: every script, MULTI and MGET of the
 * store touches one slot only, so it runs on a cluster unchanged, and each shard stays atomic.
 * Jobs are placed by a clock fixed before the contract's times, so every job without tags or a key
 * is added compact, and a claim, a retag or a reschedule into the window moves it first.
 */
import { afterAll } from 'vitest';
import { ClusterConnections } from '../../src/redis/cluster.js';
import { Shard } from '../../src/stores/redis/shard.js';
import type { Redis } from 'ioredis';
import { redisCluster } from '../helpers/redis-cluster.js';
import { uniquePrefix } from '../helpers/services.js';
import { storeContract } from './store-contract.js';

const cluster = await redisCluster(3);
afterAll(async () => {
  await cluster?.stop();
});

let n = 0;
storeContract('one shard of the cluster layout, on a Redis Cluster', {
  available: cluster !== undefined,
  serviceName: 'Redis Cluster (redis-server and redis-cli)',
  async create() {
    const url = cluster!.url;
    const connections: ClusterConnections[] = [];
    // a hash tag of its own per store: all its keys in one slot, the slots spread over the masters
    const keyPrefix = `${uniquePrefix('shard')}{t${n++}}:`;
    const open = () => {
      const c = new ClusterConnections(url, 'long-term scheduler store (Redis Cluster)');
      connections.push(c);
      return new Shard(
        url,
        keyPrefix,
        { client: async () => (await c.client()) as unknown as Redis, subscribe: (ch, on) => c.subscribe(ch, on), url },
        // placed by a clock fixed before every time the contract uses, so they stay compact whatever the date
        { buckets: 64, hotSeconds: 0, now: () => 1_700_000_000 },
      );
    };
    return {
      store: open(),
      reopen: async () => open(),
      async destroy() {
        const c = new ClusterConnections(url, 'cleaner');
        const client = await c.client();
        for (const node of client.nodes('master')) {
          const keys = await node.keys(`${keyPrefix.replace(/[{}]/g, '\\$&')}*`);
          for (const k of keys) await client.del(k);
        }
        await c.closeAll();
        for (const x of connections.splice(0)) await x.closeAll();
      },
    };
  },
});
