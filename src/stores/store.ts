/**
 * The seam between the scheduler/dispatcher and a place that keeps jobs until they are due.
 * Only what they need: add, remove, reschedule, claim due with a lease, renew, acknowledge,
 * release, count, list in due order, and the next due time. Optional abilities are declared,
 * not faked.
 *
 * Every store behaves the same; `test/contract/store-contract.ts` is the executable form of
 * this file, run unchanged against each store, and every store extends `StoreBase` (base.ts),
 * which does what they share once: the closed state, the checks below, leases and paging. In short:
 * - Times are unix seconds (fractions allowed). "Due order" is due time, then id (code-point order).
 * - A job is in exactly one state: scheduled, in flight (claimed, leased to a token), or gone.
 * - Ids are unique across scheduled and in-flight jobs.
 * - Errors: `DuplicateJobError` for a taken id, `ConnectionError` when the store cannot be
 *   reached (with the URL redacted), `ValidationError` for a bad URL or option.
 */
import { isWellFormed } from '../celery/limits.js';
import { ErrorCode, SchedulerError, ValidationError } from '../util/errors.js';
import type { JobKeyMode, NewJob } from '../job/types.js';
import { MAX_TAGS_PER_JOB, resolveTags, tagProblems } from '../job/tags.js';
import type { RedisPush, RedisServerId } from '../redis/handoff.js';

/** A job a dispatcher claimed: in flight, leased to `token`, until acknowledged or released. */
export interface ClaimedJob {
  id: string;
  /** unix seconds */
  dueAt: number;
  /** the stored JSON, or null when the index names a job whose entry is missing */
  entry: string | null;
  /** the claim's token; only its holder can acknowledge, release or hand off the job */
  token: string;
  /** the failed attempts before this claim (see `retryLater`); absent for a job never refused */
  attempts?: Attempts;
}

/**
 * A job's record of failed attempts: how often the broker refused it, the last error, and when
 * it first failed. Kept beside the job (never in its entry), through retries and reschedules;
 * gone when the job is sent, revoked or made a dead letter.
 */
export interface Attempts {
  /** refusals so far (>= 1) */
  count: number;
  /** the last refusal's error, one line */
  lastError: string;
  /** when the first attempt failed (unix seconds) */
  firstFailedAt: number;
  /** the job's due time when it first failed (unix seconds): retries move its due time */
  firstDueAt: number;
}

/** A claimed job the broker refused, to be tried again at `retryAt` (see `retryLater`). */
export interface Retry {
  claim: ClaimedJob;
  /** unix seconds */
  retryAt: number;
  /** the attempts so far, this one included */
  attempts: Attempts;
}

/**
 * Why a job became a dead letter: `corrupt` (its entry cannot become a Celery message),
 * `unsupported` (a well-formed entry asking for what we cannot send exactly as Python's
 * `send_task` would: an unknown keyword, another serializer, a stray pickle, an impossible
 * priority), `rejected` (the broker can never carry it: over a size or depth limit, or it closed
 * the channel), `max_attempts` (the broker refused it on every attempt).
 */
export type DeadReason = 'corrupt' | 'unsupported' | 'rejected' | 'max_attempts';

export const DEAD_REASONS: readonly DeadReason[] = ['corrupt', 'unsupported', 'rejected', 'max_attempts'];

/** A claimed job to be made a dead letter (see `bury`). */
export interface Burial {
  claim: ClaimedJob;
  reason: DeadReason;
  /** the error that decided it, one line */
  error: string;
  /** unix seconds */
  diedAt: number;
  /**
   * The attempts made, the one that decided it included (absent when the job was never tried,
   * e.g. a corrupt entry that was never refused before).
   */
  attempts?: Attempts;
}

/**
 * The stored form of `Attempts`, the same JSON on every store (a column, or a Redis hash value):
 * `{"count":2,"lastError":"…","firstFailedAt":…,"firstDueAt":…}`.
 */
export function encodeAttempts(a: Attempts): string {
  return JSON.stringify({ count: a.count, lastError: a.lastError, firstFailedAt: a.firstFailedAt, firstDueAt: a.firstDueAt });
}

/** Reads `encodeAttempts`' form; undefined for none, or for a record that is not one (it is then ignored). */
export function decodeAttempts(raw: string | null | undefined): Attempts | undefined {
  if (raw === null || raw === undefined || raw === '') return undefined;
  try {
    const v = JSON.parse(raw) as Partial<Attempts>;
    if (typeof v.count !== 'number' || !(v.count >= 1)) return undefined;
    return {
      count: v.count,
      lastError: typeof v.lastError === 'string' ? v.lastError : '',
      firstFailedAt: typeof v.firstFailedAt === 'number' ? v.firstFailedAt : 0,
      firstDueAt: typeof v.firstDueAt === 'number' ? v.firstDueAt : 0,
    };
  } catch {
    return undefined;
  }
}

/** The dead letter a burial makes (what every store keeps). */
export function deadLetterOf(b: Burial, entry: string | null, tags?: readonly string[]): DeadLetter {
  return {
    id: b.claim.id,
    entry,
    dueAt: b.attempts?.firstDueAt ?? b.claim.dueAt,
    reason: b.reason,
    error: b.error,
    attempts: b.attempts?.count ?? 0,
    ...(b.attempts && { firstFailedAt: b.attempts.firstFailedAt }),
    diedAt: b.diedAt,
    ...(tags && tags.length > 0 && { tags }),
  };
}

/**
 * A job that will never be sent as it is: kept with its entry, why, and when, until an operator
 * retries it (back to scheduled) or purges it. Never claimed, never sent, never lost.
 */
export interface DeadLetter {
  id: string;
  /** the stored JSON, exactly (null when the index named a job whose entry was missing) */
  entry: string | null;
  /** the job's due time (before any retry moved it), unix seconds */
  dueAt: number;
  reason: DeadReason;
  /** the last error, one line */
  error: string;
  /** attempts made (0 for a job that could not be tried at all, e.g. corrupt) */
  attempts: number;
  /** when its first attempt failed (unix seconds), when it was tried at all */
  firstFailedAt?: number;
  /** when it became a dead letter (unix seconds) */
  diedAt: number;
  /** its tags, when it has any; `reviveDead` gives them back to the job */
  tags?: readonly string[];
}

export interface DeadLetterPage {
  /** oldest first (by `diedAt`, then id) */
  letters: DeadLetter[];
  /** pass as `cursor` for the next page; absent on the last page */
  cursor?: string;
}

/** What `reviveDead` did with one id. */
export type ReviveOutcome =
  /** back to scheduled, at the due time asked for, with no attempts */
  | 'scheduled'
  /** no dead letter has this id */
  | 'not_dead'
  /** a scheduled or in-flight job holds the id now (scheduled again meanwhile); the dead letter stays */
  | 'id_taken'
  /** the dead letter has no entry to schedule (its key was missing); it stays, purge it */
  | 'no_entry';

export interface ClaimOptions {
  /** claim jobs due at or before this (unix seconds) */
  until: number;
  /** the current time (unix seconds), for lease expiry */
  now: number;
  /** the most jobs to claim; rounded down, and below 1 claims nothing */
  limit: number;
  /** > 0 */
  leaseMs: number;
}

export interface AddOptions {
  /**
   * What a job whose id is already scheduled or in flight does: `reject` (the default) throws
   * `DuplicateJobError` and adds nothing; `skip` leaves the existing job alone and adds the rest.
   */
  duplicates?: 'reject' | 'skip';
}

export interface RenewOptions {
  /** the current time (unix seconds) */
  now: number;
  /** > 0 */
  leaseMs: number;
}

/** The default and the most jobs one chunk of a bulk change handles (`removeWhere`, the admin bulk actions). */
export const DEFAULT_BATCH_SIZE = 5000;
export const MAX_BATCH_SIZE = 10_000;

/** A batch size given (or the default), checked: a whole number from 1 to `MAX_BATCH_SIZE`. */
export function checkBatchSize(size: number | undefined): number {
  const n = size ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1 || n > MAX_BATCH_SIZE)
    throw new ValidationError([`batchSize must be a whole number from 1 to ${MAX_BATCH_SIZE}, got ${String(size)}`]);
  return n;
}

export interface RemoveWhereOptions {
  /** the most jobs one chunk removes (a whole number from 1 to 10,000; default 5000) */
  batchSize?: number;
  signal?: AbortSignal;
  onChunk?: (chunk: { matched: readonly string[]; removed: readonly string[] }) => void | Promise<void>;
}

/** A job as stored. */
export interface StoredJob {
  id: string;
  /** unix seconds; for an in-flight job, its lease deadline */
  dueAt: number;
  entry: string;
  state: 'scheduled' | 'in_flight';
  /** its tags, when it has any (absent otherwise), in the order given */
  tags?: readonly string[];
  /**
   * `get` only: the deduplication key it holds (`addKeyed`), when it holds one. A claimed job
   * holds none: its key is free for a new job from the claim on.
   */
  key?: string;
}

/**
 * Which scheduled jobs a `list`, `countWhere` or `histogram` is about: every field given narrows
 * it (an absent one asks nothing). What each store serves from an index and what it reads entry
 * by entry is in its header; the answers are the same on every store.
 */
export interface JobFilter {
  /** only jobs due at or after this (unix seconds) */
  from?: number;
  /** only jobs due at or before this (unix seconds) */
  to?: number;
  /**
   * Only jobs holding every tag of `all` and at least one of `any` (an empty or absent list asks
   * nothing). Served by the store's tag index, not by reading every job: see each store.
   */
  tags?: TagFilter;
  /** only jobs of this task: the entry's task name, exactly (see `indexFieldsOf`) */
  task?: string;
  /**
   * only jobs whose entry names one of these queues; `null` in the list stands for a job that
   * names none (it goes to the app's default queue). See `indexFieldsOf`.
   */
  queues?: readonly (string | null)[];
  /** only jobs holding a deduplication key (see `addKeyed`) that starts with this */
  keyPrefix?: string;
  /** only jobs whose id starts with this */
  idPrefix?: string;
}

export interface ListOptions extends JobFilter {
  /** the most jobs in this page (>= 1) */
  limit: number;
  /** where the previous page ended (its `cursor`); absent for the first page */
  cursor?: string;
}

/** A future-load histogram: the scheduled jobs matching the filter, counted per time bucket. */
export interface HistogramOptions extends JobFilter {
  /** the first time counted (unix seconds) */
  from: number;
  /** the last time counted (unix seconds), inclusive */
  to: number;
  /**
   * The bucket width in seconds (a whole number >= 1; at most `MAX_HISTOGRAM_BUCKETS` buckets
   * over the range). Buckets are aligned to whole multiples of it since the unix epoch, so 3600
   * gives UTC hours and 86400 UTC days.
   */
  bucketSeconds: number;
}

/** The most buckets one `histogram` call counts. */
export const MAX_HISTOGRAM_BUCKETS = 100_000;

/** One bucket of a histogram: the jobs due in [start, start + bucketSeconds). */
export interface HistogramBucket {
  /** unix seconds, a whole multiple of the bucket width */
  start: number;
  count: number;
}

/** A scheduled job's new due time, for `rescheduleMany`. */
export interface JobMove {
  id: string;
  /** unix seconds */
  dueAt: number;
}

/** What `retagMany` does to each job's tags: drop `remove`, then add `add` (after those it has). */
export interface TagChange {
  add?: readonly string[];
  remove?: readonly string[];
}

export interface RetagResult {
  /** the scheduled jobs retagged (whether or not they held the tags already) */
  changed: string[];
  /** scheduled jobs left unchanged because they would hold more than `MAX_TAGS_PER_JOB` tags */
  overLimit: string[];
}

/** Which tags a listed job must hold. */
export interface TagFilter {
  /** every one of these */
  all?: readonly string[];
  /** at least one of these */
  any?: readonly string[];
}

export interface JobPage {
  /** scheduled jobs (not in-flight ones), in due order */
  jobs: StoredJob[];
  /** pass as `cursor` for the next page; absent on the last page */
  cursor?: string;
}

/** What `addKeyed` does when a scheduled job already holds the key (job/types.ts). */
export type { JobKeyMode };

/** What `addKeyed` did: the job now holding the key, and how it came to hold it. */
export interface KeyedAddResult {
  /** the id of the scheduled job holding the key now */
  id: string;
  outcome: 'added' | 'replaced' | 'kept';
  /** the job `replace` removed */
  replacedId?: string;
}

export interface StoreCounts {
  scheduled: number;
  inFlight: number;
  /** dead letters (see `bury`) */
  dead: number;
}

/**
 * Tags (job/tags.ts) belong to a job id from `add` / `addKeyed` until the job is gone for good:
 * `get`, `list` and `deadLetters` show them; `reschedule`, claiming, `release`, `retryLater`,
 * `renew` and `bury` keep them; `reviveDead` gives them back with the job; `acknowledge`,
 * `handOff`, `remove`, `purgeDead` and an `addKeyed` replace (for the replaced job) delete them.
 * A job skipped by `add(..., { duplicates: 'skip' })` keeps the tags it had.
 */
export interface ScheduleStore {
  /** the store's URL with its password redacted, for messages */
  readonly description: string;
  /**
   * Adds jobs atomically (all or none). Throws `DuplicateJobError` when an id is taken, unless
   * `duplicates: 'skip'`. Resolves to how many jobs were added.
   */
  add(jobs: readonly NewJob[], options?: AddOptions): Promise<number>;
  /**
   * Adds one job under a deduplication key, atomically. A key belongs to at most one SCHEDULED
   * job (a job in flight or sent no longer holds its key). When no scheduled job holds `key`,
   * adds `job` (`DuplicateJobError` when its id is taken, as `add`): `added`. When a scheduled
   * job E holds it: `reject` throws `JobKeyTakenError` and changes nothing; `keep` changes
   * nothing and resolves to E (`kept`); `replace` removes E and adds `job` holding the key in
   * one atomic step (`replaced`, `replacedId` E's id).
   *
   * Removing, claiming or burying a job releases its key; `reschedule` keeps it. A claimed
   * job given back by `release` comes back WITHOUT its key (another job may have taken it
   * meanwhile), so a later `addKeyed` with that key adds a second job.
   */
  addKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult>;
  /** Deletes a scheduled job for good; false when it is not scheduled (unknown, in flight or sent). */
  remove(id: string): Promise<boolean>;
  /**
   * `remove` for many jobs in one round trip: each job is deleted atomically on its own (with its
   * key and tags) when it is scheduled, and left alone otherwise (in flight, sent, unknown).
   * Resolves to the ids it deleted, each once, in no particular order.
   */
  removeMany(ids: readonly string[]): Promise<string[]>;
  /**
   * Removes every scheduled job matching `filter`, each atomically on its own as `removeMany`
   * does (one in flight is left alone), a chunk of at most `batchSize` (default 5000) at a time,
   * in an order of the store's choosing, until none is left or `signal` aborts between chunks.
   * `onChunk` (awaited) gets each chunk's matches and the ids of those removed. Resolves to how
   * many it removed. What a bulk revoke by query uses: a store whose index is unordered (a Redis
   * tag set) removes as it walks, without sorting the matches into due order first.
   */
  removeWhere(filter: JobFilter, o?: RemoveWhereOptions): Promise<number>;
  /**
   * Moves a scheduled job to a new due time (and, when given, a new entry) in one atomic step.
   * False when the job is not scheduled (unknown, in flight or sent): nothing changes then.
   */
  reschedule(id: string, dueAt: number, entry?: string): Promise<boolean>;
  /**
   * Atomically claims due jobs (and jobs whose lease expired) for this dispatcher: expired
   * leases first, then due jobs in due order. A re-claimed job reports its old lease deadline
   * as its `dueAt`.
   */
  claimDue(options: ClaimOptions): Promise<ClaimedJob[]>;
  /**
   * Extends the lease of claims this dispatcher still holds (e.g. while a broker is slow to
   * confirm). Resolves to the claims still held, with their new tokens; a claim whose lease was
   * taken over (or settled) is left out and left alone. A lease is never shortened: a claim still
   * held whose lease already ends at or after `now + leaseMs` comes back unchanged.
   */
  renew(claims: readonly ClaimedJob[], options: RenewOptions): Promise<ClaimedJob[]>;
  /** The broker accepted these: forget them. Jobs no longer leased to their claim are left alone. */
  acknowledge(claims: readonly ClaimedJob[]): Promise<void>;
  /**
   * Puts claimed jobs back at their due times, their attempts unchanged (the broker could not be
   * reached, or the dispatcher is stopping: not the job's fault). Jobs no longer leased to their
   * claim are left alone.
   */
  release(claims: readonly ClaimedJob[]): Promise<void>;
  /**
   * Puts claimed jobs the broker refused back as scheduled, due at `retryAt`, with their attempts
   * recorded (they come back in the next claim's `attempts`). Jobs no longer leased to their
   * claim are left alone.
   */
  retryLater(retries: readonly Retry[]): Promise<void>;
  /**
   * Makes claimed jobs dead letters: each leaves the in-flight set, keeping its entry, reason,
   * error, attempts and times (see `DeadLetter`); its attempts record goes. A dead letter holds
   * no id: a new job may take it (`reviveDead` then says `id_taken`). Jobs no longer leased to
   * their claim are left alone.
   */
  bury(burials: readonly Burial[]): Promise<void>;
  /** Dead letters, oldest first, a page at a time (`limit` >= 1). */
  deadLetters(options: { limit: number; cursor?: string }): Promise<DeadLetterPage>;
  /** One dead letter, or undefined. */
  getDead(id: string): Promise<DeadLetter | undefined>;
  /**
   * Schedules dead letters again, each atomically: due at `dueAt`, attempts cleared, entry as
   * stored. Resolves to one outcome per id, in order, as if they were revived one at a time (an
   * id given twice is `not_dead` the second time).
   */
  reviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]>;
  /** Deletes dead letters for good (`'all'`: every one). Resolves to how many were deleted. */
  purgeDead(ids: readonly string[] | 'all'): Promise<number>;
  /** The stored entry and due time of a scheduled or in-flight job. */
  get(id: string): Promise<StoredJob | undefined>;
  /** Scheduled jobs in due order, a page at a time, those matching the filter only. */
  list(options: ListOptions): Promise<JobPage>;
  /** How many scheduled jobs match the filter (in-flight ones are not counted). */
  countWhere(filter: JobFilter): Promise<number>;
  /**
   * The scheduled jobs matching the filter, due in [from, to], counted per bucket: the buckets
   * holding at least one job, in time order.
   */
  histogram(options: HistogramOptions): Promise<HistogramBucket[]>;
  /**
   * `reschedule` for many jobs in one round trip: each scheduled job moves to its new due time
   * atomically on its own (keeping its entry, key, tags and attempts); one in flight, sent or
   * unknown is left alone. Resolves to the ids it moved, in no particular order. An id given
   * twice is a `ValidationError`.
   */
  rescheduleMany(moves: readonly JobMove[]): Promise<string[]>;
  /**
   * Changes the tags of scheduled jobs, each atomically on its own: removes `change.remove`, then
   * adds `change.add` (tags it holds already stay where they are). A job in flight, sent or
   * unknown is left alone and named nowhere; one that would hold more than `MAX_TAGS_PER_JOB` is
   * left alone and named in `overLimit`.
   */
  retagMany(ids: readonly string[], change: TagChange): Promise<RetagResult>;
  count(): Promise<StoreCounts>;
  /** When the next job becomes claimable (due, or its lease ends), in unix seconds; undefined when empty. */
  nextDueAt(): Promise<number | undefined>;
  /**
   * Optional: calls `onSooner(dueAt)` whenever a job is added that is due before every other,
   * from any process. Resolves to a function that stops listening. Stores without it are polled.
   */
  watch?(onSooner: (dueAt: number) => void): Promise<() => Promise<void>>;
  /** Optional (Redis): the server identity and database, for the atomic hand-off. */
  redisLocation?(): Promise<{ server: RedisServerId; db: number }>;
  /**
   * Optional (Redis): pushes each claim's messages onto broker lists on the same server and
   * removes the job, in one atomic step. Returns, per claim: true when handed off, false when it
   * is no longer leased to its claim, or an Error when its messages cannot be pushed (e.g. a
   * broker key of another type); such a job is unchanged, still leased to the claim.
   */
  handOff?(claims: readonly ClaimedJob[], pushes: readonly (readonly RedisPush[])[]): Promise<(boolean | Error)[]>;
  /** Closes connections; idempotent. Other calls after it reject. */
  close(): Promise<void>;
  /**
   * Which jobs this store holds, as a string: two stores whose identities are equal hold the same
   * jobs, however they were reached (another host name or URL, a symlink, a relative path).
   * Redis: the server's `run_id`, the database and the key prefix (two prefixes on one database
   * are two stores). SQLite: the file's device and inode (a file not made yet: its real path; each
   * `:memory:` database is its own). PostgreSQL: the server (system identifier and start time),
   * the database and the schema. Memory: the data its handles share. A server's part changes when
   * it restarts, so compare identities read together. Reaches the store but creates and changes
   * nothing: no SQLite file, no schema.
   */
  identity(): Promise<string>;
}

/**
 * The token of a claim made at `now` (unix seconds) for `leaseMs`: its lease deadline, in whole
 * milliseconds so its decimal form is short and exact. A later claim of the same job always gets
 * a greater one, so "the stored deadline equals my token" proves a dispatcher still holds it.
 */
export function leaseToken(now: number, leaseMs: number): string {
  return String(Math.round(now * 1000 + leaseMs) / 1000);
}

/**
 * Checks jobs before a store writes them, the same on every store: a non-empty id and an entry
 * that are strings of well-formed Unicode (a lone surrogate does not survive the trip to SQLite,
 * PostgreSQL or Redis unchanged, so the row would never match its claim again), and a finite due
 * time. Throws one `ValidationError` listing every problem; nothing is written then.
 */
export function checkNewJobs(jobs: readonly NewJob[]): void {
  const problems: string[] = [];
  for (const [i, job] of jobs.entries()) {
    const where = jobs.length === 1 ? 'the job' : `job ${i}`;
    if (typeof job !== 'object' || job === null) {
      problems.push(`${where} is not an object {id, dueAt, entry}`);
      continue;
    }
    if (typeof job.id !== 'string' || job.id === '') problems.push(`${where} needs a non-empty string id`);
    else if (!isWellFormed(job.id)) problems.push(`${where} has an id that is not well-formed Unicode (a lone surrogate); pass a valid string`);
    if (typeof job.entry !== 'string') problems.push(`${where} needs a string entry`);
    else if (!isWellFormed(job.entry)) problems.push(`${where} has an entry that is not well-formed Unicode (a lone surrogate)`);
    if (typeof job.dueAt !== 'number' || !Number.isFinite(job.dueAt)) problems.push(`${where} needs a finite due time (unix seconds)`);
    problems.push(...tagProblems(job.tags, `${where}'s tags`));
    if (problems.length >= 20) break;
  }
  if (problems.length) throw new ValidationError(problems);
}

/** Checks a deduplication key: a non-empty string of well-formed Unicode. */
export function checkJobKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key === '' || !isWellFormed(key)) {
    throw new ValidationError([
      `a job key must be a non-empty string of well-formed Unicode, got ${typeof key === 'string' ? JSON.stringify(key) : typeof key}`,
    ]);
  }
}

/** Checks a due time given to `reschedule` or `reviveDead`. */
export function checkDueAt(dueAt: unknown, what: string): asserts dueAt is number {
  if (typeof dueAt !== 'number' || !Number.isFinite(dueAt)) throw new ValidationError([`${what} must be a finite number of unix seconds`]);
}

/**
 * Checks a tag change given to `retagMany` (or a bulk retag, before it reads any job): each list
 * valid tags, at least one tag between them, none in both, at most `MAX_TAGS_PER_JOB` added.
 * Resolves to the lists, each tag once.
 */
export function checkTagChange(change: TagChange): { add: string[]; remove: string[] } {
  if (change === null || typeof change !== 'object') throw new ValidationError(['the tag change must be { add?: string[], remove?: string[] }']);
  const problems: string[] = [];
  const add = resolveTags(change.add, problems, 'add') ?? [];
  const remove = resolveTags(change.remove, problems, 'remove') ?? [];
  if (problems.length) throw new ValidationError(problems);
  if (add.length === 0 && remove.length === 0) throw new ValidationError(['a tag change needs a tag to add or to remove']);
  const both = add.filter((t) => remove.includes(t));
  if (both.length) throw new ValidationError([`${JSON.stringify(both[0])} is both added and removed; name each tag once`]);
  if (add.length > MAX_TAGS_PER_JOB) throw new ValidationError([`a job holds at most ${MAX_TAGS_PER_JOB} tags; ${add.length} are added`]);
  return { add, remove };
}

/** Checks a page size given to `list` or `deadLetters`. */
export function checkLimit(limit: unknown): asserts limit is number {
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1)
    throw new ValidationError([`the page size must be a whole number >= 1, not ${String(limit)}`]);
}

/** The error every store method throws after `close()`. */
export function storeClosed(description: string): SchedulerError {
  return new SchedulerError(ErrorCode.CLOSED, `the store ${description} is closed; open a new one (or a new Celery app)`);
}

/**
 * Paging, written once for every store: a store reads `readAhead(limit)` rows (one more than
 * asked, to learn whether more follow), and `pageOf` keeps the first `limit` of them and gives
 * the cursor after the last kept one when more followed.
 */
export function readAhead(limit: number): number {
  return limit + 1;
}

export function pageOf<R>(rows: readonly R[], limit: number, cursorOf: (last: R) => string): { items: R[]; cursor?: string } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return rows.length > limit && last !== undefined ? { items, cursor: cursorOf(last) } : { items };
}

/** The cursor after a dead letter in `deadLetters` order (died at, then id). */
export function deadCursorAfter(letter: { diedAt: number; id: string }): string {
  return cursorAfter({ dueAt: letter.diedAt, id: letter.id });
}

/** The cursor after `job` in due order (opaque to callers; every store uses this form). */
export function cursorAfter(job: { dueAt: number; id: string }): string {
  return `${job.dueAt}:${job.id}`;
}

/** Reads a cursor made by `cursorAfter`; a `ValidationError` for anything else. */
export function parseCursor(cursor: string): { dueAt: number; id: string } {
  const i = cursor.indexOf(':');
  const dueAt = Number(cursor.slice(0, i));
  if (i <= 0 || !Number.isFinite(dueAt))
    throw new ValidationError([`${JSON.stringify(cursor)} is not a list cursor; pass the cursor a previous page returned`]);
  return { dueAt, id: cursor.slice(i + 1) };
}

/** Compares ids as Redis, SQLite and PostgreSQL (COLLATE "C") do: by UTF-8 bytes, i.e. code points. */
export function compareIds(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Due order: due time, then id. */
export function compareDue(a: { dueAt: number; id: string }, b: { dueAt: number; id: string }): number {
  return a.dueAt - b.dueAt || compareIds(a.id, b.id);
}
