/**
 * The store contract: ONE suite, run unchanged against every store (memory, Redis, SQLite,
 * PostgreSQL). A new store is done when it passes. It is the executable form of src/stores/store.ts.
 *
 * Each store registers a harness in its own `*.contract.test.ts` file. `create()` makes a fresh,
 * isolated, empty store (a key prefix, a temp file, a schema); `reopen()` opens a second handle on
 * the same data, as another process would.
 *
 * The original package's contract tests (docs/original-package.md, item 6: schedule → stored under the id and indexed by
 * due time; dispatch sends due jobs and deletes them; future jobs stay; revoke deletes) are the
 * first cases; the rest pin down what the dispatcher relies on: leases, tokens, order and paging.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DuplicateJobError, ErrorCode, JobKeyTakenError, ValidationError } from '../../src/util/errors.js';
import type { NewJob } from '../../src/job/types.js';
import type { Attempts, ClaimedJob, JobKeyMode, KeyedAddResult, ScheduleStore } from '../../src/stores/store.js';
import { requireService } from '../helpers/services.js';

export interface StoreHarness {
  /** false when the backing service is missing: the suite skips locally and fails under CI=true */
  available: boolean;
  serviceName: string;
  /** a fresh, empty, isolated store */
  create(): Promise<StoreUnderTest>;
}

export interface StoreUnderTest {
  store: ScheduleStore;
  /** another handle on the same data, as another process would open it */
  reopen(): Promise<ScheduleStore>;
  /** removes what create() made (file, schema, keys) */
  destroy(): Promise<void>;
}

const T0 = 1_800_000_000; // a fixed "now", unix seconds
const LEASE = 30_000;

function job(id: string, dueAt: number, extra: Record<string, unknown> = {}): NewJob {
  return { id, dueAt, entry: JSON.stringify([['contract.task'], { task_id: id, args: [id], ...extra }]) };
}

function ids(jobs: readonly { id: string }[]): string[] {
  return jobs.map((j) => j.id);
}

export function storeContract(name: string, harness: StoreHarness): void {
  const skip = requireService(harness.available ? true : undefined, harness.serviceName);

  describe.skipIf(skip)(`store contract: ${name}`, () => {
    let sut: StoreUnderTest;
    let store: ScheduleStore;
    const extra: ScheduleStore[] = [];

    beforeEach(async () => {
      sut = await harness.create();
      store = sut.store;
    });
    afterEach(async () => {
      for (const s of extra.splice(0)) await s.close();
      await store.close();
      await sut.destroy();
    });

    async function second(): Promise<ScheduleStore> {
      const s = await sut.reopen();
      extra.push(s);
      return s;
    }

    const claimAt = (now: number, limit = 100, s = store) => s.claimDue({ until: now, now, limit, leaseMs: LEASE });

    describe('the original package (docs/original-package.md, item 6)', () => {
      it('a scheduled job is stored under its id with its due time, and counted', async () => {
        const j = job('a', T0 + 60);
        expect(await store.add([j])).toBe(1);
        expect(await store.get('a')).toEqual({ id: 'a', dueAt: T0 + 60, entry: j.entry, state: 'scheduled' });
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
      });

      it('dispatch takes due jobs and leaves future ones; acknowledged jobs are gone', async () => {
        await store.add([job('due', T0 - 1), job('now', T0), job('future', T0 + 1)]);
        const claims = await claimAt(T0);
        expect(ids(claims)).toEqual(['due', 'now']);
        await store.acknowledge(claims);
        expect(await store.get('due')).toBeUndefined();
        expect(await store.get('now')).toBeUndefined();
        expect((await store.get('future'))?.state).toBe('scheduled');
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
      });

      it('revoke deletes a scheduled job for good', async () => {
        await store.add([job('r', T0)]);
        expect(await store.remove('r')).toBe(true);
        expect(await store.get('r')).toBeUndefined();
        expect(await claimAt(T0 + 3600)).toEqual([]);
        expect(await store.remove('r')).toBe(false);
        expect(await store.remove('never-existed')).toBe(false);
      });
    });

    describe('add', () => {
      it('keeps entries byte for byte, including unicode, and fractional due times exactly', async () => {
        const j = { id: 'ünï-😀', dueAt: T0 + 0.123456, entry: JSON.stringify([['t'], { kwargs: { s: 'ß\u2028😀"\\' }, task_id: 'ünï-😀' }]) };
        await store.add([j]);
        expect(await store.get(j.id)).toEqual({ ...j, state: 'scheduled' });
      });

      it('is all or nothing: a taken id rejects the whole batch with DuplicateJobError', async () => {
        await store.add([job('taken', T0)]);
        const err = await store.add([job('new1', T0), job('taken', T0 + 5), job('new2', T0)]).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DuplicateJobError);
        expect((err as DuplicateJobError).taskId).toBe('taken');
        expect(await store.get('new1')).toBeUndefined();
        expect(await store.get('new2')).toBeUndefined();
        expect((await store.get('taken'))?.dueAt).toBe(T0);
      });

      it('rejects an id given twice in one batch', async () => {
        await expect(store.add([job('twice', T0), job('twice', T0 + 1)])).rejects.toBeInstanceOf(DuplicateJobError);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      });

      it('rejects the id of a job in flight', async () => {
        await store.add([job('busy', T0)]);
        await claimAt(T0);
        await expect(store.add([job('busy', T0 + 100)])).rejects.toBeInstanceOf(DuplicateJobError);
        expect((await store.get('busy'))?.state).toBe('in_flight');
      });

      it("duplicates: 'skip' adds the rest and leaves the existing job alone", async () => {
        await store.add([job('keep', T0)]);
        const added = await store.add([job('keep', T0 + 99, { changed: true }), job('k2', T0), job('k3', T0)], { duplicates: 'skip' });
        expect(added).toBe(2);
        expect(await store.get('keep')).toMatchObject({ dueAt: T0, entry: job('keep', T0).entry });
        expect(await store.count()).toEqual({ scheduled: 3, inFlight: 0, dead: 0 });
      });

      it('adds an empty batch as a no-op', async () => {
        expect(await store.add([])).toBe(0);
      });

      it('adds 5,000 jobs in one bulk call', async () => {
        const many = Array.from({ length: 5000 }, (_, i) => job(`bulk-${String(i).padStart(5, '0')}`, T0 + i));
        expect(await store.add(many)).toBe(5000);
        expect((await store.count()).scheduled).toBe(5000);
        expect(await store.nextDueAt()).toBe(T0);
      });
    });

    describe('removeMany', () => {
      it('deletes the scheduled ones with their keys and tags, leaves the rest, and names what it deleted', async () => {
        await store.add([job('m1', T0), job('m2', T0 + 1), { ...job('m3', T0 + 2), tags: ['t'] }, job('busy', T0 - 1)]);
        expect(await store.addKeyed(job('mk', T0 + 3), 'KEY', 'reject')).toMatchObject({ outcome: 'added' });
        const [claim] = await claimAt(T0 - 1, 1);
        expect(claim?.id).toBe('busy');
        const gone = await store.removeMany(['m1', 'm3', 'busy', 'nope', 'm1', 'mk']);
        expect(gone.sort()).toEqual(['m1', 'm3', 'mk']);
        expect(ids((await store.list({ limit: 10 })).jobs)).toEqual(['m2']);
        expect((await store.get('busy'))?.state).toBe('in_flight');
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 1, dead: 0 });
        // the key is free again, and m3 left no tags behind
        expect(await store.addKeyed(job('mk2', T0), 'KEY', 'reject')).toMatchObject({ outcome: 'added' });
        await store.add([job('m3', T0)]);
        expect((await store.get('m3'))?.tags).toBeUndefined();
        expect(await store.list({ limit: 10, tags: { all: ['t'] } })).toEqual({ jobs: [] });
        expect(await store.removeMany([])).toEqual([]);
      });

      it('removeWhere removes every scheduled match, in chunks, each once, and leaves the rest and the ones in flight', async () => {
        const t = (id: string, dueAt: number, tags: string[], extra: Record<string, unknown> = {}): NewJob => ({ ...job(id, dueAt, extra), tags });
        const matching = Array.from({ length: 23 }, (_, i) => t(`w${String(i).padStart(2, '0')}`, T0 + (i % 5), ['tenant:42']));
        await store.add([...matching, t('other', T0, ['tenant:7']), job('plain', T0), t('busy', T0 - 1, ['tenant:42']), t('late', T0 + 900, ['tenant:42'])]);
        expect(ids(await claimAt(T0 - 1, 1))).toEqual(['busy']);
        const chunks: { matched: readonly string[]; removed: readonly string[] }[] = [];
        const n = await store.removeWhere({ tags: { all: ['tenant:42'] }, to: T0 + 10 }, { batchSize: 4, onChunk: (c) => void chunks.push(c) });
        expect(n).toBe(23);
        expect(chunks.every((c) => c.matched.length >= 1 && c.matched.length <= 4)).toBe(true);
        const removed = chunks.flatMap((c) => c.removed);
        expect([...removed].sort()).toEqual(ids(matching));
        expect(chunks.flatMap((c) => c.matched).sort()).toEqual(ids(matching));
        expect(ids((await store.list({ limit: 100 })).jobs).sort()).toEqual(['late', 'other', 'plain']);
        expect((await store.get('busy'))?.state).toBe('in_flight');
        expect(await store.list({ limit: 10, tags: { all: ['tenant:42'] }, to: T0 + 10 })).toEqual({ jobs: [] });
        // nothing left to match: none removed, no chunk
        expect(await store.removeWhere({ tags: { all: ['tenant:42'] }, to: T0 + 10 }, { onChunk: () => void chunks.push({ matched: [], removed: [] }) })).toBe(
          0,
        );
        expect(chunks.flatMap((c) => c.removed)).toHaveLength(23);
        // by task, through the entry's own name
        await store.add([{ id: 'x1', dueAt: T0, entry: JSON.stringify([['other.task'], { task_id: 'x1', args: [] }]) }]);
        expect(await store.removeWhere({ task: 'other.task' })).toBe(1);
        expect(ids((await store.list({ limit: 100 })).jobs).sort()).toEqual(['late', 'other', 'plain']);
      });

      it('removeWhere stops between chunks when its signal aborts, never before the first, and checks its input', async () => {
        await store.add(Array.from({ length: 10 }, (_, i) => job(`s${i}`, T0 + i)));
        const stop = new AbortController();
        stop.abort();
        expect(await store.removeWhere({}, { batchSize: 3, signal: stop.signal })).toBe(3);
        expect((await store.count()).scheduled).toBe(7);
        for (const batchSize of [0, 1.5, 10_001, Number.NaN])
          await expect(store.removeWhere({}, { batchSize }), String(batchSize)).rejects.toThrow(/batchSize must be a whole number from 1 to 10000/);
        await expect(store.removeWhere(null as never)).rejects.toThrow(/the filter must be an object/);
        await expect(store.removeWhere({ from: Number.NaN })).rejects.toThrow(/from must be a number/);
        await expect(store.removeWhere({ tags: { all: [''] } })).rejects.toThrow(/tag/);
        expect((await store.count()).scheduled).toBe(7);
      });

      it('removes 2,500 jobs in one call', async () => {
        const many = Array.from({ length: 2500 }, (_, i) => job(`r${i}`, T0 + i));
        await store.add(many);
        expect((await store.removeMany(many.map((j) => j.id))).length).toBe(2500);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      });
    });

    describe('reschedule', () => {
      it('moves a scheduled job to a new due time, and optionally a new entry, in due order', async () => {
        await store.add([job('x', T0 + 10), job('y', T0 + 20)]);
        expect(await store.reschedule('y', T0 + 5)).toBe(true);
        expect(ids((await store.list({ limit: 10 })).jobs)).toEqual(['y', 'x']);
        const entry = job('x', 0, { args: ['new'] }).entry;
        expect(await store.reschedule('x', T0 + 1, entry)).toBe(true);
        expect(await store.get('x')).toEqual({ id: 'x', dueAt: T0 + 1, entry, state: 'scheduled' });
        expect(await store.get('y')).toMatchObject({ dueAt: T0 + 5, entry: job('y', 0).entry });
      });

      it('returns false and changes nothing for an unknown or in-flight job', async () => {
        expect(await store.reschedule('ghost', T0)).toBe(false);
        expect(await store.get('ghost')).toBeUndefined();
        await store.add([job('f', T0)]);
        const [claim] = await claimAt(T0);
        expect(await store.reschedule('f', T0 + 999)).toBe(false);
        expect((await store.get('f'))?.state).toBe('in_flight');
        await store.acknowledge([claim!]);
        expect(await store.reschedule('f', T0 + 999)).toBe(false);
        expect(await store.get('f')).toBeUndefined();
      });

      it('makes a job claimable sooner (run now) or later', async () => {
        await store.add([job('later', T0 + 3600), job('sooner', T0 - 5)]);
        await store.reschedule('later', T0);
        await store.reschedule('sooner', T0 + 3600);
        expect(ids(await claimAt(T0))).toEqual(['later']);
      });
    });

    describe('claim, lease, acknowledge, release', () => {
      it('claims in due order (due time, then id) up to the limit', async () => {
        await store.add([job('c', T0 - 1), job('b', T0 - 2), job('a2', T0 - 1), job('a1', T0 - 1), job('z', T0 - 3)]);
        const first = await claimAt(T0, 3);
        expect(ids(first)).toEqual(['z', 'b', 'a1']);
        expect(first.map((c) => c.dueAt)).toEqual([T0 - 3, T0 - 2, T0 - 1]);
        expect(first.every((c) => c.token === first[0]!.token && c.entry !== null)).toBe(true);
        expect(ids(await claimAt(T0, 3))).toEqual(['a2', 'c']);
      });

      it('claims only jobs due at or before `until`', async () => {
        await store.add([job('p', T0 + 10), job('q', T0 + 11)]);
        expect(await store.claimDue({ until: T0 + 10, now: T0, limit: 10, leaseMs: LEASE }).then(ids)).toEqual(['p']);
      });

      it('a claimed job is in flight: not claimable, not removable, not listed, counted', async () => {
        await store.add([job('j', T0)]);
        const [claim] = await claimAt(T0);
        expect(claim?.entry).toBe(job('j', T0).entry);
        expect(await claimAt(T0 + 1)).toEqual([]);
        expect(await store.remove('j')).toBe(false);
        expect((await store.list({ limit: 10 })).jobs).toEqual([]);
        expect(await store.get('j')).toMatchObject({ state: 'in_flight', entry: job('j', T0).entry });
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 1, dead: 0 });
      });

      it('release puts jobs back at their due time, entry intact', async () => {
        await store.add([job('back', T0 - 7)]);
        const claims = await claimAt(T0);
        await store.release(claims);
        expect(await store.get('back')).toEqual({ id: 'back', dueAt: T0 - 7, entry: job('back', 0).entry, state: 'scheduled' });
        expect(ids(await claimAt(T0))).toEqual(['back']);
      });

      it('an expired lease is claimed again, first, with a new token; the old holder can no longer touch it', async () => {
        await store.add([job('slow', T0), job('fresh', T0 + 100)]);
        const [old] = await claimAt(T0);
        const later = T0 + LEASE / 1000;
        const again = await claimAt(later + 100);
        expect(ids(again)).toEqual(['slow', 'fresh']);
        const retaken = again[0]!;
        expect(retaken.token).not.toBe(old!.token);
        expect(retaken.dueAt).toBeLessThanOrEqual(later);
        expect(retaken.entry).toBe(job('slow', 0).entry);
        await store.acknowledge([old!]);
        await store.release([old!]);
        await store.retryLater([{ claim: old!, retryAt: T0, attempts: { count: 1, lastError: 'x', firstFailedAt: T0, firstDueAt: T0 } }]);
        await store.bury([{ claim: old!, reason: 'corrupt', error: 'stale', diedAt: T0 }]);
        expect(await store.get('slow')).toMatchObject({ state: 'in_flight' });
        expect((await store.count()).dead).toBe(0);
        await store.acknowledge([retaken]);
        expect(await store.get('slow')).toBeUndefined();
      });

      it('renew extends a held lease and changes its token; a stale claim is left out', async () => {
        await store.add([job('long', T0), job('other', T0)]);
        const claims = await claimAt(T0);
        const renewed = await store.renew(claims, { now: T0 + 20, leaseMs: LEASE });
        expect(ids(renewed).sort()).toEqual(['long', 'other']);
        expect(renewed[0]!.token).not.toBe(claims[0]!.token);
        // past the first lease, within the renewed one: nobody can take them
        expect(await claimAt(T0 + LEASE / 1000 + 1)).toEqual([]);
        expect(await store.nextDueAt()).toBe(T0 + 20 + LEASE / 1000);
        // the old tokens no longer hold them
        expect(await store.renew(claims, { now: T0 + 21, leaseMs: LEASE })).toEqual([]);
        await store.acknowledge(claims);
        expect((await store.count()).inFlight).toBe(2);
        await store.acknowledge(renewed);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      });

      it('renew never shortens a lease', async () => {
        await store.add([job('keep-long', T0)]);
        const claims = await claimAt(T0); // lease ends at T0 + 30
        const same = await store.renew(claims, { now: T0 + 1, leaseMs: 1000 }); // would end at T0 + 2
        expect(same.map((c) => c.token)).toEqual(claims.map((c) => c.token));
        expect(await store.nextDueAt()).toBe(T0 + LEASE / 1000);
        expect(await claimAt(T0 + 5)).toEqual([]);
        await store.acknowledge(same);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      });

      it('renew leaves out a claim no longer held, even one whose lease is long enough', async () => {
        await store.add([job('settled', T0), job('held', T0)]);
        const claims = await claimAt(T0); // leases end at T0 + 30
        await store.acknowledge(claims.filter((c) => c.id === 'settled'));
        const renewed = await store.renew(claims, { now: T0 + 1, leaseMs: 1000 }); // would end at T0 + 2: not renewed
        expect(renewed).toEqual(claims.filter((c) => c.id === 'held'));
      });

      it('bury makes a claimed job a dead letter: neither scheduled nor claimable, counted as dead', async () => {
        await store.add([job('bad', T0)]);
        const [claim] = await claimAt(T0);
        await store.bury([{ claim: claim!, reason: 'corrupt', error: 'not JSON', diedAt: T0 + 1 }]);
        expect(await store.get('bad')).toBeUndefined();
        expect(await claimAt(T0 + 10 * LEASE)).toEqual([]);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 1 });
      });

      it('acknowledging an unknown claim is a no-op', async () => {
        const ghost: ClaimedJob = { id: 'ghost', dueAt: T0, entry: null, token: String(T0 + 30) };
        await store.acknowledge([ghost]);
        await store.release([ghost]);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      });

      it('racing claims from two handles never share a job and miss none', async () => {
        const other = await second();
        const n = 600;
        await store.add(Array.from({ length: n }, (_, i) => job(`race-${i}`, T0 - (i % 7))));
        const seen: string[] = [];
        async function drain(s: ScheduleStore): Promise<void> {
          for (;;) {
            const got = await claimAt(T0, 25, s);
            if (got.length === 0) return;
            seen.push(...ids(got));
            await s.acknowledge(got);
          }
        }
        await Promise.all([drain(store), drain(other), drain(store), drain(other)]);
        expect(seen.length).toBe(n);
        expect(new Set(seen).size).toBe(n);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      });
    });

    describe('list', () => {
      it('pages scheduled jobs in due order with a cursor, ties broken by id', async () => {
        const all = Array.from({ length: 25 }, (_, i) => job(`l${String(24 - i).padStart(2, '0')}`, T0 + Math.floor(i / 5)));
        await store.add(all);
        const expected = [...all].sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : 1)).map((j) => j.id);
        const got: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await store.list({ limit: 10, cursor });
          expect(page.jobs.length).toBeLessThanOrEqual(10);
          expect(page.jobs.every((j) => j.state === 'scheduled')).toBe(true);
          got.push(...ids(page.jobs));
          cursor = page.cursor;
          pages++;
        } while (cursor !== undefined);
        expect(pages).toBe(3);
        expect(got).toEqual(expected);
      });

      it('filters by due time, both ends inclusive, and gives no cursor on the last page', async () => {
        await store.add([job('e1', T0), job('e2', T0 + 10), job('e3', T0 + 20), job('e4', T0 + 30)]);
        const page = await store.list({ from: T0 + 10, to: T0 + 20, limit: 2 });
        expect(ids(page.jobs)).toEqual(['e2', 'e3']);
        expect(page.cursor).toBeUndefined();
        expect(page.jobs[0]).toEqual({ id: 'e2', dueAt: T0 + 10, entry: job('e2', 0).entry, state: 'scheduled' });
        const first = await store.list({ from: T0 + 10, limit: 1 });
        expect(ids(first.jobs)).toEqual(['e2']);
        expect(ids((await store.list({ from: T0 + 10, limit: 5, cursor: first.cursor })).jobs)).toEqual(['e3', 'e4']);
      });

      it('a page survives jobs added or removed between pages', async () => {
        await store.add([job('m1', T0 + 1), job('m2', T0 + 2), job('m3', T0 + 3)]);
        const first = await store.list({ limit: 1 });
        await store.remove('m1');
        await store.add([job('m0', T0)]);
        expect(ids((await store.list({ limit: 10, cursor: first.cursor })).jobs)).toEqual(['m2', 'm3']);
      });

      it('rejects a cursor it did not make with ValidationError', async () => {
        await expect(store.list({ limit: 1, cursor: 'garbage' })).rejects.toBeInstanceOf(ValidationError);
      });
    });

    describe('next due time and wake-up', () => {
      it('nextDueAt: undefined when empty, else the earliest due time or lease end', async () => {
        expect(await store.nextDueAt()).toBeUndefined();
        await store.add([job('n1', T0 + 50), job('n2', T0 + 40)]);
        expect(await store.nextDueAt()).toBe(T0 + 40);
        await store.claimDue({ until: T0 + 45, now: T0, limit: 1, leaseMs: 1000 });
        expect(await store.nextDueAt()).toBe(T0 + 1);
      });

      it('watch: tells every handle when a job due before all others is added, and only then', async () => {
        if (!store.watch) return; // polled stores have no watch; the daemon polls them
        const other = await second();
        const heard: number[] = [];
        const stop = await other.watch!((dueAt) => heard.push(dueAt));
        try {
          await store.add([job('w1', T0 + 100)]);
          await waitFor(() => heard.length >= 1);
          await store.add([job('w2', T0 + 200)]); // not sooner
          await store.add([job('w3', T0 + 50)]);
          await waitFor(() => heard.length >= 2);
          await new Promise((r) => setTimeout(r, 100));
          expect(heard).toEqual([T0 + 100, T0 + 50]);
        } finally {
          await stop();
        }
      });
    });

    describe('job keys', () => {
      /** The id of the scheduled job holding `key` (asserts that one does; changes nothing). */
      async function holderOf(key: string, s = store): Promise<string> {
        const err = await s.addKeyed(job('probe-never-added', T0), key, 'reject').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(JobKeyTakenError);
        return (err as JobKeyTakenError).taskId;
      }

      it("added: a free key adds the job, which then holds the key; 'reject' throws JobKeyTakenError and adds nothing", async () => {
        const j = job('k1', T0 + 10);
        expect(await store.addKeyed(j, 'K', 'reject')).toEqual({ id: 'k1', outcome: 'added' });
        expect(await store.get('k1')).toEqual({ id: 'k1', dueAt: T0 + 10, entry: j.entry, state: 'scheduled', key: 'K' });
        const err = await store.addKeyed(job('k2', T0 + 1), 'K', 'reject').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(JobKeyTakenError);
        expect(err).toMatchObject({ key: 'K', taskId: 'k1', code: ErrorCode.DUPLICATE_JOB });
        expect((err as Error).message).toMatch(/key "K" is already scheduled \(id "k1"\).*'replace' or 'keep'.*revoke/);
        expect(await store.get('k2')).toBeUndefined();
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
        expect(await store.nextDueAt()).toBe(T0 + 10);
      });

      it("kept: 'keep' changes nothing and names the job holding the key", async () => {
        const j = job('k1', T0 + 10);
        await store.addKeyed(j, 'K', 'keep');
        expect(await store.addKeyed(job('k2', T0 + 1, { other: true }), 'K', 'keep')).toEqual({ id: 'k1', outcome: 'kept' });
        expect(await store.get('k1')).toEqual({ id: 'k1', dueAt: T0 + 10, entry: j.entry, state: 'scheduled', key: 'K' });
        expect(await store.get('k2')).toBeUndefined();
        expect(ids((await store.list({ limit: 10 })).jobs)).toEqual(['k1']);
        expect(await holderOf('K')).toBe('k1');
      });

      it("replaced: 'replace' removes the holder and adds the new job (new id, due time and entry) holding the key", async () => {
        await store.add([job('plain', T0 + 50)]);
        await store.addKeyed(job('r1', T0 + 10), 'K', 'replace');
        const r2 = job('r2', T0 + 99, { version: 2 });
        expect(await store.addKeyed(r2, 'K', 'replace')).toEqual({ id: 'r2', outcome: 'replaced', replacedId: 'r1' });
        expect(await store.get('r1')).toBeUndefined();
        expect(await store.get('r2')).toEqual({ id: 'r2', dueAt: T0 + 99, entry: r2.entry, state: 'scheduled', key: 'K' });
        expect(ids((await store.list({ limit: 10 })).jobs)).toEqual(['plain', 'r2']);
        expect(await holderOf('K')).toBe('r2');
        expect(ids(await claimAt(T0 + 98))).toEqual(['plain']);
        expect(ids(await claimAt(T0 + 99))).toEqual(['r2']);
      });

      it("'replace' may give the new job the holder's own id", async () => {
        await store.addKeyed(job('same', T0 + 1), 'K', 'reject');
        const again = job('same', T0 + 2, { version: 2 });
        expect(await store.addKeyed(again, 'K', 'replace')).toEqual({ id: 'same', outcome: 'replaced', replacedId: 'same' });
        expect(await store.get('same')).toEqual({ id: 'same', dueAt: T0 + 2, entry: again.entry, state: 'scheduled', key: 'K' });
        expect(await holderOf('K')).toBe('same');
      });

      it('a taken id is DuplicateJobError in every mode, and changes nothing (a replaced holder stays)', async () => {
        await store.add([job('taken', T0)]);
        for (const mode of ['reject', 'keep', 'replace'] as JobKeyMode[]) {
          await expect(store.addKeyed(job('taken', T0 + 5), `free-${mode}`, mode)).rejects.toBeInstanceOf(DuplicateJobError);
        }
        await store.addKeyed(job('holder', T0 + 7), 'K', 'reject');
        await expect(store.addKeyed(job('taken', T0 + 5), 'K', 'replace')).rejects.toBeInstanceOf(DuplicateJobError);
        expect(await store.get('holder')).toMatchObject({ dueAt: T0 + 7, state: 'scheduled' });
        expect(await holderOf('K')).toBe('holder');
        expect(await store.get('taken')).toMatchObject({ dueAt: T0, entry: job('taken', 0).entry });
        // the keys a failed add named are still free
        expect(await store.addKeyed(job('f', T0), 'free-keep', 'reject')).toEqual({ id: 'f', outcome: 'added' });
        expect(await store.count()).toEqual({ scheduled: 3, inFlight: 0, dead: 0 });
      });

      it('keys are independent, and a plain add holds none', async () => {
        await store.add([job('plain', T0)]);
        expect(await store.addKeyed(job('a', T0), 'A', 'keep')).toEqual({ id: 'a', outcome: 'added' });
        expect(await store.addKeyed(job('b', T0), 'B', 'keep')).toEqual({ id: 'b', outcome: 'added' });
        expect([await holderOf('A'), await holderOf('B')]).toEqual(['a', 'b']);
        expect((await store.get('plain'))?.key).toBeUndefined();
        expect((await store.get('b'))?.key).toBe('B');
        expect(await store.addKeyed(job('p2', T0), 'plain', 'reject')).toEqual({ id: 'p2', outcome: 'added' });
      });

      it('remove frees the key', async () => {
        await store.addKeyed(job('k1', T0), 'K', 'reject');
        expect(await store.remove('k1')).toBe(true);
        expect(await store.addKeyed(job('k2', T0 + 1), 'K', 'reject')).toEqual({ id: 'k2', outcome: 'added' });
        expect(await holderOf('K')).toBe('k2');
      });

      it('claim frees the key: a new job takes it while the old one is in flight; acknowledging the old one leaves it', async () => {
        await store.addKeyed(job('c1', T0), 'K', 'reject');
        const claims = await claimAt(T0);
        expect(ids(claims)).toEqual(['c1']);
        expect(await store.addKeyed(job('c2', T0 + 100), 'K', 'reject')).toEqual({ id: 'c2', outcome: 'added' });
        expect(await store.get('c1')).toMatchObject({ state: 'in_flight' });
        expect((await store.get('c1'))?.key).toBeUndefined();
        expect((await store.get('c2'))?.key).toBe('K');
        await store.acknowledge(claims);
        expect(await store.get('c1')).toBeUndefined();
        expect(await holderOf('K')).toBe('c2');
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
      });

      it('acknowledge: once sent, the key is free', async () => {
        await store.addKeyed(job('s1', T0), 'K', 'keep');
        await store.acknowledge(await claimAt(T0));
        expect(await store.addKeyed(job('s2', T0 + 1), 'K', 'keep')).toEqual({ id: 's2', outcome: 'added' });
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
      });

      it('bury: a dead letter holds no key', async () => {
        await store.addKeyed(job('q1', T0), 'K', 'reject');
        const [claim] = await claimAt(T0);
        await store.bury([{ claim: claim!, reason: 'corrupt', error: 'corrupt', diedAt: T0 }]);
        expect(await store.addKeyed(job('q2', T0 + 1), 'K', 'reject')).toEqual({ id: 'q2', outcome: 'added' });
      });

      it('a released job never takes back a key another job took meanwhile', async () => {
        await store.addKeyed(job('r1', T0), 'K', 'reject');
        const claims = await claimAt(T0);
        await store.addKeyed(job('r2', T0 + 5), 'K', 'reject');
        await store.release(claims);
        expect(await store.get('r1')).toMatchObject({ dueAt: T0, state: 'scheduled' });
        expect(await holderOf('K')).toBe('r2');
        expect(await store.addKeyed(job('r3', T0), 'K', 'keep')).toEqual({ id: 'r2', outcome: 'kept' });
        expect(await store.remove('r1')).toBe(true);
        expect(await holderOf('K')).toBe('r2');
      });

      it('reschedule keeps the key', async () => {
        await store.addKeyed(job('m1', T0 + 10), 'K', 'reject');
        const entry = job('m1', 0, { moved: true }).entry;
        expect(await store.reschedule('m1', T0 + 500, entry)).toBe(true);
        expect(await store.addKeyed(job('m2', T0), 'K', 'keep')).toEqual({ id: 'm1', outcome: 'kept' });
        expect(await store.get('m1')).toEqual({ id: 'm1', dueAt: T0 + 500, entry, state: 'scheduled', key: 'K' });
        expect(await store.get('m2')).toBeUndefined();
      });

      it('watch: a keyed add due before every other job wakes the dispatchers', async () => {
        if (!store.watch) return;
        const heard: number[] = [];
        const stop = await store.watch((dueAt) => heard.push(dueAt));
        try {
          await store.addKeyed(job('w1', T0 + 100), 'K', 'replace');
          await waitFor(() => heard.length >= 1);
          await store.addKeyed(job('w2', T0 + 40), 'K', 'replace');
          await waitFor(() => heard.length >= 2);
          expect(heard).toEqual([T0 + 100, T0 + 40]);
        } finally {
          await stop();
        }
      });

      /** 20 concurrent addKeyed of one key from two handles */
      async function race(mode: JobKeyMode): Promise<{ jobs: string[]; settled: PromiseSettledResult<KeyedAddResult>[] }> {
        const other = await second();
        const jobs = Array.from({ length: 20 }, (_, i) => `race-${String(i).padStart(2, '0')}`);
        const settled = await Promise.allSettled(jobs.map((id, i) => (i % 2 ? other : store).addKeyed(job(id, T0 + i), 'RACE', mode)));
        return { jobs, settled };
      }
      const values = (settled: PromiseSettledResult<KeyedAddResult>[]) =>
        settled.map((r) => {
          if (r.status === 'rejected') throw r.reason;
          return r.value;
        });

      it("racing 'keep' from two handles: exactly one added, every other kept, one job stored", async () => {
        const { settled } = await race('keep');
        const results = values(settled);
        const added = results.filter((r) => r.outcome === 'added');
        expect(added.length).toBe(1);
        const winner = added[0]!.id;
        expect(results.filter((r) => r.outcome === 'kept').every((r) => r.id === winner)).toBe(true);
        expect(results.filter((r) => r.outcome === 'kept').length).toBe(19);
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
        expect(await holderOf('RACE')).toBe(winner);
      });

      it("racing 'replace' from two handles: one job stored at the end, holding the key; every other was replaced once", async () => {
        const { jobs, settled } = await race('replace');
        const results = values(settled);
        expect(results.filter((r) => r.outcome === 'added').length).toBe(1);
        expect(results.filter((r) => r.outcome === 'replaced').length).toBe(19);
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
        const last = await holderOf('RACE');
        const replaced = results.flatMap((r) => (r.replacedId === undefined ? [] : [r.replacedId]));
        expect([...replaced, last].sort()).toEqual(jobs);
        expect(await store.get(last)).toMatchObject({ state: 'scheduled' });
      });

      it("racing 'reject' from two handles: one added, every other JobKeyTakenError naming it", async () => {
        const { settled } = await race('reject');
        const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
        const failed = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
        expect(ok.length).toBe(1);
        expect(ok[0]!.outcome).toBe('added');
        expect(failed.length).toBe(19);
        expect(failed.every((e) => e instanceof JobKeyTakenError && e.taskId === ok[0]!.id)).toBe(true);
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
      });
    });

    describe('attempts and dead letters', () => {
      const tried = (count: number, at = T0): Attempts => ({ count, lastError: `refused ${count}`, firstFailedAt: at, firstDueAt: T0 });

      it('retryLater puts a refused job back at its next attempt; the next claim carries its attempts', async () => {
        await store.add([job('r', T0), job('plain', T0)]);
        const claims = await claimAt(T0);
        expect(claims.every((c) => c.attempts === undefined)).toBe(true);
        const r = claims.find((c) => c.id === 'r')!;
        await store.retryLater([{ claim: r, retryAt: T0 + 10, attempts: tried(1) }]);
        await store.acknowledge(claims.filter((c) => c.id !== 'r'));
        expect(await store.get('r')).toEqual({ id: 'r', dueAt: T0 + 10, entry: job('r', T0).entry, state: 'scheduled' });
        expect(await claimAt(T0 + 9)).toEqual([]);
        const [again] = await claimAt(T0 + 10);
        expect(again).toMatchObject({ id: 'r', dueAt: T0 + 10, attempts: tried(1) });
        await store.retryLater([{ claim: again!, retryAt: T0 + 30, attempts: tried(2) }]);
        const [third] = await claimAt(T0 + 30);
        expect(third!.attempts).toEqual(tried(2));
      });

      it('attempts survive release, reschedule and a re-claim after the lease ran out', async () => {
        await store.add([job('a', T0)]);
        const [c1] = await claimAt(T0);
        await store.retryLater([{ claim: c1!, retryAt: T0 + 1, attempts: tried(3) }]);
        const [c2] = await claimAt(T0 + 1);
        await store.release([c2!]); // the broker was down: not the job's fault
        expect(await store.reschedule('a', T0 + 5)).toBe(true);
        const [c3] = await claimAt(T0 + 5);
        expect(c3!.attempts).toEqual(tried(3));
        const [c4] = await claimAt(T0 + 5 + LEASE / 1000 + 1); // lease ran out: re-claimed
        expect(c4).toMatchObject({ id: 'a', attempts: tried(3) });
      });

      it('a job sent, revoked, or added again under the same id starts with no attempts', async () => {
        await store.add([job('s', T0), job('v', T0)]);
        const claims = await claimAt(T0);
        await store.retryLater(claims.map((claim) => ({ claim, retryAt: T0 + 1, attempts: tried(1) })));
        expect(await store.remove('v')).toBe(true);
        await store.acknowledge(await claimAt(T0 + 1));
        await store.add([job('s', T0 + 2), job('v', T0 + 2)]);
        expect((await claimAt(T0 + 2)).map((c) => c.attempts)).toEqual([undefined, undefined]);
      });

      it('bury keeps entry, reason, error, attempts and times; oldest first, paged', async () => {
        await store.add([job('d1', T0), job('d2', T0 + 1), job('d3', T0 + 2)]);
        const [c1, c2, c3] = await claimAt(T0 + 2);
        await store.bury([{ claim: c2!, reason: 'max_attempts', error: 'unroutable', diedAt: T0 + 100, attempts: tried(10, T0 + 5) }]);
        await store.bury([
          { claim: c1!, reason: 'corrupt', error: 'not JSON', diedAt: T0 + 200 },
          { claim: c3!, reason: 'rejected', error: 'too large', diedAt: T0 + 50, attempts: tried(1, T0 + 50) },
        ]);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 3 });
        expect(await store.getDead('d2')).toEqual({
          id: 'd2',
          entry: job('d2', 0).entry,
          dueAt: T0,
          reason: 'max_attempts',
          error: 'unroutable',
          attempts: 10,
          firstFailedAt: T0 + 5,
          diedAt: T0 + 100,
        });
        expect(await store.getDead('d1')).toEqual({
          id: 'd1',
          entry: job('d1', 0).entry,
          dueAt: T0,
          reason: 'corrupt',
          error: 'not JSON',
          attempts: 0,
          diedAt: T0 + 200,
        });
        expect(await store.getDead('nope')).toBeUndefined();
        const p1 = await store.deadLetters({ limit: 2 });
        expect(ids(p1.letters)).toEqual(['d3', 'd2']);
        const p2 = await store.deadLetters({ limit: 2, cursor: p1.cursor! });
        expect(ids(p2.letters)).toEqual(['d1']);
        expect(p2.cursor).toBeUndefined();
        await expect(store.deadLetters({ limit: 0 })).rejects.toBeInstanceOf(ValidationError);
      });

      it('reviveDead schedules a dead letter again (due then, no attempts); says why for the others', async () => {
        await store.add([job('x', T0), job('y', T0), job('taken', T0)]);
        const claims = await claimAt(T0);
        await store.bury(claims.map((claim) => ({ claim, reason: 'max_attempts' as const, error: 'e', diedAt: T0, attempts: tried(10) })));
        await store.add([job('taken', T0 + 7)]); // the id was scheduled again meanwhile
        expect(await store.reviveDead(['x', 'nope', 'taken', 'x'], T0 + 60)).toEqual(['scheduled', 'not_dead', 'id_taken', 'not_dead']);
        expect(await store.get('x')).toEqual({ id: 'x', dueAt: T0 + 60, entry: job('x', 0).entry, state: 'scheduled' });
        expect(await store.count()).toEqual({ scheduled: 2, inFlight: 0, dead: 2 });
        const back = (await claimAt(T0 + 60)).find((c) => c.id === 'x');
        expect(back).toMatchObject({ id: 'x', dueAt: T0 + 60 });
        expect(back!.attempts).toBeUndefined();
        expect(ids((await store.deadLetters({ limit: 10 })).letters).sort()).toEqual(['taken', 'y']);
      });

      it('reviveDead wakes the dispatchers when the revived job is due first', async () => {
        await store.add([job('w', T0)]);
        await store.bury([{ claim: (await claimAt(T0))[0]!, reason: 'corrupt', error: 'e', diedAt: T0 }]);
        const heard: number[] = [];
        const stop = await store.watch?.((d) => heard.push(d));
        if (!stop) return; // a store without wake-ups is polled
        try {
          await store.reviveDead(['w'], T0 + 1);
          await waitFor(() => heard.length > 0);
          expect(heard).toEqual([T0 + 1]);
        } finally {
          await stop();
        }
      });

      it('purgeDead deletes by id or all; a dead id is free to reuse throughout', async () => {
        await store.add([job('p1', T0), job('p2', T0), job('p3', T0)]);
        await store.bury((await claimAt(T0)).map((claim) => ({ claim, reason: 'rejected' as const, error: 'e', diedAt: T0 })));
        await store.add([job('p1', T0 + 5)]); // a dead letter holds no id
        expect(await store.purgeDead(['p1', 'nope', 'p1'])).toBe(1);
        expect((await store.get('p1'))?.state).toBe('scheduled');
        expect(await store.purgeDead('all')).toBe(2);
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
        expect(await store.purgeDead('all')).toBe(0);
      });

      it('a burial or retry by a claim that lost its lease changes nothing', async () => {
        await store.add([job('l', T0)]);
        const [old] = await claimAt(T0);
        const [now] = await claimAt(T0 + LEASE / 1000 + 1);
        await store.bury([{ claim: old!, reason: 'corrupt', error: 'e', diedAt: T0 }]);
        await store.retryLater([{ claim: old!, retryAt: T0, attempts: tried(1) }]);
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 1, dead: 0 });
        await store.acknowledge([now!]);
      });
    });

    describe('tags', () => {
      const tagged = (id: string, dueAt: number, tags: string[]): NewJob => ({ ...job(id, dueAt), tags });

      it('are stored with the job, shown by get and list (absent when a job has none), never in the entry', async () => {
        await store.add([tagged('t1', T0 + 1, ['tenant:42', 'invoice']), job('t2', T0 + 2), tagged('t3', T0 + 3, ['ünï 😀'])]);
        expect(await store.get('t1')).toEqual({ id: 't1', dueAt: T0 + 1, entry: job('t1', T0 + 1).entry, state: 'scheduled', tags: ['tenant:42', 'invoice'] });
        expect(await store.get('t2')).toEqual({ id: 't2', dueAt: T0 + 2, entry: job('t2', T0 + 2).entry, state: 'scheduled' });
        const page = await store.list({ limit: 10 });
        expect(page.jobs.map((j) => [j.id, j.tags])).toEqual([
          ['t1', ['tenant:42', 'invoice']],
          ['t2', undefined],
          ['t3', ['ünï 😀']],
        ]);
        expect(page.jobs[0]?.entry).not.toContain('tenant');
        const other = await second();
        expect((await other.get('t3'))?.tags).toEqual(['ünï 😀']);
      });

      it('stay through reschedule, claim, release and retryLater, and go with acknowledge and remove', async () => {
        await store.add([tagged('a', T0, ['x']), tagged('b', T0, ['y', 'z']), tagged('c', T0 + 5000, ['w'])]);
        expect(await store.reschedule('c', T0 + 9000)).toBe(true);
        expect((await store.get('c'))?.tags).toEqual(['w']);
        const claims = await claimAt(T0);
        expect(await store.get('a')).toMatchObject({ state: 'in_flight', tags: ['x'] });
        const a = claims.find((c) => c.id === 'a') as ClaimedJob;
        const b = claims.find((c) => c.id === 'b') as ClaimedJob;
        await store.release([a]);
        expect(await store.get('a')).toMatchObject({ state: 'scheduled', tags: ['x'] });
        await store.retryLater([{ claim: b, retryAt: T0 + 60, attempts: { count: 1, lastError: 'e', firstFailedAt: T0, firstDueAt: T0 } }]);
        expect(await store.get('b')).toMatchObject({ state: 'scheduled', dueAt: T0 + 60, tags: ['y', 'z'] });
        const again = await claimAt(T0 + 60);
        await store.acknowledge(again);
        expect(await store.remove('c')).toBe(true);
        // the same ids again, untagged: nothing of the old tags is left
        await store.add([job('a', T0), job('b', T0), job('c', T0)]);
        for (const id of ['a', 'b', 'c']) expect((await store.get(id))?.tags).toBeUndefined();
      });

      it('go with the dead letter and come back with the job when it is revived', async () => {
        await store.add([tagged('d', T0, ['tenant:1'])]);
        const [claim] = await claimAt(T0);
        await store.bury([{ claim: claim as ClaimedJob, reason: 'rejected', error: 'too big', diedAt: T0 + 1 }]);
        expect(await store.getDead('d')).toMatchObject({ id: 'd', tags: ['tenant:1'] });
        expect((await store.deadLetters({ limit: 10 })).letters.map((l) => l.tags)).toEqual([['tenant:1']]);
        // an id a dead letter holds may be scheduled again: their tags never mix
        await store.add([tagged('d', T0 + 10, ['other'])]);
        expect((await store.get('d'))?.tags).toEqual(['other']);
        expect(await store.remove('d')).toBe(true);
        expect(await store.reviveDead(['d'], T0 + 20)).toEqual(['scheduled']);
        expect(await store.get('d')).toMatchObject({ dueAt: T0 + 20, tags: ['tenant:1'] });
        await store.add([tagged('e', T0, ['gone'])]);
        const [e] = await claimAt(T0);
        await store.bury([{ claim: e as ClaimedJob, reason: 'corrupt', error: 'bad', diedAt: T0 + 2 }]);
        expect(await store.purgeDead(['e'])).toBe(1);
        await store.add([job('e', T0)]);
        expect((await store.get('e'))?.tags).toBeUndefined();
      });

      it('a keyed add stores its tags; a replace drops the replaced job’s; a skipped duplicate keeps its own', async () => {
        expect(await store.addKeyed(tagged('k1', T0, ['first']), 'K', 'reject')).toEqual({ id: 'k1', outcome: 'added' });
        expect((await store.get('k1'))?.tags).toEqual(['first']);
        expect(await store.addKeyed(tagged('k2', T0, ['second']), 'K', 'replace')).toEqual({ id: 'k2', outcome: 'replaced', replacedId: 'k1' });
        expect((await store.get('k2'))?.tags).toEqual(['second']);
        await store.add([job('k1', T0)]);
        expect((await store.get('k1'))?.tags).toBeUndefined();
        expect(await store.add([tagged('k2', T0, ['ignored']), tagged('k3', T0, ['third'])], { duplicates: 'skip' })).toBe(1);
        expect((await store.get('k2'))?.tags).toEqual(['second']);
        expect((await store.get('k3'))?.tags).toEqual(['third']);
      });

      it('list by tags: every one (all), at least one (any), both; due order, cursor paging, due range', async () => {
        await store.add([
          tagged('a', T0 + 1, ['tenant:42', 'invoice']),
          tagged('b', T0 + 2, ['tenant:7', 'invoice']),
          tagged('c', T0 + 3, ['tenant:42', 'reminder']),
          job('d', T0 + 4),
          tagged('e', T0 + 5, ['tenant:42', 'invoice']),
          tagged('f', T0 + 5, ['tenant:42']),
        ]);
        const by = async (tags: { all?: string[]; any?: string[] }, extra: Partial<{ from: number; to: number; limit: number; cursor: string }> = {}) =>
          store.list({ limit: 100, ...extra, tags });
        expect(ids((await by({ all: ['tenant:42'] })).jobs)).toEqual(['a', 'c', 'e', 'f']);
        expect(ids((await by({ all: ['tenant:42', 'invoice'] })).jobs)).toEqual(['a', 'e']);
        expect(ids((await by({ any: ['tenant:7', 'reminder'] })).jobs)).toEqual(['b', 'c']);
        expect(ids((await by({ all: ['invoice'], any: ['tenant:7', 'tenant:9'] })).jobs)).toEqual(['b']);
        expect(ids((await by({ all: ['nobody'] })).jobs)).toEqual([]);
        expect(ids((await by({ all: [], any: [] })).jobs)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
        expect(ids((await by({ all: ['tenant:42'] }, { from: T0 + 2, to: T0 + 4 })).jobs)).toEqual(['c']);
        const first = await by({ all: ['tenant:42'] }, { limit: 2 });
        expect(ids(first.jobs)).toEqual(['a', 'c']);
        expect(first.jobs[0]?.tags).toEqual(['tenant:42', 'invoice']);
        const rest = await by({ all: ['tenant:42'] }, { limit: 2, ...(first.cursor !== undefined && { cursor: first.cursor }) });
        expect(ids(rest.jobs)).toEqual(['e', 'f']);
        expect(rest.cursor).toBeUndefined();
        // in flight, sent, removed or dead: not listed; rescheduled: listed at its new time
        const [claimA] = await store.claimDue({ until: T0 + 1, now: T0 + 1, limit: 1, leaseMs: LEASE });
        expect(await store.remove('e')).toBe(true);
        expect(await store.reschedule('f', T0 - 10)).toBe(true);
        expect(ids((await by({ all: ['tenant:42'] })).jobs)).toEqual(['f', 'c']);
        await store.release([claimA as ClaimedJob]);
        expect(ids((await by({ any: ['invoice'] })).jobs)).toEqual(['a', 'b']);
        await expect(by({ all: [''] })).rejects.toBeInstanceOf(ValidationError);
        await expect(by({ any: 'invoice' as unknown as string[] })).rejects.toBeInstanceOf(ValidationError);
      });

      it('refuses tags that are not a list of distinct printable strings, changing nothing', async () => {
        const bad: unknown[] = [
          ['ok', 'ok'],
          [''],
          ['  '],
          ['a\u0000b'],
          ['x\uD800'],
          ['é'.repeat(65)],
          [7],
          'tenant:42',
          Array.from({ length: 33 }, (_, i) => `t${i}`),
        ];
        for (const tags of bad) {
          await expect(store.add([job('fine', T0), { ...job('t', T0), tags: tags as string[] }])).rejects.toBeInstanceOf(ValidationError);
          await expect(store.addKeyed({ ...job('t', T0), tags: tags as string[] }, 'K', 'reject')).rejects.toBeInstanceOf(ValidationError);
        }
        expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
        await store.add([
          tagged(
            'max',
            T0,
            Array.from({ length: 32 }, (_, i) => `t${i}`.padEnd(128, 'x')),
          ),
        ]);
        expect((await store.get('max'))?.tags).toHaveLength(32);
      });
    });

    describe('search, counts and bulk changes', () => {
      /** a job of `task` for `queue` (undefined: names none) */
      const routed = (id: string, dueAt: number, task: string, queue?: string, tags?: string[]): NewJob => ({
        id,
        dueAt,
        entry: JSON.stringify([[task], { task_id: id, args: [id], ...(queue !== undefined && { queue }) }]),
        ...(tags && { tags }),
      });
      const seed = async () => {
        await store.add([
          routed('inv-1', T0 + 10, 'app.invoice', 'billing', ['tenant:42']),
          routed('inv-2', T0 + 20, 'app.invoice', undefined, ['tenant:7']),
          routed('rem-1', T0 + 30, 'app.remind', 'mail', ['tenant:42']),
          routed('rem-2', T0 + 3600, 'app.remind', undefined),
          { id: 'bad-1', dueAt: T0 + 40, entry: 'not json {' },
          { id: 'odd-1', dueAt: T0 + 50, entry: JSON.stringify([[7], { task_id: 'odd-1', queue: 3 }]) },
        ]);
        expect((await store.addKeyed(routed('key-1', T0 + 60, 'app.invoice', 'billing'), 'invoice:42:may', 'reject')).outcome).toBe('added');
        expect((await store.addKeyed(routed('key-2', T0 + 70, 'app.remind'), 'remind:42', 'reject')).outcome).toBe('added');
      };
      const listed = async (f: Record<string, unknown>, limit = 100) => ids((await store.list({ limit, ...f })).jobs);

      it('list by task, queue (null: names none), key prefix and id prefix, alone and with tags and a due range', async () => {
        await seed();
        expect(await listed({ task: 'app.invoice' })).toEqual(['inv-1', 'inv-2', 'key-1']);
        expect(await listed({ task: 'app.remind', to: T0 + 100 })).toEqual(['rem-1', 'key-2']);
        expect(await listed({ queues: ['billing'] })).toEqual(['inv-1', 'key-1']);
        expect(await listed({ queues: [null] })).toEqual(['inv-2', 'bad-1', 'odd-1', 'key-2', 'rem-2']);
        expect(await listed({ queues: ['mail', null], task: 'app.remind' })).toEqual(['rem-1', 'key-2', 'rem-2']);
        expect(await listed({ keyPrefix: 'invoice:' })).toEqual(['key-1']);
        expect(await listed({ keyPrefix: 'i' })).toEqual(['key-1']);
        expect(await listed({ keyPrefix: 'nothing' })).toEqual([]);
        expect(await listed({ idPrefix: 'rem-' })).toEqual(['rem-1', 'rem-2']);
        expect(await listed({ idPrefix: 'inv', tags: { all: ['tenant:42'] } })).toEqual(['inv-1']);
        expect(await listed({ task: 'app.invoice', tags: { any: ['tenant:7', 'tenant:42'] }, from: T0 + 15 })).toEqual(['inv-2']);
        // a corrupt entry and one with a task name that is not a string match no task filter
        expect(await listed({ task: '7' })).toEqual([]);
        expect(await listed({ task: 'not json {' })).toEqual([]);
        // paging through a filter: each job once, in due order
        const first = await store.list({ limit: 2, queues: [null] });
        expect(ids(first.jobs)).toEqual(['inv-2', 'bad-1']);
        const next = await store.list({ limit: 2, queues: [null], ...(first.cursor !== undefined && { cursor: first.cursor }) });
        expect(ids(next.jobs)).toEqual(['odd-1', 'key-2']);
        // a job in flight is not listed; one rescheduled is listed at its new time
        await claimAt(T0 + 10, 1);
        expect(await store.reschedule('key-1', T0 + 5)).toBe(true);
        expect(await listed({ task: 'app.invoice' })).toEqual(['key-1', 'inv-2']);
        // the key goes with a removed job
        expect(await store.remove('key-1')).toBe(true);
        expect(await listed({ keyPrefix: 'invoice' })).toEqual([]);
      });

      it('a claimed job loses its key, so a key prefix no longer finds it once released', async () => {
        await seed();
        const claims = await claimAt(T0 + 60);
        expect(ids(claims)).toContain('key-1');
        await store.release(claims);
        expect(await listed({ keyPrefix: 'invoice:' })).toEqual([]);
        expect(await listed({ task: 'app.invoice' })).toEqual(['inv-1', 'inv-2', 'key-1']);
      });

      it('refuses a filter that is not one, changing nothing', async () => {
        await seed();
        for (const bad of [
          { task: '' },
          { task: 7 },
          { queues: [] },
          { queues: 'billing' },
          { queues: [''] },
          { keyPrefix: '' },
          { idPrefix: 'x\uD800' },
          { from: 'soon' },
        ])
          for (const call of [() => store.list({ limit: 10, ...(bad as object) }), () => store.countWhere(bad as never)])
            await expect(call()).rejects.toBeInstanceOf(ValidationError);
        expect(await store.countWhere({})).toBe(8);
      });

      it('countWhere counts the scheduled jobs a filter lists', async () => {
        await seed();
        expect(await store.countWhere({})).toBe(8);
        const filters: Record<string, unknown>[] = [
          { task: 'app.invoice' },
          { queues: [null] },
          { queues: ['billing', 'mail'] },
          { keyPrefix: 'remind' },
          { idPrefix: 'inv-' },
          { tags: { all: ['tenant:42'] } },
          { tags: { any: ['tenant:42', 'tenant:7'] }, to: T0 + 20 },
          { from: T0 + 30, to: T0 + 60 },
          { from: T0 + 30, to: T0 + 60, task: 'app.remind' },
          { from: T0 + 61, to: T0 + 60 },
        ];
        for (const f of filters) expect([f, await store.countWhere(f)]).toEqual([f, (await listed(f)).length]);
        await claimAt(T0 + 20);
        expect(await store.countWhere({})).toBe(6);
        expect(await store.countWhere({ task: 'app.invoice' })).toBe(1);
      });

      it('histogram counts the matching jobs per bucket, aligned to the epoch, to inclusive, empty buckets left out', async () => {
        const H = 3600;
        const base = Math.floor(T0 / H) * H; // a whole hour
        await store.add([
          routed('h1', base, 'a'),
          routed('h2', base + H - 0.5, 'a'),
          routed('h3', base + H, 'b', undefined, ['x']),
          routed('h4', base + 3 * H + 1, 'a', undefined, ['x']),
          routed('h5', base + 5 * H, 'a'),
        ]);
        expect(await store.histogram({ from: base, to: base + 5 * H, bucketSeconds: H })).toEqual([
          { start: base, count: 2 },
          { start: base + H, count: 1 },
          { start: base + 3 * H, count: 1 },
          { start: base + 5 * H, count: 1 },
        ]);
        expect(await store.histogram({ from: base + 1, to: base + 5 * H - 1, bucketSeconds: H, task: 'a' })).toEqual([
          { start: base, count: 1 },
          { start: base + 3 * H, count: 1 },
        ]);
        expect(await store.histogram({ from: base, to: base + 10 * H, bucketSeconds: 86_400, tags: { all: ['x'] } })).toEqual([
          { start: Math.floor(base / 86_400) * 86_400, count: 2 },
        ]);
        expect(await store.histogram({ from: base + 6 * H, to: base + 7 * H, bucketSeconds: 60 })).toEqual([]);
        for (const bad of [
          { from: base + 1, to: base, bucketSeconds: H },
          { from: base, to: base + H, bucketSeconds: 0 },
          { from: base, to: base + H, bucketSeconds: 1.5 },
          { from: base, to: base + 200_000, bucketSeconds: 1 },
          { from: Number.NaN, to: base, bucketSeconds: H },
        ])
          await expect(store.histogram(bad)).rejects.toBeInstanceOf(ValidationError);
      });

      it('rescheduleMany moves each scheduled job on its own, keeping its key and tags, and leaves the rest alone', async () => {
        await seed();
        const [claimed] = await claimAt(T0 + 10, 1);
        expect(claimed?.id).toBe('inv-1');
        const moved = await store.rescheduleMany([
          { id: 'inv-1', dueAt: T0 + 1000 },
          { id: 'rem-1', dueAt: T0 - 5 },
          { id: 'key-1', dueAt: T0 + 2000 },
          { id: 'nobody', dueAt: T0 },
        ]);
        expect(moved.sort()).toEqual(['key-1', 'rem-1']);
        expect(await store.get('inv-1')).toMatchObject({ state: 'in_flight' });
        expect(await store.get('rem-1')).toMatchObject({ dueAt: T0 - 5, tags: ['tenant:42'] });
        expect(await listed({ tags: { all: ['tenant:42'] } })).toEqual(['rem-1']);
        expect(await listed({ keyPrefix: 'invoice' })).toEqual(['key-1']);
        expect(await store.histogram({ from: T0 + 2000, to: T0 + 2000, bucketSeconds: 1 })).toEqual([{ start: T0 + 2000, count: 1 }]);
        expect(await store.nextDueAt()).toBe(T0 - 5);
        await expect(
          store.rescheduleMany([
            { id: 'rem-2', dueAt: T0 },
            { id: 'rem-2', dueAt: T0 + 1 },
          ]),
        ).rejects.toBeInstanceOf(ValidationError);
        await expect(
          store.rescheduleMany([
            { id: 'rem-2', dueAt: T0 },
            { id: 'inv-2', dueAt: Number.NaN },
          ]),
        ).rejects.toBeInstanceOf(ValidationError);
        expect((await store.get('rem-2'))?.dueAt).toBe(T0 + 3600);
        expect(await store.rescheduleMany([])).toEqual([]);
      });

      it('retagMany adds and removes tags of scheduled jobs, in order, and the tag index follows', async () => {
        await seed();
        const [claimed] = await claimAt(T0 + 10, 1);
        expect(claimed?.id).toBe('inv-1');
        const r = await store.retagMany(['inv-1', 'inv-2', 'rem-1', 'rem-2', 'nobody', 'inv-2'], { add: ['moved', 'tenant:42'], remove: ['tenant:7'] });
        expect(r.changed.sort()).toEqual(['inv-2', 'rem-1', 'rem-2']);
        expect(r.overLimit).toEqual([]);
        expect((await store.get('inv-1'))?.tags).toEqual(['tenant:42']);
        expect((await store.get('inv-2'))?.tags).toEqual(['moved', 'tenant:42']);
        expect((await store.get('rem-1'))?.tags).toEqual(['tenant:42', 'moved']);
        expect((await store.get('rem-2'))?.tags).toEqual(['moved', 'tenant:42']);
        expect(await listed({ tags: { all: ['tenant:42'] } })).toEqual(['inv-2', 'rem-1', 'rem-2']);
        expect(await listed({ tags: { any: ['tenant:7'] } })).toEqual([]);
        expect(await store.countWhere({ tags: { all: ['moved'] } })).toBe(3);
        // removing every tag leaves the job untagged
        expect((await store.retagMany(['rem-1'], { remove: ['tenant:42', 'moved'] })).changed).toEqual(['rem-1']);
        expect((await store.get('rem-1'))?.tags).toBeUndefined();
        expect(await listed({ tags: { any: ['moved', 'tenant:42'] } })).toEqual(['inv-2', 'rem-2']);
        // tags kept through a reschedule afterwards, and the dead letter of a retagged job keeps them
        expect(await store.reschedule('inv-2', T0 - 1)).toBe(true);
        expect(await listed({ tags: { all: ['moved'] } })).toEqual(['inv-2', 'rem-2']);
        // over the limit: left alone, named
        await store.add([{ ...job('full', T0 + 5), tags: Array.from({ length: 32 }, (_, i) => `t${i}`) }]);
        const over = await store.retagMany(['full', 'rem-2'], { add: ['one-more'] });
        expect(over).toEqual({ changed: ['rem-2'], overLimit: ['full'] });
        expect((await store.get('full'))?.tags).toHaveLength(32);
        expect((await store.retagMany(['full'], { add: ['one-more'], remove: ['t0'] })).changed).toEqual(['full']);
        expect((await store.get('full'))?.tags?.at(-1)).toBe('one-more');
      });

      it('retagMany refuses a change that is not one, changing nothing', async () => {
        await seed();
        for (const bad of [{}, { add: [] }, { add: [''] }, { add: ['a'], remove: ['a'] }, { add: 'x' }, { remove: ['\u0000'] }])
          await expect(store.retagMany(['inv-1'], bad as never)).rejects.toBeInstanceOf(ValidationError);
        expect((await store.get('inv-1'))?.tags).toEqual(['tenant:42']);
        expect(await store.retagMany([], { add: ['x'] })).toEqual({ changed: [], overLimit: [] });
      });
    });

    describe('validation, the same on every store', () => {
      it('refuses ids, entries and keys that are not well-formed Unicode, and non-finite due times, changing nothing', async () => {
        const lone = 'id-\uD800-x';
        for (const bad of [
          { id: lone, dueAt: T0, entry: job('ok', T0).entry },
          { id: 'ok', dueAt: T0, entry: `["\uDC00"]` },
          { id: '', dueAt: T0, entry: '[]' },
          { id: 'ok', dueAt: Number.NaN, entry: '[]' },
          { id: 'ok', dueAt: Infinity, entry: '[]' },
        ]) {
          await expect(store.add([job('fine', T0), bad])).rejects.toBeInstanceOf(ValidationError);
          await expect(store.addKeyed(bad, 'K', 'reject')).rejects.toBeInstanceOf(ValidationError);
        }
        await expect(store.addKeyed(job('k', T0), lone, 'reject')).rejects.toBeInstanceOf(ValidationError);
        await expect(store.addKeyed(job('k', T0), '', 'reject')).rejects.toBeInstanceOf(ValidationError);
        await store.add([job('m', T0)]);
        await expect(store.reschedule('m', Number.NaN)).rejects.toBeInstanceOf(ValidationError);
        await expect(store.reschedule('m', T0, `["\uD800"]`)).rejects.toBeInstanceOf(ValidationError);
        await expect(store.list({ limit: 0 })).rejects.toBeInstanceOf(ValidationError);
        await expect(store.list({ limit: 1.5 })).rejects.toBeInstanceOf(ValidationError);
        await expect(store.claimDue({ until: T0, now: T0, limit: 10, leaseMs: 0 })).rejects.toThrow(/leaseMs must be > 0/);
        await expect(store.renew([], { now: T0, leaseMs: 0 })).rejects.toThrow(/leaseMs must be > 0/);
        expect(await store.claimDue({ until: T0, now: T0, limit: 0, leaseMs: LEASE })).toEqual([]);
        expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
        expect(await store.get('m')).toMatchObject({ dueAt: T0, entry: job('m', T0).entry });
      });
    });

    it('a closed store rejects further calls', async () => {
      await store.close();
      await store.close(); // idempotent
      const err = await store.add([job('late', T0)]).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCode.CLOSED });
      expect(String(err)).toMatch(/closed/);
      await expect(store.count()).rejects.toMatchObject({ code: ErrorCode.CLOSED });
      // every call, even one with nothing to do or with bad input: the closed state is checked first
      const closed = { code: ErrorCode.CLOSED };
      await expect(store.add([])).rejects.toMatchObject(closed);
      await expect(store.acknowledge([])).rejects.toMatchObject(closed);
      await expect(store.renew([], { now: T0, leaseMs: LEASE })).rejects.toMatchObject(closed);
      await expect(store.reschedule('x', Number.NaN)).rejects.toMatchObject(closed);
      await expect(store.list({ limit: 0 })).rejects.toMatchObject(closed);
      await expect(store.identity()).rejects.toMatchObject(closed);
      if (store.watch) await expect(store.watch(() => {})).rejects.toMatchObject(closed);
    });
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for a wake-up');
    await new Promise((r) => setTimeout(r, 10));
  }
}
