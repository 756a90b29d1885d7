/**
 * The SQLite store's searches: `list` with a filter, `countWhere` and `histogram`, each one or a
 * few statements over the store's indexes. What they read, and why, is "Searching" in
 * sqlite-store.ts's header; this file builds and runs the statements.
 */
import type Database from 'better-sqlite3';
import { bucketOf, toBuckets, type ListRange, type ListedJob } from '../base.js';
import type { HistogramBucket } from '../store.js';

/** How many rows a way to drive a search in due order is probed for (see "Searching"). */
export const PROBE_ROWS = 256;
/** How many rows a way read in key or id order (sorted afterwards) is probed for. */
export const SORT_ROWS = 2000;

/**
 * "A scheduled job", as the partial indexes on scheduled jobs (jobs_due, jobs_task, jobs_queue)
 * spell it. SQLite reads `lease IS NULL` as an ISNULL test, which it must check on the row, so a
 * search of such an index would read every job it counts; `lease IS +NULL` is an IS comparison
 * with a constant, which tells SQLite the column's value in every entry of the index, so the
 * index alone answers (a covering index). A statement uses one of these indexes only when it
 * says this, exactly.
 */
export const SCHEDULED = 'lease IS +NULL';

/**
 * "The job whose row has these due_at and id columns is revoked" (see "Revoked" in
 * sqlite-store.ts): a seek in revoked's primary key.
 */
export function revokedSql(dueAt: string, id: string): string {
  return `EXISTS (SELECT 1 FROM revoked v WHERE v.due_at = ${dueAt} AND v.id = ${id})`;
}

/** The strings starting with a prefix, as a range of SQLite's BINARY order: `lo` <= s < `hi` (no `hi`: no end). */
export interface PrefixRange {
  lo: string;
  hi: string | null;
}

/**
 * The strings that start with `prefix` (well-formed), as a range: UTF-8 bytes order as code points
 * do, so they are the strings from `prefix` up to (not including) `prefix` with its last code
 * point made the next one (U+10FFFF dropped first; the surrogates, which no string holds, skipped).
 */
export function prefixRange(prefix: string): PrefixRange {
  const points = Array.from(prefix);
  while (points.at(-1) === '\u{10FFFF}') points.pop();
  const last = points.pop();
  if (last === undefined) return { lo: prefix, hi: null };
  const next = last.codePointAt(0)! + 1;
  return { lo: prefix, hi: points.join('') + String.fromCodePoint(next === 0xd800 ? 0xe000 : next) };
}

/** A checked filter, past its due range, as the searches use it. */
interface Wanted {
  all: readonly string[];
  any: readonly string[];
  task: string | undefined;
  queues: readonly (string | null)[] | undefined;
  key: PrefixRange | undefined;
  id: PrefixRange | undefined;
  /** whether the store holds revoked jobs not yet reaped, which every search leaves out (see "Revoked") */
  revoked: boolean;
}

function wantedOf(r: ListRange, revoked: boolean): Wanted {
  return {
    revoked,
    all: r.tags?.all ?? [],
    any: r.tags?.any ?? [],
    task: r.task,
    queues: r.queues,
    key: r.keyPrefix === undefined ? undefined : prefixRange(r.keyPrefix),
    id: r.idPrefix === undefined ? undefined : prefixRange(r.idPrefix),
  };
}

/**
 * One way to drive a search: the index whose rows (due_at, job_id) are read, and what is left to
 * check of each. `due`, `task`, `queues` and `tags` give their rows in due order; `key` and `id`
 * in key or id order, sorted afterwards. `inFlight` (the jobs in flight, in lease order) never
 * drives a search: a count of a way that reads jobs in flight too takes its matches away.
 */
interface Way {
  kind: 'due' | 'task' | 'queues' | 'tags' | 'key' | 'id' | 'inFlight';
  /** a tags way's tags: one of `all`, or every one of `any` */
  drive: readonly string[];
  /** the tags of `all` left to check, in the order tried */
  all: readonly string[];
  /** `any`, unless the way reads it */
  any: readonly string[];
}

const inDueOrder = (way: Way) => way.kind !== 'key' && way.kind !== 'id' && way.kind !== 'inFlight';
/** Whether every row the way reads is a scheduled job's (a job in flight holds no key). */
const onlyScheduled = (way: Way) => way.kind !== 'tags' && way.kind !== 'id' && way.kind !== 'inFlight';
const capOf = (way: Way) => (inDueOrder(way) ? PROBE_ROWS : SORT_ROWS);

/**
 * Where a driver's rows start: `from` (@from, inclusive), `after` (past @afterDue, @afterId),
 * `lo` or `hi` (@lo or @hi, inclusive: a histogram's bucket, or what follows it).
 */
type Lower = 'from' | 'after' | 'lo' | 'hi';
/** Where they end: @to (inclusive), or before @hi too (a histogram's bucket). */
type Upper = 'to' | 'hi';

function boundsSql(lower: Lower, upper: Upper, idColumn: string): string {
  const lo = lower === 'after' ? `(due_at, ${idColumn}) > (@afterDue, @afterId)` : `due_at >= @${lower}`;
  return `${lo} AND ${upper === 'hi' ? 'due_at < @hi AND ' : ''}due_at <= @to`;
}

function prefixSql(column: string, p: PrefixRange, name: 'key' | 'id'): string {
  return `${column} >= @${name}Lo${p.hi === null ? '' : ` AND ${column} < @${name}Hi`}`;
}

/** The driver's rows (due_at, job_id) in the bounds: one index range, or several merged in due order. */
function driverSql(way: Way, w: Wanted, lower: Lower, upper: Upper): string {
  const bounds = boundsSql(lower, upper, 'id');
  const range = (index: string, where: string) => `SELECT due_at, id AS job_id FROM jobs INDEXED BY ${index} WHERE ${where} AND ${bounds}`;
  switch (way.kind) {
    case 'due':
      return range('jobs_due', SCHEDULED);
    case 'task':
      return range('jobs_task', `task = @task AND ${SCHEDULED}`);
    case 'queues': {
      // merged in due order (MERGE (UNION), no sort); the ranges are disjoint (a job names one
      // queue), but SQLite drops the ORDER BY of a UNION ALL in a subquery and sorts afterwards
      const arms = w.queues!.map((q, i) => range('jobs_queue', `${q === null ? 'queue IS NULL' : `queue = @q${i}`} AND ${SCHEDULED}`));
      return arms.length === 1 ? arms[0]! : `${arms.join(' UNION ')} ORDER BY 1, 2`;
    }
    case 'key':
      return range('jobs_key', prefixSql('job_key', w.key!, 'key'));
    case 'id':
      return range('jobs_id', prefixSql('id', w.id!, 'id'));
    case 'inFlight':
      return range('jobs_lease', 'lease IS NOT NULL');
    case 'tags': {
      // a job holding several of the tags once (MERGE (UNION): no sort)
      const tagBounds = boundsSql(lower, upper, 'job_id');
      const arm = (i: number) => `SELECT due_at, job_id FROM job_tags WHERE tag = @t${i} AND ${tagBounds}`;
      return `${way.drive.map((_, i) => arm(i)).join(' UNION ')} ORDER BY 1, 2`;
    }
  }
}

/**
 * The checks of a driver row `d` that need no more than it: tags, by seeks in job_tags (its
 * primary key, or the job_tags_job index, which covers it), in the order given (`all` stops at
 * the first tag the job lacks, `any` at the first it holds); the id prefix, on the row's id.
 * (Their LIMIT keeps each tag check a subquery of the driver row: without it, SQLite may turn an
 * EXISTS into a join placed after jobs, reading every driver row's job.)
 */
function rowChecks(way: Way, w: Wanted): string[] {
  const holds = 'job_tags x WHERE x.tag = w.value AND x.due_at = d.due_at AND x.job_id = d.job_id';
  const names = tagNames(way);
  const out: string[] = [];
  if (way.all.length) out.push(`NOT EXISTS (SELECT 1 FROM json_each(@${names.all}) w WHERE NOT EXISTS (SELECT 1 FROM ${holds}) LIMIT 1)`);
  if (way.any.length) out.push(`EXISTS (SELECT 1 FROM json_each(@${names.any}) w WHERE EXISTS (SELECT 1 FROM ${holds}) LIMIT 1)`);
  if (w.id && way.kind !== 'id') out.push(prefixSql('d.job_id', w.id, 'id'));
  // a seek in revoked's primary key, only while it holds any (a job in flight is never in it)
  if (w.revoked && way.kind !== 'inFlight') out.push(`NOT ${revokedSql('d.due_at', 'd.job_id')}`);
  return out;
}

/** The checks that read the job `j` itself: its task, queue and key (those the way does not give). */
function jobChecks(way: Way, w: Wanted): string[] {
  const out: string[] = [];
  if (w.task !== undefined && way.kind !== 'task') out.push('j.task = @task');
  if (w.queues && way.kind !== 'queues') {
    const named = w.queues.flatMap((q, i) => (q === null ? [] : [`@q${i}`]));
    const tests = [...(named.length ? [`j.queue IN (${named.join(', ')})`] : []), ...(w.queues.includes(null) ? ['j.queue IS NULL'] : [])];
    out.push(tests.length === 1 ? tests[0]! : `(${tests.join(' OR ')})`);
  }
  if (w.key && way.kind !== 'key') out.push(prefixSql('j.job_key', w.key, 'key'));
  return out;
}

const JOIN_JOB = 'CROSS JOIN jobs j ON j.due_at = d.due_at AND j.id = d.job_id';

/**
 * Whether a count of the way's matches is better made as the live jobs' (scheduled or in flight)
 * less those in flight: so for a way that reads jobs in flight too (tags, id) when no check needs
 * the job's row. Its matches are then counted from its index (and job_tags) alone, and the jobs
 * in flight, few, are read from jobs_lease and checked for the whole filter (`inFlightOf`).
 */
function countsLive(way: Way, w: Wanted): boolean {
  return !onlyScheduled(way) && jobChecks(way, w).length === 0;
}

/** The jobs in flight, checked for the whole filter (there is no check of the row: `countsLive`). */
const inFlightOf = (w: Wanted): Way => ({ kind: 'inFlight', drive: [], all: w.all, any: w.any });

/**
 * FROM and WHERE of a search reading the way's rows in the bounds that match, for a count or a
 * list of due times: the job's row is read only for a check that needs it; a way that also reads
 * jobs in flight (tags, id) otherwise checks the job is scheduled by a seek in jobs_due, a
 * covering index, rather than in the table, unless `live` asks for every live job (see
 * `countsLive`; the jobs in flight are read so too).
 */
function matchesSql(way: Way, w: Wanted, lower: Lower, upper: Upper, live = false): string {
  const job = jobChecks(way, w);
  const checks = [...rowChecks(way, w), ...job];
  let join = '';
  if (job.length) {
    join = ` ${JOIN_JOB}`;
    checks.push('j.lease IS NULL');
  } else if (!onlyScheduled(way) && !live) {
    join = ` CROSS JOIN jobs s INDEXED BY jobs_due ON s.due_at = d.due_at AND s.id = d.job_id AND s.${SCHEDULED}`;
  }
  return `FROM (${driverSql(way, w, lower, upper)}) d${join}${checks.length ? ` WHERE ${checks.join(' AND ')}` : ''}`;
}

/** A page: the way's matching rows from its start, joined to their scheduled jobs, in due order. */
function pageSql(way: Way, w: Wanted, lower: Lower): string {
  const checks = [...rowChecks(way, w), ...jobChecks(way, w), 'j.lease IS NULL'];
  return [
    `SELECT j.id, j.due_at AS dueAt, j.entry FROM (${driverSql(way, w, lower, 'to')}) d ${JOIN_JOB}`,
    `WHERE ${checks.join(' AND ')} ORDER BY d.due_at, d.job_id LIMIT @read`,
  ].join(' ');
}

/** A way's first rows (at most its cap) from the start: how many, and the last due time. */
function probeSql(way: Way, w: Wanted, lower: Lower): string {
  return `SELECT count(*) AS rows, max(due_at) AS reach FROM (SELECT due_at FROM (${driverSql(way, w, lower, 'to')}) LIMIT ${capOf(way)})`;
}

/**
 * A histogram's step: the matches in [@lo, @hi) (and <= @to), and the due time of the first at or
 * after @hi (`live`: the live jobs', see `countsLive`).
 */
function bucketSql(way: Way, w: Wanted, live: boolean): string {
  const count = `SELECT count(*) ${matchesSql(way, w, 'lo', 'hi', live)}`;
  const next = `SELECT d.due_at ${matchesSql(way, w, 'hi', 'to', live)} ORDER BY d.due_at, d.job_id LIMIT 1`;
  return `SELECT (${count}) AS n, (${next}) AS next`;
}

interface Probe {
  rows: number;
  reach: number | null;
}

type Params = Record<string, string | number>;

/** The searches of one connection, with their statements (a few shapes per filter's form). */
export class Search {
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement<[Params], unknown>>();

  constructor(db: Database.Database) {
    this.#db = db;
  }

  /**
   * Up to `read` scheduled jobs matching `r` from its start (`from`, or past `after`), in due
   * order. `revoked` (here and below): the store holds revoked jobs to leave out.
   */
  list(r: ListRange, read: number, revoked: boolean): ListedJob[] {
    const w = wantedOf(r, revoked);
    const from = r.from ?? -Infinity;
    // past the cursor, every job is due at or after it: start there unless `from` is later
    const lower: Lower = r.after && r.after.dueAt >= from ? 'after' : 'from';
    const p = this.#params(r, w);
    const way = this.#choose(w, p, lower, 'page');
    return this.#statement(pageSql(way, w, lower)).all({ ...p, ...tagParams(way), read }) as ListedJob[];
  }

  /** How many scheduled jobs match `r` (from `from` to `to`). */
  count(r: ListRange, revoked: boolean): number {
    const w = wantedOf(r, revoked);
    const p = this.#params(r, w);
    const way = this.#choose(w, p, 'from', 'all');
    const sql = countsLive(way, w)
      ? `SELECT (SELECT count(*) ${matchesSql(way, w, 'from', 'to', true)}) - (SELECT count(*) ${matchesSql(inFlightOf(w), w, 'from', 'to', true)}) AS n`
      : `SELECT count(*) AS n ${matchesSql(way, w, 'from', 'to')}`;
    const row = this.#statement(sql).get({ ...p, ...tagParams(inFlightOf(w)), ...tagParams(way) }) as { n: number };
    return row.n;
  }

  /**
   * The non-empty buckets of the scheduled jobs matching `r`, in one read transaction (one
   * snapshot). A way in due order is read a bucket at a time: one statement counts the bucket's
   * range and finds the first match past it, whose bucket is the next one counted, so a bucket
   * without a match costs nothing. A bucket's range is the due times whose `bucketOf` is its
   * start, exactly (`bucketEnd`), so the counts are the memory store's, to the last bit.
   */
  histogram(r: ListRange & { from: number; to: number }, width: number, revoked: boolean): HistogramBucket[] {
    return this.#db.transaction(() => {
      const w = wantedOf(r, revoked);
      const p = this.#params(r, w);
      const way = this.#choose(w, p, 'from', 'all');
      const q = { ...p, ...tagParams(way) };
      if (!inDueOrder(way)) {
        const times = this.#statement(`SELECT d.due_at AS t ${matchesSql(way, w, 'from', 'to')}`).all(q) as { t: number }[];
        return toBuckets(
          times.map((x) => x.t),
          width,
        );
      }
      const live = countsLive(way, w);
      // counting live jobs: those in flight, found first, are taken from their buckets
      const flying = new Map<number, number>();
      if (live) {
        const fly = inFlightOf(w);
        const times = this.#statement(`SELECT d.due_at AS t ${matchesSql(fly, w, 'from', 'to', true)}`).all({ ...p, ...tagParams(fly) }) as { t: number }[];
        for (const b of toBuckets(
          times.map((x) => x.t),
          width,
        ))
          flying.set(b.start, b.count);
      }
      const step = this.#statement(bucketSql(way, w, live));
      const out: HistogramBucket[] = [];
      let { next } = step.get({ ...q, lo: r.from, hi: r.from }) as { n: number; next: number | null };
      while (next !== null) {
        const start = bucketOf(next, width);
        const end = bucketEnd(start, width, next);
        const got = step.get({ ...q, lo: next, hi: end }) as { n: number; next: number | null };
        const count = got.n - (flying.get(start) ?? 0);
        if (count > 0) out.push({ start, count });
        next = got.next;
      }
      return out;
    })();
  }

  /** The filter's named parameters but the tags' (which depend on the way: `tagParams`). */
  #params(r: ListRange, w: Wanted): Params {
    const p: Params = { from: r.from ?? -Infinity, to: r.to ?? Infinity };
    if (r.after) Object.assign(p, { afterDue: r.after.dueAt, afterId: r.after.id });
    if (w.task !== undefined) p['task'] = w.task;
    w.queues?.forEach((q, i) => {
      if (q !== null) p[`q${i}`] = q;
    });
    for (const [name, range] of [
      ['key', w.key],
      ['id', w.id],
    ] as const) {
      if (range === undefined) continue;
      p[`${name}Lo`] = range.lo;
      if (range.hi !== null) p[`${name}Hi`] = range.hi;
    }
    return p;
  }

  /**
   * The way to drive a search (see "Searching"): with one way in due order, that one; with
   * several (or one in key or id order), each way's first rows from the start are counted (at
   * most its cap): a way with fewer than its cap is read whole, so the fewest of those drives;
   * else the way in due order whose rows reach furthest; else (a page, and only prefix ways, each
   * too long to sort) the due order, checking each job. A count reads every row of its way, in
   * any order, so a prefix way too long to sort still beats reading every job.
   */
  #choose(w: Wanted, p: Params, lower: Lower, purpose: 'page' | 'all'): Way {
    const ways: Way[] = w.all.map((t) => ({ kind: 'tags', drive: [t], all: w.all.filter((u) => u !== t), any: w.any }));
    if (w.any.length) ways.push({ kind: 'tags', drive: w.any, all: w.all, any: [] });
    const rest = { drive: [], all: w.all, any: w.any };
    if (w.task !== undefined) ways.push({ kind: 'task', ...rest });
    if (w.queues) ways.push({ kind: 'queues', ...rest });
    if (w.key) ways.push({ kind: 'key', ...rest });
    if (w.id) ways.push({ kind: 'id', ...rest });
    const due: Way = { kind: 'due', ...rest };
    if (ways.length === 0) return due;
    if (ways.length === 1 && inDueOrder(ways[0]!)) return ways[0]!;

    const probes = new Map(ways.map((way) => [way, this.#statement(probeSql(way, w, lower)).get({ ...p, ...tagParams(way) }) as Probe]));
    const whole = (way: Way) => probes.get(way)!.rows < capOf(way);
    const rank = (way: Way) => (whole(way) ? 0 : inDueOrder(way) ? 1 : 2);
    const better = (a: Way, b: Way) => {
      const [pa, pb] = [probes.get(a)!, probes.get(b)!];
      return rank(a) - rank(b) || (rank(a) === 0 ? pa.rows - pb.rows : (pb.reach ?? 0) - (pa.reach ?? 0));
    };
    const best = [...ways].sort(better)[0]!;
    const way = rank(best) === 2 && purpose === 'page' ? due : best;
    if (way.all.length < 2) return way;
    // the job lacks a sparse tag of `all` most often: check those first
    const order = new Map(
      ways
        .slice(0, w.all.length)
        .sort(better)
        .map((t, i) => [t.drive[0]!, i]),
    );
    return { ...way, all: [...way.all].sort((t, u) => order.get(t)! - order.get(u)!) };
  }

  #statement(sql: string): Database.Statement<[Params], unknown> {
    let statement = this.#statements.get(sql);
    if (statement === undefined) this.#statements.set(sql, (statement = this.#db.prepare<[Params]>(sql)));
    return statement;
  }
}

/** The names of the JSON arrays of tags a way checks: the jobs in flight have their own, beside a way's in one count. */
function tagNames(way: Way): { all: string; any: string } {
  return way.kind === 'inFlight' ? { all: 'inFlightAll', any: 'inFlightAny' } : { all: 'all', any: 'any' };
}

/** A way's tag parameters: its driving tags @t0.., and the JSON arrays of the tags it checks. */
function tagParams(way: Way): Params {
  const p: Params = Object.fromEntries(way.drive.map((t, i) => [`t${i}`, t]));
  const names = tagNames(way);
  if (way.all.length) p[names.all] = JSON.stringify(way.all);
  if (way.any.length) p[names.any] = JSON.stringify(way.any);
  return p;
}

/** The doubles in order, as unsigned 64-bit keys (-0 just below +0): one step is one double. */
function keyOf(x: number): bigint {
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, x);
  const bits = v.getBigUint64(0);
  return bits >> 63n ? ~bits & 0xffff_ffff_ffff_ffffn : bits | (1n << 63n);
}

function fromKey(k: bigint): number {
  const v = new DataView(new ArrayBuffer(8));
  v.setBigUint64(0, k >> 63n ? k & ~(1n << 63n) : ~k & 0xffff_ffff_ffff_ffffn);
  return v.getFloat64(0);
}

/**
 * Where the bucket starting at `start` ends: the least due time whose `bucketOf` is later, `t`
 * being one of the bucket's own. `bucketOf` never decreases with the time, so the bucket is every
 * time from its first up to this one. That is `start + width` while the arithmetic is exact
 * (times below 2^53 in magnitude: any date); far beyond, where doubles are further apart than
 * seconds, `bucketOf` rounds, and its buckets end elsewhere (a start may even be later than the
 * time it is the bucket of): the least later time is then searched for, halving the doubles
 * between `t` and +Infinity.
 */
export function bucketEnd(start: number, width: number, t: number): number {
  const later = (u: number) => bucketOf(u, width) > start;
  const guess = start + width;
  if (later(guess) && !later(fromKey(keyOf(guess) - 1n))) return guess;
  // t is in the bucket, +Infinity past it: halve the doubles between them
  let lo = keyOf(t);
  let hi = keyOf(Infinity);
  while (hi - lo > 1n) {
    const mid = (lo + hi) >> 1n;
    if (later(fromKey(mid))) hi = mid;
    else lo = mid;
  }
  return fromKey(hi);
}
