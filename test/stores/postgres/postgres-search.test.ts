/** Search, counts, histograms and bulk changes on PostgreSQL: what the contract cannot reach (exact edges, plans, races, the rows). */
import pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { NewJob } from '../../../src/job/types.js';
import { migrateSchema } from '../../../src/stores/postgres/migrations.js';
import { PostgresStore, prefixEnd } from '../../../src/stores/postgres/postgres-store.js';
import { jobMatches, toBuckets, type ListRange } from '../../../src/stores/base.js';
import type { StoredJob } from '../../../src/stores/store.js';
import { postgres, requireService, uniqueSchema } from '../../helpers/services.js';
import { dropSchema, sql } from '../../helpers/postgres.js';

const service = await postgres();
const skip = requireService(service, 'PostgreSQL');
afterAll(() => service?.stop());

const T0 = 1_800_000_000;
const entryOf = (id: string, task: string, queue?: string) => JSON.stringify([[task], { task_id: id, args: [], ...(queue !== undefined && { queue }) }]);
const routed = (id: string, dueAt: number, task = 'app.t', queue?: string, tags?: string[]): NewJob => ({
  id,
  dueAt,
  entry: entryOf(id, task, queue),
  ...(tags && { tags }),
});

describe.skipIf(skip)('PostgreSQL search and bulk changes', () => {
  const url = service?.url ?? '';
  let schema: string;
  const stores: PostgresStore[] = [];
  const open = () => {
    const s = new PostgresStore(url, { schema });
    stores.push(s);
    return s;
  };
  beforeEach(async () => {
    schema = uniqueSchema('search');
    await migrateSchema(url, { schema });
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await dropSchema(url, schema);
  });

  /** Every scheduled job, with its tags, in due order. */
  const everything = async (store: PostgresStore): Promise<StoredJob[]> => {
    const out: StoredJob[] = [];
    for (let cursor: string | undefined, more = true; more;) {
      const page = await store.list({ limit: 1000, ...(cursor !== undefined && { cursor }) });
      out.push(...page.jobs);
      cursor = page.cursor;
      more = cursor !== undefined;
    }
    return out;
  };
  const plan = async (q: string, params: unknown[]) =>
    (await sql<{ 'QUERY PLAN': string }>(url, `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ${q}`, params)).map((r) => r['QUERY PLAN']).join('\n');
  /** The last statement `fn` sent through the pool that `pick` chooses, with its parameters. */
  const captured = async (fn: () => Promise<unknown>, pick: (sql: string) => boolean): Promise<[string, unknown[]]> => {
    const spy = vi.spyOn(pg.Pool.prototype, 'query');
    try {
      await fn();
      const call = spy.mock.calls.map((c) => c as unknown[]).findLast((c) => typeof c[0] === 'string' && pick(c[0]));
      expect(call).toBeDefined();
      return [call![0] as string, (call![1] ?? []) as unknown[]];
    } finally {
      spy.mockRestore();
    }
  };

  it('counts and histograms answer exactly as jobMatches and bucketOf, at the edges of buckets too, bucket by bucket and grouped', async () => {
    const store = open();
    let seed = 11;
    const rnd = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const H = 3600;
    const base = Math.floor(T0 / H) * H;
    // due times at, a few numbers below, and just around bucket edges, and anywhere
    const edges = (k: number) => {
      const at = base + k * H;
      let below = at;
      for (let i = 0; i < 3; i++) below = below - Number.EPSILON * at; // a few ulps down
      return [at, below, at - 1e-6, at + 1e-6, at - 0.5];
    };
    const dues = [...Array.from({ length: 30 }, (_, k) => edges(k)).flat(), ...Array.from({ length: 400 }, () => base + rnd() * 30 * H)];
    const jobs = dues.map((d, i) =>
      routed(
        `h-${i}`,
        d,
        rnd() < 0.3 ? 'app.rare' : 'app.t',
        rnd() < 0.5 ? undefined : rnd() < 0.5 ? 'q1' : 'q2',
        ['x', 'y', 'z'].filter(() => rnd() < 0.4),
      ),
    );
    await store.add(jobs);
    // some in flight (their tag rows stay), some moved
    const claimed = await store.claimDue({ until: base + 5 * H, now: base + 5 * H, limit: 40, leaseMs: 60_000 });
    expect(claimed.length).toBe(40);
    await store.rescheduleMany(jobs.slice(200, 260).map((j, i) => ({ id: j.id, dueAt: base + 10 * H - i * 1e-7 })));
    const all = await everything(store);
    const tagsOf = new Map(jobs.map((j) => [j.id, j.tags]));
    const model = all.map((j) => ({ ...j, tags: tagsOf.get(j.id) }));
    const filters: ListRange[] = [
      {},
      { tags: { all: ['x'], any: [] } },
      { tags: { all: ['x', 'y'], any: [] } },
      { tags: { all: [], any: ['y', 'z'] } },
      { tags: { all: ['x'], any: [] }, task: 'app.rare' },
      { task: 'app.rare' },
      { queues: [null] },
      { queues: ['q2', null] },
      { idPrefix: 'h-1' },
    ];
    for (const f of filters) {
      for (const [from, to] of [
        [base, base + 30 * H],
        [base + 2 * H - 1e-6, base + 12 * H],
      ] as const) {
        const matching = model.filter((j) => jobMatches({ ...f, from, to }, j));
        expect([f, from, await store.countWhere({ ...f, from, to })]).toEqual([f, from, matching.length]);
        for (const width of [H, 1, 7, 86_400]) {
          // width 1 over 30 hours: 108,000 buckets, too many to count one by one: the grouped form
          if ((to - from) / width > 100_000) continue;
          const got = await store.histogram({ ...f, from, to, bucketSeconds: width });
          expect([f, from, width, got]).toEqual([
            f,
            from,
            width,
            toBuckets(
              matching.map((j) => j.dueAt),
              width,
            ),
          ]);
        }
      }
    }
    // the grouped form, by a range of more buckets than are counted one by one
    const many = await store.histogram({ from: base, to: base + 20_000, bucketSeconds: 2 });
    expect(many).toEqual(
      toBuckets(
        model.filter((j) => j.dueAt >= base && j.dueAt <= base + 20_000).map((j) => j.dueAt),
        2,
      ),
    );
  });

  it('every write of an entry writes its task and queue: add, addKeyed, reschedule with an entry, reviveDead', async () => {
    const store = open();
    const columns = async () =>
      Object.fromEntries(
        (await sql<{ id: string; task: string | null; queue: string | null }>(url, `SELECT id, task, queue FROM "${schema}".jobs ORDER BY id`)).map((r) => [
          r.id,
          [r.task, r.queue],
        ]),
      );
    await store.add([routed('a', T0, 'app.a', 'q1'), { id: 'bad', dueAt: T0, entry: 'not json' }]);
    await store.addKeyed(routed('k', T0, 'app.k'), 'K', 'reject');
    expect(await columns()).toEqual({ a: ['app.a', 'q1'], bad: [null, null], k: ['app.k', null] });
    expect(await store.reschedule('a', T0 + 1, entryOf('a', 'app.b'))).toBe(true);
    expect(await store.reschedule('k', T0 + 2)).toBe(true); // no new entry: the columns stay
    expect(await columns()).toEqual({ a: ['app.b', null], bad: [null, null], k: ['app.k', null] });
    const claims = await store.claimDue({ until: T0 + 5, now: T0 + 5, limit: 10, leaseMs: 1000 });
    await store.bury(claims.map((claim) => ({ claim, reason: 'rejected' as const, error: 'no', diedAt: T0 + 6 })));
    expect(await columns()).toEqual({});
    expect(await store.reviveDead(['a', 'bad', 'k'], T0 + 10)).toEqual(['scheduled', 'scheduled', 'scheduled']);
    expect(await columns()).toEqual({ a: ['app.b', null], bad: [null, null], k: ['app.k', null] });
    expect((await store.list({ limit: 10, task: 'app.b' })).jobs.map((j) => j.id)).toEqual(['a']);
  });

  it('key and id prefixes are exact byte prefixes: LIKE wildcards, U+10FFFF and a NUL in the prefix', async () => {
    const store = open();
    const ids = [
      'a%b',
      'a_b',
      'axb',
      'a%',
      'a\\b',
      'a',
      'b',
      'a\u{10FFFF}',
      'a\u{10FFFF}x',
      'a\u{10FFFF}\u{10FFFF}',
      'b\u{10FFFF}',
      '\u{10FFFF}',
      '\u{10FFFF}a',
      'é',
      'e',
      '\uD7FFx',
      '\uE000',
    ];
    await store.add(ids.map((id, i) => routed(`id:${id}`, T0 + i)));
    for (const [i, id] of ids.entries()) await store.addKeyed(routed(`key-${i}`, T0 + 100 + i), `k:${id}`, 'reject');
    const all = await everything(store);
    const keys = new Map(ids.map((id, i) => [`key-${i}`, `k:${id}`]));
    for (const p of ['a%', 'a_', 'a\\', 'a', 'a\u{10FFFF}', 'a\u{10FFFF}\u{10FFFF}', '\u{10FFFF}', 'é', '\uD7FF', 'nothing']) {
      for (const f of [{ idPrefix: `id:${p}` }, { keyPrefix: `k:${p}` }]) {
        const want = all.filter((j) => jobMatches(f, { ...j, key: keys.get(j.id) })).map((j) => j.id);
        expect([f, (await store.list({ limit: 100, ...f })).jobs.map((j) => j.id)]).toEqual([f, want]);
        expect([f, await store.countWhere(f)]).toEqual([f, want.length]);
      }
    }
    expect(await store.countWhere({ idPrefix: 'id:a\u0000' })).toBe(0);
    expect((await store.list({ limit: 10, keyPrefix: '\u0000' })).jobs).toEqual([]);
    expect(prefixEnd('ab')).toBe('ac');
    expect(prefixEnd('a\u{10FFFF}')).toBe('b');
    expect(prefixEnd('\u{10FFFF}\u{10FFFF}')).toBeUndefined();
    expect(prefixEnd('a\uD7FF')).toBe('a\uE000');
  });

  it('retagMany keeps job_tags and tagged in step: appended after the kept tags, rewritten in order when one goes, none left when all go', async () => {
    const store = open();
    await store.add([routed('a', T0 + 1, 'app.t', undefined, ['p', 'q', 'r']), routed('b', T0 + 2), routed('c', T0 + 3, 'app.t', undefined, ['p'])]);
    const rows = async () =>
      (
        await sql<{ job_id: string; tag: string; pos: number; due_at: number }>(
          url,
          `SELECT job_id, tag, pos, due_at FROM "${schema}".job_tags ORDER BY job_id, pos`,
        )
      ).map((r) => `${r.job_id}:${r.pos}:${r.tag}@${r.due_at - T0}`);
    const flags = async () =>
      Object.fromEntries((await sql<{ id: string; tagged: boolean }>(url, `SELECT id, tagged FROM "${schema}".jobs ORDER BY id`)).map((r) => [r.id, r.tagged]));
    expect(await store.retagMany(['a', 'b', 'c'], { add: ['s', 'p'] })).toEqual({ changed: ['a', 'b', 'c'], overLimit: [] });
    expect(await rows()).toEqual(['a:0:p@1', 'a:1:q@1', 'a:2:r@1', 'a:3:s@1', 'b:0:s@2', 'b:1:p@2', 'c:0:p@3', 'c:1:s@3']);
    expect(await flags()).toEqual({ a: true, b: true, c: true });
    expect((await store.retagMany(['a', 'c'], { remove: ['q', 'p'] })).changed).toEqual(['a', 'c']);
    expect(await rows()).toEqual(['a:0:r@1', 'a:1:s@1', 'b:0:s@2', 'b:1:p@2', 'c:0:s@3']);
    expect((await store.retagMany(['b'], { remove: ['s', 'p'] })).changed).toEqual(['b']);
    expect(await flags()).toEqual({ a: true, b: false, c: true });
    expect((await store.get('b'))?.tags).toBeUndefined();
    // moved afterwards, the rows move with the job; removed, they go
    expect(await store.rescheduleMany([{ id: 'a', dueAt: T0 + 9 }])).toEqual(['a']);
    expect(await rows()).toEqual(['a:0:r@9', 'a:1:s@9', 'c:0:s@3']);
    expect((await store.removeMany(['a', 'b'])).sort()).toEqual(['a', 'b']);
    expect(await rows()).toEqual(['c:0:s@3']);
  });

  it("a remove or a move waits for a retag holding the job's lock, and then sees its rows: no tag row is left behind or out of step", async () => {
    const store = open();
    await store.add([routed('r1', T0 + 1, 'app.t', undefined, ['old']), routed('r2', T0 + 2)]);
    // what retagMany does, held open: lock the jobs, replace their tag rows
    const writer = async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query('BEGIN');
      await c.query(`SELECT id FROM "${schema}".jobs WHERE id IN ('r1', 'r2') ORDER BY id FOR UPDATE`);
      await c.query(`DELETE FROM "${schema}".job_tags WHERE job_id IN ('r1', 'r2')`);
      await c.query(
        `INSERT INTO "${schema}".job_tags (tag, due_at, job_id, pos) SELECT t, j.due_at, j.id, n FROM "${schema}".jobs j, unnest('{new,more}'::text[]) WITH ORDINALITY AS u(t, n) WHERE j.id IN ('r1', 'r2')`,
      );
      await c.query(`UPDATE "${schema}".jobs SET tagged = true WHERE id = 'r2'`);
      return c;
    };
    const tagRows = () => sql<{ job_id: string; due_at: number }>(url, `SELECT job_id, due_at FROM "${schema}".job_tags ORDER BY job_id, tag`);
    let c = await writer();
    const moving = store.rescheduleMany([
      { id: 'r1', dueAt: T0 + 50 },
      { id: 'r2', dueAt: T0 + 60 },
    ]);
    await new Promise((r) => setTimeout(r, 200)); // it waits for the lock
    await c.query('COMMIT');
    await c.end();
    expect((await moving).sort()).toEqual(['r1', 'r2']);
    expect((await tagRows()).map((r) => [r.job_id, r.due_at - T0])).toEqual([
      ['r1', 50],
      ['r1', 50],
      ['r2', 60],
      ['r2', 60],
    ]);
    expect((await store.list({ limit: 10, tags: { all: ['new'] } })).jobs.map((j) => j.id)).toEqual(['r1', 'r2']);
    c = await writer();
    const removing = store.removeMany(['r1', 'r2']);
    await new Promise((r) => setTimeout(r, 200));
    await c.query('COMMIT');
    await c.end();
    expect((await removing).sort()).toEqual(['r1', 'r2']);
    expect(await tagRows()).toEqual([]);
  });

  it('plans: a page by task reads its index in due order, a count by one tag only its rows, a histogram an index range per bucket; with or without statistics', async () => {
    const store = open();
    await store.add(
      Array.from({ length: 20_000 }, (_, i) =>
        routed(`p-${i}`, T0 + i, i % 100 === 3 ? 'app.rare' : 'app.t', i % 3 ? 'q1' : undefined, i % 100 === 7 ? ['rare'] : undefined),
      ),
    );
    for (const analyzed of [false, true]) {
      if (analyzed) for (const table of ['jobs', 'job_tags']) await sql(url, `VACUUM ANALYZE "${schema}".${table}`);
      const page = await plan(
        ...(await captured(
          () => store.list({ limit: 50, task: 'app.rare' }),
          (q) => q.includes('j.task'),
        )),
      );
      expect(page).toMatch(/Index Scan using jobs_task_idx/);
      expect(page).not.toMatch(/Sort|Bitmap|Seq Scan/);
      const count = await plan(
        ...(await captured(
          () => store.countWhere({ tags: { all: ['rare'] } }),
          (q) => q.includes('count(*)'),
        )),
      );
      expect(count).toMatch(/on job_tags t/);
      expect(count).not.toMatch(/Seq Scan on jobs|jobs_pkey|jobs_scheduled_idx/); // no scheduled job looked up (those in flight: their index)
      const histogram = await plan(
        ...(await captured(
          () => store.histogram({ from: T0, to: T0 + 20_000, bucketSeconds: 600, task: 'app.rare' }),
          (q) => q.includes('count(*)'),
        )),
      );
      expect(histogram).toMatch(/Index Only Scan using jobs_task_idx/);
      expect(histogram).not.toMatch(/Sort Key: \(floor|HashAggregate|Seq Scan/);
    }
    // and the answers are right
    expect(await store.countWhere({ tags: { all: ['rare'] } })).toBe(200);
    expect((await store.histogram({ from: T0, to: T0 + 20_000, bucketSeconds: 10_000, task: 'app.rare' })).map((b) => b.count)).toEqual([100, 100]);
  });
});
