/**
 * The Redis store's lists by task, queue, key and id prefix, its counts and histograms, and its
 * bulk changes, against a real Redis: jobs the Python package wrote (an entry and an index entry,
 * nothing of ours) are found, counted, moved and retagged like ours; every way of walking
 * (the index, the tag sets, `job_keys`) answers what a read of every job would; and no command
 * reads or checks more than a chunk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { RedisStore } from '../../../src/exports/stores.js';
import { jobMatches, toBuckets, type ListRange } from '../../../src/stores/base.js';
import { compareDue, type HistogramBucket, type JobFilter } from '../../../src/stores/store.js';
import { loadScripts } from '../../../src/stores/redis/redis-store.js';
import { createHash } from 'node:crypto';
import { prefixedStores } from './prefixed-stores.js';
import { privateRedis, requireService, sharedRedis, uniquePrefix, type RedisService } from '../../helpers/services.js';

const shared = await sharedRedis();
const skip = requireService(shared, 'Redis');
const canStartRedis = spawnSync('sh', ['-c', 'command -v redis-server']).status === 0;
const sha = Object.fromEntries([...loadScripts()].map(([name, s]) => [name, createHash('sha1').update(s.lua).digest('hex')]));

/** the names of a store's keys under `prefix` */
function keysOf(prefix: string) {
  return {
    index: `${prefix}scheduled_task_id_by_time`,
    tags: `${prefix}celery_longterm_scheduler:tags`,
    tag: (t: string) => `${prefix}celery_longterm_scheduler:tag:${t}`,
    jobKeys: `${prefix}celery_longterm_scheduler:job_keys`,
    jobKeyOf: `${prefix}celery_longterm_scheduler:job_key_of`,
    wakeup: `${prefix}celery_longterm_scheduler:wakeup`,
  };
}

/** an entry as our encoder writes it (compact JSON) */
const ours = (id: string, task: string, queue?: string) => JSON.stringify([[task], { args: [id], task_id: id, ...(queue !== undefined && { queue }) }]);

describe.skipIf(skip)('RedisStore search and bulk changes on jobs the Python package wrote', () => {
  const prefix = uniquePrefix('py-search');
  const k = keysOf(prefix);
  let raw: Redis;
  let store: RedisStore;
  // json.dumps of the Python package: ", " and ": " separators, non-ASCII escaped (ensure_ascii)
  const written: [id: string, due: number, entry: string][] = [
    ['py-1', 100, '[["app.send"], {"args": [1], "kwargs": {}, "task_id": "py-1", "queue": "mail"}]'],
    ['py-2', 200, '[["app.send"], {"args": [2], "kwargs": {}, "task_id": "py-2"}]'],
    ['py-3', 300, '[["app.t\\u00e2che"], {"args": [], "kwargs": {}, "task_id": "py-3", "queue": "m\\u00e9l"}]'],
    ['py-4', 300, '[["app.other"], {"args": [], "kwargs": {}, "task_id": "py-4", "queue": "mail"}]'],
  ];
  beforeAll(async () => {
    raw = new Redis((shared as RedisService).urlFor(0));
    store = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: prefix });
    for (const [id, due, entry] of written) {
      await raw.set(`${prefix}${id}`, entry);
      await raw.zadd(k.index, due, id);
    }
    await store.add([{ id: 'ours-1', dueAt: 150, entry: ours('ours-1', 'app.send'), tags: ['x'] }]);
  });
  afterAll(async () => {
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await store.close();
  });
  const listed = async (f: JobFilter) => (await store.list({ limit: 100, ...f })).jobs.map((j) => j.id);

  it('lists them by due range, task and queue (escaped names read as Python wrote them), and counts and buckets them', async () => {
    expect(await listed({ from: 100, to: 250 })).toEqual(['py-1', 'ours-1', 'py-2']);
    expect(await listed({ task: 'app.send' })).toEqual(['py-1', 'ours-1', 'py-2']);
    expect(await listed({ task: 'app.send', from: 120 })).toEqual(['ours-1', 'py-2']);
    expect(await listed({ task: 'app.tâche' })).toEqual(['py-3']);
    expect(await listed({ queues: ['mél'] })).toEqual(['py-3']);
    expect(await listed({ queues: ['mail'] })).toEqual(['py-1', 'py-4']);
    expect(await listed({ queues: [null] })).toEqual(['ours-1', 'py-2']);
    expect(await listed({ idPrefix: 'py-', queues: [null, 'mél'] })).toEqual(['py-2', 'py-3']);
    expect((await store.list({ limit: 10, task: 'app.tâche' })).jobs).toEqual([{ id: 'py-3', dueAt: 300, entry: written[2]![2], state: 'scheduled' }]);
    expect(await store.countWhere({ task: 'app.send' })).toBe(3);
    expect(await store.countWhere({ queues: ['mail'] })).toBe(2);
    expect(await store.countWhere({ idPrefix: 'py-' })).toBe(4);
    expect(await store.countWhere({ from: 150, to: 300 })).toBe(4);
    expect(await store.histogram({ from: 0, to: 399, bucketSeconds: 100 })).toEqual([
      { start: 100, count: 2 },
      { start: 200, count: 1 },
      { start: 300, count: 2 },
    ]);
    expect(await store.histogram({ from: 0, to: 399, bucketSeconds: 100, task: 'app.send' })).toEqual([
      { start: 100, count: 2 },
      { start: 200, count: 1 },
    ]);
  });

  it('reschedules and retags them, touching nothing of theirs but the index score, and the tag index follows', async () => {
    const before = (await raw.keys(`${prefix}*`)).sort();
    expect(
      (
        await store.rescheduleMany([
          { id: 'py-1', dueAt: 350 },
          { id: 'py-2', dueAt: 50 },
          { id: 'py-none', dueAt: 1 },
        ])
      ).sort(),
    ).toEqual(['py-1', 'py-2']);
    expect(Number(await raw.zscore(k.index, 'py-1'))).toBe(350);
    expect(Number(await raw.zscore(k.index, 'py-2'))).toBe(50);
    expect(await raw.get(`${prefix}py-1`)).toBe(written[0]![2]);
    expect((await raw.keys(`${prefix}*`)).sort()).toEqual(before);
    expect(await listed({ task: 'app.send' })).toEqual(['py-2', 'ours-1', 'py-1']);

    expect(await store.retagMany(['py-1', 'py-4', 'py-none'], { add: ['vip'] })).toEqual({ changed: ['py-1', 'py-4'], overLimit: [] });
    expect((await store.get('py-1'))?.tags).toEqual(['vip']);
    expect(await raw.hget(k.tags, 'py-4')).toBe('["vip"]');
    expect((await raw.smembers(k.tag('vip'))).sort()).toEqual(['py-1', 'py-4']);
    expect(await raw.get(`${prefix}py-4`)).toBe(written[3]![2]); // the entry as the Python package wrote it
    expect(await listed({ tags: { all: ['vip'] }, queues: ['mail'] })).toEqual(['py-4', 'py-1']);
    expect(await store.countWhere({ tags: { all: ['vip'] } })).toBe(2);
    expect(await store.histogram({ from: 0, to: 399, bucketSeconds: 100, tags: { any: ['vip', 'x'] } })).toEqual([
      { start: 100, count: 1 },
      { start: 300, count: 2 },
    ]);
    expect((await store.retagMany(['py-1', 'py-4'], { remove: ['vip'] })).changed).toEqual(['py-1', 'py-4']);
    expect(await raw.exists(k.tag('vip'))).toBe(0);
    expect(await raw.hkeys(k.tags)).toEqual(['ours-1']);
  });
});

describe.skipIf(skip)('RedisStore bulk changes', () => {
  const pool = prefixedStores(shared, 'bulk');
  let raw: Redis;
  beforeAll(() => {
    raw = pool.raw();
  });
  /** a store on a fresh prefix, and the names of its keys */
  function fresh() {
    const { store, prefix } = pool.fresh();
    return { store, k: keysOf(prefix) };
  }

  it('rescheduleMany wakes the dispatchers once when a moved job becomes the first due, and not otherwise', async () => {
    const { store, k } = fresh();
    await store.add(Array.from({ length: 1200 }, (_, i) => ({ id: `w${i}`, dueAt: 1000 + i, entry: ours(`w${i}`, 't') })));
    const heard: number[] = [];
    const stop = await store.watch((dueAt) => heard.push(dueAt));
    try {
      // 1,200 moves: three calls of the script; the first due is moved in the last one
      const moves = Array.from({ length: 1200 }, (_, i) => ({ id: `w${i}`, dueAt: i === 1100 ? 10 : 2000 + i }));
      expect((await store.rescheduleMany(moves)).length).toBe(1200);
      await store.rescheduleMany([{ id: 'w5', dueAt: 3000 }]); // not the first
      await store.rescheduleMany([{ id: 'w1100', dueAt: 5 }]); // the first, sooner still
      await raw.publish(k.wakeup, '-1'); // a marker: every message before it has arrived once it does
      const end = Date.now() + 3000;
      while (!heard.includes(-1) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(heard).toEqual([10, 5, -1]);
    } finally {
      await stop();
    }
    expect(await store.nextDueAt()).toBe(5);
  });

  it('retagMany over many calls: each job on its own, over-limit jobs left alone and named, the tag sets in step with the hash', async () => {
    const { store, k } = fresh();
    const full = Array.from({ length: 32 }, (_, i) => `f${i}`);
    const jobs = Array.from({ length: 700 }, (_, i) => ({
      id: `r${String(i).padStart(3, '0')}`,
      dueAt: 10 + i,
      entry: ours(`r${i}`, 't'),
      ...(i % 100 === 7 ? { tags: full } : i % 2 ? { tags: ['old', 'keep'] } : {}),
    }));
    await store.add(jobs);
    const claimed = await store.claimDue({ until: 10, now: 10, limit: 1, leaseMs: 60_000 }); // r000: in flight
    expect(claimed.map((c) => c.id)).toEqual(['r000']);
    const r = await store.retagMany(
      jobs.map((j) => j.id),
      { add: ['new'], remove: ['old'] },
    );
    const over = jobs.filter((_, i) => i % 100 === 7).map((j) => j.id);
    expect(r.overLimit.sort()).toEqual(over);
    expect(r.changed.length).toBe(700 - 1 - over.length);
    // the hash and the sets say the same
    const hash = await raw.hgetall(k.tags);
    const holders = new Map<string, string[]>();
    for (const [id, json] of Object.entries(hash)) for (const t of JSON.parse(json) as string[]) holders.set(t, [...(holders.get(t) ?? []), id]);
    for (const [t, ids] of holders) expect((await raw.smembers(k.tag(t))).sort(), t).toEqual(ids.sort());
    expect(await raw.exists(k.tag('old'))).toBe(0);
    expect(JSON.parse(hash.r001 as string)).toEqual(['keep', 'new']);
    expect(JSON.parse(hash.r002 as string)).toEqual(['new']);
    expect(JSON.parse(hash.r007 as string)).toEqual(full);
    expect(hash.r000).toBeUndefined(); // in flight: untouched (it had no tags)
    expect(await store.countWhere({ tags: { all: ['new'] } })).toBe(r.changed.length);
  });
});

// a Redis of its own: MONITOR sees only these tests, and the data set is the whole store
describe.skipIf(skip || !canStartRedis)('RedisStore search by every filter: the answers of a read of every job, a bounded chunk per command', () => {
  const prefix = uniquePrefix('filters');
  const k = keysOf(prefix);
  let server: RedisService;
  let raw: Redis;
  let store: RedisStore;

  const tasks = ['t.a', 't.a', 't.a', 't.b', 't.b', 't.c'];
  const queues: (string | undefined)[] = ['q1', 'q2', undefined, 'q1'];
  beforeAll(async () => {
    server = (await privateRedis()) as RedisService;
    raw = new Redis(server.urlFor(0));
    store = new RedisStore(server.urlFor(0), { keyPrefix: prefix });
    // 3,000 jobs three to a due time in shuffled order, then 1,500 at one due time (more than a
    // chunk, and more than the ties re-read by score); a task of 1% ('t.rare'), tags of 2% and 50%
    const order = Array.from({ length: 3000 }, (_, i) => (i * 1777) % 3000);
    const jobs = [];
    for (let i = 0; i < 4500; i++) {
      const tie = i >= 3000;
      const id = tie ? `tie-${String(i - 3000).padStart(4, '0')}` : `j${String(i).padStart(4, '0')}`;
      const dueAt = tie ? 5000 : 1000 + Math.floor((order[i] as number) / 3) + 0.25;
      const task = i % 100 === 13 ? 't.rare' : (tasks[i % tasks.length] as string);
      const queue = queues[i % queues.length];
      const tags = [...(i % 50 === 3 ? ['few'] : []), ...(i % 2 === 0 ? ['common'] : [])];
      jobs.push({ id, dueAt, entry: ours(id, task, queue), ...(tags.length && { tags }) });
    }
    for (let i = 0; i < jobs.length; i += 1000) await store.add(jobs.slice(i, i + 1000));
    // 700 keyed jobs: most under 'inv:', five late ones under 'rare:', a few under a key with
    // the glob's special characters
    for (let i = 0; i < 700; i++) {
      const id = `key-${String(i).padStart(3, '0')}`;
      const key = i >= 695 ? `rare:${i}` : i % 100 === 1 ? `g*[?]\\x:${i}` : `inv:${i % 10}:${i}`;
      const res = await store.addKeyed({ id, dueAt: 900 + i * 5, entry: ours(id, i % 3 ? 't.a' : 't.k', 'q1') }, key, 'reject');
      expect(res.outcome).toBe('added');
    }
    // sent by the Python package (ZREM + DEL, knows no keys): its mapping stays, and reads as free
    for (const id of ['key-010', 'key-696']) {
      await raw.zrem(k.index, id);
      await raw.del(`${prefix}${id}`);
    }
    // ... and its id scheduled again by the Python package: the mapping both ways names it, so it
    // holds the key again (as addKeyed would see it); key-011's key is taken over by another job
    // while it is gone, so key-011 holds nothing once it is back
    await raw.set(`${prefix}key-010`, ours('key-010', 't.a', 'q1'));
    await raw.zadd(k.index, 950, 'key-010');
    await raw.zrem(k.index, 'key-011');
    await raw.del(`${prefix}key-011`);
    expect((await store.addKeyed({ id: 'key-new', dueAt: 960, entry: ours('key-new', 't.a', 'q1') }, 'inv:1:11', 'reject')).outcome).toBe('added');
    await raw.zadd(k.index, 970, 'key-011'); // back in the index (no entry of ours): holds nothing
    await raw.set(`${prefix}key-011`, ours('key-011', 't.a', 'q1'));
    // written by the Python package: an escaped task name, a corrupt entry, a queue that is not a string
    const py: [string, number, string][] = [
      ['py-1', 1500.25, '[["t.\\u00e9"], {"args": [], "kwargs": {}, "task_id": "py-1", "queue": "q1"}]'],
      ['py-2', 5000, '[["t.a"], {"args": [], "kwargs": {}, "task_id": "py-2", "queue": 7}]'],
      ['py-3', 1200.25, 'not json {'],
      ['py-4', 1300.25, '[["t.\\"q"], {"task_id": "py-4"}]'],
    ];
    for (const [id, due, entry] of py) {
      await raw.set(`${prefix}${id}`, entry);
      await raw.zadd(k.index, due, id);
    }
    // in flight: not listed
    const claimed = await store.claimDue({ until: 1003, now: 1003, limit: 10, leaseMs: 600_000 });
    expect(claimed.length).toBe(10);
  });
  afterAll(async () => {
    await store.close();
    raw.disconnect();
    await server.stop();
  });

  /** every scheduled job, read whole (ZRANGE 0 -1, HGETALL: fine for a test) */
  async function everyJob() {
    const flat = await raw.zrange(k.index, 0, -1, 'WITHSCORES');
    const ids = flat.filter((_, i) => i % 2 === 0);
    const entries = await raw.mget(ids.map((id) => `${prefix}${id}`));
    const tags = await raw.hgetall(k.tags);
    const jobKeys = await raw.hgetall(k.jobKeys);
    const jobKeyOf = await raw.hgetall(k.jobKeyOf);
    return ids.flatMap((id, i) => {
      const entry = entries[i];
      if (typeof entry !== 'string') return [];
      const key = jobKeyOf[id];
      return [
        {
          id,
          dueAt: Number(flat[2 * i + 1]),
          entry,
          ...(tags[id] !== undefined && { tags: JSON.parse(tags[id]) as string[] }),
          ...(key !== undefined && jobKeys[key] === id && { key }),
        },
      ];
    });
  }
  let all: Awaited<ReturnType<typeof everyJob>>;

  const asRange = (f: JobFilter): ListRange => ({
    from: f.from,
    to: f.to,
    ...(f.tags && { tags: { all: f.tags.all ?? [], any: f.tags.any ?? [] } }),
    ...(f.task !== undefined && { task: f.task }),
    ...(f.queues !== undefined && { queues: f.queues }),
    ...(f.keyPrefix !== undefined && { keyPrefix: f.keyPrefix }),
    ...(f.idPrefix !== undefined && { idPrefix: f.idPrefix }),
  });
  const truth = (f: JobFilter) =>
    all
      .filter((j) => jobMatches(asRange(f), j))
      .sort(compareDue)
      .map((j) => j.id);

  /** every page, by cursor; each full but the last */
  async function everyPage(f: JobFilter, limit: number, pages = Infinity) {
    const ids: string[] = [];
    let cursor: string | undefined;
    let n = 0;
    do {
      const page = await store.list({ ...f, limit, ...(cursor !== undefined && { cursor }) });
      ids.push(...page.jobs.map((j) => j.id));
      cursor = page.cursor;
      if (cursor !== undefined) expect(page.jobs).toHaveLength(limit);
    } while (cursor !== undefined && ++n < pages);
    return ids;
  }

  const filters: JobFilter[] = [
    { task: 't.a' },
    { task: 't.rare' },
    { task: 't.é' },
    { task: 't."q' },
    { task: 't.a', from: 1500, to: 5000 },
    { task: 't.a', from: 5000, to: 5000 },
    { queues: [null] },
    { queues: ['q2'] },
    { queues: ['q2', null], task: 't.b' },
    { idPrefix: 'tie-1' },
    { idPrefix: 'py-' },
    { idPrefix: 'j00', task: 't.rare' },
    { keyPrefix: 'inv:' },
    { keyPrefix: 'inv:1:' },
    { keyPrefix: 'rare:' },
    { keyPrefix: 'g*[?]\\' },
    { keyPrefix: 'g' },
    { keyPrefix: 'inv:', from: 1000, to: 1100 },
    { keyPrefix: 'inv:', task: 't.k' },
    { keyPrefix: 'inv:', idPrefix: 'key-00' },
    { keyPrefix: 'nothing' },
    { tags: { all: ['few'] }, task: 't.a' },
    { tags: { all: ['common'] }, task: 't.c', from: 1000, to: 1200 },
    { tags: { any: ['few', 'common'] }, queues: ['q1'] },
    { tags: { all: ['common'] }, keyPrefix: 'inv:' },
    { tags: { all: ['common'] }, idPrefix: 'tie-0' },
    { tags: { all: ['few', 'common'] } },
    { tags: { all: ['nobody'] }, task: 't.a' },
    { tags: { all: ['few'] } },
    { from: 1400, to: 1600 },
    {},
  ];

  it('lists, counts and buckets what a read of every job finds, by every filter, page by page', async () => {
    all = await everyJob();
    expect(truth({ task: 't.é' })).toEqual(['py-1']);
    expect(truth({ task: 't."q' })).toEqual(['py-4']);
    expect(truth({ keyPrefix: 'rare:' }).length).toBe(4);
    expect(truth({ keyPrefix: 'inv:1:' })).toContain('key-new');
    expect(truth({ keyPrefix: 'inv:1:' })).not.toContain('key-011');
    expect(truth({ keyPrefix: 'inv:0:' })).toContain('key-010');
    expect(truth({ keyPrefix: 'g*[?]\\' }).length).toBe(6); // of 7: key-001 was claimed (a claim drops the key)
    for (const f of filters) {
      const expected = truth(f);
      const name = JSON.stringify(f);
      expect(await everyPage(f, 400), `${name} by 400`).toEqual(expected);
      expect(await everyPage(f, 7, 4), `${name} by 7`).toEqual(expected.slice(0, 28));
      expect(await store.countWhere(f), `${name} counted`).toBe(expected.length);
      const from = f.from ?? 0;
      const to = f.to ?? 6000;
      const due = all.filter((j) => expected.includes(j.id)).map((j) => j.dueAt);
      for (const bucketSeconds of [1, 100, 7000]) {
        const want: HistogramBucket[] = toBuckets(due, bucketSeconds);
        expect(await store.histogram({ ...f, from, to, bucketSeconds }), `${name} by ${bucketSeconds} s`).toEqual(want);
      }
    }
  });

  it('a page through the long tie starts at its cursor, wherever the cursor falls among 1,500 jobs of one due time', async () => {
    const expected = truth({ idPrefix: 'tie-', task: 't.b' });
    expect(expected.length).toBeGreaterThan(400);
    expect(await everyPage({ idPrefix: 'tie-', task: 't.b' }, 97)).toEqual(expected);
    expect(await everyPage({ from: 5000, to: 5000, queues: ['q2'] }, 150)).toEqual(truth({ from: 5000, to: 5000, queues: ['q2'] }));
  });

  /**
   * A script sent whole (EVAL: ioredis's fallback the first time, when Redis does not have it
   * yet) as the EVALSHA it stands for; the commands a script calls are seen too, as they run.
   */
  function asEvalsha(command: string[]): string[] {
    if (command[0] !== 'eval') return command;
    const [name] = [...loadScripts()].find(([, script]) => (command[1] as string).includes(script.lua.split('\n')[1] as string)) ?? [];
    return ['evalsha', name ? (sha[name] as string) : 'unknown', ...command.slice(2)];
  }

  /** the commands a call sends to Redis, as MONITOR sees them (name lower-cased, then the arguments) */
  async function commandsOf(call: () => Promise<unknown>): Promise<string[][]> {
    const monitor = await raw.monitor();
    const seen: string[][] = [];
    const end = `end-${Math.random()}`;
    const done = new Promise<void>((resolve) =>
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args[0]?.toLowerCase() === 'echo' && args[1] === end) resolve();
        else if (args.some((a) => a.startsWith(prefix))) seen.push(asEvalsha([(args[0] as string).toLowerCase(), ...args.slice(1)]));
      }),
    );
    try {
      await call();
      await raw.echo(end);
      await done;
    } finally {
      monitor.disconnect();
    }
    return seen;
  }

  it('no command reads or checks more than 1,000 members (or 250 buckets); no KEYS, SCAN, SMEMBERS, HGETALL or whole range', async () => {
    const commands = await commandsOf(async () => {
      for (const f of filters) {
        await everyPage(f, 1000);
        await store.countWhere(f);
        await store.histogram({ ...f, from: 0, to: 10_000, bucketSeconds: 1 });
      }
    });
    // (zscore, zrank and zrange: range-after-1.lua's own)
    const allowed = [
      'evalsha',
      'hlen',
      'hmget',
      'hscan',
      'mget',
      'scard',
      'smismember',
      'sscan',
      'zcard',
      'zcount',
      'zmscore',
      'zrange',
      'zrangebyscore',
      'zrank',
      'zrevrangebyscore',
      'zscore',
    ];
    expect([...new Set(commands.map(([name]) => name))].filter((n) => !allowed.includes(n as string))).toEqual([]);
    for (const [name, key, ...args] of commands) {
      if (['zmscore', 'smismember', 'hmget'].includes(name as string)) expect(args.length, `${name} ${key}`).toBeLessThanOrEqual(1000);
      if (name === 'mget') expect(args.length + 1).toBeLessThanOrEqual(1001); // a page of 1,000 and the row read ahead
      if (name === 'sscan' || name === 'hscan') expect(args.slice(-2)).toEqual(['COUNT', '1000']);
      if (name === 'zrangebyscore' || name === 'zrevrangebyscore') expect(Number(args.at(-1)), args.join(' ')).toBeLessThanOrEqual(1100);
      if (name === 'zrange') expect(Number(args[1]) - Number(args[0]) + 1, args.join(' ')).toBeLessThanOrEqual(1000);
      // evalsha <sha> <numkeys> <key> ...ARGV
      if (name === 'evalsha' && key === sha.rangeAfter) expect(Number(args.at(-1))).toBeLessThanOrEqual(1000);
      if (name === 'evalsha' && key === sha.countRanges) expect((args.length - 2) / 2).toBeLessThanOrEqual(250);
      if (name === 'evalsha') expect([sha.rangeAfter, sha.countRanges]).toContain(key);
    }
  });

  it('a page by a common task stops at its first chunk; a rare one reads the index a chunk at a time', async () => {
    const common = await commandsOf(() => store.list({ limit: 10, task: 't.a' }));
    const mgets = common.filter(([name]) => name === 'mget');
    expect(mgets.length).toBe(1); // the entries read for the task are the page's
    expect(mgets[0]!.length - 1).toBeLessThanOrEqual(100);
    const rare = await commandsOf(() => store.list({ limit: 10, task: 't.rare' }));
    const ranges = rare.filter(([name]) => name === 'zrangebyscore' || name === 'evalsha');
    expect(ranges.length).toBeGreaterThan(2);
  });

  it('a count by tags alone reads no entry; by a key prefix it walks job_keys (HSCAN MATCH, the glob escaped), not the index', async () => {
    const byTag = await commandsOf(() => store.countWhere({ tags: { all: ['few'] } }));
    expect(byTag.map(([name]) => name)).not.toContain('mget');
    expect(byTag.map(([name]) => name)).not.toContain('zrangebyscore');
    const byKey = await commandsOf(() => store.countWhere({ keyPrefix: 'g*[?]\\' }));
    const names = byKey.map(([name]) => name);
    expect(names).toContain('hscan');
    expect(names).not.toContain('zrangebyscore');
    expect(names).not.toContain('mget');
    // (MONITOR shows a backslash as two)
    expect(
      byKey
        .find(([name]) => name === 'hscan')
        ?.slice(3, 5)
        .map((a) => a.replace(/\\\\/g, '\\')),
    ).toEqual(['MATCH', 'g\\*\\[\\?\\]\\\\*']);
  });

  it('a histogram by the due range alone: one ZCOUNT a bucket when the jobs are dense, their due times read when sparse', async () => {
    const dense = await commandsOf(() => store.histogram({ from: 0, to: 10_000, bucketSeconds: 1000 }));
    expect(dense.filter(([name]) => name === 'evalsha').length).toBe(1);
    // the first and the last job in range, then one call of count-ranges-1.lua
    for (const [name, ...args] of dense) if (name === 'zrangebyscore' || name === 'zrevrangebyscore') expect(args.at(-1)).toBe('1');
    const sparse = await commandsOf(() => store.histogram({ from: 1000, to: 1100, bucketSeconds: 1 }));
    expect(sparse.map(([name]) => name)).not.toContain('evalsha');
  });
});

describe.skipIf(skip)('RedisStore histograms: the buckets bucketOf says, by ZCOUNT or by reading', () => {
  const prefix = uniquePrefix('hist');
  let store: RedisStore;
  let raw: Redis;
  beforeAll(() => {
    raw = new Redis((shared as RedisService).urlFor(0));
    store = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: prefix });
  });
  afterAll(async () => {
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await store.close();
  });

  it('fractional and negative due times on bucket edges, dense (ZCOUNT) and sparse (read)', async () => {
    const due: number[] = [];
    for (let i = 0; i < 3000; i++) due.push(-3600 + i * 2.5); // across 0, every 2.5 s
    for (const edge of [7200, 10_800, 14_400]) {
      due.push(edge, edge - 1e-6, edge + 1e-6, edge - 0.5);
      for (let n = 1; n <= 40; n++) due.push(edge - n / 64, edge + n / 64);
    }
    due.push(-0.000001, 1e-9, 86_400 * 3 - 1e-7);
    await store.add(due.map((dueAt, i) => ({ id: `h${i}`, dueAt, entry: ours(`h${i}`, 't') })));
    for (const [from, to, b] of [
      [-3600, 86_400 * 3, 3600], // across 0: read
      [1, 86_400 * 3, 3600], // dense at first: ZCOUNT a bucket
      [1, 86_400 * 3, 60],
      [7200, 14_400, 1800], // dense: ZCOUNT a bucket, its edges fractional
      [7200 - 1e-6, 14_400 + 1e-6, 3600],
      [7199.5, 7200, 1],
      [-10, 10, 7],
    ] as const) {
      const want = toBuckets(
        due.filter((d) => d >= from && d <= to),
        b,
      );
      expect(await store.histogram({ from, to, bucketSeconds: b }), `${from}..${to} by ${b}`).toEqual(want);
    }
  });
});

describe.skipIf(skip)('range-after-1.lua: the index after a position, by rank', () => {
  const prefix = uniquePrefix('range-after');
  const index = `${prefix}scheduled_task_id_by_time`;
  let store: RedisStore;
  let raw: Redis;
  beforeAll(async () => {
    raw = new Redis((shared as RedisService).urlFor(0));
    store = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: prefix });
    const members = ['a', 'B', 'é', 'aa', 'a\u0001', 'Z', 'b', '~', 'ab'];
    for (const m of members) await raw.zadd(index, 5, m);
    await raw.zadd(index, 1, 'low', 9, 'high');
  });
  afterAll(async () => {
    await raw.del(index);
    raw.disconnect();
    await store.close();
  });
  const after = async (score: number, member: string, max = '+inf', count = 100) =>
    (await (await store.client()).clsRangeAfter(index, String(score), member, max, count)).filter((_, i) => i % 2 === 0);

  it('orders members of one score byte by byte, whether the position is a member or not', async () => {
    const order = (await raw.zrange(index, 0, -1)) as string[];
    expect(order).toEqual(['low', 'B', 'Z', 'a', 'a\u0001', 'aa', 'ab', 'b', '~', 'é', 'high']);
    for (let i = 0; i < order.length; i++) {
      const m = order[i] as string;
      const s = Number(await raw.zscore(index, m));
      expect(await after(s, m), m).toEqual(order.slice(i + 1));
    }
    // positions that are not members (gone, or never there), at a score that has members or not
    expect(await after(5, 'a\u0000')).toEqual(order.slice(4));
    expect(await after(5, 'abc')).toEqual(order.slice(7));
    expect(await after(5, '\u00ff')).toEqual(['high']);
    expect(await after(5, '')).toEqual(order.slice(1));
    expect(await after(3, 'x')).toEqual(order.slice(1));
    expect(await after(1, 'zzz')).toEqual(order.slice(1));
    // a member at another score than the position's: the position counts
    expect(await after(5, 'high')).toEqual(order.slice(8));
    // the last score, inclusive, and the count
    expect(await after(5, 'a', '5')).toEqual(order.slice(4, 10));
    expect(await after(5, 'a', '(9', 2)).toEqual(order.slice(4, 6));
    expect(await after(9, 'high')).toEqual([]);
  });
});
