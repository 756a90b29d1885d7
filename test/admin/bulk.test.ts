/**
 * Bulk actions by query on the memory store (the per-store speed is in `npm run bench`): count
 * with a sample, revoke by tag / due range / task / id prefix a page at a time, a job claimed
 * meanwhile skipped and counted, resuming by cursor, and queries that would match everything or
 * name an unknown filter refused before anything changes.
 */
import { describe, expect, it } from 'vitest';
import { countWhere, revokeWhere, type BulkProgress } from '../../src/admin/bulk.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { ValidationError } from '../../src/util/errors.js';

const T0 = 1_900_000_000;
const job = (id: string, dueAt: number, task: string, tags?: string[]) => ({
  id,
  dueAt,
  entry: JSON.stringify([[task], { args: [], task_id: id }]),
  ...(tags && { tags }),
});

async function seeded(n = 250): Promise<MemoryStore> {
  const store = new MemoryStore();
  const jobs = [];
  for (let i = 0; i < n; i++) jobs.push(job(`j${String(i).padStart(4, '0')}`, T0 + i, i % 2 ? 't.odd' : 't.even', i % 5 === 0 ? ['tenant:42'] : ['tenant:7']));
  await store.add(jobs);
  return store;
}

describe('bulk actions by query', () => {
  it('count gives the number and the first matches in due order', async () => {
    const store = await seeded();
    const c = await countWhere(store, 'celery', { tags: ['tenant:42'] }, 3);
    expect(c.count).toBe(50);
    expect(c.sample.map((j) => j.id)).toEqual(['j0000', 'j0005', 'j0010']);
    expect((await countWhere(store, 'celery', { task: 't.odd', tags: ['tenant:42'] })).count).toBe(25);
    expect((await countWhere(store, 'celery', { from: new Date((T0 + 100) * 1000), to: new Date((T0 + 109) * 1000) })).count).toBe(10);
  });

  it('revokes every match, page by page, and only those; progress carries a cursor', async () => {
    const store = await seeded();
    const seen: BulkProgress[] = [];
    const s = await revokeWhere(store, 'celery', { tags: ['tenant:42'] }, { batchSize: 20, onProgress: (p) => seen.push(p) });
    expect(s).toMatchObject({ matched: 50, changed: 50, skipped: 0 });
    expect(s.cursor).toBeUndefined();
    expect(seen.length).toBe(3);
    expect(seen[0]).toMatchObject({ matched: 20, changed: 20 });
    expect(seen[0]?.cursor).toBeDefined();
    expect((await store.count()).scheduled).toBe(200);
    expect((await countWhere(store, 'celery', { tags: ['tenant:42'] })).count).toBe(0);
    expect((await countWhere(store, 'celery', { tags: ['tenant:7'] })).count).toBe(200);
  });

  it('a job a dispatcher claims between the listing and the removal is skipped and counted, never removed', async () => {
    // a dispatcher that claims the first due job just before each removal of a page
    class Racing extends MemoryStore {
      // doRemoveMany: what removeMany and removeWhere (a revoke without an args match) call
      protected override async doRemoveMany(ids: readonly string[]): Promise<string[]> {
        await this.claimDue({ until: T0 + 1000, now: T0, limit: 1, leaseMs: 60_000 });
        return super.doRemoveMany(ids);
      }
    }
    const store = new Racing();
    await store.add(Array.from({ length: 10 }, (_, i) => job(`r${i}`, T0 + i, 't.race', ['x'])));
    const s = await revokeWhere(store, 'celery', { tags: ['x'] }, { batchSize: 5 });
    expect(s).toMatchObject({ matched: 10, changed: 8, skipped: 2 }); // r0 and r5, claimed while their page was being revoked
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 2, dead: 0 });
    expect((await store.get('r0'))?.state).toBe('in_flight');
  });

  it('stops when asked and goes on from its cursor', async () => {
    const store = await seeded(100);
    const stop = new AbortController();
    const first = await revokeWhere(store, 'celery', { task: 't.even' }, { batchSize: 10, signal: stop.signal, onProgress: () => stop.abort() });
    expect(first).toMatchObject({ matched: 10, changed: 10 });
    expect(first.cursor).toBeDefined();
    const rest = await revokeWhere(store, 'celery', { task: 't.even' }, { batchSize: 10, ...(first.cursor !== undefined && { cursor: first.cursor }) });
    expect(rest).toMatchObject({ matched: 40, changed: 40 });
    expect((await countWhere(store, 'celery', { task: 't.even' })).count).toBe(0);
    expect((await store.count()).scheduled).toBe(50);
  });

  it("a revoke by the store's indexes resumes by running again ('*'); one with an args match by its due-order cursor", async () => {
    const store = await seeded(100);
    const stop = new AbortController();
    const first = await revokeWhere(store, 'celery', { task: 't.even' }, { batchSize: 10, signal: stop.signal, onProgress: () => stop.abort() });
    expect(first).toMatchObject({ matched: 10, changed: 10, cursor: '*' });
    expect(await revokeWhere(store, 'celery', { task: 't.even' }, { cursor: '*' })).toMatchObject({ matched: 40, changed: 40 });
    const stop2 = new AbortController();
    const query = { task: 't.odd', argsContains: '[]' };
    const part = await revokeWhere(store, 'celery', query, { batchSize: 10, signal: stop2.signal, onProgress: () => stop2.abort() });
    expect(part.changed).toBeGreaterThan(0);
    expect(part.cursor).toMatch(/^\d/);
    const rest = await revokeWhere(store, 'celery', query, { cursor: part.cursor as string });
    expect(part.changed + rest.changed).toBe(50);
    expect((await store.count()).scheduled).toBe(0);
  });

  it('refuses an empty query, an unknown filter, an inverted range and a bad tag, changing nothing', async () => {
    const store = await seeded(10);
    const cases: [unknown, RegExp][] = [
      [{}, /the query has no filter, so it would match every scheduled job/],
      [{ tags: [] }, /the query has no filter/],
      [{ tenant: 42 }, /unknown filter "tenant"; the filters are from, to, task, queue, tags, anyTags, keyPrefix, idPrefix, argsContains, argsMatch/],
      [{ from: new Date((T0 + 5) * 1000), to: new Date(T0 * 1000) }, /the range is inverted/],
      [{ tags: ['a\u0000'] }, /tags\[0\] holds a control character/],
      [{ idPrefix: '' }, /idPrefix must be a non-empty string/],
    ];
    for (const [query, message] of cases) {
      const err = await revokeWhere(store, 'celery', query as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect(String((err as ValidationError).message)).toMatch(message);
    }
    await expect(revokeWhere(store, 'celery', { task: 't.odd' }, { batchSize: 0 })).rejects.toThrow(/batchSize must be a whole number from 1 to 10000/);
    expect((await store.count()).scheduled).toBe(10);
  });
});
