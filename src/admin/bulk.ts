/**
 * Acting on every scheduled job that matches a query (query.ts), on every store: count them (with
 * a sample: what `--dry-run` shows), count them per time bucket (the future-load histogram), and
 * revoke, reschedule (to a time, by a shift, spread over a window), run now or retag them.
 *
 * - **Each job on its own, atomically.** Matches are read a page at a time in due order (the
 *   store answers the filter from its indexes; an args match is checked here, see query.ts), and
 *   each page is changed with one store call (`removeWhere`, `removeMany`, `rescheduleMany`, `retagMany`). A job
 *   a dispatcher claimed meanwhile is left alone and counted as skipped, one sent or revoked
 *   meanwhile as missing: never sent twice, never lost.
 * - **Resumable.** Progress carries a cursor; pass it back as `cursor` to go on where an
 *   interrupted run stopped (`signal`). A revoke the store can answer from its indexes (no args
 *   match) is the store's `removeWhere`, in the store's own order (a Redis tag set is walked as
 *   it is, unsorted): its cursor is `AGAIN` ('*'), running it again, since what it removed is
 *   gone. Retag, and a revoke with an args match, read the matches in due order and the cursor
 *   is the last job done. A reschedule first reads every match (ids and due times, at most
 *   `MAX_RESCHEDULE` of them), so that no job is moved twice when its new time is still inside
 *   the query, then moves them in an order that keeps its cursor true: a later shift works from
 *   the last job back (its cursor: the jobs before it are left), an earlier one from the first;
 *   `to` skips the jobs already at the time. A spread over a window cannot resume exactly: run it
 *   again and the remaining pile-up is spread again.
 * - Memory: one page at a time, but for a reschedule's plan (two numbers and an id per match).
 */
import type { JobFilter, JobMove, ScheduleStore } from '../stores/store.js';
import { DEFAULT_BATCH_SIZE, MAX_HISTOGRAM_BUCKETS, checkBatchSize, checkTagChange, compareDue, cursorAfter, parseCursor } from '../stores/store.js';
import { checkRepresentable } from '../celery/time.js';
import { ValidationError } from '../util/errors.js';
import { compileQuery, type CompiledQuery, type JobQuery } from './query.js';
import { describeJob, listJobs, type ScheduledJobInfo } from './scheduled-jobs.js';

export type { JobQuery } from './query.js';

export interface BulkOptions {
  /** jobs read and changed per round trip (default 5000, at most 10,000) */
  batchSize?: number;
  /** where an interrupted run stopped (its summary's or last progress's `cursor`) */
  cursor?: string;
  /** told after every page */
  onProgress?: (p: BulkProgress) => void;
  /** stops after the page in progress; the summary's `cursor` says where */
  signal?: AbortSignal;
}

export interface BulkProgress {
  /** jobs that matched so far */
  matched: number;
  /** changed as asked */
  changed: number;
  /** matched, but a dispatcher had claimed them by their turn (in flight): left alone */
  skipped: number;
  /** matched, but gone by their turn (sent or revoked meanwhile) */
  missing: number;
  /** reschedule only: matched, and already at their new time (nothing to change) */
  unchanged?: number;
  /** retag only: left alone because they would hold more than the most tags a job holds */
  overLimit?: number;
  /** the matches in all, when known before the run (a reschedule's plan), for progress */
  total?: number;
  /** pass as `cursor` to go on after what is done */
  cursor?: string;
}

export interface BulkSummary extends BulkProgress {
  elapsedMs: number;
  /** set when the run stopped early (`signal`): where to go on */
  cursor?: string;
}

export interface QueryCount {
  count: number;
  /** the first matches in due order, at most `sampleSize` */
  sample: ScheduledJobInfo[];
  /** with an args match: the jobs read and decoded to count (the store counted the rest from its indexes) */
  scanned?: number;
}

/** How a bulk reschedule moves each matched job. */
export type Move =
  /** every job to this time */
  | { to: Date }
  /** every job by this many seconds (negative: earlier) */
  | { shiftSeconds: number }
  /**
   * The jobs over the window [query.from, query.from + seconds]: evenly, in due order (the first at
   * the window's start), or, with `jitter`, each at a random time in it. Needs the query's `from`.
   */
  | { spreadSeconds: number; jitter?: boolean };

export const DEFAULT_BATCH = DEFAULT_BATCH_SIZE;
/** The most jobs one bulk reschedule plans (its plan is held in memory: about 100 bytes a job). */
export const MAX_RESCHEDULE = 2_000_000;

export type HistogramUnit = 'minute' | 'hour' | 'day';
const UNIT_SECONDS: Record<HistogramUnit, number> = { minute: 60, hour: 3600, day: 86_400 };

export interface HistogramRequest {
  /** bucket width: a UTC minute, hour or day */
  by: HistogramUnit;
  /** the range counted: the query's own `from` and `to` when these are absent */
  from?: Date;
  to?: Date;
}

export interface LoadHistogram {
  bucketSeconds: number;
  from: Date;
  to: Date;
  /** every bucket of the range, in time order, empty ones included */
  buckets: { start: Date; count: number }[];
  /** the jobs counted */
  total: number;
  /** the fullest buckets, most first (at most 5, none empty): where the pile-ups are */
  busiest: { start: Date; count: number }[];
  /** with an args match: the jobs read and decoded (the store counted the rest) */
  scanned?: number;
}

/** How many scheduled jobs match, and the first few: what a dry run prints. Index-backed but for an args match. */
export async function countWhere(store: ScheduleStore, defaultQueue: string, query: JobQuery, sampleSize = 5): Promise<QueryCount> {
  const q = compileQuery(query, defaultQueue);
  if (!q.match) {
    const [count, first] = await Promise.all([store.countWhere(q.filter), sampleSize > 0 ? store.list({ ...q.filter, limit: sampleSize }) : undefined]);
    return { count, sample: (first?.jobs ?? []).map((j) => describeJob(j, defaultQueue)) };
  }
  let count = 0;
  let scanned = 0;
  const sample: ScheduledJobInfo[] = [];
  let cursor: string | undefined;
  do {
    const page = await listJobs(store, defaultQueue, { ...query, limit: DEFAULT_BATCH, ...(cursor !== undefined && { cursor }) });
    count += page.jobs.length;
    scanned += page.scanned ?? 0;
    for (const j of page.jobs) if (sample.length < sampleSize) sample.push(j);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { count, sample, scanned };
}

/** The jobs matching `query` due per minute, hour or day over a range: the future load. */
export async function histogramWhere(store: ScheduleStore, defaultQueue: string, query: JobQuery, h: HistogramRequest): Promise<LoadHistogram> {
  const bucketSeconds = UNIT_SECONDS[h.by];
  if (bucketSeconds === undefined) throw new ValidationError([`by must be minute, hour or day, got ${JSON.stringify(h.by)}`]);
  const from = h.from ?? query.from;
  const to = h.to ?? query.to;
  if (from === undefined || to === undefined) throw new ValidationError(['a histogram needs a range: pass from and to']);
  const q = compileQuery({ ...query, from, to }, defaultQueue);
  const fromS = q.filter.from as number;
  const toS = q.filter.to as number;
  const n = Math.floor(toS / bucketSeconds) - Math.floor(fromS / bucketSeconds) + 1;
  if (n > MAX_HISTOGRAM_BUCKETS)
    throw new ValidationError([`the histogram would have ${n} ${h.by}s; at most ${MAX_HISTOGRAM_BUCKETS}: count by a wider unit or a shorter range`]);
  let counted: { start: number; count: number }[];
  let scanned: number | undefined;
  if (!q.match) counted = await store.histogram({ ...q.filter, from: fromS, to: toS, bucketSeconds });
  else {
    const counts = new Map<number, number>();
    scanned = 0;
    let cursor: string | undefined;
    do {
      const page = await listJobs(store, defaultQueue, { ...query, from, to, limit: DEFAULT_BATCH, ...(cursor !== undefined && { cursor }) });
      scanned += page.scanned ?? 0;
      for (const j of page.jobs) {
        const b = Math.floor(j.dueAtUnix / bucketSeconds) * bucketSeconds;
        counts.set(b, (counts.get(b) ?? 0) + 1);
      }
      cursor = page.cursor;
    } while (cursor !== undefined);
    counted = [...counts].map(([start, count]) => ({ start, count }));
  }
  const byStart = new Map(counted.map((b) => [b.start, b.count]));
  const first = Math.floor(fromS / bucketSeconds);
  const last = Math.floor(toS / bucketSeconds);
  const buckets: { start: Date; count: number }[] = [];
  for (let i = first; i <= last; i++) buckets.push({ start: new Date(i * bucketSeconds * 1000), count: byStart.get(i * bucketSeconds) ?? 0 });
  const total = counted.reduce((n, b) => n + b.count, 0);
  const busiest = buckets
    .filter((b) => b.count > 0)
    .sort((a, b) => b.count - a.count || a.start.getTime() - b.start.getTime())
    .slice(0, 5);
  return { bucketSeconds, from, to, buckets, total, busiest, ...(scanned !== undefined && { scanned }) };
}

/** Revokes every scheduled job matching `query`, a page at a time; see the header. */
export async function revokeWhere(store: ScheduleStore, defaultQueue: string, query: JobQuery, o: BulkOptions = {}): Promise<BulkSummary> {
  const q = compileQuery(query, defaultQueue, true);
  if (o.cursor === undefined || o.cursor === AGAIN) {
    if (!q.match) return drain(store, q.filter, o);
    // an args match is read in due order, here: AGAIN is its start
    o = { ...o, cursor: undefined };
  }
  return inPages(store, defaultQueue, query, o, async (ids) => {
    const gone = await store.removeMany(ids);
    return { changed: gone };
  });
}

/**
 * The cursor of a revoke interrupted while the store removed in its own order (`removeWhere`):
 * what it removed is gone, so going on is running it again.
 */
export const AGAIN = '*';

/** A revoke the store answers from its indexes: `removeWhere`, in the store's order (see `AGAIN`). */
async function drain(store: ScheduleStore, filter: JobFilter, o: BulkOptions): Promise<BulkSummary> {
  const started = performance.now();
  const p: BulkProgress = { matched: 0, changed: 0, skipped: 0, missing: 0 };
  await store.removeWhere(filter, {
    batchSize: batchOf(o),
    ...(o.signal && { signal: o.signal }),
    onChunk: async ({ matched, removed }) => {
      p.matched += matched.length;
      p.changed += removed.length;
      const gone = new Set(removed);
      await countUnchanged(
        store,
        matched.filter((id) => !gone.has(id)),
        p,
      );
      o.onProgress?.({ ...p, cursor: AGAIN });
    },
  });
  const stopped = o.signal?.aborted === true;
  return { ...p, elapsedMs: performance.now() - started, ...(stopped && { cursor: AGAIN }) };
}

/** Adds and removes tags on every scheduled job matching `query`, each job atomically; see the header. */
export async function retagWhere(
  store: ScheduleStore,
  defaultQueue: string,
  query: JobQuery,
  change: { add?: readonly string[]; remove?: readonly string[] },
  o: BulkOptions = {},
): Promise<BulkSummary> {
  // checked before any job is read: a bad change is refused even when nothing matches
  checkTagChange(change);
  return inPages(store, defaultQueue, query, o, async (ids) => {
    const r = await store.retagMany(ids, change);
    return { changed: r.changed, overLimit: r.overLimit };
  });
}

/**
 * Moves every scheduled job matching `query` (see `Move`), each atomically on its own. The matches
 * are read first (the plan), then moved a batch at a time; see the header for how it resumes.
 */
export async function rescheduleWhere(store: ScheduleStore, defaultQueue: string, query: JobQuery, move: Move, o: BulkOptions = {}): Promise<BulkSummary> {
  const q = compileQuery(query, defaultQueue, true);
  const batch = batchOf(o);
  const target = targetOf(move, q);
  const started = performance.now();
  // a resumed later shift goes on below its cursor, anything else after it
  const backwards = 'shiftSeconds' in move && move.shiftSeconds > 0;
  const resumeAt = o.cursor === undefined ? undefined : parseResume(o.cursor, backwards);
  const plan: { id: string; dueAt: number }[] = [];
  let cursor: string | undefined;
  do {
    const page = await matchPage(store, defaultQueue, query, q, DEFAULT_BATCH, cursor);
    for (const j of page.jobs) {
      if (resumeAt && (backwards ? compareDue(j, resumeAt) >= 0 : compareDue(j, resumeAt) <= 0)) continue;
      plan.push(j);
    }
    if (plan.length > MAX_RESCHEDULE)
      throw new ValidationError([
        `more than ${MAX_RESCHEDULE.toLocaleString('en-US')} jobs match; a reschedule plans every match in memory: narrow the query (e.g. split the due range)`,
      ]);
    cursor = page.cursor;
  } while (cursor !== undefined);
  const moves: JobMove[] = [];
  for (const [i, j] of plan.entries()) {
    const dueAt = target(j.dueAt, i, plan.length);
    if (dueAt !== j.dueAt) moves.push({ id: j.id, dueAt });
  }
  for (const m of moves) checkRepresentable(new Date(m.dueAt * 1000), `the new due time of job ${JSON.stringify(m.id)}`);
  const byId = new Map(plan.map((j) => [j.id, j]));
  if (backwards) moves.reverse();
  const p: BulkProgress = { matched: plan.length, changed: 0, skipped: 0, missing: 0, total: plan.length, unchanged: plan.length - moves.length };
  for (let i = 0; i < moves.length; i += batch) {
    // stops between batches, never before the first: a summary without a cursor means done
    if (i > 0 && o.signal?.aborted) return { ...p, elapsedMs: performance.now() - started, ...(cursor !== undefined && { cursor }) };
    const chunk = moves.slice(i, i + batch);
    const moved = new Set(await store.rescheduleMany(chunk));
    p.changed += moved.size;
    await countUnchanged(
      store,
      chunk.map((m) => m.id).filter((id) => !moved.has(id)),
      p,
    );
    const lastDone = byId.get((chunk.at(-1) as JobMove).id) as { id: string; dueAt: number };
    cursor = i + batch < moves.length ? (backwards ? `<${cursorAfter(lastDone)}` : cursorAfter(lastDone)) : undefined;
    o.onProgress?.({ ...p, ...(cursor !== undefined && { cursor }) });
  }
  return { ...p, elapsedMs: performance.now() - started };
}

/** Makes every scheduled job matching `query` due now (jobs already due are left as they are). */
export async function runNowWhere(store: ScheduleStore, defaultQueue: string, query: JobQuery, now: Date, o: BulkOptions = {}): Promise<BulkSummary> {
  compileQuery(query, defaultQueue, true);
  // a job due before now is due already: moving it to now would only make it later
  const from = query.from && query.from > now ? query.from : now;
  if (query.to !== undefined && query.to < now) return { matched: 0, changed: 0, skipped: 0, missing: 0, elapsedMs: 0 };
  return rescheduleWhere(store, defaultQueue, { ...query, from }, { to: now }, o);
}

function targetOf(move: Move, q: CompiledQuery): (dueAt: number, i: number, n: number) => number {
  if (move === null || typeof move !== 'object') throw new ValidationError(['say how to move the jobs: { to }, { shiftSeconds } or { spreadSeconds }']);
  const kinds = ['to', 'shiftSeconds', 'spreadSeconds'].filter((k) => k in move);
  if (kinds.length !== 1) throw new ValidationError(['say how to move the jobs with exactly one of to, shiftSeconds or spreadSeconds']);
  if ('to' in move) {
    if (!(move.to instanceof Date) || !Number.isFinite(move.to.getTime())) throw new ValidationError(['to must be a valid Date']);
    const t = checkRepresentable(move.to, 'the new due time').getTime() / 1000;
    return () => t;
  }
  if ('shiftSeconds' in move) {
    const d = move.shiftSeconds;
    if (typeof d !== 'number' || !Number.isFinite(d) || d === 0)
      throw new ValidationError([`shiftSeconds must be a non-zero number of seconds, got ${String(d)}`]);
    return (dueAt) => dueAt + d;
  }
  const w = move.spreadSeconds;
  if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) throw new ValidationError([`spreadSeconds must be a number of seconds > 0, got ${String(w)}`]);
  const start = q.filter.from;
  if (start === undefined || q.filter.to === undefined)
    throw new ValidationError(['a spread needs the range of the pile-up: pass from and to (the jobs are spread from `from` over the window)']);
  if (move.jitter) return () => start + Math.random() * w;
  return (_dueAt, i, n) => start + (n <= 1 ? 0 : (i * w) / n);
}

function parseResume(cursor: string, backwards: boolean): { dueAt: number; id: string } {
  if (cursor.startsWith('<') !== backwards)
    throw new ValidationError([`${JSON.stringify(cursor)} is not a cursor of this kind of reschedule; pass the cursor the interrupted run printed`]);
  return parseCursor(backwards ? cursor.slice(1) : cursor);
}

function batchOf(o: BulkOptions): number {
  return checkBatchSize(o.batchSize);
}

/** One page of matches (ids and due times), read without decoding entries unless the query scans. */
async function matchPage(
  store: ScheduleStore,
  defaultQueue: string,
  query: JobQuery,
  q: CompiledQuery,
  limit: number,
  cursor: string | undefined,
): Promise<{ jobs: { id: string; dueAt: number }[]; cursor?: string }> {
  if (q.match) {
    const page = await listJobs(store, defaultQueue, { ...query, limit, ...(cursor !== undefined && { cursor }) });
    return { jobs: page.jobs.map((j) => ({ id: j.id, dueAt: j.dueAtUnix })), ...(page.cursor !== undefined && { cursor: page.cursor }) };
  }
  const filter: JobFilter = q.filter;
  const page = await store.list({ ...filter, limit, ...(cursor !== undefined && { cursor }) });
  return { jobs: page.jobs.map((j) => ({ id: j.id, dueAt: j.dueAt })), ...(page.cursor !== undefined && { cursor: page.cursor }) };
}

/** Of ids a store call left alone, how many are in flight (skipped) and how many are gone (missing). */
async function countUnchanged(store: ScheduleStore, ids: readonly string[], p: BulkProgress): Promise<void> {
  for (let i = 0; i < ids.length; i += 100) {
    const found = await Promise.all(ids.slice(i, i + 100).map((id) => store.get(id)));
    for (const j of found) {
      if (j?.state === 'in_flight') p.skipped++;
      else p.missing++;
    }
  }
}

/** Revoke and retag: the matches a page at a time in due order, each page changed by `act`. */
async function inPages(
  store: ScheduleStore,
  defaultQueue: string,
  query: JobQuery,
  o: BulkOptions,
  act: (ids: string[]) => Promise<{ changed: readonly string[]; overLimit?: readonly string[] }>,
): Promise<BulkSummary> {
  const q = compileQuery(query, defaultQueue, true);
  const batch = batchOf(o);
  const started = performance.now();
  const p: BulkProgress = { matched: 0, changed: 0, skipped: 0, missing: 0 };
  let cursor = o.cursor;
  if (cursor !== undefined) parseCursor(cursor);
  for (let first = true; ; first = false) {
    // stops between pages, never before the first: a summary without a cursor means done
    if (!first && o.signal?.aborted) return { ...p, elapsedMs: performance.now() - started, ...(cursor !== undefined && { cursor }) };
    const page = await matchPage(store, defaultQueue, query, q, batch, cursor);
    if (page.jobs.length > 0) {
      const ids = page.jobs.map((j) => j.id);
      const r = await act(ids);
      const done = new Set([...r.changed, ...(r.overLimit ?? [])]);
      p.matched += ids.length;
      p.changed += r.changed.length;
      if (r.overLimit) p.overLimit = (p.overLimit ?? 0) + r.overLimit.length;
      await countUnchanged(
        store,
        ids.filter((id) => !done.has(id)),
        p,
      );
    }
    cursor = page.cursor;
    o.onProgress?.({ ...p, ...(cursor !== undefined && { cursor }) });
    if (cursor === undefined) return { ...p, elapsedMs: performance.now() - started };
  }
}
