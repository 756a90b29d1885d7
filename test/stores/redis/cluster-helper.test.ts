/**
 * The private Redis Cluster of the test helper (issue 15's groundwork): it comes up with three
 * masters and a replica each, spreads keys over every master, and survives a killed master (its
 * replica takes over, the replicated keys are all there).
 */
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisCluster, type RedisClusterService } from '../../helpers/redis-cluster.js';
import { requireService } from '../../helpers/services.js';

const cluster = await redisCluster(3);
const skip = requireService(cluster, 'Redis Cluster (redis-server and redis-cli)');

describe.skipIf(skip)('the test helper: a private Redis Cluster', () => {
  const c = cluster as RedisClusterService;
  let client: Cluster;

  beforeAll(() => {
    client = new Cluster(c.nodes, { clusterRetryStrategy: (n) => (n > 50 ? null : 100) });
  });

  afterAll(async () => {
    client?.disconnect();
    await c.stop();
  });

  it('has three masters and spreads keys over all of them', async () => {
    expect(await c.masters()).toHaveLength(3);
    for (let i = 0; i < 300; i++) await client.set(`k:${i}`, String(i));
    const sizes = await Promise.all(client.nodes('master').map((n) => n.dbsize()));
    expect(sizes).toHaveLength(3);
    expect(sizes.every((n) => n > 0)).toBe(true);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(300);
  });

  it('a killed master: its replica takes over and every replicated key is still there', async () => {
    // every write replicated before the kill (replication is asynchronous otherwise)
    for (const n of client.nodes('master')) expect(await n.wait(1, 5000)).toBe(1);
    const victim = (await c.masters())[0] as number;
    await c.kill?.(victim);
    const deadline = Date.now() + 20_000;
    while ((await c.masters()).length !== 3 || (await c.masters()).includes(victim)) {
      if (Date.now() > deadline) throw new Error('no replica took over within 20 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const values = [];
    for (let i = 0; i < 300; i++) values.push(await client.get(`k:${i}`));
    expect(values).toEqual(Array.from({ length: 300 }, (_, i) => String(i)));
  }, 40_000);
});
