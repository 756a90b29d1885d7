/**
 * The Redis store against a real Redis: the original package's layout, atomic writes,
 * claims with leases, and revocation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { Celery, DuplicateJobError, getScheduler } from '../../../src/index.js';
import { RedisStore } from '../../../src/exports/stores.js';
import { encodeEntry } from '../../../src/job/entry.js';
import { resolveTaskCall } from '../../../src/job/options.js';
import { readPickledDatetime } from '../../../src/celery/pickle.js';
import { prefixedStores } from './prefixed-stores.js';
import { privateRedis, requireService, sharedRedis, uniquePrefix, type RedisService } from '../../helpers/services.js';
import { compareDue } from '../../../src/stores/store.js';

const shared = await sharedRedis();
const isolated = await privateRedis();
const skip = requireService(shared, 'Redis');

function newJob(task: string, args: unknown[], dueAt: number, taskId?: string) {
  const { job } = resolveTaskCall(task, args, {}, taskId ? { taskId } : {});
  return { id: job.id, dueAt, entry: encodeEntry(job) };
}

describe.skipIf(skip || !isolated)('the original layout, on a Redis of its own', () => {
  let server: RedisService;
  let raw: Redis;
  let app: Celery;
  beforeAll(() => {
    server = isolated as RedisService;
    raw = new Redis(server.urlFor(1));
    app = new Celery({ broker: server.urlFor(0), longtermSchedulerBackend: server.urlFor(1) });
  });
  afterAll(async () => {
    await app.close();
    raw.disconnect();
    await server.stop();
  });

  it('writes SET <task id> <[[name], {send_task kwargs}]> and ZADD scheduled_task_id_by_time <due> <id>, no prefix', async () => {
    const eta = new Date('2031-03-04T05:06:07.250Z');
    const result = await app.task('bench.add').applyAsync([1, 2], {}, { eta, taskId: 'layout-1' });
    expect(result.id).toBe('layout-1');
    expect(await raw.get('layout-1')).toBe('[["bench.add"],{"args":[1,2],"task_id":"layout-1"}]');
    expect(Number(await raw.zscore('scheduled_task_id_by_time', 'layout-1'))).toBeCloseTo(eta.getTime() / 1000, 3);
    const keys = (await raw.keys('*')).sort();
    expect(keys).toEqual(['layout-1', 'scheduled_task_id_by_time']);
  });

  it('does not touch the broker when scheduling', async () => {
    const brokerDb = new Redis(server.urlFor(0));
    await app.task('bench.add').applyAsync([1], {}, { countdown: 60 });
    expect(await brokerDb.dbsize()).toBe(0);
    brokerDb.disconnect();
  });

  it('writes JSON with send_task keywords only; the one pickle is an absolute expires, a UTC datetime', async () => {
    const cb = app.task('tasks.notify').s(['done']);
    await app.task('bench.add').applyAsync(
      [1],
      { y: 2 },
      {
        countdown: 10,
        taskId: 'all-opts',
        queue: 'q',
        routingKey: 'rk',
        exchange: 'ex',
        priority: 3,
        expires: new Date('2031-03-05T00:00:00Z'),
        headers: { 'x-a': 1 },
        link: cb,
        linkError: [cb],
        shadow: 'sh',
        timeLimit: 30,
        softTimeLimit: 20,
        ignoreResult: true,
      },
    );
    const value = (await raw.get('all-opts')) ?? '';
    expect(value.split('__python_pickle__')).toHaveLength(2); // one pickle, in expires
    const [[name], kw] = JSON.parse(value) as [[string], Record<string, unknown>];
    expect(name).toBe('bench.add');
    // every key is a keyword of Python's Celery.send_task
    const sendTaskKeywords = [
      'args',
      'kwargs',
      'task_id',
      'queue',
      'routing_key',
      'exchange',
      'priority',
      'expires',
      'headers',
      'link',
      'link_error',
      'shadow',
      'time_limit',
      'soft_time_limit',
      'ignore_result',
    ];
    for (const key of Object.keys(kw)) expect(sendTaskKeywords).toContain(key);
    // Celery 5.0-5.2 send_task takes an absolute expires only as a datetime
    expect(readPickledDatetime(kw.expires as string)).toEqual({ at: new Date('2031-03-05T00:00:00Z'), isoformat: '2031-03-05T00:00:00+00:00' });
    expect(kw.time_limit).toBe(30);
  });

  it('a hand-off whose push fails (Redis out of memory) changes nothing: each job stays in flight, leased, entry intact', async () => {
    const store = new RedisStore(server.urlFor(1));
    try {
      const jobs = [newJob('t.oom', [1], 5), newJob('t.oom', [2], 5)];
      await store.add(jobs);
      const claims = await store.claimDue({ until: 5, now: 5, limit: 10, leaseMs: 60_000 });
      expect(claims).toHaveLength(2);
      const pushes = claims.map((c) => [{ db: 0, key: 'oom-q', value: `message of ${c.id}` }]);
      await raw.config('SET', 'maxmemory', '1');
      let results: (boolean | Error)[];
      try {
        results = await store.handOff(claims, pushes);
      } finally {
        await raw.config('SET', 'maxmemory', '0');
      }
      expect(results.every((r) => r instanceof Error && /OOM/.test(r.message))).toBe(true);
      const db0 = new Redis(server.urlFor(0));
      expect(await db0.exists('oom-q')).toBe(0);
      db0.disconnect();
      for (const c of claims)
        expect(await store.get(c.id)).toEqual({ id: c.id, dueAt: Number(c.token), entry: jobs.find((j) => j.id === c.id)!.entry, state: 'in_flight' });
      await store.release(claims);
      for (const j of jobs) expect(await store.remove(j.id)).toBe(true); // scheduled again, as before the claim
    } finally {
      await store.close();
    }
  });

  it('revoke deletes key and index entry and returns true, then false', async () => {
    await app.task('bench.add').applyAsync([9], {}, { countdown: 60, taskId: 'to-revoke' });
    const scheduler = getScheduler(app);
    expect(await scheduler.revoke('to-revoke')).toBe(true);
    expect(await raw.exists('to-revoke')).toBe(0);
    expect(await raw.zscore('scheduled_task_id_by_time', 'to-revoke')).toBeNull();
    expect(await scheduler.revoke('to-revoke')).toBe(false);
    expect(await scheduler.revoke('never-existed')).toBe(false);
  });
});

describe.skipIf(skip)('RedisStore with a key prefix on the shared Redis', () => {
  const prefix = uniquePrefix('store');
  let store: RedisStore;
  let raw: Redis;
  beforeAll(() => {
    store = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: prefix });
    raw = new Redis((shared as RedisService).urlFor(0));
  });
  afterAll(async () => {
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await store.close();
  });

  it('puts every key under the prefix', async () => {
    await store.add([newJob('t.a', [1], 100, 'p1')]);
    expect(await raw.get(`${prefix}p1`)).toContain('"t.a"');
    expect(await raw.zscore(`${prefix}scheduled_task_id_by_time`, 'p1')).toBe('100');
    expect(await raw.exists('p1')).toBe(0);
  });

  it('a key of ours holding another type (another program wrote it) is one line that says so, and changes nothing', async () => {
    const tagKey = `${prefix}celery_longterm_scheduler:tag:wt`;
    await raw.set(tagKey, 'not a set');
    const attempts = [
      () => store.list({ limit: 5, tags: { all: ['wt'] } }),
      () => store.removeWhere({ tags: { all: ['wt'] } }),
      () => store.countWhere({ tags: { all: ['wt'] } }),
    ];
    for (const attempt of attempts) {
      const err = (await attempt().catch((e: unknown) => e)) as Error;
      expect(err.message).toMatch(/^WRONGTYPE: a key of the long-term scheduler store \(Redis\) at redis:\/\/127\.0\.0\.1:\d+\/0 holds another kind of value/);
      expect(err.message).toMatch(/its own database or key prefix$/);
      expect(err.message).not.toContain('\n');
    }
    expect(await raw.get(tagKey)).toBe('not a set');
    await raw.del(tagKey);
  });

  it('refuses a second job with the same id and writes nothing of a batch that holds one', async () => {
    await store.add([newJob('t.a', [1], 100, 'dup')]);
    const before = await store.count();
    await expect(store.add([newJob('t.b', [2], 50, 'fresh-1'), newJob('t.a', [3], 200, 'dup')])).rejects.toBeInstanceOf(DuplicateJobError);
    expect(await store.count()).toEqual(before);
    expect(await raw.exists(`${prefix}fresh-1`)).toBe(0);
    expect(await raw.get(`${prefix}dup`)).toContain('[1]');
  });

  it('claims due jobs in due order, moves them in flight, and leaves future jobs alone', async () => {
    await store.add([newJob('t.c', [], 300, 'c-late'), newJob('t.c', [], 250, 'c-early'), newJob('t.c', [], 10_000, 'c-future')]);
    const claimed = await store.claimDue({ until: 400, now: 400, limit: 100, leaseMs: 60_000 });
    const ids = claimed.map((c) => c.id);
    expect(ids.indexOf('c-early')).toBeLessThan(ids.indexOf('c-late'));
    expect(ids).not.toContain('c-future');
    expect((await store.get('c-early'))?.state).toBe('in_flight');
    expect((await store.get('c-future'))?.state).toBe('scheduled');
    // a second claim finds none of them: they are leased
    const again = await store.claimDue({ until: 400, now: 400, limit: 100, leaseMs: 60_000 });
    expect(again.map((c) => c.id)).not.toContain('c-early');
    // an in-flight job cannot be revoked: it may already be on its way
    expect(await store.remove('c-early')).toBe(false);
    await store.acknowledge(claimed);
    expect(await store.get('c-early')).toBeUndefined();
    expect(await raw.exists(`${prefix}c-early`)).toBe(0);
  });

  it('claims a job again once its lease expired (its dispatcher died)', async () => {
    await store.add([newJob('t.d', [], 1000, 'lease-1')]);
    const first = await store.claimDue({ until: 1000, now: 1000, limit: 10, leaseMs: 30_000 });
    expect(first.map((c) => c.id)).toContain('lease-1');
    const during = await store.claimDue({ until: 1000, now: 1020, limit: 10, leaseMs: 30_000 });
    expect(during.map((c) => c.id)).not.toContain('lease-1');
    const after = await store.claimDue({ until: 1000, now: 1031, limit: 10, leaseMs: 30_000 });
    const reclaimed = after.find((c) => c.id === 'lease-1');
    expect(reclaimed?.entry).toContain('"t.d"');
    // the first claimant woke up late: its acknowledgement must not touch the new claim
    await store.acknowledge(first.filter((c) => c.id === 'lease-1'));
    expect((await store.get('lease-1'))?.state).toBe('in_flight');
    await store.release(first.filter((c) => c.id === 'lease-1'));
    expect((await store.get('lease-1'))?.state).toBe('in_flight');
    await store.acknowledge([reclaimed!]);
    expect(await store.get('lease-1')).toBeUndefined();
  });

  it('nextDueAt is the earliest due time or lease end, and undefined when empty', async () => {
    const other = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: `${prefix}next:` });
    try {
      expect(await other.nextDueAt()).toBeUndefined();
      await other.add([newJob('t.n', [], 900, 'n1'), newJob('t.n', [], 700, 'n2')]);
      expect(await other.nextDueAt()).toBe(700);
      await other.claimDue({ until: 700, now: 100, limit: 10, leaseMs: 5_000 });
      expect(await other.nextDueAt()).toBe(105); // n2's lease ends before n1 is due
    } finally {
      const keys = await raw.keys(`${prefix}next:*`);
      if (keys.length) await raw.del(...keys);
      await other.close();
    }
  });

  it('watch reports a job added sooner than every other, from another client', async () => {
    const other = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: `${prefix}watch:` });
    const seen: number[] = [];
    const stop = await other.watch((due) => seen.push(due));
    try {
      const writer = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: `${prefix}watch:` });
      await writer.add([newJob('t.w', [], 5000, 'w1')]);
      await writer.add([newJob('t.w', [], 6000, 'w2')]); // later than w1: no wake-up
      await writer.add([newJob('t.w', [], 4000.5, 'w3')]);
      await writer.close();
      await expect.poll(() => seen).toEqual([5000, 4000.5]);
    } finally {
      await stop();
      const keys = await raw.keys(`${prefix}watch:*`);
      if (keys.length) await raw.del(...keys);
      await other.close();
    }
  });

  it("keeps an in-flight job's id reserved, and its entry in the in-flight hash until acknowledged", async () => {
    const j = newJob('t.f', [7], 600, 'fl-1');
    await store.add([j]);
    const claimed = (await store.claimDue({ until: 600, now: 600, limit: 10, leaseMs: 60_000 })).filter((c) => c.id === 'fl-1');
    expect(claimed[0]?.entry).toBe(j.entry);
    expect(await raw.exists(`${prefix}fl-1`)).toBe(0); // moved out of its key while in flight
    expect(await raw.hget(`${prefix}celery_longterm_scheduler:in_flight_entries`, 'fl-1')).toBe(j.entry);
    expect(await store.get('fl-1')).toEqual({ id: 'fl-1', dueAt: expect.any(Number), entry: j.entry, state: 'in_flight' });
    await expect(store.add([newJob('t.f', [8], 900, 'fl-1')])).rejects.toBeInstanceOf(DuplicateJobError);
    await store.acknowledge(claimed);
    expect(await raw.hexists(`${prefix}celery_longterm_scheduler:in_flight_entries`, 'fl-1')).toBe(0);
    expect(await store.get('fl-1')).toBeUndefined();
  });

  it('release puts claimed jobs back at their due time', async () => {
    await store.add([newJob('t.e', [], 500, 'rel-1')]);
    const claimed = await store.claimDue({ until: 500, now: 500, limit: 10, leaseMs: 60_000 });
    const mine = claimed.filter((c) => c.id === 'rel-1');
    expect(mine).toHaveLength(1);
    await store.release(mine);
    expect(await store.get('rel-1')).toMatchObject({ state: 'scheduled', dueAt: 500 });
    expect(await raw.get(`${prefix}rel-1`)).toContain('"t.e"'); // the original layout again
    expect(await store.remove('rel-1')).toBe(true);
  });

  it('bury makes a corrupt job a dead letter: its record in our dead hash, indexed by time, its key gone', async () => {
    await raw.set(`${prefix}bad-1`, 'not json {');
    await raw.zadd(`${prefix}scheduled_task_id_by_time`, 5, 'bad-1');
    const [claim] = (await store.claimDue({ until: 5, now: 5, limit: 10, leaseMs: 60_000 })).filter((c) => c.id === 'bad-1');
    expect(claim?.entry).toBe('not json {');
    await store.bury([{ claim: claim!, reason: 'corrupt', error: 'not JSON', diedAt: 6 }]);
    const record = JSON.parse((await raw.hget(`${prefix}celery_longterm_scheduler:dead`, 'bad-1')) ?? '{}') as Record<string, unknown>;
    expect(record).toEqual({ entry: 'not json {', dueAt: 5, reason: 'corrupt', error: 'not JSON', attempts: 0, diedAt: 6 });
    expect(await raw.zscore(`${prefix}celery_longterm_scheduler:dead_by_time`, 'bad-1')).toBe('6');
    expect(await raw.exists(`${prefix}bad-1`)).toBe(0);
    expect(await store.count()).toMatchObject({ inFlight: 0, dead: 1 });
  });

  it('corrupt jobs an earlier version moved aside (the corrupt hash) are read as dead letters, and folded in once', async () => {
    const p = `${prefix}fold:`;
    await raw.hset(`${p}celery_longterm_scheduler:corrupt`, {
      old: JSON.stringify({ entry: 'nope', dueAt: 3, reason: 'stored job "old" is corrupt: not JSON', movedAt: 4 }),
      weird: 'not a record',
    });
    const s = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: p });
    try {
      expect(await s.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 2 });
      expect(await s.getDead('old')).toEqual({
        id: 'old',
        entry: 'nope',
        dueAt: 3,
        reason: 'corrupt',
        error: 'stored job "old" is corrupt: not JSON',
        attempts: 0,
        diedAt: 4,
      });
      expect((await s.getDead('weird'))?.error).toContain('not a record');
      expect(await raw.exists(`${p}celery_longterm_scheduler:corrupt`)).toBe(0);
      expect(await s.purgeDead('all')).toBe(2);
    } finally {
      await s.close();
      await raw.del(`${p}celery_longterm_scheduler:dead`, `${p}celery_longterm_scheduler:dead_by_time`);
    }
  });

  it('attempts live in our own hash, never in the entry, so the Python package reads a retried job as before', async () => {
    const entry = JSON.stringify([['t.e'], { args: [1], task_id: 'att-1' }]);
    await store.add([{ id: 'att-1', dueAt: 7, entry }]);
    const [claim] = (await store.claimDue({ until: 7, now: 7, limit: 10, leaseMs: 60_000 })).filter((c) => c.id === 'att-1');
    await store.retryLater([{ claim: claim!, retryAt: 9, attempts: { count: 1, lastError: 'unroutable', firstFailedAt: 7, firstDueAt: 7 } }]);
    expect(await raw.get(`${prefix}att-1`)).toBe(entry);
    expect(await raw.zscore(`${prefix}scheduled_task_id_by_time`, 'att-1')).toBe('9');
    expect(JSON.parse((await raw.hget(`${prefix}celery_longterm_scheduler:attempts`, 'att-1'))!)).toEqual({
      count: 1,
      lastError: 'unroutable',
      firstFailedAt: 7,
      firstDueAt: 7,
    });
    expect(await store.remove('att-1')).toBe(true);
    expect(await raw.hexists(`${prefix}celery_longterm_scheduler:attempts`, 'att-1')).toBe(0);
  });
});

describe.skipIf(skip)('RedisStore job keys: our own hashes, never the entry', () => {
  const pool = prefixedStores(shared, 'keyed');
  let raw: Redis;
  beforeAll(() => {
    raw = pool.raw();
  });

  /** a store on a fresh prefix, and the names of its keys */
  function fresh() {
    const { store, prefix } = pool.fresh();
    return {
      store,
      prefix,
      index: `${prefix}scheduled_task_id_by_time`,
      keys: `${prefix}celery_longterm_scheduler:job_keys`,
      keyOf: `${prefix}celery_longterm_scheduler:job_key_of`,
    };
  }

  it('stores the entry byte for byte and the key in two hashes of ours', async () => {
    const { store, prefix, keys, keyOf, index } = fresh();
    const job = newJob('t.k', [1], 100, 'k-1');
    expect(await store.addKeyed(job, 'user:7', 'reject')).toEqual({ id: 'k-1', outcome: 'added' });
    expect(await raw.get(`${prefix}k-1`)).toBe(job.entry);
    expect(await raw.hgetall(keys)).toEqual({ 'user:7': 'k-1' });
    expect(await raw.hgetall(keyOf)).toEqual({ 'k-1': 'user:7' });
    expect((await raw.keys(`${prefix}*`)).sort()).toEqual([`${prefix}k-1`, keyOf, keys, index].sort());
  });

  it('claim and remove drop the mappings of the jobs they take; a replaced job leaves none', async () => {
    const { store, keys, keyOf } = fresh();
    await store.addKeyed(newJob('t.k', [], 10, 'due'), 'A', 'reject');
    await store.addKeyed(newJob('t.k', [], 20, 'gone'), 'B', 'reject');
    await store.addKeyed(newJob('t.k', [], 30, 'old'), 'C', 'reject');
    await store.addKeyed(newJob('t.k', [], 40, 'new'), 'C', 'replace');
    await store.add([newJob('t.k', [], 5, 'plain')]);
    expect((await store.claimDue({ until: 10, now: 10, limit: 10, leaseMs: 1000 })).map((c) => c.id)).toEqual(['plain', 'due']);
    expect(await store.remove('gone')).toBe(true);
    expect(await raw.hgetall(keys)).toEqual({ C: 'new' });
    expect(await raw.hgetall(keyOf)).toEqual({ new: 'C' });
  });

  it('treats a mapping whose job was sent or revoked by the Python package (which knows no keys) as free', async () => {
    const { store, prefix, index, keys } = fresh();
    await store.addKeyed(newJob('t.k', [], 100, 'py-1'), 'K', 'reject');
    // the Python dispatcher's send: ZREM + DEL, nothing else
    await raw.zrem(index, 'py-1');
    await raw.del(`${prefix}py-1`);
    expect(await store.addKeyed(newJob('t.k', [], 200, 'py-2'), 'K', 'keep')).toEqual({ id: 'py-2', outcome: 'added' });
    expect(await raw.hget(keys, 'K')).toBe('py-2');
    expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
  });

  it('a job re-added under an id whose earlier job left a stale mapping holds no key', async () => {
    const { store, prefix, index, keyOf } = fresh();
    await store.addKeyed(newJob('t.k', [], 100, 'again'), 'K', 'reject');
    await raw.zrem(index, 'again');
    await raw.del(`${prefix}again`);
    await store.add([newJob('t.k', [], 150, 'again')]); // plain add: no key
    expect(await raw.hget(keyOf, 'again')).toBeNull();
    expect(await store.addKeyed(newJob('t.k', [], 200, 'other'), 'K', 'reject')).toEqual({ id: 'other', outcome: 'added' });
    expect((await store.get('again'))?.state).toBe('scheduled');
  });

  it('a claim with no job key in use creates no key hash', async () => {
    const { store, keys, keyOf } = fresh();
    await store.add([newJob('t.k', [], 1, 'nk-1'), newJob('t.k', [], 2, 'nk-2')]);
    expect((await store.claimDue({ until: 5, now: 5, limit: 10, leaseMs: 1000 })).length).toBe(2);
    expect(await raw.exists(keys, keyOf)).toBe(0);
  });
});

describe.skipIf(skip)('RedisStore tags: a hash and one set per tag of ours, never the entry', () => {
  let raw: Redis;
  const stores: RedisStore[] = [];
  const prefixes: string[] = [];
  beforeAll(() => {
    raw = new Redis((shared as RedisService).urlFor(0));
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    for (const p of prefixes) {
      const keys = await raw.keys(`${p}*`);
      if (keys.length) await raw.del(...keys);
    }
    raw.disconnect();
  });

  /** a store on a fresh prefix, and the names of its keys */
  function fresh() {
    const prefix = uniquePrefix('tags');
    prefixes.push(prefix);
    const store = new RedisStore((shared as RedisService).urlFor(0), { keyPrefix: prefix });
    stores.push(store);
    return {
      store,
      prefix,
      index: `${prefix}scheduled_task_id_by_time`,
      tags: `${prefix}celery_longterm_scheduler:tags`,
      tag: (t: string) => `${prefix}celery_longterm_scheduler:tag:${t}`,
      dead: `${prefix}celery_longterm_scheduler:dead`,
      /** every tag key of the store: the hash and the sets */
      tagKeys: async () => (await raw.keys(`${prefix}celery_longterm_scheduler:tag*`)).sort(),
    };
  }
  const tagged = (id: string, dueAt: number, tags: string[]) => ({ ...newJob('t.tag', [id], dueAt, id), tags });

  it('keeps each tagged job in the tags hash (id -> JSON list) and in one set per tag; the entry is byte for byte the untagged one', async () => {
    const { store, prefix, index, tags, tag, tagKeys } = fresh();
    const t1 = tagged('t1', 10, ['tenant:42', 'invoice']);
    await store.add([t1, tagged('t2', 20, ['invoice']), newJob('t.tag', ['t3'], 30, 't3')]);
    expect(await raw.get(`${prefix}t1`)).toBe(newJob('t.tag', ['t1'], 10, 't1').entry);
    expect(await raw.type(tags)).toBe('hash');
    expect(await raw.hgetall(tags)).toEqual({ t1: '["tenant:42","invoice"]', t2: '["invoice"]' });
    expect(await raw.type(tag('invoice'))).toBe('set');
    expect((await raw.smembers(tag('invoice'))).sort()).toEqual(['t1', 't2']);
    expect(await raw.smembers(tag('tenant:42'))).toEqual(['t1']);
    expect(await tagKeys()).toEqual([tags, tag('invoice'), tag('tenant:42')].sort());
    expect((await raw.keys(`${prefix}*`)).sort()).toEqual([`${prefix}t1`, `${prefix}t2`, `${prefix}t3`, index, ...(await tagKeys())].sort());
    // an index can serve a search: the set's members in due order, by their scores in the index
    expect(await raw.zmscore(index, 't2', 't1')).toEqual(['20', '10']);
  });

  it('claiming, release and reschedule leave the keys as they are; acknowledge deletes them, sets and hash too', async () => {
    const { store, tags, tag, tagKeys } = fresh();
    await store.add([tagged('a', 10, ['x', 'y']), tagged('b', 10, ['y']), newJob('t.tag', ['c'], 10, 'c')]);
    expect(await store.reschedule('b', 11)).toBe(true);
    const before = await raw.hgetall(tags);
    const claims = await store.claimDue({ until: 20, now: 20, limit: 10, leaseMs: 60_000 });
    expect(claims).toHaveLength(3);
    expect(await raw.hgetall(tags)).toEqual(before);
    expect((await store.get('a'))?.tags).toEqual(['x', 'y']);
    await store.release(claims.filter((c) => c.id === 'b'));
    expect(await raw.sismember(tag('y'), 'b')).toBe(1);
    await store.acknowledge(claims.filter((c) => c.id !== 'b'));
    expect(await raw.hgetall(tags)).toEqual({ b: '["y"]' });
    expect(await raw.smembers(tag('y'))).toEqual(['b']);
    expect(await raw.exists(tag('x'))).toBe(0);
    expect(await store.remove('b')).toBe(true);
    expect(await tagKeys()).toEqual([]);
  });

  it('a hand-off deletes the tags of the jobs it sends, and only theirs', async () => {
    const { store, prefix, tags, tag, tagKeys } = fresh();
    await store.add([tagged('h1', 10, ['send']), newJob('t.tag', ['h2'], 10, 'h2'), tagged('h3', 10_000, ['send'])]);
    const claims = await store.claimDue({ until: 10, now: 10, limit: 10, leaseMs: 60_000 });
    const { db } = await store.redisLocation();
    const queue = `${prefix}queue`;
    expect(
      await store.handOff(
        claims,
        claims.map((c) => [{ db, key: queue, value: `message of ${c.id}` }]),
      ),
    ).toEqual([true, true]);
    expect(await raw.llen(queue)).toBe(2);
    expect(await raw.hgetall(tags)).toEqual({ h3: '["send"]' });
    expect(await raw.smembers(tag('send'))).toEqual(['h3']);
    expect(await store.remove('h3')).toBe(true);
    expect(await tagKeys()).toEqual([]);
  });

  it('acknowledges more than a chunk (1,000) of tagged jobs in one call, leaving no tag key', async () => {
    const { store, tagKeys } = fresh();
    const jobs = Array.from({ length: 2100 }, (_, i) => tagged(`m${i}`, 10, [`n${i % 7}`, 'all']));
    expect(await store.add(jobs, { duplicates: 'skip' })).toBe(2100);
    expect(await tagKeys()).toHaveLength(9);
    const claims = await store.claimDue({ until: 10, now: 10, limit: 3000, leaseMs: 60_000 });
    expect(claims).toHaveLength(2100);
    await store.acknowledge(claims);
    expect(await tagKeys()).toEqual([]);
  });

  it('bury moves the tags into the dead letter record; reviving puts them back; the id reused meanwhile keeps its own', async () => {
    const { store, tags, tag, dead, tagKeys } = fresh();
    const odd = ['a/b', 'ünï 😀', 'q"uote\\'];
    await store.add([tagged('d1', 10, odd), newJob('t.tag', ['d2'], 10, 'd2')]);
    const claims = await store.claimDue({ until: 10, now: 10, limit: 10, leaseMs: 60_000 });
    await store.bury(claims.map((c) => ({ claim: c, reason: 'rejected' as const, error: 'no', diedAt: 11 })));
    expect(await tagKeys()).toEqual([]);
    const record = JSON.parse((await raw.hget(dead, 'd1'))!) as Record<string, unknown>;
    expect(record).toEqual({ entry: newJob('t.tag', ['d1'], 10, 'd1').entry, dueAt: 10, reason: 'rejected', error: 'no', attempts: 0, diedAt: 11, tags: odd });
    expect(JSON.parse((await raw.hget(dead, 'd2'))!)).not.toHaveProperty('tags');
    expect((await store.getDead('d1'))?.tags).toEqual(odd);
    expect(await store.getDead('d2')).not.toHaveProperty('tags');

    await store.add([tagged('d1', 20, ['new'])]);
    expect(await raw.hgetall(tags)).toEqual({ d1: '["new"]' });
    expect((await store.getDead('d1'))?.tags).toEqual(odd);
    expect(await store.reviveDead(['d1', 'd2'], 30)).toEqual(['id_taken', 'scheduled']);
    expect(await store.remove('d1')).toBe(true);
    expect(await tagKeys()).toEqual([]);
    expect(await store.reviveDead(['d1'], 30)).toEqual(['scheduled']);
    expect((await store.get('d1'))?.tags).toEqual(odd);
    expect(await store.get('d2')).not.toHaveProperty('tags');
    for (const t of odd) expect(await raw.smembers(tag(t))).toEqual(['d1']);
    expect(await store.remove('d1')).toBe(true);
    expect(await tagKeys()).toEqual([]);
  });

  it('an addKeyed replace deletes the replaced job’s tags', async () => {
    const { store, tags, tag } = fresh();
    await store.addKeyed(tagged('k1', 10, ['old', 'both']), 'K', 'reject');
    await store.addKeyed(tagged('k2', 10, ['both']), 'K', 'replace');
    expect(await raw.hgetall(tags)).toEqual({ k2: '["both"]' });
    expect(await raw.exists(tag('old'))).toBe(0);
    expect(await raw.smembers(tag('both'))).toEqual(['k2']);
  });

  it('reads an entry the Python package wrote (no tags) as before, and creates no tag key for it', async () => {
    const { store, prefix, index, tagKeys } = fresh();
    const entry = JSON.stringify([['t.py'], { args: [1], task_id: 'py-1' }]);
    await raw.set(`${prefix}py-1`, entry);
    await raw.zadd(index, 10, 'py-1');
    expect(await store.get('py-1')).toEqual({ id: 'py-1', dueAt: 10, entry, state: 'scheduled' });
    expect((await store.list({ limit: 10 })).jobs).toEqual([{ id: 'py-1', dueAt: 10, entry, state: 'scheduled' }]);
    const claims = await store.claimDue({ until: 10, now: 10, limit: 10, leaseMs: 60_000 });
    expect(claims.map((c) => c.entry)).toEqual([entry]);
    await store.acknowledge(claims);
    expect(await tagKeys()).toEqual([]);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('tags a job the Python package sent (ZREM + DEL) left behind go when its id is added again', async () => {
    const { store, prefix, index, tags, tagKeys } = fresh();
    await store.add([tagged('again', 10, ['stale'])]);
    await raw.zrem(index, 'again');
    await raw.del(`${prefix}again`);
    expect(await raw.hget(tags, 'again')).toBe('["stale"]');
    await store.add([newJob('t.tag', ['again'], 20, 'again')]);
    expect(await store.get('again')).not.toHaveProperty('tags');
    expect(await tagKeys()).toEqual([]);
  });
});

// a Redis of its own (MONITOR sees only this store), started when these tests run
const canStartRedis = spawnSync('sh', ['-c', 'command -v redis-server']).status === 0;

describe.skipIf(skip || !canStartRedis)('RedisStore list by tags: the tag sets and the index, a bounded chunk per command', () => {
  const prefix = uniquePrefix('by-tags');
  const index = `${prefix}scheduled_task_id_by_time`;
  const tagKey = (t: string) => `${prefix}celery_longterm_scheduler:tag:${t}`;
  let server: RedisService;
  let raw: Redis;
  let store: RedisStore;
  /** what should be listed: the scheduled jobs, with their tags */
  const live = new Map<string, { dueAt: number; tags: string[] }>();

  // 6,000 jobs, three to a due time in shuffled order, then 2,500 at one due time (longer than a
  // chunk of the index walk); tags of every share: 'rare' (~1.5%: the set walk), 'half' (the
  // index walk), 'wide' (a quarter), 'late' (the latest quarter: the index walk gives up, the set
  // walk goes on)
  beforeAll(async () => {
    server = (await privateRedis()) as RedisService;
    raw = new Redis(server.urlFor(0));
    store = new RedisStore(server.urlFor(0), { keyPrefix: prefix });
    const order = Array.from({ length: 6000 }, (_, i) => (i * 2731) % 6000); // a permutation
    const jobs = [];
    for (let i = 0; i < 8500; i++) {
      const tie = i >= 6000;
      const id = tie ? `tie-${String(i - 6000).padStart(4, '0')}` : `j${String(i).padStart(4, '0')}`;
      const dueAt = tie ? 1000.5 : 1 + Math.floor((order[i] as number) / 3) / 2;
      const tags = [
        ...(i % 67 === 0 ? ['rare'] : []),
        ...(i % 2 === 0 ? ['half'] : []),
        ...(i % 4 === 1 ? ['wide'] : []),
        ...(!tie && (order[i] as number) >= 4000 ? ['late'] : []),
      ];
      live.set(id, { dueAt, tags });
      jobs.push({ ...newJob('t.by', [i], dueAt, id), ...(tags.length && { tags }) });
    }
    for (let i = 0; i < jobs.length; i += 2000) await store.add(jobs.slice(i, i + 2000));
    // in flight: not listed (their ids stay in the tag sets)
    for (const c of await store.claimDue({ until: 3, now: 3, limit: 10, leaseMs: 600_000 })) live.delete(c.id);
    // sent by the Python package (ZREM + DEL): its ids stay in the sets, never listed
    for (const id of ['j0134', 'j0200', 'tie-0010']) {
      await raw.zrem(index, id);
      await raw.del(`${prefix}${id}`);
      live.delete(id);
    }
    // ids in a set with no job at all
    await raw.sadd(tagKey('half'), 'ghost-1', 'ghost-2');
    await raw.sadd(tagKey('rare'), 'ghost-3');
    // rescheduled: listed at its new time
    expect(await store.reschedule('j0067', 0.25)).toBe(true);
    live.get('j0067')!.dueAt = 0.25;
  });
  afterAll(async () => {
    await store.close();
    raw.disconnect();
    await server.stop();
  });

  const truth = (f: { all?: string[]; any?: string[] }, from = -Infinity, to = Infinity) =>
    [...live]
      .filter(([, j]) => j.dueAt >= from && j.dueAt <= to)
      .filter(([, j]) => (f.all ?? []).every((t) => j.tags.includes(t)) && (!f.any?.length || f.any.some((t) => j.tags.includes(t))))
      .map(([id, j]) => ({ id, dueAt: j.dueAt }))
      .sort(compareDue)
      .map((j) => j.id);

  /** every page, by cursor; each full but the last (nothing changes meanwhile) */
  async function everyPage(o: { limit: number; tags: { all?: string[]; any?: string[] }; from?: number; to?: number }) {
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.list({ ...o, ...(cursor !== undefined && { cursor }) });
      ids.push(...page.jobs.map((j) => j.id));
      cursor = page.cursor;
      if (cursor !== undefined) expect(page.jobs).toHaveLength(o.limit);
    } while (cursor !== undefined);
    return ids;
  }

  /** the commands a call sends to Redis, as MONITOR sees them (name lower-cased, then the arguments) */
  async function commandsOf(call: () => Promise<unknown>): Promise<string[][]> {
    const monitor = await raw.monitor();
    const seen: string[][] = [];
    const end = `end-${Math.random()}`;
    const done = new Promise<void>((resolve) =>
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args[0]?.toLowerCase() === 'echo' && args[1] === end) resolve();
        else if (args.some((a) => a.startsWith(prefix))) seen.push([(args[0] as string).toLowerCase(), ...args.slice(1)]);
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

  it('lists the same jobs as a scan of every job would, by every way, page by page and in a range', async () => {
    expect(truth({ all: ['rare'] }).length).toBeGreaterThan(100);
    expect(truth({ all: ['rare'] })[0]).toBe('j0067');
    const filters = [
      { all: ['rare'] },
      { all: ['half'] },
      { all: ['wide'] },
      { all: ['late'] },
      { all: ['half', 'wide'] },
      { all: ['half', 'late'] },
      { any: ['rare', 'late'] },
      { any: ['half', 'nobody'] },
      { all: ['half'], any: ['rare', 'wide'] },
      { all: ['late'], any: ['half'] },
    ];
    for (const tags of filters) {
      for (const limit of [50, 1000]) expect(await everyPage({ limit, tags }), `${JSON.stringify(tags)} by ${limit}`).toEqual(truth(tags));
      expect(await everyPage({ limit: 70, tags, from: 500, to: 1000.5 }), `${JSON.stringify(tags)} in a range`).toEqual(truth(tags, 500, 1000.5));
    }
    expect(await everyPage({ limit: 100, tags: { all: ['half', 'nobody'] } })).toEqual([]);
  });

  it('a rare tag: walks its set only (SSCAN COUNT 1000, one ZMSCORE a chunk), never the index or the other jobs', async () => {
    const size = await raw.scard(tagKey('rare'));
    const commands = await commandsOf(() => store.list({ limit: 50, tags: { all: ['rare'] } }));
    const names = new Set(commands.map(([name]) => name));
    expect([...names].sort()).toEqual(['hmget', 'mget', 'scard', 'sscan', 'zcard', 'zcount', 'zmscore']);
    for (const [, ...args] of commands.filter(([name]) => name === 'sscan')) expect(args.slice(2)).toEqual(['COUNT', '1000']);
    const scored = commands.filter(([name]) => name === 'zmscore').reduce((n, c) => n + c.length - 2, 0);
    expect(scored).toBe(size); // each member once: the work grows with the tag, not the store
    expect(commands.find(([name]) => name === 'mget')!.length - 1).toBeLessThanOrEqual(51);
  });

  it('a tag on half the jobs: walks the index from the cursor until a page is found, never the whole set', async () => {
    const first = await store.list({ limit: 50, tags: { all: ['half'] } });
    const commands = await commandsOf(() => store.list({ limit: 50, tags: { all: ['half'] }, cursor: first.cursor! }));
    expect(commands.map(([name]) => name)).not.toContain('sscan');
    const ranges = commands.filter(([name]) => name === 'zrangebyscore');
    const read = ranges.reduce((n, c) => n + Number(c.at(-1)), 0);
    expect(read).toBeLessThan(500); // of 8,500 jobs, 4,250 of them tagged
    for (const c of ranges) expect(Number(c.at(-1))).toBeLessThanOrEqual(1000);
  });

  it('a tag on the latest jobs: the index walk gives up after half its set, the set walk goes on from there', async () => {
    const commands = await commandsOf(() => store.list({ limit: 50, tags: { all: ['late'] } }));
    const names = commands.map(([name]) => name);
    expect(names).toContain('zrangebyscore');
    expect(names).toContain('sscan');
    const read = commands.filter(([name]) => name === 'zrangebyscore').reduce((n, c) => n + Number(c.at(-1)), 0);
    expect(read).toBeLessThanOrEqual(2000);
  });

  it('no command reads or checks more than 1,000 members; no SMEMBERS, SINTER, SUNION, SCAN or script', async () => {
    const commands = await commandsOf(async () => {
      for (const tags of [{ all: ['wide'] }, { all: ['half', 'wide'] }, { any: ['rare', 'late'] }, { all: ['late'], any: ['half'] }]) {
        await everyPage({ limit: 1000, tags });
      }
    });
    const allowed = ['hmget', 'mget', 'scard', 'smismember', 'sscan', 'zcard', 'zcount', 'zmscore', 'zrangebyscore'];
    expect([...new Set(commands.map(([name]) => name))].filter((n) => !allowed.includes(n as string))).toEqual([]);
    for (const [name, key, ...args] of commands) {
      if (name === 'zmscore' || name === 'smismember') expect(args.length, `${name} ${key}`).toBeLessThanOrEqual(1000);
      if (name === 'sscan') expect(args.slice(1)).toEqual(['COUNT', '1000']);
      if (name === 'zrangebyscore') expect(Number(args.at(-1))).toBeLessThanOrEqual(1000);
    }
  });
});
