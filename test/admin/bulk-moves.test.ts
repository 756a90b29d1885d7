/**
 * Bulk reschedule, run-now and retag by query, counts with an args match and the future-load
 * histogram, on the memory store (each store's own part is in the store contract): every match
 * moved once even when its new time is still inside the query, resuming by cursor in each
 * direction, a spread over a window (even and with jitter), jobs claimed meanwhile skipped and
 * counted, and bad moves refused before anything changes.
 */
import { describe, expect, it } from 'vitest';
import { countWhere, histogramWhere, rescheduleWhere, retagWhere, runNowWhere, type BulkProgress } from '../../src/admin/bulk.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { ValidationError } from '../../src/util/errors.js';

const T0 = 1_900_000_000;
const at = (s: number) => new Date(s * 1000);
const job = (id: string, dueAt: number, kwargs: Record<string, unknown> = {}, tags?: string[]) => ({
  id,
  dueAt,
  entry: JSON.stringify([['t.task'], { args: [id], kwargs, task_id: id }]),
  ...(tags && { tags }),
});

async function seeded(n = 100): Promise<MemoryStore> {
  const store = new MemoryStore();
  const jobs = [];
  for (let i = 0; i < n; i++) jobs.push(job(`j${String(i).padStart(3, '0')}`, T0 + i * 60, { tenant_id: i % 4 }, i % 2 ? ['odd'] : ['even']));
  await store.add(jobs);
  return store;
}

const dueOf = async (store: MemoryStore, id: string) => (await store.get(id))?.dueAt;

describe('bulk reschedule by query', () => {
  it('shifts every match once, even when the new time is still inside the query', async () => {
    const store = await seeded();
    // the range covers 100 minutes, the shift 10: most jobs land inside the range again
    const s = await rescheduleWhere(store, 'celery', { from: at(T0), to: at(T0 + 99 * 60) }, { shiftSeconds: 600 }, { batchSize: 7 });
    expect(s).toMatchObject({ matched: 100, changed: 100, skipped: 0, missing: 0 });
    expect(s.cursor).toBeUndefined();
    for (let i = 0; i < 100; i++) expect(await dueOf(store, `j${String(i).padStart(3, '0')}`)).toBe(T0 + i * 60 + 600);
    const back = await rescheduleWhere(store, 'celery', { tags: ['odd'] }, { shiftSeconds: -600 });
    expect(back.changed).toBe(50);
    expect(await dueOf(store, 'j001')).toBe(T0 + 60);
    expect(await dueOf(store, 'j002')).toBe(T0 + 120 + 600);
  });

  it('resumes an interrupted shift from its cursor without moving a job twice, later and earlier', async () => {
    for (const shift of [3000, -3000]) {
      const store = await seeded();
      const stop = new AbortController();
      const seen: BulkProgress[] = [];
      const first = await rescheduleWhere(
        store,
        'celery',
        { from: at(T0), to: at(T0 + 99 * 60) },
        { shiftSeconds: shift },
        {
          batchSize: 30,
          signal: stop.signal,
          onProgress: (p) => {
            seen.push(p);
            stop.abort();
          },
        },
      );
      expect(first.changed).toBe(30);
      expect(first.cursor).toBeDefined();
      expect(seen[0]?.total).toBe(100);
      const rest = await rescheduleWhere(store, 'celery', { from: at(T0), to: at(T0 + 99 * 60) }, { shiftSeconds: shift }, { cursor: first.cursor as string });
      expect(rest.changed).toBe(70);
      for (let i = 0; i < 100; i++) expect(await dueOf(store, `j${String(i).padStart(3, '0')}`)).toBe(T0 + i * 60 + shift);
      // a cursor of the other direction is refused
      await expect(rescheduleWhere(store, 'celery', { tags: ['odd'] }, { shiftSeconds: -shift }, { cursor: first.cursor as string })).rejects.toThrow(
        /not a cursor of this kind of reschedule/,
      );
    }
  });

  it('moves every match to one time; those already there count as unchanged, so a rerun changes nothing', async () => {
    const store = await seeded(10);
    const to = at(T0 + 300);
    const s = await rescheduleWhere(store, 'celery', { tags: ['even'] }, { to });
    expect(s).toMatchObject({ matched: 5, changed: 5, unchanged: 0 });
    expect(await dueOf(store, 'j000')).toBe(T0 + 300);
    expect(await dueOf(store, 'j001')).toBe(T0 + 60);
    const again = await rescheduleWhere(store, 'celery', { tags: ['even'] }, { to });
    expect(again).toMatchObject({ matched: 5, changed: 0, unchanged: 5 });
  });

  it('spreads a pile-up evenly over the window from `from`, in due order, or at random times with jitter', async () => {
    const store = new MemoryStore();
    const TM = Math.floor(T0 / 60) * 60; // a whole minute
    await store.add(Array.from({ length: 60 }, (_, i) => job(`p${String(i).padStart(2, '0')}`, TM)));
    const q = { from: at(TM), to: at(TM) };
    const s = await rescheduleWhere(store, 'celery', q, { spreadSeconds: 1800 });
    expect(s.changed).toBe(59); // the first stays at the window's start
    expect(s.unchanged).toBe(1);
    const times = (await store.list({ limit: 100 })).jobs.map((j) => j.dueAt);
    expect(times).toEqual(Array.from({ length: 60 }, (_, i) => TM + i * 30));
    const h = await histogramWhere(store, 'celery', { from: at(TM), to: at(TM + 1799) }, { by: 'minute' });
    expect(h.buckets.map((b) => b.count)).toEqual(Array(30).fill(2));

    const jittered = new MemoryStore();
    await jittered.add(Array.from({ length: 200 }, (_, i) => job(`q${i}`, T0 + 10)));
    await rescheduleWhere(jittered, 'celery', { from: at(T0 + 10), to: at(T0 + 10) }, { spreadSeconds: 600, jitter: true });
    const jt = (await jittered.list({ limit: 1000 })).jobs.map((j) => j.dueAt);
    expect(jt.every((t) => t >= T0 + 10 && t < T0 + 610)).toBe(true);
    expect(new Set(jt.map((t) => Math.floor((t - T0 - 10) / 60))).size).toBeGreaterThan(7); // spread over most of the ten minutes
  });

  it('skips and counts a job a dispatcher claimed after the plan, and one revoked meanwhile', async () => {
    const store = await seeded(20);
    let raced = false;
    const original = store.rescheduleMany.bind(store);
    store.rescheduleMany = async (moves) => {
      if (!raced) {
        raced = true;
        await store.claimDue({ until: T0, now: T0, limit: 1, leaseMs: 30_000 }); // j000
        await store.remove('j001');
      }
      return original(moves);
    };
    const s = await rescheduleWhere(store, 'celery', { to: at(T0 + 19 * 60) }, { shiftSeconds: 3600 });
    expect(s).toMatchObject({ matched: 20, changed: 18, skipped: 1, missing: 1 });
    expect(await store.get('j000')).toMatchObject({ state: 'in_flight' });
  });

  it('refuses bad moves and empty queries before anything changes', async () => {
    const store = await seeded(10);
    const cases: [unknown, unknown, RegExp][] = [
      [{}, { shiftSeconds: 60 }, /the query has no filter/],
      [{ tags: ['odd'] }, { spreadSeconds: 600 }, /a spread needs the range of the pile-up/],
      [{ tags: ['odd'] }, { shiftSeconds: 0 }, /shiftSeconds must be a non-zero number/],
      [{ tags: ['odd'] }, { shiftSeconds: Number.NaN }, /shiftSeconds must be a non-zero number/],
      [{ tags: ['odd'] }, { to: new Date(Number.NaN) }, /to must be a valid Date/],
      [{ tags: ['odd'] }, { to: new Date(Date.UTC(10000, 0, 1)) }, /Python's datetime|outside/],
      [{ tags: ['odd'] }, { shiftSeconds: 1e12 }, /outside|Python/],
      [{ tags: ['odd'] }, { to: at(T0), shiftSeconds: 5 }, /exactly one of/],
      [{ from: at(T0 + 60), to: at(T0) }, { shiftSeconds: 60 }, /the range is inverted/],
      [{ argsMatch: ['kwargs.=1'] }, { shiftSeconds: 60 }, /malformed/],
    ];
    const before = (await store.list({ limit: 100 })).jobs.map((j) => j.dueAt);
    for (const [query, move, message] of cases) {
      const err = await rescheduleWhere(store, 'celery', query as never, move as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
    }
    expect((await store.list({ limit: 100 })).jobs.map((j) => j.dueAt)).toEqual(before);
  });
});

describe('run now, retag, counts and the histogram by query', () => {
  it('run-now makes the future matches due now and leaves those due already', async () => {
    const store = await seeded(10);
    const now = at(T0 + 150);
    const s = await runNowWhere(store, 'celery', { tags: ['even'] }, now);
    expect(s).toMatchObject({ matched: 3, changed: 3 }); // j004, j006, j008 (j000 and j002 are due already)
    expect(await dueOf(store, 'j000')).toBe(T0);
    expect(await dueOf(store, 'j004')).toBe(T0 + 150);
    expect(await dueOf(store, 'j003')).toBe(T0 + 180);
    expect((await runNowWhere(store, 'celery', { to: at(T0 + 100) }, now)).matched).toBe(0);
  });

  it('retag by query: adds and removes, over-limit jobs named, resumable like revoke', async () => {
    const store = await seeded(10);
    await store.add([job('full', T0 + 5, {}, [...Array.from({ length: 31 }, (_, i) => `t${i}`), 'even'])]);
    const s = await retagWhere(store, 'celery', { tags: ['even'] }, { add: ['moved', 'x'], remove: ['even'] });
    expect(s).toMatchObject({ matched: 6, changed: 5, overLimit: 1, skipped: 0, missing: 0 });
    expect((await store.get('j000'))?.tags).toEqual(['moved', 'x']);
    expect((await store.get('full'))?.tags).toHaveLength(32);
    expect((await countWhere(store, 'celery', { tags: ['moved'] })).count).toBe(5);
    await expect(retagWhere(store, 'celery', { tags: ['odd'] }, {})).rejects.toThrow(/a tag change needs a tag/);
    // refused before any job is read, so also when nothing matches
    await expect(retagWhere(store, 'celery', { tags: ['nobody'] }, { add: ['a\u0001'] })).rejects.toThrow(/control character/);
    await expect(retagWhere(store, 'celery', { tags: ['nobody'] }, { add: ['x'], remove: ['x'] })).rejects.toThrow(/both added and removed/);
  });

  it('counts an args match by reading the jobs the store lets through, and says how many it read', async () => {
    const store = await seeded();
    const c = await countWhere(store, 'celery', { argsMatch: ['kwargs.tenant_id=1'], tags: ['odd'] }, 2);
    expect(c.count).toBe(25);
    expect(c.scanned).toBe(50); // the odd ones only: the tag is the store's to answer
    expect(c.sample.map((j) => j.id)).toEqual(['j001', 'j005']);
    expect((await countWhere(store, 'celery', { argsContains: '"j01' })).count).toBe(10);
  });

  it('the histogram has every bucket of the range, the busiest named, by the same query', async () => {
    const store = await seeded(100); // one a minute from T0
    const from = at(Math.floor(T0 / 3600) * 3600);
    const h = await histogramWhere(store, 'celery', { tags: ['odd'] }, { by: 'hour', from, to: at(T0 + 3 * 3600) });
    expect(h.bucketSeconds).toBe(3600);
    expect(h.total).toBe(50);
    expect(h.buckets.reduce((n, b) => n + b.count, 0)).toBe(50);
    expect(h.buckets[0]?.start).toEqual(from);
    expect(h.buckets.every((b, i) => b.start.getTime() === from.getTime() + i * 3_600_000)).toBe(true);
    expect(h.busiest[0]?.count).toBe(Math.max(...h.buckets.map((b) => b.count)));
    const scanned = await histogramWhere(store, 'celery', { argsMatch: ['kwargs.tenant_id=1'] }, { by: 'day', from, to: at(T0 + 86_400) });
    expect(scanned.total).toBe(25);
    expect(scanned.scanned).toBe(100);
    await expect(histogramWhere(store, 'celery', { tags: ['odd'] }, { by: 'hour' })).rejects.toThrow(/needs a range/);
    await expect(histogramWhere(store, 'celery', {}, { by: 'week' as never, from, to: from })).rejects.toThrow(/minute, hour or day/);
    await expect(histogramWhere(store, 'celery', {}, { by: 'minute', from, to: at(T0 + 200 * 86_400) })).rejects.toThrow(/at most 100000/);
  });
});
