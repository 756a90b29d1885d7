/**
 * The cluster store (issue 15) on a private 3-master Redis Cluster: the whole store contract,
 * unchanged, with the jobs spread over 5 shards (an odd count, so no shard lines up with a master).
 */
import { afterAll } from 'vitest';
import { RedisClusterStore } from '../../src/stores/redis/cluster-store.js';
import { ClusterConnections } from '../../src/redis/cluster.js';
import { redisCluster } from '../helpers/redis-cluster.js';
import { uniquePrefix } from '../helpers/services.js';
import { storeContract } from './store-contract.js';

const cluster = await redisCluster(3);
afterAll(async () => {
  await cluster?.stop();
});

storeContract('redis cluster (5 shards)', {
  available: cluster !== undefined,
  serviceName: 'Redis Cluster (redis-server and redis-cli)',
  async create() {
    const url = `${cluster!.url}?shards=5`;
    const keyPrefix = uniquePrefix('cluster');
    return {
      store: new RedisClusterStore(url, { keyPrefix }),
      reopen: async () => new RedisClusterStore(url, { keyPrefix }),
      async destroy() {
        const c = new ClusterConnections(url, 'cleaner');
        const client = await c.client();
        for (const node of client.nodes('master')) {
          for (const k of await node.keys(`${keyPrefix}*`)) await client.del(k);
        }
        await c.closeAll();
      },
    };
  },
});
