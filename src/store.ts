/**
 * The seam between the scheduler/dispatcher and a place that keeps jobs until they are due.
 * Only what they need: add, remove, reschedule, claim due with a lease, renew, acknowledge,
 * release, count, list in due order, and the next due time. Optional abilities are declared,
 * not faked.
 *
 * Every store behaves the same; `test/contract/store-contract.ts` is the executable form of
 * this file, run unchanged against each store. In short:
 * - Times are unix seconds (fractions allowed). "Due order" is due time, then id (code-point order).
 * - A job is in exactly one state: scheduled, in flight (claimed, leased to a token), or gone.
 * - Ids are unique across scheduled and in-flight jobs.
 * - Errors: `DuplicateJobError` for a taken id, `ConnectionError` when the store cannot be
 *   reached (with the URL redacted), `ValidationError` for a bad URL or option.
 */
import { ValidationError } from './errors.js';
import type { NewJob } from './job.js';
import type { RedisPush, RedisServerId } from './redis-handoff.js';

/** A job a dispatcher claimed: in flight, leased to `token`, until acknowledged or released. */
export interface ClaimedJob {
  id: string;
  /** unix seconds */
  dueAt: number;
  /** the stored JSON, or null when the index names a job whose entry is missing */
  entry: string | null;
  /** the claim's token; only its holder can acknowledge, release or hand off the job */
  token: string;
}

export interface ClaimOptions {
  /** claim jobs due at or before this (unix seconds) */
  until: number;
  /** the current time (unix seconds), for lease expiry */
  now: number;
  limit: number;
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
  leaseMs: number;
}

/** A job as stored. */
export interface StoredJob {
  id: string;
  /** unix seconds; for an in-flight job, its lease deadline */
  dueAt: number;
  entry: string;
  state: 'scheduled' | 'in_flight';
}

export interface ListOptions {
  /** only jobs due at or after this (unix seconds) */
  from?: number;
  /** only jobs due at or before this (unix seconds) */
  to?: number;
  /** the most jobs in this page (>= 1) */
  limit: number;
  /** where the previous page ended (its `cursor`); absent for the first page */
  cursor?: string;
}

export interface JobPage {
  /** scheduled jobs (not in-flight ones), in due order */
  jobs: StoredJob[];
  /** pass as `cursor` for the next page; absent on the last page */
  cursor?: string;
}

/**
 * What `addKeyed` does when a scheduled job already holds the key: `reject` throws
 * `JobKeyTakenError`, `keep` leaves that job alone, `replace` swaps it for the new job.
 */
export type JobKeyMode = 'reject' | 'replace' | 'keep';

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
}

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
   * Removing, claiming or quarantining a job releases its key; `reschedule` keeps it. A claimed
   * job given back by `release` comes back WITHOUT its key (another job may have taken it
   * meanwhile), so a later `addKeyed` with that key adds a second job.
   */
  addKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult>;
  /** Deletes a scheduled job for good; false when it is not scheduled (unknown, in flight or sent). */
  remove(id: string): Promise<boolean>;
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
   * taken over is left out and left alone. A lease is never shortened: a claim whose lease
   * already ends at or after `now + leaseMs` comes back unchanged.
   */
  renew(claims: readonly ClaimedJob[], options: RenewOptions): Promise<ClaimedJob[]>;
  /** The broker accepted these: forget them. Jobs no longer leased to their claim are left alone. */
  acknowledge(claims: readonly ClaimedJob[]): Promise<void>;
  /** Puts claimed jobs back at their due times. */
  release(claims: readonly ClaimedJob[]): Promise<void>;
  /** Moves a corrupt claimed job aside, keeping its raw entry and the reason. */
  quarantine(claim: ClaimedJob, reason: string): Promise<void>;
  /** The stored entry and due time of a scheduled or in-flight job. */
  get(id: string): Promise<StoredJob | undefined>;
  /** Scheduled jobs in due order, a page at a time. */
  list(options: ListOptions): Promise<JobPage>;
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
   * removes the job, in one atomic step. Returns, per claim, whether it was handed off.
   */
  handOff?(claims: readonly ClaimedJob[], pushes: readonly (readonly RedisPush[])[]): Promise<boolean[]>;
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

/** The cursor after `job` in due order (opaque to callers; every store uses this form). */
export function cursorAfter(job: { dueAt: number; id: string }): string {
  return `${job.dueAt}:${job.id}`;
}

/** Reads a cursor made by `cursorAfter`; a `ValidationError` for anything else. */
export function parseCursor(cursor: string): { dueAt: number; id: string } {
  const i = cursor.indexOf(':');
  const dueAt = Number(cursor.slice(0, i));
  if (i <= 0 || !Number.isFinite(dueAt)) throw new ValidationError([`${JSON.stringify(cursor)} is not a list cursor; pass the cursor a previous page returned`]);
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
