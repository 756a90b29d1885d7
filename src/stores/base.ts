/**
 * What every store does the same way, written once: `StoreBase` implements the public
 * `ScheduleStore` methods (store.ts) and each store extends it, writing only what is its own in
 * the protected `do*` methods (template methods: the public method checks, then calls its `do*`).
 *
 * Invariants:
 * - A closed store rejects every call with the coded error `ErrorCode.CLOSED` (`storeClosed`),
 *   checked first, before any validation and without reaching the store. `close()` is
 *   idempotent: the store's teardown (`doClose`) runs once, on the first call.
 * - Input is validated here, before a store sees it, so every store refuses the same things
 *   with the same `ValidationError` and changes nothing then. A `do*` method is only ever called
 *   on an open store with checked input, and checks nothing itself.
 * - The lease arithmetic is here: `leaseMs` must be > 0, a claim's or renewal's token is
 *   `leaseToken(now, leaseMs)` (its deadline), and a renewal never shortens a lease: a claim whose
 *   lease already ends at or after the new deadline is not renewed, only looked up (it comes
 *   back unchanged while still held, and is left out otherwise).
 * - A list's tag filter is checked here (`tags.all`, `tags.any`: each a list of valid tags); the
 *   store serves it from its tag index.
 * - Paging is here: a page size and a cursor are checked, a store reads one row more than the
 *   page (`readAhead`), and `pageOf` cuts the page and gives the cursor after it.
 * - Tags are read here: `get` and `list` add each job's tags (`doTagsOf`, one read per call); a
 *   store writes them with the job and deletes them when the job is gone (see store.ts).
 * - A call with nothing to do (no jobs, claims, retries, burials or ids) resolves without
 *   reaching the store: no connection is made, no file opened.
 *
 * What each method checks (after the closed check, which every method does):
 *   add           each job (`checkNewJobs`: a non-empty well-formed id, a well-formed entry, a
 *                 finite due time); `duplicates` other than 'skip' is 'reject'. No jobs: 0.
 *   addKeyed      the job (`checkNewJobs`) and the key (`checkJobKey`: non-empty, well-formed).
 *   reschedule    the due time (`checkDueAt`: finite); a new entry as `checkNewJobs` checks one.
 *   claimDue      `leaseMs` > 0; `limit` is rounded down, and below 1 claims nothing.
 *   renew         `leaseMs` > 0. No claims: [].
 *   acknowledge, release, retryLater, bury   nothing to check; none given: nothing done.
 *   deadLetters   the page size (`checkLimit`: a whole number >= 1) and the cursor (`parseCursor`).
 *   list          the page size and the cursor, as deadLetters, and the filter (`checkFilter`:
 *                 numbers for from/to, tag lists, non-empty well-formed task, queue names (or
 *                 null), key and id prefixes); a range that is empty (from after to, or the
 *                 cursor past to) is an empty page.
 *   countWhere    the filter, as list; an empty range counts 0.
 *   histogram     the filter, a finite from <= to, a whole bucket width >= 1, and at most
 *                 MAX_HISTOGRAM_BUCKETS buckets.
 *   rescheduleMany  each move's due time (`checkDueAt`); an id given twice. No moves: [].
 *   retagMany     the tags to add and remove (`resolveTags`), at least one, none in both. No ids:
 *                 nothing changed.
 *   reviveDead    the due time (`checkDueAt`). No ids: [].
 *   purgeDead     ids given twice count once. No ids: 0.
 *   removeMany    ids given twice count once. No ids: [].
 *   removeWhere   the filter, as `list`; the batch size.
 *   remove, get, getDead, count, nextDueAt, identity   nothing but the closed check.
 * The optional abilities (`watch`, `redisLocation`, `handOff`) are not declared here: a store
 * that has them writes them, and calls `assertOpen()` first.
 */
import type { NewJob } from '../job/types.js';
import { resolveTags } from '../job/tags.js';
import { indexFieldsOf } from '../job/entry.js';
import { isWellFormed } from '../celery/limits.js';
import { ValidationError } from '../util/errors.js';
import {
  checkDueAt,
  checkJobKey,
  checkTagChange,
  compareDue,
  checkLimit,
  checkNewJobs,
  cursorAfter,
  deadCursorAfter,
  leaseToken,
  pageOf,
  parseCursor,
  readAhead,
  storeClosed,
  type AddOptions,
  type Burial,
  type ClaimOptions,
  type ClaimedJob,
  type DeadLetter,
  type DeadLetterPage,
  type HistogramBucket,
  type HistogramOptions,
  type JobFilter,
  type JobKeyMode,
  type JobMove,
  MAX_HISTOGRAM_BUCKETS,
  checkBatchSize,
  type RemoveWhereOptions,
  type RetagResult,
  type TagChange,
  type JobPage,
  type KeyedAddResult,
  type ListOptions,
  type RenewOptions,
  type Retry,
  type ReviveOutcome,
  type ScheduleStore,
  type StoreCounts,
  type StoredJob,
  type TagFilter,
} from './store.js';

/** A list's tag filter, checked: each list once per tag, undefined when it asks nothing. */
function checkTagFilter(f: TagFilter | undefined): ListRange['tags'] {
  if (f === undefined) return undefined;
  if (f === null || typeof f !== 'object') throw new ValidationError(['tags must be an object { all?: string[], any?: string[] }']);
  const problems: string[] = [];
  const all = resolveTags(f.all, problems, 'tags.all') ?? [];
  const any = resolveTags(f.any, problems, 'tags.any') ?? [];
  if (problems.length) throw new ValidationError(problems);
  return all.length || any.length ? { all, any } : undefined;
}

/** A non-empty string of well-formed Unicode, or a `ValidationError` naming `what`. */
function checkText(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '' || !isWellFormed(v))
    throw new ValidationError([`${what} must be a non-empty string of well-formed Unicode, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`]);
  return v;
}

/** A filter, checked, as a `ListRange` (no position yet); the same on `list`, `countWhere` and `histogram`. */
function checkFilter(f: JobFilter): ListRange {
  if (f === null || typeof f !== 'object') throw new ValidationError(['the filter must be an object, e.g. { task: "app.tasks.send" }']);
  for (const [k, v] of [
    ['from', f.from],
    ['to', f.to],
  ] as const)
    if (v !== undefined && (typeof v !== 'number' || Number.isNaN(v))) throw new ValidationError([`${k} must be a number of unix seconds, got ${String(v)}`]);
  const tags = checkTagFilter(f.tags);
  const r: ListRange = { from: f.from, to: f.to, ...(tags && { tags }) };
  if (f.task !== undefined) r.task = checkText(f.task, 'the task filter');
  if (f.queues !== undefined) {
    if (!Array.isArray(f.queues) || f.queues.length === 0 || f.queues.length > 100)
      throw new ValidationError(['queues must be a list of 1 to 100 queue names (null for "names no queue")']);
    r.queues = [...new Set(f.queues.map((q) => (q === null ? null : checkText(q, 'a queue name'))))];
  }
  if (f.keyPrefix !== undefined) r.keyPrefix = checkText(f.keyPrefix, 'the key prefix');
  if (f.idPrefix !== undefined) r.idPrefix = checkText(f.idPrefix, 'the id prefix');
  return r;
}

/** Whether `range` asks more than a due range (and a position) of a job. */
export function filtersJobs(r: ListRange): boolean {
  return r.tags !== undefined || r.task !== undefined || r.queues !== undefined || r.keyPrefix !== undefined || r.idPrefix !== undefined;
}

/**
 * Whether a scheduled job matches every filter of `r` (the due range and position included), read
 * from what the job holds: for stores that match a filter job by job (memory; Redis, where no
 * index of ours covers a job the Python package wrote), and for tests.
 */
export function jobMatches(
  r: ListRange,
  j: { id: string; dueAt: number; entry: string; tags?: readonly string[] | undefined; key?: string | undefined },
): boolean {
  if (r.from !== undefined && j.dueAt < r.from) return false;
  if (r.to !== undefined && j.dueAt > r.to) return false;
  if (r.after !== undefined && compareDue(j, r.after) <= 0) return false;
  if (r.idPrefix !== undefined && !j.id.startsWith(r.idPrefix)) return false;
  if (r.keyPrefix !== undefined && !(j.key !== undefined && j.key.startsWith(r.keyPrefix))) return false;
  if (r.tags !== undefined && !holdsTags(j.tags, r.tags)) return false;
  if (r.task !== undefined || r.queues !== undefined) {
    const f = indexFieldsOf(j.entry);
    if (r.task !== undefined && f.task !== r.task) return false;
    if (r.queues !== undefined && !r.queues.includes(f.queue)) return false;
  }
  return true;
}

/** Whether a job's tags satisfy a tag filter. */
export function holdsTags(tags: readonly string[] | undefined, f: { all: readonly string[]; any: readonly string[] }): boolean {
  if (!tags) return false;
  return f.all.every((t) => tags.includes(t)) && (f.any.length === 0 || f.any.some((t) => tags.includes(t)));
}

/** A job's tags after `change`: the ones kept, in order, then the added ones it lacked. */
export function retagged(tags: readonly string[] | undefined, add: readonly string[], remove: readonly string[]): string[] {
  const kept = (tags ?? []).filter((t) => !remove.includes(t));
  return [...kept, ...add.filter((t) => !kept.includes(t))];
}

/** The start of the bucket `dueAt` falls in. */
export function bucketOf(dueAt: number, bucketSeconds: number): number {
  return Math.floor(dueAt / bucketSeconds) * bucketSeconds;
}

/** Jobs counted into buckets: the non-empty ones in time order. */
export function toBuckets(dueTimes: Iterable<number>, bucketSeconds: number): HistogramBucket[] {
  const counts = new Map<number, number>();
  for (const t of dueTimes) {
    const b = bucketOf(t, bucketSeconds);
    counts.set(b, (counts.get(b) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => a[0] - b[0]).map(([start, count]) => ({ start, count }));
}

/** A lease a claim or renewal gives: its token, and the deadline the token stands for. */
export interface Lease {
  /** `leaseToken(now, leaseMs)` */
  token: string;
  /** `Number(token)`: the unix seconds the lease ends at, as stored */
  deadline: number;
}

/** The lease a claim or renewal made at `now` (unix seconds) for `leaseMs` gives; `leaseMs` must be > 0. */
export function leaseOf(now: number, leaseMs: number): Lease {
  if (!(leaseMs > 0)) throw new Error('leaseMs must be > 0');
  const token = leaseToken(now, leaseMs);
  return { token, deadline: Number(token) };
}

/** A place in a page's order: due time (for dead letters: when it died), then id. */
export interface Position {
  dueAt: number;
  id: string;
}

/** A claim as a store's `doClaim` gets it: `limit` a whole number >= 1. */
export interface ClaimQuery {
  until: number;
  now: number;
  limit: number;
}

/** Which scheduled jobs a `list` page holds: due in [from, to], after the position `after`. */
export interface ListRange {
  from?: number | undefined;
  to?: number | undefined;
  after?: Position;
  /** checked, each tag once; at least one of the two lists non-empty when given */
  tags?: { all: readonly string[]; any: readonly string[] };
  /** the entry's task name (`indexFieldsOf`), exactly */
  task?: string;
  /** the entry's queue (`indexFieldsOf`) is one of these (null: names none); each once, at least one */
  queues?: readonly (string | null)[];
  /** the job holds a deduplication key starting with this */
  keyPrefix?: string;
  /** the job's id starts with this */
  idPrefix?: string;
}

/**
 * A row `doList` read: a scheduled job, in due order. `entry` null: the index named a job whose
 * entry was gone when read (claimed between two reads); it is left out of the page, but a page
 * ending on it still ends there.
 */
export interface ListedJob {
  id: string;
  dueAt: number;
  entry: string | null;
}

/** A row `doDeadLetters` read whose record was gone (deleted between two reads): left out, as `ListedJob`'s null entry. */
export interface MissingDead {
  id: string;
  diedAt: number;
  missing: true;
}

/** Rows per `doList` read when counting or bucketing by reading jobs (`doCountWhere`'s default). */
const SCAN_PAGE = 5000;

export abstract class StoreBase implements ScheduleStore {
  abstract readonly description: string;
  #closed = false;

  /** Throws the closed-store error (`ErrorCode.CLOSED`) once `close()` was called. */
  protected assertOpen(): void {
    if (this.#closed) throw storeClosed(this.description);
  }

  async add(jobs: readonly NewJob[], options: AddOptions = {}): Promise<number> {
    this.assertOpen();
    checkNewJobs(jobs);
    if (jobs.length === 0) return 0;
    return this.doAdd(jobs, options.duplicates === 'skip' ? 'skip' : 'reject');
  }

  async addKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult> {
    this.assertOpen();
    checkNewJobs([job]);
    checkJobKey(key);
    return this.doAddKeyed(job, key, mode);
  }

  async remove(id: string): Promise<boolean> {
    this.assertOpen();
    return this.doRemove(id);
  }

  async removeMany(ids: readonly string[]): Promise<string[]> {
    this.assertOpen();
    const unique = [...new Set(ids)];
    return unique.length ? this.doRemoveMany(unique) : [];
  }

  async removeWhere(filter: JobFilter, o: RemoveWhereOptions = {}): Promise<number> {
    this.assertOpen();
    const r = checkFilter(filter);
    const batch = checkBatchSize(o.batchSize);
    let removed = 0;
    let first = true;
    await this.doEachMatch(r, batch, async (ids) => {
      // stops between chunks, never before the first (as the bulk actions do)
      if (!first && o.signal?.aborted) return false;
      first = false;
      const gone = await this.doRemoveMatches(ids);
      removed += gone.length;
      await o.onChunk?.({ matched: ids, removed: gone });
      return true;
    });
    return removed;
  }

  async reschedule(id: string, dueAt: number, entry?: string): Promise<boolean> {
    this.assertOpen();
    checkDueAt(dueAt, `the new due time of job ${JSON.stringify(id)}`);
    if (entry !== undefined) checkNewJobs([{ id, dueAt, entry }]);
    return this.doReschedule(id, dueAt, entry);
  }

  async claimDue(o: ClaimOptions): Promise<ClaimedJob[]> {
    this.assertOpen();
    const lease = leaseOf(o.now, o.leaseMs);
    const limit = Math.floor(o.limit);
    if (!(limit > 0)) return [];
    return this.doClaim({ until: o.until, now: o.now, limit }, lease);
  }

  async renew(claims: readonly ClaimedJob[], o: RenewOptions): Promise<ClaimedJob[]> {
    this.assertOpen();
    const lease = leaseOf(o.now, o.leaseMs);
    if (claims.length === 0) return [];
    // never shortens a lease: one that already ends at or after the new deadline stays as it is
    const longEnough = (c: ClaimedJob) => Number(c.token) >= lease.deadline;
    const extend = claims.filter((c) => !longEnough(c));
    const keep = claims.filter(longEnough);
    const extended = new Set(extend.length ? await this.doRenew(extend, lease) : []);
    const held = new Set(keep.length ? await this.doStillHeld(keep) : []);
    return claims.flatMap((c) => (extended.has(c) ? [{ ...c, token: lease.token }] : held.has(c) ? [c] : []));
  }

  async acknowledge(claims: readonly ClaimedJob[]): Promise<void> {
    this.assertOpen();
    if (claims.length) await this.doAcknowledge(claims);
  }

  async release(claims: readonly ClaimedJob[]): Promise<void> {
    this.assertOpen();
    if (claims.length) await this.doRelease(claims);
  }

  async retryLater(retries: readonly Retry[]): Promise<void> {
    this.assertOpen();
    if (retries.length) await this.doRetryLater(retries);
  }

  async bury(burials: readonly Burial[]): Promise<void> {
    this.assertOpen();
    if (burials.length) await this.doBury(burials);
  }

  async deadLetters(o: { limit: number; cursor?: string }): Promise<DeadLetterPage> {
    this.assertOpen();
    checkLimit(o.limit);
    const after = o.cursor === undefined ? undefined : parseCursor(o.cursor);
    const rows = await this.doDeadLetters(after, readAhead(o.limit));
    const { items, cursor } = pageOf(rows, o.limit, deadCursorAfter);
    const letters = items.filter((r): r is DeadLetter => !('missing' in r));
    return cursor ? { letters, cursor } : { letters };
  }

  async getDead(id: string): Promise<DeadLetter | undefined> {
    this.assertOpen();
    return this.doGetDead(id);
  }

  async reviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]> {
    this.assertOpen();
    checkDueAt(dueAt, 'the due time of revived jobs');
    if (ids.length === 0) return [];
    return this.doReviveDead(ids, dueAt);
  }

  async purgeDead(ids: readonly string[] | 'all'): Promise<number> {
    this.assertOpen();
    if (ids === 'all') return this.doPurgeDead('all');
    const unique = [...new Set(ids)];
    return unique.length ? this.doPurgeDead(unique) : 0;
  }

  async get(id: string): Promise<StoredJob | undefined> {
    this.assertOpen();
    const job = await this.doGet(id);
    if (!job) return undefined;
    const [tagged] = await this.#withTags([job]);
    return tagged;
  }

  async list(o: ListOptions): Promise<JobPage> {
    this.assertOpen();
    checkLimit(o.limit);
    const after = o.cursor === undefined ? undefined : parseCursor(o.cursor);
    const range = checkFilter(o);
    if (Math.max(o.from ?? -Infinity, after?.dueAt ?? -Infinity) > (o.to ?? Infinity)) return { jobs: [] };
    const rows = await this.doList({ ...range, ...(after && { after }) }, readAhead(o.limit));
    const { items, cursor } = pageOf(rows, o.limit, cursorAfter);
    const found = items.flatMap((r): StoredJob[] => (r.entry === null ? [] : [{ id: r.id, dueAt: r.dueAt, entry: r.entry, state: 'scheduled' }]));
    const jobs = await this.#withTags(found);
    return cursor ? { jobs, cursor } : { jobs };
  }

  /** The jobs with their tags (`tags` only on those that have any), read in one `doTagsOf`. */
  async #withTags(jobs: StoredJob[]): Promise<StoredJob[]> {
    if (jobs.length === 0) return jobs;
    const tags = await this.doTagsOf(jobs.map((j) => j.id));
    if (tags.size === 0) return jobs;
    return jobs.map((j) => {
      const t = tags.get(j.id);
      return t && t.length ? { ...j, tags: t } : j;
    });
  }

  async countWhere(f: JobFilter): Promise<number> {
    this.assertOpen();
    const range = checkFilter(f);
    if ((range.from ?? -Infinity) > (range.to ?? Infinity)) return 0;
    return this.doCountWhere(range);
  }

  async histogram(o: HistogramOptions): Promise<HistogramBucket[]> {
    this.assertOpen();
    const range = checkFilter(o);
    const b = o.bucketSeconds;
    if (typeof o.from !== 'number' || typeof o.to !== 'number' || !Number.isFinite(o.from) || !Number.isFinite(o.to))
      throw new ValidationError(['a histogram needs a finite from and to (unix seconds)']);
    if (o.from > o.to) throw new ValidationError([`the histogram's range is inverted: from ${o.from} is after to ${o.to}; pass from <= to`]);
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 1) throw new ValidationError([`bucketSeconds must be a whole number >= 1, got ${String(b)}`]);
    const buckets = Math.floor(o.to / b) - Math.floor(o.from / b) + 1;
    if (buckets > MAX_HISTOGRAM_BUCKETS)
      throw new ValidationError([`the histogram would have ${buckets} buckets; at most ${MAX_HISTOGRAM_BUCKETS}: use wider buckets or a shorter range`]);
    return this.doHistogram(range as ListRange & { from: number; to: number }, b);
  }

  async rescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    this.assertOpen();
    if (!Array.isArray(moves)) throw new ValidationError(['rescheduleMany takes a list of { id, dueAt }']);
    const seen = new Set<string>();
    for (const m of moves) {
      if (m === null || typeof m !== 'object' || typeof m.id !== 'string') throw new ValidationError(['each move must be { id: string, dueAt: number }']);
      checkDueAt(m.dueAt, `the new due time of job ${JSON.stringify(m.id)}`);
      if (seen.has(m.id)) throw new ValidationError([`job ${JSON.stringify(m.id)} is given twice; move each job once`]);
      seen.add(m.id);
    }
    return moves.length ? this.doRescheduleMany(moves) : [];
  }

  async retagMany(ids: readonly string[], change: TagChange): Promise<RetagResult> {
    this.assertOpen();
    const { add, remove } = checkTagChange(change);
    const unique = [...new Set(ids)];
    return unique.length ? this.doRetagMany(unique, add, remove) : { changed: [], overLimit: [] };
  }

  async count(): Promise<StoreCounts> {
    this.assertOpen();
    return this.doCount();
  }

  async nextDueAt(): Promise<number | undefined> {
    this.assertOpen();
    return this.doNextDueAt();
  }

  async identity(): Promise<string> {
    this.assertOpen();
    return this.doIdentity();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.doClose();
  }

  /** `add` of checked jobs, at least one. */
  protected abstract doAdd(jobs: readonly NewJob[], duplicates: 'reject' | 'skip'): Promise<number>;
  /** `addKeyed` of a checked job and key. */
  protected abstract doAddKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult>;
  protected abstract doRemove(id: string): Promise<boolean>;
  /** `removeMany` of at least one id, each once: the ids it deleted (scheduled ones only). */
  protected abstract doRemoveMany(ids: readonly string[]): Promise<string[]>;
  /** `reschedule` to a checked due time (and entry). */
  protected abstract doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean>;
  /** `claimDue`: leases up to `q.limit` (>= 1) jobs with `lease`, every claim's token `lease.token`. */
  protected abstract doClaim(q: ClaimQuery, lease: Lease): Promise<ClaimedJob[]>;
  /**
   * Sets the lease of the claims still held (their stored deadline equals their token) to
   * `lease`, whose deadline is later than each of theirs. Resolves to those it extended (the
   * objects given, unchanged: `renew` gives them the new token).
   */
  protected abstract doRenew(claims: readonly ClaimedJob[], lease: Lease): Promise<readonly ClaimedJob[]>;
  /** Of `claims`, those still held, changing nothing (the objects given). */
  protected abstract doStillHeld(claims: readonly ClaimedJob[]): Promise<readonly ClaimedJob[]>;
  /** `acknowledge` of at least one claim. */
  protected abstract doAcknowledge(claims: readonly ClaimedJob[]): Promise<void>;
  /** `release` of at least one claim. */
  protected abstract doRelease(claims: readonly ClaimedJob[]): Promise<void>;
  /** `retryLater` of at least one retry. */
  protected abstract doRetryLater(retries: readonly Retry[]): Promise<void>;
  /** `bury` of at least one burial. */
  protected abstract doBury(burials: readonly Burial[]): Promise<void>;
  /** Up to `read` dead letters after `after` (died at, then id), oldest first; `StoreBase` makes the page. */
  protected abstract doDeadLetters(after: Position | undefined, read: number): Promise<readonly (DeadLetter | MissingDead)[]>;
  protected abstract doGetDead(id: string): Promise<DeadLetter | undefined>;
  /** `reviveDead` of at least one id (maybe given twice), to a checked due time. */
  protected abstract doReviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]>;
  /** `purgeDead` of `'all'`, or of at least one id, each once. */
  protected abstract doPurgeDead(ids: readonly string[] | 'all'): Promise<number>;
  /** The job (scheduled or in flight) without its tags: `StoreBase` adds them (`doTagsOf`). */
  protected abstract doGet(id: string): Promise<StoredJob | undefined>;
  /**
   * The tags of the live (scheduled or in-flight) jobs among `ids` (at least one), by id; jobs
   * without tags are left out. A dead letter's tags travel in its record instead (`bury` moves
   * them there, `reviveDead` back), so an id reused while a dead letter holds it never mixes them.
   */
  protected abstract doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>>;
  /**
   * Up to `read` scheduled jobs in `range`, in due order; `StoreBase` makes the page. Only jobs
   * matching every filter of `range` (as `jobMatches` says): tags through the store's tag index,
   * the rest as each store can (see its header).
   */
  protected abstract doList(range: ListRange, read: number): Promise<readonly ListedJob[]>;
  /**
   * Every scheduled job matching `range` (a checked filter), chunks of at most `batch` distinct
   * ids, until `onChunk` says false or none is left; the store may change what it named between
   * chunks (`removeWhere` deletes them). This default pages in due order, each page after the
   * last job of the one before; a store whose walk needs no order overrides it.
   */
  protected async doEachMatch(range: ListRange, batch: number, onChunk: (ids: string[]) => Promise<boolean>): Promise<void> {
    for (let after: Position | undefined; ;) {
      const page = await this.doList(after ? { ...range, after } : range, batch);
      if (page.length === 0 || !(await onChunk(page.map((j) => j.id))) || page.length < batch) return;
      after = page.at(-1);
    }
  }
  /**
   * `removeWhere`'s removal of one chunk `doEachMatch` named: the ids removed (a job in flight or
   * gone is not). This default is `doRemoveMany`; a store may instead mark them removed, so long
   * as every read and write from then on treats them as gone (SQLite: see its "Revoked").
   */
  protected async doRemoveMatches(ids: string[]): Promise<string[]> {
    return this.doRemoveMany(ids);
  }
  /**
   * How many scheduled jobs are in `range` (a checked filter, not empty). This default reads them
   * a page of `doList` at a time; a store with an index that can count overrides it.
   */
  protected async doCountWhere(range: ListRange): Promise<number> {
    let n = 0;
    await this.#scan(range, (rows) => (n += rows.length));
    return n;
  }

  /**
   * The non-empty buckets of the scheduled jobs in `range` (from and to given, checked). This
   * default reads them a page of `doList` at a time; a store that can group in the store overrides it.
   */
  protected async doHistogram(range: ListRange & { from: number; to: number }, bucketSeconds: number): Promise<HistogramBucket[]> {
    const times: number[] = [];
    await this.#scan(range, (rows) => {
      for (const r of rows) times.push(r.dueAt);
    });
    return toBuckets(times, bucketSeconds);
  }

  /** Every job in `range`, a page of `SCAN_PAGE` at a time (jobs whose entry went meanwhile left out). */
  async #scan(range: ListRange, onPage: (rows: readonly ListedJob[]) => void): Promise<void> {
    let after = range.after;
    for (;;) {
      const rows = await this.doList({ ...range, ...(after && { after }) }, SCAN_PAGE);
      onPage(rows.filter((r) => r.entry !== null));
      const last = rows.at(-1);
      if (rows.length < SCAN_PAGE || last === undefined) return;
      after = { dueAt: last.dueAt, id: last.id };
    }
  }

  /** `rescheduleMany` of at least one move, each id once, due times checked: the ids moved. */
  protected abstract doRescheduleMany(moves: readonly JobMove[]): Promise<string[]>;
  /**
   * `retagMany` of at least one id, each once; `add` and `remove` checked (each tag once, none in
   * both, at least one tag between them). A job's new tags are `retagged(old, add, remove)`.
   */
  protected abstract doRetagMany(ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<RetagResult>;
  protected abstract doCount(): Promise<StoreCounts>;
  protected abstract doNextDueAt(): Promise<number | undefined>;
  protected abstract doIdentity(): Promise<string>;
  /** The store's teardown (connections, watchers), run once, by the first `close()`. */
  protected abstract doClose(): Promise<void>;
}
