/**
 * The cluster shard's compact tier (src/stores/redis/compact.ts, shard.ts, lua/includes/cold.lua),
 * on a plain Redis: a shard's keys all share its prefix, so it runs on one server as on a cluster
 * node. The codec is exact and agrees with the scripts'; the tier keeps its chunks in order and
 * small; every read and write sees a job wherever it is; and a job costs at most half the bytes
 * of the Redis layout's.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { DuplicateJobError } from '../../../src/index.js';
import { encodeEntry } from '../../../src/job/entry.js';
import { resolveTaskCall } from '../../../src/job/options.js';
import { RedisStore } from '../../../src/stores/redis/redis-store.js';
import { Shard, type ShardTier } from '../../../src/stores/redis/shard.js';
import { coldBucket, coldValue, expandEntry, readColdValue } from '../../../src/stores/redis/compact.js';
import { bucketOf } from '../../../src/stores/base.js';
import { compareDue } from '../../../src/stores/store.js';
import { fixture } from '../../helpers/fixture.js';
import { privateRedis, requireService, sharedRedis, uniquePrefix } from '../../helpers/services.js';

const shared = await sharedRedis();
const isolated = await privateRedis();
const skip = requireService(shared, 'Redis');
const DB = 11;
const clients: Redis[] = [];
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await isolated?.stop();
  await shared?.stop();
});

const entryOf = (id: string, task = 'bench.add', args: unknown[] = [1, 2], queue: string | undefined = 'bench') =>
  encodeEntry(resolveTaskCall(task, args, {}, { taskId: id, ...(queue !== undefined && { queue }) }).job);

/** A shard on `url` under a fresh prefix, with its own client. */
function shardOn(url: string, tier: ShardTier = { buckets: 64, hotSeconds: 0 }) {
  const client = new Redis(url);
  clients.push(client);
  const prefix = uniquePrefix('compact');
  const open = (t: ShardTier) => new Shard(url, prefix, { client: async () => client, subscribe: async () => async () => {}, url }, t);
  const cp = `${prefix}celery_longterm_scheduler:`;
  return { store: open(tier), open, client, prefix, cp };
}

/** The tier's chunks: each one's least due time and members, in order. */
async function chunksOf(client: Redis, cp: string) {
  const flat = await client.zrange(`${cp}cold_chunks`, 0, -1, 'WITHSCORES');
  const out: { lo: number; members: { id: string; dueAt: number }[] }[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const m = await client.zrange(`${cp}cold:${flat[i]}`, 0, -1, 'WITHSCORES');
    const members = [];
    for (let k = 0; k < m.length; k += 2) members.push({ id: m[k]!, dueAt: Number(m[k + 1]) });
    out.push({ lo: Number(flat[i + 1]), members });
  }
  return out;
}

const randomId = (k: number) => {
  const kinds = [() => randomUUID(), () => `order-${k}`, () => `é-${k}-ü`, () => `🚀${k}`, () => `q"uote\\${k}`, () => `${k}`];
  return kinds[k % kinds.length]!();
};

describe('the compact entry', () => {
  it('expands to the same bytes, for our entries, the Python package’s and odd ones; the bench job is 24 bytes', () => {
    const id = randomUUID();
    const ours = entryOf(id);
    const value = coldValue(id, 4e9, ours)!;
    expect(value).toBe(`4000000000|\x01bench.add\x02[1,2]\x04\x05bench\x08`);
    expect(Buffer.byteLength(value) - '4000000000|'.length).toBe(24);
    expect(readColdValue(id, value)).toEqual({ dueAt: 4e9, entry: ours });
    const samples = [
      ...fixture.entries.map((e) => [e.key, e.value] as const),
      [id, entryOf(id, 't', [], undefined)],
      [id, entryOf(id, 'a.b', [{ x: '"],{"args":' }], 'q"x')],
      [id, `[["t"],{"args":[1],"task_id":"other"}]`],
      [id, `not json at all }] [["`],
      ['x', `[["t"],{"task_id":"x","args":[]}]`],
    ];
    for (const [jid, entry] of samples) {
      const v = coldValue(jid, 1.5, entry);
      if (v !== undefined) expect(expandEntry(jid, v.slice(v.indexOf('|') + 1))).toBe(entry);
    }
  });

  it('is refused for an entry or id holding a raw control byte, a long entry, or an id past 64 bytes', () => {
    const id = randomUUID();
    expect(coldValue(id, 1, `[["t"],{"args":["\x01"]}]`)).toBeUndefined();
    expect(coldValue(`a\x04b`, 1, `[["t"],{"args":[]}]`)).toBeUndefined();
    expect(coldValue(id, 1, entryOf(id, 'x'.repeat(60)))).toBeUndefined();
    expect(coldValue('i'.repeat(65), 1, `[["t"],{"args":[]}]`)).toBeUndefined();
    expect(coldValue('i'.repeat(64), 1, `[["t"],{"args":[]}]`)).toBeDefined();
  });

  it.skipIf(skip)('is expanded, and its bucket found, by the scripts exactly as here (3,000 ids of every kind)', async () => {
    const client = new Redis(shared!.urlFor(DB));
    clients.push(client);
    const include = readFileSync(new URL('../../../src/stores/redis/lua/includes/cold.lua', import.meta.url), 'utf8');
    const lua = `${include}\nlocal out = {}\nfor i = 1, #ARGV, 2 do out[#out + 1] = coldBucket('', 1000003, ARGV[i]); out[#out + 1] = coldEntry(ARGV[i], ARGV[i + 1]) end\nreturn out`;
    const ids = Array.from({ length: 3000 }, (_, k) => randomId(k));
    const args = ids.flatMap((id) => {
      const v = coldValue(id, 1, entryOf(id, 't', [id.length], 'q')) ?? `0|\x01t\x02[]\x08`;
      return [id, v.slice(v.indexOf('|') + 1)];
    });
    const got = (await client.eval(lua, 0, ...args)) as string[];
    ids.forEach((id, i) => {
      expect(got[2 * i]).toBe(`cold_bucket:${coldBucket(id, 1000003)}`);
      expect(got[2 * i + 1]).toBe(expandEntry(id, args[2 * i + 1]!));
    });
  });

  it('spreads the ids of one shard over its buckets evenly (the shard hash and the bucket hash are one FNV-1a)', () => {
    // shard 3 of 16 takes the ids whose hash is 3 modulo 16; their buckets must still spread
    const counts = new Array<number>(1024).fill(0);
    let n = 0;
    for (let k = 0; n < 102_400; k++) {
      const id = randomUUID();
      let h = 0x811c9dc5;
      for (const b of Buffer.from(id)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
      if (h % 16 !== 3) continue;
      counts[coldBucket(id, 1024)]!++;
      n++;
    }
    // mean 100: a Poisson tail past 150 or below 50 is far rarer than 1 in 1,024
    expect(Math.max(...counts)).toBeLessThan(150);
    expect(Math.min(...counts)).toBeGreaterThan(50);
  });
});

describe.skipIf(skip)('a shard with the compact tier', () => {
  const url = () => shared!.urlFor(DB);
  const now = () => Date.now() / 1000;

  it('keeps a future job compact, and a tagged, keyed, near or large one in the Redis layout', async () => {
    const { store, client, prefix, cp } = shardOn(url(), { buckets: 64, hotSeconds: 60 });
    const t = Math.floor(now());
    await store.add([
      { id: 'far', dueAt: t + 3600, entry: entryOf('far') },
      { id: 'near', dueAt: t + 30, entry: entryOf('near') },
      { id: 'tagged', dueAt: t + 3600, entry: entryOf('tagged'), tags: ['x'] },
      { id: 'large', dueAt: t + 3600, entry: entryOf('large', 'x'.repeat(80)) },
    ]);
    await store.addKeyed({ id: 'keyed', dueAt: t + 3600, entry: entryOf('keyed') }, 'k1', 'reject');
    expect(await client.get(`${cp}cold_count`)).toBe('1');
    expect(await client.zmscore(`${prefix}scheduled_task_id_by_time`, 'far', 'near', 'tagged', 'large', 'keyed')).toEqual([
      null,
      String(t + 30),
      String(t + 3600),
      String(t + 3600),
      String(t + 3600),
    ]);
    expect(await client.exists(`${prefix}far`)).toBe(0);
    expect(await store.get('far')).toEqual({ id: 'far', dueAt: t + 3600, entry: entryOf('far'), state: 'scheduled' });
    expect((await store.count()).scheduled).toBe(5);
    expect(await store.nextDueAt()).toBe(t + 30);
  });

  it('holds one job per id across both: add, skip, addKeyed and revive each find a compact id taken', async () => {
    const { store } = shardOn(url());
    const t = Math.floor(now());
    await store.add([{ id: 'c', dueAt: t + 3600, entry: entryOf('c') }]);
    await expect(store.add([{ id: 'c', dueAt: t - 5, entry: entryOf('c') }])).rejects.toThrow(DuplicateJobError);
    await expect(store.add([{ id: 'c', dueAt: t + 7200, entry: entryOf('c') }])).rejects.toThrow(DuplicateJobError);
    expect(
      await store.add(
        [
          { id: 'c', dueAt: t - 5, entry: entryOf('c') },
          { id: 'd', dueAt: t + 9000, entry: entryOf('d') },
        ],
        { duplicates: 'skip' },
      ),
    ).toBe(1);
    await expect(store.addKeyed({ id: 'c', dueAt: t + 10, entry: entryOf('c') }, 'key', 'reject')).rejects.toThrow(DuplicateJobError);
    // a dead letter whose id a compact job took meanwhile stays dead
    await store.add([{ id: 'dead', dueAt: t - 10, entry: entryOf('dead') }]);
    const [claim] = await store.claimDue({ until: t, now: t, limit: 10, leaseMs: 60_000 });
    expect(claim?.id).toBe('dead');
    await store.bury([{ claim: claim!, reason: 'corrupt', error: 'x', diedAt: t }]);
    await store.add([{ id: 'dead', dueAt: t + 3600, entry: entryOf('dead') }]);
    expect(await store.reviveDead(['dead'], t + 5)).toEqual(['id_taken']);
    expect((await store.get('c'))?.dueAt).toBe(t + 3600);
    expect((await store.count()).scheduled).toBe(3);
  });

  it('keeps its chunks small, in order and covering time, through 3,000 adds (300 at one due time) and 1,000 removes; lists, counts and buckets agree with a model', async () => {
    const { store, client, cp } = shardOn(url(), { buckets: 16, hotSeconds: -1e10 });
    const base = 2e9;
    const model = new Map<string, number>();
    const jobs = [];
    for (let k = 0; k < 3000; k++) {
      const id = randomId(k);
      const dueAt = k < 300 ? base + 5000 : base + Math.floor(Math.random() * 20_000) + (k % 3) * 0.25;
      model.set(id, dueAt);
      jobs.push({ id, dueAt, entry: entryOf(id) });
    }
    // in several adds, some in due order and some not
    const sorted = jobs.slice(0, 1500).sort(compareDue);
    for (let i = 0; i < sorted.length; i += 250) await store.add(sorted.slice(i, i + 250));
    for (let i = 1500; i < 3000; i += 97) await store.add(jobs.slice(i, i + 97));
    const gone = jobs.filter((_, k) => k % 3 === 1).map((j) => j.id);
    expect((await store.removeMany(gone)).sort()).toEqual([...gone].sort());
    for (const id of gone) model.delete(id);

    const chunks = await chunksOf(client, cp);
    expect(chunks.reduce((a, c) => a + c.members.length, 0)).toBe(model.size);
    chunks.forEach((c, i) => {
      expect(c.members.length).toBeGreaterThan(0);
      // a chunk past 120 holds jobs of one due time only
      if (c.members.length > 120) expect(new Set(c.members.map((m) => m.dueAt)).size).toBe(1);
      const next = chunks[i + 1]?.lo ?? Infinity;
      for (const m of c.members) {
        expect(i === 0 || m.dueAt >= c.lo).toBe(true);
        expect(m.dueAt).toBeLessThan(next);
      }
    });
    expect(chunks.length).toBeLessThan(model.size / 40);
    expect(await client.get(`${cp}cold_count`)).toBe(String(model.size));

    const want = [...model].map(([id, dueAt]) => ({ id, dueAt })).sort(compareDue);
    const listed: { id: string; dueAt: number }[] = [];
    for (let cursor: string | undefined; ;) {
      const page = await store.list({ limit: 77, ...(cursor !== undefined && { cursor }) });
      listed.push(...page.jobs.map((j) => ({ id: j.id, dueAt: j.dueAt })));
      for (const j of page.jobs) expect(j.entry).toBe(entryOf(j.id));
      if (!page.cursor) break;
      cursor = page.cursor;
    }
    expect(listed).toEqual(want);
    for (const [from, to] of [
      [base, base + 5000],
      [base + 5000, base + 5000],
      [base + 5000.25, base + 9999.75],
      [base + 20_001, base + 30_000],
    ] as const) {
      expect(await store.countWhere({ from, to })).toBe(want.filter((j) => j.dueAt >= from && j.dueAt <= to).length);
      const page = await store.list({ from, to, limit: 1000 });
      expect(page.jobs.map((j) => j.id)).toEqual(want.filter((j) => j.dueAt >= from && j.dueAt <= to).map((j) => j.id));
    }
    for (const width of [1, 60, 3600]) {
      const buckets = new Map<number, number>();
      for (const j of want) buckets.set(bucketOf(j.dueAt, width), (buckets.get(bucketOf(j.dueAt, width)) ?? 0) + 1);
      const expected = [...buckets].sort((a, b) => a[0] - b[0]).map(([start, count]) => ({ start, count }));
      expect(await store.histogram({ from: base - 100, to: base + 30_000, bucketSeconds: width })).toEqual(expected);
    }
    const uuids = want.filter((j) => /^[0-9a-f]{8}-/.test(j.id));
    expect(await store.countWhere({ idPrefix: uuids[0]!.id.slice(0, 3) })).toBe(want.filter((j) => j.id.startsWith(uuids[0]!.id.slice(0, 3))).length);
    expect(await store.countWhere({ task: 'bench.add' })).toBe(model.size);
    expect(await store.countWhere({ task: 'other' })).toBe(0);
  });

  it('moves due compact jobs into the Redis layout on a claim, in due order, each claimed once with its own entry', async () => {
    // jobs already due, added compact by a store whose hot window ended long ago
    const { store: adder, open, client, cp } = shardOn(url(), { buckets: 16, hotSeconds: -1e10 });
    const store = open({ buckets: 16, hotSeconds: 60 });
    const t = Math.floor(now());
    const jobs = Array.from({ length: 400 }, (_, k) => ({ id: `j${k}`, dueAt: t - 1000 + k, entry: entryOf(`j${k}`) }));
    await adder.add([...jobs].reverse());
    expect(await client.get(`${cp}cold_count`)).toBe('400');
    const claimed: string[] = [];
    for (;;) {
      const got = await store.claimDue({ until: t, now: t, limit: 150, leaseMs: 60_000 });
      if (got.length === 0) break;
      for (const c of got) expect(c.entry).toBe(entryOf(c.id));
      claimed.push(...got.map((c) => c.id));
      await store.acknowledge(got);
    }
    expect(claimed).toEqual(jobs.map((j) => j.id));
    expect(await client.exists(`${cp}cold_count`, `${cp}cold_chunks`)).toBe(0);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('reschedules a compact job within the tier or out of it, with or without a new entry; retags and removes it', async () => {
    const { store, client, prefix, cp } = shardOn(url(), { buckets: 16, hotSeconds: 60 });
    const t = Math.floor(now());
    await store.add(['a', 'b', 'c', 'd', 'e'].map((id, k) => ({ id, dueAt: t + 3600 + k, entry: entryOf(id) })));
    expect(await store.reschedule('a', t + 7200)).toBe(true);
    expect(await store.reschedule('b', t + 7300, entryOf('b', 'new.task'))).toBe(true);
    expect(await store.reschedule('c', t + 10)).toBe(true);
    expect(await store.reschedule('d', t + 7400, entryOf('d', 'x'.repeat(70)))).toBe(true);
    expect(await store.reschedule('nope', t + 10)).toBe(false);
    expect(await client.get(`${cp}cold_count`)).toBe('3');
    expect(await store.get('a')).toMatchObject({ dueAt: t + 7200, entry: entryOf('a') });
    expect(await store.get('b')).toMatchObject({ dueAt: t + 7300, entry: entryOf('b', 'new.task') });
    expect(await client.get(`${prefix}c`)).toBe(entryOf('c'));
    expect(await client.get(`${prefix}d`)).toBe(entryOf('d', 'x'.repeat(70)));
    expect(
      await store.rescheduleMany([
        { id: 'a', dueAt: t + 5 },
        { id: 'e', dueAt: t + 9000 },
        { id: 'c', dueAt: t + 20 },
      ]),
    ).toHaveLength(3);
    expect(await client.zscore(`${prefix}scheduled_task_id_by_time`, 'a')).toBe(String(t + 5));
    // tags: the job moves out of the tier first, and keeps its entry
    expect((await store.retagMany(['e'], { add: ['vip'], remove: [] })).changed).toEqual(['e']);
    expect(await store.get('e')).toMatchObject({ dueAt: t + 9000, entry: entryOf('e'), tags: ['vip'] });
    expect(await client.get(`${cp}cold_count`)).toBe('1');
    expect(await store.remove('b')).toBe(true);
    expect(await store.remove('b')).toBe(false);
    expect(await client.exists(`${cp}cold_count`, `${cp}cold_chunks`)).toBe(0);
    expect((await store.list({ limit: 10 })).jobs.map((j) => j.id)).toEqual(['a', 'c', 'd', 'e']);
  });

  it('revokes by query across both: every match goes, nothing else', async () => {
    const { store } = shardOn(url(), { buckets: 16, hotSeconds: 60 });
    const t = Math.floor(now());
    const jobs = Array.from({ length: 600 }, (_, k) => ({ id: `r${k}`, dueAt: t + (k % 2 ? 10 : 5000) + k, entry: entryOf(`r${k}`, k % 3 ? 'keep' : 'drop') }));
    await store.add(jobs);
    const removed = await store.removeWhere({ task: 'drop' });
    expect(removed).toBe(200);
    expect(await store.countWhere({ task: 'drop' })).toBe(0);
    expect(await store.countWhere({ task: 'keep' })).toBe(400);
  });

  it.skipIf(isolated === undefined)('stores the bench job in at most half the bytes of the Redis layout (20,000 jobs, one private Redis)', async () => {
    const admin = new Redis(isolated!.urlFor(0));
    clients.push(admin);
    const used = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
    const measure = async (store: RedisStore) => {
      const before = await used();
      for (let i = 0; i < 20_000; i += 2000) {
        await store.add(
          Array.from({ length: 2000 }, (_, k) => ({ id: randomUUID(), dueAt: 4e9 + i + k, entry: '' })).map((j) => ({ ...j, entry: entryOf(j.id) })),
        );
      }
      return ((await used()) - before) / 20_000;
    };
    const plain = await measure(new RedisStore(isolated!.urlFor(1)));
    const { store } = shardOn(isolated!.urlFor(2), { buckets: 256, hotSeconds: 60 });
    const compact = await measure(store);
    console.log(`[compact tier] ${compact.toFixed(0)} B/job, Redis layout ${plain.toFixed(0)} B/job (${(compact / plain).toFixed(2)})`);
    expect(compact / plain).toBeLessThanOrEqual(0.5);
  });
});
