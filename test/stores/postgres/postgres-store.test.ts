/** What the contract suite does not cover for PostgreSQL: scale, races across processes, LISTEN/NOTIFY, the tables. */
import pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DuplicateJobError } from '../../../src/util/errors.js';
import type { NewJob } from '../../../src/job/types.js';
import { migrateSchema } from '../../../src/stores/postgres/migrations.js';
import { PostgresStore } from '../../../src/stores/postgres/postgres-store.js';
import { postgres, requireService, uniqueSchema } from '../../helpers/services.js';
import { dropSchema, sql } from '../../helpers/postgres.js';

const service = await postgres();
const skip = requireService(service, 'PostgreSQL');
afterAll(() => service?.stop());

const T0 = 1_800_000_000;
const job = (id: string, dueAt: number): NewJob => ({ id, dueAt, entry: JSON.stringify([['pg.task'], { task_id: id, args: [1, 2, 3], kwargs: {} }]) });

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(skip)('PostgreSQL store', () => {
  const url = service?.url ?? '';
  let schema: string;
  const stores: PostgresStore[] = [];
  const open = (options = {}) => {
    const s = new PostgresStore(url, { schema, ...options });
    stores.push(s);
    return s;
  };
  beforeEach(async () => {
    schema = uniqueSchema('store');
    await migrateSchema(url, { schema });
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await dropSchema(url, schema);
  });

  it('four stores claiming 5,000 jobs at once: each job exactly once', async () => {
    const n = 5000;
    await open().add(Array.from({ length: n }, (_, i) => job(`c-${i}`, T0 - (i % 13))));
    const dispatchers = [open(), open(), open(), open()];
    const seen: string[][] = dispatchers.map(() => []);
    await Promise.all(
      dispatchers.map(async (s, k) => {
        for (;;) {
          const got = await s.claimDue({ until: T0, now: T0, limit: 100, leaseMs: 30_000 });
          if (got.length === 0) return;
          seen[k]!.push(...got.map((c) => c.id));
          await s.acknowledge(got);
        }
      }),
    );
    const all = seen.flat();
    expect(all).toHaveLength(n);
    expect(new Set(all).size).toBe(n);
    expect(seen.filter((ids) => ids.length > 0).length).toBeGreaterThan(1); // they really raced
    expect(await open().count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('an add of several chunks is all or nothing: a taken id in the last chunk writes nothing', async () => {
    const store = open();
    await store.add([job('taken', T0)]);
    const many = Array.from({ length: 12_000 }, (_, i) => job(`m-${i}`, T0 + i));
    many.push(job('taken', T0 + 5));
    const err = await store.add(many).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DuplicateJobError);
    expect((err as DuplicateJobError).taskId).toBe('taken');
    expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
    many.pop();
    expect(await store.add(many)).toBe(12_000);
  });

  it("duplicates: 'skip' copes with an id twice in one batch, and across chunks", async () => {
    const store = open();
    await store.add([job('old', T0)]);
    const batch = [job('old', T0 + 1), job('d', T0), job('d', T0 + 9), ...Array.from({ length: 6000 }, (_, i) => job(`s-${i % 5500}`, T0))];
    expect(await store.add(batch, { duplicates: 'skip' })).toBe(1 + 5500);
    expect(await store.get('old')).toMatchObject({ dueAt: T0 });
    expect(await store.get('d')).toMatchObject({ dueAt: T0 });
  });

  it('keeps the claim token in the lease column; bury keeps the raw entry, reason and error in the dead table', async () => {
    const store = open();
    await store.add([job('q', T0 - 0.5)]);
    const [claim] = await store.claimDue({ until: T0, now: T0 + 0.0004, limit: 10, leaseMs: 1234 });
    expect(claim?.token).toBe(String(T0 + 1.234));
    const [row] = await sql<{ lease: number }>(url, `SELECT lease FROM "${schema}".jobs WHERE id = 'q'`);
    expect(row?.lease).toBe(Number(claim!.token));
    await store.bury([{ claim: claim!, reason: 'corrupt', error: 'not a Celery entry', diedAt: T0 + 1 }]);
    const dead = await sql(url, `SELECT id, entry, due_at, reason, error, attempts FROM "${schema}".dead`);
    expect(dead).toEqual([{ id: 'q', entry: job('q', 0).entry, due_at: T0 - 0.5, reason: 'corrupt', error: 'not a Celery entry', attempts: 0 }]);
    expect(await sql(url, `SELECT id FROM "${schema}".jobs`)).toEqual([]);
  });

  describe('tags', () => {
    const tagged = (id: string, dueAt: number, tags: string[]): NewJob => ({ ...job(id, dueAt), tags });
    const tagRows = () => sql<{ job_id: string; tag: string; pos: number }>(url, `SELECT job_id, tag, pos FROM "${schema}".job_tags ORDER BY job_id, pos`);

    it('live in job_tags (a row each, in order), never in the entry; jobs.tagged says which jobs have any', async () => {
      const store = open();
      await store.add([tagged('a', T0, ['tenant:42', 'invoice']), job('b', T0), tagged('c', T0, [])]);
      expect(await tagRows()).toEqual([
        { job_id: 'a', tag: 'tenant:42', pos: 0 },
        { job_id: 'a', tag: 'invoice', pos: 1 },
      ]);
      const jobs = await sql<{ id: string; entry: string; tagged: boolean }>(url, `SELECT id, entry, tagged FROM "${schema}".jobs ORDER BY id`);
      expect(jobs).toEqual([
        { id: 'a', entry: job('a', T0).entry, tagged: true },
        { id: 'b', entry: job('b', T0).entry, tagged: false },
        { id: 'c', entry: job('c', T0).entry, tagged: false },
      ]);
      expect((await store.get('c'))?.tags).toBeUndefined();
    });

    it('bury moves them into dead.tags, leaving no row behind; reviveDead moves them back', async () => {
      const store = open();
      await store.add([tagged('a', T0, ['z', 'y']), job('b', T0)]);
      const claims = await store.claimDue({ until: T0, now: T0, limit: 10, leaseMs: 1000 });
      await store.bury(claims.map((claim) => ({ claim, reason: 'rejected' as const, error: 'no', diedAt: T0 + 1 })));
      expect(await tagRows()).toEqual([]);
      expect(await sql(url, `SELECT id, tags FROM "${schema}".dead ORDER BY id`)).toEqual([
        { id: 'a', tags: ['z', 'y'] },
        { id: 'b', tags: null },
      ]);
      expect((await store.deadLetters({ limit: 10 })).letters.map((l) => [l.id, l.tags])).toEqual([
        ['a', ['z', 'y']],
        ['b', undefined],
      ]);
      expect(await store.reviveDead(['a', 'b'], T0 + 5)).toEqual(['scheduled', 'scheduled']);
      expect(await tagRows()).toEqual([
        { job_id: 'a', tag: 'z', pos: 0 },
        { job_id: 'a', tag: 'y', pos: 1 },
      ]);
      expect(await sql(url, `SELECT id, tagged FROM "${schema}".jobs ORDER BY id`)).toEqual([
        { id: 'a', tagged: true },
        { id: 'b', tagged: false },
      ]);
      // buried again, the new dead letter holds them (and a revive refused for a taken id keeps them)
      const [again] = await store.claimDue({ until: T0 + 5, now: T0 + 5, limit: 1, leaseMs: 1000 });
      await store.bury([{ claim: again!, reason: 'rejected', error: 'again', diedAt: T0 + 6 }]);
      await store.add([tagged('a', T0 + 7, ['live'])]);
      expect(await store.reviveDead(['a'], T0 + 8)).toEqual(['id_taken']);
      expect(await store.getDead('a')).toMatchObject({ error: 'again', tags: ['z', 'y'] });
      expect((await store.get('a'))?.tags).toEqual(['live']);
    });

    it('a stale claim acknowledges or buries nothing: the job keeps its tags', async () => {
      const store = open();
      await store.add([tagged('a', T0, ['x'])]);
      const [old] = await store.claimDue({ until: T0, now: T0, limit: 1, leaseMs: 1000 });
      const [fresh] = await store.claimDue({ until: T0, now: T0 + 2, limit: 1, leaseMs: 1000 }); // the lease expired: claimed again
      expect(fresh?.id).toBe('a');
      await store.acknowledge([old!]);
      await store.bury([{ claim: old!, reason: 'corrupt', error: 'stale', diedAt: T0 }]);
      expect(await store.get('a')).toMatchObject({ state: 'in_flight', tags: ['x'] });
      expect(await tagRows()).toHaveLength(1);
      await store.acknowledge([fresh!]);
      expect(await tagRows()).toEqual([]);
    });

    it('an add of several chunks with tags is all or nothing: a taken id in the last chunk writes no job and no tag', async () => {
      const store = open();
      await store.add([job('taken', T0)]);
      const many = Array.from({ length: 12_000 }, (_, i) => tagged(`m-${i}`, T0 + i, [`t${i % 7}`, 'all']));
      many.push(job('taken', T0 + 5));
      await expect(store.add(many)).rejects.toBeInstanceOf(DuplicateJobError);
      expect(await tagRows()).toEqual([]);
      many.pop();
      expect(await store.add(many)).toBe(12_000);
      const [n] = await sql<{ n: number }>(url, `SELECT count(*)::int AS n FROM "${schema}".job_tags`);
      expect(n?.n).toBe(24_000);
      expect((await store.get('m-11999'))?.tags).toEqual(['t1', 'all']); // 11999 % 7
    });

    it("duplicates: 'skip' stores the tags of the job it adds only: the first of an id in the batch, across chunks", async () => {
      const store = open();
      await store.add([tagged('old', T0, ['mine'])]);
      const filler = Array.from({ length: 5000 }, (_, i) => job(`f-${i}`, T0));
      const batch = [
        tagged('old', T0, ['theirs']),
        job('d', T0),
        tagged('d', T0, ['second']),
        tagged('e', T0, ['first']),
        ...filler,
        tagged('e', T0, ['later']),
      ];
      expect(await store.add(batch, { duplicates: 'skip' })).toBe(2 + 5000);
      expect((await store.get('old'))?.tags).toEqual(['mine']);
      expect((await store.get('d'))?.tags).toBeUndefined();
      expect((await store.get('e'))?.tags).toEqual(['first']);
      expect(await tagRows()).toEqual([
        { job_id: 'e', tag: 'first', pos: 0 },
        { job_id: 'old', tag: 'mine', pos: 0 },
      ]);
    });

    it('a failed keyed replace keeps the replaced job and its tags', async () => {
      const store = open();
      await store.add([job('other', T0)]);
      await store.addKeyed(tagged('k1', T0, ['kept']), 'K', 'reject');
      await expect(store.addKeyed(tagged('other', T0, ['new']), 'K', 'replace')).rejects.toBeInstanceOf(DuplicateJobError);
      expect((await store.get('k1'))?.tags).toEqual(['kept']);
      expect(await tagRows()).toEqual([{ job_id: 'k1', tag: 'kept', pos: 0 }]);
      // a replace by the same id swaps the tags
      expect(await store.addKeyed(tagged('k1', T0, ['swapped', 'too']), 'K', 'replace')).toEqual({ id: 'k1', outcome: 'replaced', replacedId: 'k1' });
      expect((await store.get('k1'))?.tags).toEqual(['swapped', 'too']);
    });

    it('reading and deleting tags by job uses job_tags_by_job_idx, searching by tag the primary key', async () => {
      const store = open();
      await store.add(Array.from({ length: 5000 }, (_, i) => tagged(`p-${i}`, T0 + i, [`tenant:${i % 100}`, 'all'])));
      const plan = async (q: string, params: unknown[]) =>
        (await sql<{ 'QUERY PLAN': string }>(url, `EXPLAIN ${q}`, params)).map((r) => r['QUERY PLAN']).join('\n');
      for (const analyzed of [false, true]) {
        if (analyzed) await sql(url, `ANALYZE "${schema}".job_tags`);
        const byJob = await plan(`DELETE FROM "${schema}".job_tags WHERE job_id = ANY (ARRAY(SELECT unnest($1::text[])))`, [['p-1', 'p-2']]);
        expect(byJob).toMatch(/job_tags_by_job_idx/);
        expect(byJob).not.toMatch(/Seq Scan on job_tags/);
        const byTag = await plan(`SELECT job_id FROM "${schema}".job_tags WHERE tag = $1`, ['tenant:7']);
        expect(byTag).toMatch(/job_tags_pkey/);
      }
    });
  });

  describe('list by tags', () => {
    const tagged = (id: string, dueAt: number, tags: string[]): NewJob => ({ ...job(id, dueAt), tags });
    const dueRows = async () =>
      (await sql<{ job_id: string; due_at: number }>(url, `SELECT DISTINCT job_id, due_at FROM "${schema}".job_tags ORDER BY job_id`)).map((r) => [
        r.job_id,
        r.due_at,
      ]);

    it("job_tags keeps each job's due time: reschedule, release and retryLater move it, a claim leaves it", async () => {
      const store = open();
      await store.add([tagged('a', T0 + 1, ['x', 'y']), tagged('b', T0 + 2, ['x']), job('c', T0 + 3)]);
      await store.addKeyed(tagged('k', T0 + 4, ['x']), 'K', 'reject');
      expect(await dueRows()).toEqual([
        ['a', T0 + 1],
        ['b', T0 + 2],
        ['k', T0 + 4],
      ]);
      expect(await store.reschedule('a', T0 + 10)).toBe(true);
      const [b, c] = await store.claimDue({ until: T0 + 3, now: T0 + 3, limit: 2, leaseMs: 1000 });
      expect([b?.id, c?.id]).toEqual(['b', 'c']);
      expect(await dueRows()).toEqual([
        ['a', T0 + 10],
        ['b', T0 + 2],
        ['k', T0 + 4],
      ]);
      await store.retryLater([{ claim: b!, retryAt: T0 + 20, attempts: { count: 1, lastError: 'e', firstFailedAt: T0, firstDueAt: T0 } }]);
      await store.release([c!]);
      expect((await store.claimDue({ until: T0 + 4, now: T0 + 4, limit: 10, leaseMs: 1000 })).map((x) => x.id)).toEqual(['c', 'k']);
      const again = await store.claimDue({ until: T0 + 4, now: T0 + 5, limit: 10, leaseMs: 1000 }); // expired: due at the lease now
      expect(again.map((x) => [x.id, x.dueAt])).toEqual([
        ['c', T0 + 5],
        ['k', T0 + 5],
      ]);
      await store.release(again);
      expect(await dueRows()).toEqual([
        ['a', T0 + 10],
        ['b', T0 + 20],
        ['k', T0 + 5],
      ]);
      expect((await store.list({ limit: 10, tags: { all: ['x'] } })).jobs.map((j) => [j.id, j.dueAt])).toEqual([
        ['k', T0 + 5],
        ['a', T0 + 10],
        ['b', T0 + 20],
      ]);
    });

    it('pages through any mix of tags exactly as a filter of the whole list would, ties and ids that extend one another included', async () => {
      const store = open();
      const vocabulary = ['red', 'green', 'blue', 'rare'];
      let seed = 7;
      const rnd = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
      const ids = ['p', 'p\u0001', 'p\u0001\u0001', 'p\u0002', 'p-', 'q', ...Array.from({ length: 1200 }, (_, i) => `j${i}`)];
      const jobs = ids.map((id) => {
        const tags = vocabulary.filter((t) => rnd() < (t === 'rare' ? 0.03 : 0.4));
        return tagged(id, T0 + Math.floor(rnd() * 40), tags); // many jobs share a due time
      });
      await store.add(jobs);
      // some in flight, some moved
      const claims = await store.claimDue({ until: T0 + 5, now: T0 + 5, limit: 60, leaseMs: 60_000 });
      await store.release(claims.slice(0, 20).map((c) => ({ ...c, dueAt: c.dueAt + 30 })));
      for (const id of ['p', 'j7', 'j8']) await store.reschedule(id, T0 + 12);
      const tagsOf = new Map(jobs.map((j) => [j.id, j.tags ?? []]));
      const everything: { id: string; dueAt: number }[] = [];
      for (let cursor: string | undefined, more = true; more;) {
        const page = await store.list({ limit: 500, ...(cursor !== undefined && { cursor }) });
        everything.push(...page.jobs);
        cursor = page.cursor;
        more = cursor !== undefined;
      }
      const filters = [
        { all: ['red'] },
        { all: ['rare'] },
        { all: ['red', 'green'] },
        { all: ['green', 'red', 'blue'] },
        { any: ['blue', 'rare'] },
        { any: ['red', 'green', 'blue'] },
        { all: ['red'], any: ['rare', 'blue'] },
        { all: ['red', 'blue'], any: ['red'] },
        { all: ['rare'], any: ['nothing'] },
        { any: ['nothing', 'rare'] },
      ];
      for (const f of filters) {
        for (const range of [{}, { from: T0 + 10, to: T0 + 30 }] as { from?: number; to?: number }[]) {
          const holds = (id: string) => {
            const t = tagsOf.get(id) ?? [];
            return (f.all ?? []).every((x) => t.includes(x)) && (!f.any || f.any.some((x) => t.includes(x)));
          };
          const inRange = (d: number) => d >= (range.from ?? -Infinity) && d <= (range.to ?? Infinity);
          const expected = everything.filter((j) => holds(j.id) && inRange(j.dueAt)).map((j) => j.id);
          const got: string[] = [];
          for (let cursor: string | undefined, more = true; more;) {
            const page = await store.list({ limit: 7, tags: f, ...range, ...(cursor !== undefined && { cursor }) });
            got.push(...page.jobs.map((j) => j.id));
            cursor = page.cursor;
            more = cursor !== undefined;
          }
          expect(got, JSON.stringify({ f, range })).toEqual(expected);
        }
      }
    });

    it('walks the tag index (a seek per step, no sort, no scan), stopping after the page, with or without statistics', async () => {
      const store = open();
      // 20,000 jobs: 'rare' on 2% (half of them 'common' too), 'common' on half, 'never' on none
      await store.add(
        Array.from({ length: 20_000 }, (_, i) =>
          tagged(`t-${i}`, T0 + ((i * 7919) % 20_000), [...(i % 100 < 2 ? ['rare'] : []), ...(i % 2 ? ['common'] : [])]),
        ),
      );
      const captured = async (tags: { all?: readonly string[]; any?: readonly string[] }) => {
        const spy = vi.spyOn(pg.Pool.prototype, 'query');
        try {
          const page = await store.list({ limit: 10, tags });
          const call = spy.mock.calls.map((c) => c as unknown[]).find((c) => typeof c[0] === 'string' && c[0].includes('WITH RECURSIVE'));
          expect(call).toBeDefined();
          const plan = (
            await sql<{ 'QUERY PLAN': string }>(url, `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ${call![0] as string}`, call![1] as unknown[])
          )
            .map((r) => r['QUERY PLAN'])
            .join('\n');
          return { page, plan, steps: Number(/Recursive Union \(actual rows=(\d+)/.exec(plan)?.[1]) };
        } finally {
          spy.mockRestore();
        }
      };
      for (const analyzed of [false, true]) {
        if (analyzed) await sql(url, `ANALYZE "${schema}".jobs; ANALYZE "${schema}".job_tags`);
        for (const [tags, found, most] of [
          [{ all: ['rare'] }, 10, 12],
          [{ all: ['common'] }, 10, 12],
          [{ all: ['common', 'rare'] }, 10, 60], // a step or two per rare job passed (about 20)
          [{ all: ['rare', 'common'] }, 10, 60],
          [{ all: ['common', 'never'] }, 0, 2], // one step: 'never' has none
          [{ any: ['rare', 'common'] }, 10, 12],
        ] as const) {
          const { page, plan, steps } = await captured(tags);
          expect(page.jobs, JSON.stringify(tags)).toHaveLength(found);
          expect(plan).toMatch(/Index (Only )?Scan using job_tags_pkey/);
          expect(plan).toMatch(/Index Scan using jobs_scheduled_idx/); // the lookup at the walk's place in due order
          expect(plan).not.toMatch(/Seq Scan|Bitmap|Hash|Materialize/);
          if (!('any' in tags)) expect(plan).not.toMatch(/Sort/); // any: the least next of its tags, a sort of two rows
          expect(steps, `${JSON.stringify(tags)}\n${plan}`).toBeLessThanOrEqual(most);
        }
      }
    });
  });

  it('ids compare by bytes, as in every store', async () => {
    const store = open();
    const idsIn = ['b', 'B', 'a', 'é', 'Z', '_', '😀', 'ﬀ'];
    await store.add(idsIn.map((id) => job(id, T0)));
    const expected = [...idsIn].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect((await store.list({ limit: 100 })).jobs.map((j) => j.id)).toEqual(expected);
    expect((await store.claimDue({ until: T0, now: T0, limit: 100, leaseMs: 1000 })).map((c) => c.id)).toEqual(expected);
  });

  it('claim uses the partial index: a due-order index scan, not a sort of the table', async () => {
    const store = open();
    await store.add(Array.from({ length: 2000 }, (_, i) => job(`p-${i}`, T0 + i)));
    await sql(url, `ANALYZE "${schema}".jobs`);
    const plan = await sql<{ 'QUERY PLAN': string }>(
      url,
      `EXPLAIN SELECT id, due_at FROM "${schema}".jobs WHERE lease IS NULL AND due_at <= $1 ORDER BY due_at, id LIMIT 500 FOR UPDATE SKIP LOCKED`,
      [T0 + 10],
    );
    expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index Scan using jobs_scheduled_idx/);
  });

  it('watch: a job added sooner in one store wakes a watcher on another, with its due time', async () => {
    const writer = open();
    const watcher = open();
    const heard: number[] = [];
    const stop = await watcher.watch((t) => heard.push(t));
    await writer.add([job('w1', T0 + 100.25)]);
    await until(() => heard.length === 1);
    await writer.add([job('w2', T0 + 500)]); // not sooner: silent
    await writer.reschedule('w2', T0 + 7); // sooner now
    await until(() => heard.length === 2);
    await stop();
    await writer.add([job('w3', T0)]);
    await new Promise((r) => setTimeout(r, 150));
    expect(heard).toEqual([T0 + 100.25, T0 + 7]);
  });

  it('watch: a failed add wakes nobody (the notification is sent on commit only)', async () => {
    const writer = open();
    const heard: number[] = [];
    await open().watch((t) => heard.push(t));
    await writer.add([job('x', T0 + 50)]);
    await until(() => heard.length === 1);
    await expect(writer.add([job('early', T0), job('x', T0)])).rejects.toBeInstanceOf(DuplicateJobError);
    await writer.add([job('later', T0 + 10)]);
    await until(() => heard.length === 2);
    expect(heard).toEqual([T0 + 50, T0 + 10]);
  });

  it('watch: the listener reconnects after its connection is killed', async () => {
    const writer = open();
    const heard: number[] = [];
    await open().watch((t) => heard.push(t));
    const killed = await sql(
      url,
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1 AND application_name = 'celery-longterm-scheduler'`,
      [`LISTEN "${schema}_wakeup"`],
    );
    expect(killed).toHaveLength(1);
    let t = T0 + 1000;
    // the listener comes back within about a second; keep adding sooner jobs until one is heard
    await until(() => {
      if (heard.length === 0) void writer.add([job(`r-${t}`, --t)]);
      return heard.length > 0;
    }, 5000);
    expect(heard[0]).toBeLessThan(T0 + 1000);
  });

  it('closing the store stops its watchers', async () => {
    const writer = open();
    const watching = open();
    const heard: number[] = [];
    await watching.watch((t) => heard.push(t));
    await watching.close();
    await writer.add([job('after-close', T0)]);
    await new Promise((r) => setTimeout(r, 150));
    expect(heard).toEqual([]);
    const listeners = await sql(url, 'SELECT 1 FROM pg_stat_activity WHERE query = $1', [`LISTEN "${schema}_wakeup"`]);
    expect(listeners).toEqual([]);
  });
});
