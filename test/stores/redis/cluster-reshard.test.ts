/**
 * The cluster store while the cluster reshards (issue 15), on a private 3-master cluster of its
 * own: `redis-cli --cluster reshard` moves every slot of one master (two of the store's six
 * shards, with their jobs) to another while a dispatcher sends. Redis answers MOVED for a slot
 * that has moved and ASK or TRYAGAIN for one that is moving; ioredis follows them, and a shard's
 * script runs only where all of its slot's keys are. Every job reaches the broker, and exactly
 * once: nothing is lost, and a healthy dispatcher sends nothing twice.
 */
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { Dispatcher } from '../../../src/exports/dispatch.js';
import { RedisBroker } from '../../../src/exports/brokers.js';
import { RedisClusterStore } from '../../../src/stores/redis/cluster-store.js';
import { keySlot, shardTag } from '../../../src/redis/cluster.js';
import { encodeEntry } from '../../../src/job/entry.js';
import { resolveTaskCall } from '../../../src/job/options.js';
import { parseRedisEnvelope } from '../../../src/celery/kombu-redis.js';
import { startPrivateCluster, type RedisClusterService } from '../../helpers/redis-cluster.js';
import { requireService, sharedRedis, uniquePrefix, type RedisService } from '../../helpers/services.js';

const shared = await sharedRedis();
const cluster = shared ? await startPrivateCluster(3).catch(() => undefined) : undefined;
const skip = requireService(cluster && shared, 'Redis Cluster (redis-server and redis-cli) and Redis');

/** The id and slot count of each master, by CLUSTER NODES of the node on `port`. */
async function mastersOf(port: number): Promise<{ id: string; port: number; slots: number }[]> {
  const r = new Redis({ port, lazyConnect: true });
  await r.connect();
  const text = String(await r.call('CLUSTER', 'NODES'));
  r.disconnect();
  return text
    .trim()
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f[2]!.includes('master'))
    .map((f) => ({
      id: f[0]!,
      port: Number(/:(\d+)@/.exec(f[1]!)![1]),
      slots: f.slice(8).reduce((n, r) => {
        const [a, b] = r.split('-').map(Number);
        return n + (b === undefined ? 1 : b - a! + 1);
      }, 0),
    }));
}

describe.skipIf(skip)('the cluster store while the cluster reshards', () => {
  const c = cluster as RedisClusterService;
  afterAll(async () => {
    await c?.stop();
  });

  it('moving a master’s every slot during dispatch: every job sent exactly once', async () => {
    const N = 10_000;
    const prefix = uniquePrefix('reshard');
    const queue = `${prefix}q`;
    const store = new RedisClusterStore(`${c.url}?shards=6`, { keyPrefix: prefix });
    const brokerUrl = (shared as RedisService).urlFor(0);
    const broker = new RedisBroker(brokerUrl);
    const raw = new Redis(brokerUrl);
    const ids: string[] = [];
    const start = Date.now() / 1000 + 1;
    try {
      for (let i = 0; i < N; i += 1000) {
        const jobs = Array.from({ length: 1000 }, (_, k) => {
          const { job } = resolveTaskCall('t.reshard', [i + k], {}, { queue });
          // due over the next 20 s: the dispatcher is still sending when the slots move
          return { id: job.id, dueAt: start + ((i + k) * 20) / N, entry: encodeEntry(job) };
        });
        ids.push(...jobs.map((j) => j.id));
        await store.add(jobs);
      }
      const seed = c.nodes[0]!.port;
      const [from, to] = (await mastersOf(seed)).sort((a, b) => a.port - b.port);
      const reshard = new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn(
          'redis-cli',
          [
            '--cluster',
            'reshard',
            `127.0.0.1:${seed}`,
            '--cluster-from',
            from!.id,
            '--cluster-to',
            to!.id,
            '--cluster-slots',
            String(from!.slots),
            '--cluster-yes',
            '--cluster-pipeline',
            '10',
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr.on('data', (d: Buffer) => (out += d.toString()));
        p.on('exit', (code) => resolve({ code, out }));
      });
      // a dispatcher sends small batches while the slots move
      const dispatcher = new Dispatcher({ store, broker, batchSize: 50 });
      let failures = 0;
      const why = new Set<string>();
      let runs = 0;
      let resharded: { code: number | null; out: string } | undefined;
      let leftAtReshard: number | undefined;
      const reshardStarted = performance.now();
      let reshardMs = 0;
      void reshard.then(async (r) => {
        reshardMs = performance.now() - reshardStarted;
        leftAtReshard = (await store.count()).scheduled;
        resharded = r;
      });
      const deadline = Date.now() + 120_000;
      for (;;) {
        try {
          await dispatcher.dispatchDue();
        } catch (err) {
          failures++;
          why.add(String((err as Error).message).slice(0, 160));
        }
        runs++;
        const left = await store.count().catch(() => undefined);
        if (resharded && left && left.scheduled === 0 && left.inFlight === 0) break;
        if (Date.now() > deadline) throw new Error(`not done after 120 s: ${JSON.stringify(left)}, reshard ${resharded ? 'done' : 'running'}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(resharded!.code, resharded!.out.slice(-500)).toBe(0);
      // the slots moved while jobs were still waiting in them
      expect(leftAtReshard).toBeGreaterThan(0);
      expect((await mastersOf(seed)).find((m) => m.id === from!.id)?.slots ?? 0).toBe(0);
      const arrived: string[] = [];
      for (;;) {
        const got = await raw.rpop(queue, 1000);
        if (!got || got.length === 0) break;
        for (const r of got) arrived.push(String(parseRedisEnvelope(r).headers.id));
      }
      expect([...ids].filter((id) => !arrived.includes(id)).length).toBe(0); // none lost
      expect(arrived.length).toBe(N); // none sent twice
      expect(await store.deadLetters({ limit: 10 })).toMatchObject({ letters: [] });
      console.log(
        `[cluster reshard] ${N} jobs sent once each while ${from!.slots} slots moved (${(reshardMs / 1000).toFixed(1)} s, ${leftAtReshard} jobs still scheduled when it ended); ${runs} dispatch runs, ${failures} failed: ${[...why].join(' | ')}`,
      );
    } finally {
      await store.close();
      await broker.close();
      await raw.del(queue);
      raw.disconnect();
    }
  }, 180_000);

  it('one shard’s slot moved back and forth, ten keys at a time, while a dispatcher sends: every job exactly once, no dead letter', async () => {
    const N = 6000;
    const prefix = uniquePrefix('moving');
    const queue = `${prefix}q`;
    const store = new RedisClusterStore(`${c.url}?shards=2`, { keyPrefix: prefix });
    const brokerUrl = (shared as RedisService).urlFor(0);
    const broker = new RedisBroker(brokerUrl);
    const raw = new Redis(brokerUrl);
    const start = Date.now() / 1000 + 1;
    const ids: string[] = [];
    const conns = new Map<number, Redis>();
    const node = (port: number) => {
      let r = conns.get(port);
      if (!r) conns.set(port, (r = new Redis({ port })));
      return r;
    };
    try {
      for (let i = 0; i < N; i += 1000) {
        const jobs = Array.from({ length: 1000 }, (_, k) => {
          const { job } = resolveTaskCall('t.moving', [i + k], {}, { queue });
          return { id: job.id, dueAt: start + ((i + k) * 15) / N, entry: encodeEntry(job) };
        });
        ids.push(...jobs.map((j) => j.id));
        await store.add(jobs);
      }
      const slot = keySlot(`{${shardTag(0, 2)}}`);
      const seed = c.nodes[0]!.port;
      const owner = async () => {
        const r = (await node(seed).call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
        const range = r.find(([lo, hi]) => slot >= lo && slot <= hi)!;
        return { port: range[2][1], id: range[2][2] };
      };
      let moves = 0;
      let moving = true;
      let moverError: unknown;
      // moves the slot to another master, ten keys per MIGRATE, 5 ms apart, then back, until told to stop
      const mover = (async () => {
        while (moving) {
          const from = await owner();
          const to = (await mastersOf(seed)).find((m) => m.id !== from.id)!;
          await node(to.port).call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id);
          await node(from.port).call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id);
          for (;;) {
            const keys = (await node(from.port).call('CLUSTER', 'GETKEYSINSLOT', slot, 10)) as string[];
            if (keys.length === 0) break;
            await node(from.port).call('MIGRATE', '127.0.0.1', to.port, '', 0, 5000, 'KEYS', ...keys);
            await new Promise((r) => setTimeout(r, 5));
          }
          for (const m of await mastersOf(seed)) await node(m.port).call('CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
          moves++;
          // a reshard ends: between moves the slot is still for a while (while it moves, every
          // command of the shard's that reads several keys is TRYAGAIN until the move is done)
          await new Promise((r) => setTimeout(r, 700));
        }
      })().catch((err: unknown) => {
        moverError = err;
      });
      const dispatcher = new Dispatcher({ store, broker, batchSize: 25 });
      const why = new Set<string>();
      let failures = 0;
      const deadline = Date.now() + 90_000;
      for (;;) {
        try {
          await dispatcher.dispatchDue();
        } catch (err) {
          failures++;
          why.add(String((err as Error).message).slice(0, 160));
        }
        const left = await store.count().catch((err: unknown) => {
          why.add(`count: ${String((err as Error).message).slice(0, 160)}`);
          return undefined;
        });
        if (left && left.scheduled === 0 && left.inFlight === 0) break;
        if (Date.now() > deadline)
          throw new Error(`not done after 90 s: ${JSON.stringify(left)}; mover ${String(moverError)}; ${moves} moves; ${[...why].join(' | ')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      moving = false;
      await mover;
      const arrived: string[] = [];
      for (;;) {
        const got = await raw.rpop(queue, 1000);
        if (!got || got.length === 0) break;
        for (const r of got) arrived.push(String(parseRedisEnvelope(r).headers.id));
      }
      const unique = new Set(arrived);
      console.log(
        `[cluster slot moving] ${N} jobs, ${moves} moves of slot ${slot}; arrived ${arrived.length} (${unique.size} distinct); ${failures} dispatch runs failed: ${[...why].join(' | ')}`,
      );
      expect(moverError).toBeUndefined();
      expect(moves).toBeGreaterThanOrEqual(2);
      expect(await store.deadLetters({ limit: 10 })).toMatchObject({ letters: [] });
      expect(ids.filter((id) => !unique.has(id))).toEqual([]);
      expect(arrived.length).toBe(N);
    } finally {
      await store.close();
      await broker.close();
      await raw.del(queue);
      raw.disconnect();
      for (const r of conns.values()) r.disconnect();
    }
  }, 150_000);
});
