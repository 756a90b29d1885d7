/**
 * The cluster layout's pure parts (issue 15): the redis+cluster:// URL, Redis Cluster's key
 * slot, the shards' hash tags and the id -> shard map; and the cluster store's meta hash on a
 * private Redis Cluster (the shard count fixed once made, a foreign layout refused).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ClusterConnections, SLOTS, keySlot, parseClusterUrl, shardOf, shardTag } from '../../src/redis/cluster.js';
import { RedisClusterStore } from '../../src/stores/redis/cluster-store.js';
import { createStore, storeKind } from '../../src/stores/registry.js';
import { ConnectionError, DuplicateJobError, ValidationError } from '../../src/util/errors.js';
import { redisCluster } from '../helpers/redis-cluster.js';
import { requireService, uniquePrefix } from '../helpers/services.js';

const message = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as Error).message;
  }
  throw new Error('did not throw');
};

describe('parseClusterUrl', () => {
  it('reads seeds, credentials and the shard count', () => {
    expect(parseClusterUrl('redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,host?shards=8', 'store')).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
        { host: 'host', port: 6379 },
      ],
      username: 'u',
      password: 'p@ss',
      shards: 8,
    });
    expect(parseClusterUrl('REDIS+CLUSTER://h:1/', 'store')).toEqual({ nodes: [{ host: 'h', port: 1 }] });
    expect(parseClusterUrl('rediss+cluster://:pw@h:1?ssl_cert_reqs=none', 'store').tls).toBeDefined();
  });

  it.each([
    ['redis://h:1', /is not a Redis Cluster URL/],
    ['redis+cluster://h:99999', /the seed "h:99999", which is not host:port/],
    ['redis+cluster://h:1,,h:2', /the seed "", which is not host:port/],
    ['redis+cluster://h:1/3', /names a database \(\/3\); a Redis Cluster has only database 0/],
    ['redis+cluster://h:1?shards=0', /shards=0 is not a whole number from 1 to 1024/],
    ['redis+cluster://h:1?shards=1025', /shards=1025 is not a whole number/],
    ['redis+cluster://h:1?shards=2.5', /shards=2.5 is not a whole number/],
    ['redis+cluster://h:1?db=2', /option "db" is not known/],
    ['redis+cluster://h:1?ssl_cert_reqs=none', /option "ssl_cert_reqs" is not known/],
    ['redis+cluster://u:%zz@h:1', /escape/],
  ])('refuses %s in one line, the password redacted', (url, why) => {
    const m = message(() => parseClusterUrl(url, 'store'));
    expect(m).toMatch(why);
    expect(m).not.toContain('\n');
  });

  it('never shows the password', () => {
    const m = message(() => parseClusterUrl('redis+cluster://user:s3cret@h:0', 'store'));
    expect(m).not.toContain('s3cret');
    expect(m).toContain('user:***@');
  });

  it('is a store kind of its own, and createStore makes the cluster store', async () => {
    expect(storeKind('redis+cluster://h:1')).toBe('redis-cluster');
    const s = createStore('redis+cluster://h:1', { keyPrefix: 'app:' });
    expect(s).toBeInstanceOf(RedisClusterStore);
    await s.close();
    expect(() => new RedisClusterStore('redis+cluster://h:1', { keyPrefix: 'a{b}' })).toThrow(/holds a brace/);
    for (const hotSeconds of [-1, Number.NaN, '60' as unknown as number]) {
      expect(() => new RedisClusterStore('redis+cluster://h:1', { hotSeconds })).toThrow(/^hotSeconds .* is not a number of seconds >= 0/);
    }
    expect(() => new RedisClusterStore('redis+cluster://h:1', { hotSeconds: Infinity })).not.toThrow();
  });
});

describe('slots, shard tags and shards', () => {
  it("computes Redis Cluster's slot (CRC16/XMODEM mod 16384), hash tags included", () => {
    expect(keySlot('123456789')).toBe(0x31c3); // the CRC16/XMODEM check value
    expect(keySlot('foo')).toBe(12182); // as CLUSTER KEYSLOT foo says
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    expect(keySlot('foo{}{bar}')).toBe(keySlot('foo{}{bar}')); // an empty tag: the whole key
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar'));
  });

  it('gives shard n of N a tag whose slot is in the n-th equal slot range', () => {
    for (const count of [1, 3, 5, 16, 1024]) {
      const slots = Array.from({ length: count }, (_, n) => keySlot(`{${shardTag(n, count)}}:x`));
      slots.forEach((slot, n) => {
        expect(slot).toBeGreaterThanOrEqual(Math.floor((n * SLOTS) / count));
        expect(slot).toBeLessThan(Math.floor(((n + 1) * SLOTS) / count));
      });
    }
    expect(shardTag(3, 16)).toBe(shardTag(3, 16));
  });

  it('maps ids to shards stably and about evenly, whatever the id', () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[shardOf(`task-${i}`, 16)]!++;
    expect(Math.min(...counts)).toBeGreaterThan(800);
    expect(Math.max(...counts)).toBeLessThan(1200);
    expect(shardOf('abc', 16)).toBe(shardOf('abc', 16));
    for (const odd of ['', '\ud800', 'é', '\u{10FFFF}', 'x'.repeat(10_000)]) expect(shardOf(odd, 7)).toBeLessThan(7);
  });
});

const cluster = await redisCluster(3);
describe.skipIf(requireService(cluster, 'Redis Cluster (redis-server and redis-cli)'))('the cluster store on a Redis Cluster', () => {
  afterAll(async () => {
    await cluster?.stop();
  });

  it('fixes its shard count when made and refuses a URL that asks another; its shards spread over every master', async () => {
    const keyPrefix = uniquePrefix('meta');
    const made = new RedisClusterStore(`${cluster!.url}?shards=6`, { keyPrefix });
    expect(await made.shardCount()).toBe(6);
    await made.add(Array.from({ length: 60 }, (_, i) => ({ id: `m${i}`, dueAt: 1_800_000_000 + i, entry: '[["t"], {}]' })));
    const plain = new RedisClusterStore(cluster!.url, { keyPrefix });
    expect(await plain.shardCount()).toBe(6);
    expect((await plain.list({ limit: 100 })).jobs.map((j) => j.id)).toEqual(Array.from({ length: 60 }, (_, i) => `m${i}`));
    const other = new RedisClusterStore(`${cluster!.url}?shards=8`, { keyPrefix });
    await expect(other.count()).rejects.toThrow(/was made with 6 shards, and its URL asks for shards=8; the count is fixed/);
    const c = new ClusterConnections(cluster!.url, 'probe');
    const client = await c.client();
    const perMaster = await Promise.all(client.nodes('master').map(async (n) => (await n.keys(`${keyPrefix}{clts-*`)).length));
    expect(perMaster).toHaveLength(3);
    expect(perMaster.every((k) => k > 0)).toBe(true);
    await made.removeWhere({ idPrefix: 'm' });
    for (const s of [made, plain, other]) await s.close();
    for (const n of client.nodes('master')) for (const k of await n.keys(`${keyPrefix}*`)) await client.del(k);
    await c.closeAll();
  });

  it('an add refused by one shard (an id twice in the batch) takes the parts the other shards added back out', async () => {
    const s = new RedisClusterStore(`${cluster!.url}?shards=4`, { keyPrefix: uniquePrefix('undo') });
    const jobs = Array.from({ length: 40 }, (_, i) => ({ id: `u${i}`, dueAt: 1_800_000_000 + i, entry: '[["t"], {}]' }));
    const err = await s.add([...jobs, jobs[7]!]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DuplicateJobError);
    expect(await s.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    expect(await s.add(jobs)).toBe(40);
    await s.removeWhere({ idPrefix: 'u' });
    await s.close();
  });

  it('sweeps the key records left by jobs sent or removed, and keeps the held ones and running locks', async () => {
    const keyPrefix = uniquePrefix('sweep');
    const s = new RedisClusterStore(`${cluster!.url}?shards=3`, { keyPrefix });
    const t = 1_800_000_000;
    for (let i = 0; i < 30; i++) await s.addKeyed({ id: `k${i}`, dueAt: t + i, entry: '[["t"], {}]' }, `key-${i}`, 'reject');
    // ten sent (claimed and acknowledged), ten removed, ten still scheduled
    const claims = await s.claimDue({ until: t + 9, now: t, limit: 100, leaseMs: 60_000 });
    expect(claims).toHaveLength(10);
    await s.acknowledge(claims);
    expect(await s.removeMany(Array.from({ length: 10 }, (_, i) => `k${10 + i}`))).toHaveLength(10);
    const c = new ClusterConnections(cluster!.url, 'probe');
    const client = await c.client();
    const records = async () => {
      const all: Record<string, string> = {};
      for (let n = 0; n < 3; n++) Object.assign(all, await client.hgetall(`${keyPrefix}{${shardTag(n, 3)}}:celery_longterm_scheduler:cluster_keys`));
      return all;
    };
    // a claim starts a sweep in the background: some may be gone already
    expect(Object.keys(await records()).length).toBeGreaterThanOrEqual(10);
    // a lock an add still holds is left alone, whatever it names
    const lockShard = `${keyPrefix}{${shardTag(shardOf('key-new', 3), 3)}}:celery_longterm_scheduler:cluster_keys`;
    await client.hset(lockShard, 'key-new', `~${Date.now() + 60_000}~nobody`);
    // one page of one shard a call: two rounds over the three shards
    for (let i = 0; i < 6; i++) await s.sweepKeys();
    const left = await records();
    expect(Object.keys(left).sort()).toEqual([...Array.from({ length: 10 }, (_, i) => `key-${20 + i}`), 'key-new'].sort());
    for (let i = 20; i < 30; i++) expect(left[`key-${i}`]).toBe(`k${i}`);
    // the keys swept are free; the ones kept still held
    expect((await s.addKeyed({ id: 'again', dueAt: t, entry: '[["t"], {}]' }, 'key-3', 'reject')).outcome).toBe('added');
    await expect(s.addKeyed({ id: 'other', dueAt: t, entry: '[["t"], {}]' }, 'key-25', 'reject')).rejects.toThrow(/key-25/);
    await s.close();
    for (const n of client.nodes('master')) for (const k of await n.keys(`${keyPrefix}*`)) await client.del(k);
    await c.closeAll();
  });

  it('refuses a meta hash of another layout, changing nothing', async () => {
    const keyPrefix = uniquePrefix('foreign');
    const c = new ClusterConnections(cluster!.url, 'probe');
    const client = await c.client();
    const meta = `${keyPrefix}{clts-meta}celery_longterm_scheduler:cluster`;
    await client.hset(meta, 'layout', 'shards-99', 'shards', '4', 'id', 'x');
    const s = new RedisClusterStore(cluster!.url, { keyPrefix });
    await expect(s.count()).rejects.toThrow(/holds layout "shards-99" with "4" shards, which this version does not read/);
    expect(await client.hgetall(meta)).toEqual({ layout: 'shards-99', shards: '4', id: 'x' });
    await s.close();
    await client.del(meta);
    await c.closeAll();
  });

  it('no node at the seed: one ConnectionError, one line, the password redacted', async () => {
    const s = new RedisClusterStore('redis+cluster://:s3cret@127.0.0.1:1', { socketConnectTimeout: 1 });
    const err = await s.count().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(String((err as Error).message)).not.toContain('s3cret');
    expect(String((err as Error).message)).not.toContain('\n');
    await s.close();
  });
});
