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
import { keySlot, shardTag } from '../../../src/redis/cluster.js';
import { clusterDispatchRig } from '../../helpers/cluster-dispatch.js';
import { startPrivateCluster, type RedisClusterService } from '../../helpers/redis-cluster.js';
import { requireService, sharedRedis, type RedisService } from '../../helpers/services.js';

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
    const rig = clusterDispatchRig(`${c.url}?shards=6`, (shared as RedisService).urlFor(0), 'reshard');
    const start = Date.now() / 1000 + 1;
    try {
      // due over the next 20 s: the dispatcher is still sending when the slots move
      await rig.seed(N, (k) => start + (k * 20) / N);
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
      let resharded: { code: number | null; out: string } | undefined;
      let leftAtReshard: number | undefined;
      const reshardStarted = performance.now();
      let reshardMs = 0;
      void reshard.then(async (r) => {
        reshardMs = performance.now() - reshardStarted;
        leftAtReshard = (await rig.store.count()).scheduled;
        resharded = r;
      });
      // a dispatcher sends small batches while the slots move
      const dispatcher = new Dispatcher({ store: rig.store, broker: rig.broker, batchSize: 50 });
      const { runs, failures, why } = await rig.drain(dispatcher, { timeoutMs: 120_000, done: () => resharded !== undefined });
      expect(resharded!.code, resharded!.out.slice(-500)).toBe(0);
      // the slots moved while jobs were still waiting in them
      expect(leftAtReshard).toBeGreaterThan(0);
      expect((await mastersOf(seed)).find((m) => m.id === from!.id)?.slots ?? 0).toBe(0);
      const arrived = await rig.arrived();
      const unique = new Set(arrived);
      expect(rig.ids.filter((id) => !unique.has(id))).toEqual([]); // none lost
      expect(arrived.length).toBe(N); // none sent twice
      expect(await rig.store.deadLetters({ limit: 10 })).toMatchObject({ letters: [] });
      console.log(
        `[cluster reshard] ${N} jobs sent once each while ${from!.slots} slots moved (${(reshardMs / 1000).toFixed(1)} s, ${leftAtReshard} jobs still scheduled when it ended); ${runs} dispatch runs, ${failures} failed: ${why.join(' | ')}`,
      );
    } finally {
      await rig.close();
    }
  }, 180_000);

  it('one shard’s slot moved back and forth, ten keys at a time, while a dispatcher sends: every job exactly once, no dead letter', async () => {
    const N = 6000;
    const rig = clusterDispatchRig(`${c.url}?shards=2`, (shared as RedisService).urlFor(0), 'moving');
    const start = Date.now() / 1000 + 1;
    const conns = new Map<number, Redis>();
    const node = (port: number) => {
      let r = conns.get(port);
      if (!r) conns.set(port, (r = new Redis({ port })));
      return r;
    };
    try {
      await rig.seed(N, (k) => start + (k * 15) / N);
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
      const dispatcher = new Dispatcher({ store: rig.store, broker: rig.broker, batchSize: 25 });
      const { failures, why } = await rig.drain(dispatcher, { timeoutMs: 90_000 });
      moving = false;
      await mover;
      const arrived = await rig.arrived();
      const unique = new Set(arrived);
      console.log(
        `[cluster slot moving] ${N} jobs, ${moves} moves of slot ${slot}; arrived ${arrived.length} (${unique.size} distinct); ${failures} dispatch runs failed: ${why.join(' | ')}`,
      );
      expect(moverError).toBeUndefined();
      expect(moves).toBeGreaterThanOrEqual(2);
      expect(await rig.store.deadLetters({ limit: 10 })).toMatchObject({ letters: [] });
      expect(rig.ids.filter((id) => !unique.has(id))).toEqual([]);
      expect(arrived.length).toBe(N);
    } finally {
      await rig.close();
      for (const r of conns.values()) r.disconnect();
    }
  }, 150_000);
});
