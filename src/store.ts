/**
 * The seam between the scheduler/dispatcher and a place that keeps jobs until they are due.
 * Only what they need: add, remove, claim due with a lease, acknowledge, release, count, and
 * the next due time. Optional abilities are declared, not faked.
 */
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

export interface StoreCounts {
  scheduled: number;
  inFlight: number;
}

export interface ScheduleStore {
  /** the store's URL with its password redacted, for messages */
  readonly description: string;
  /** Adds jobs atomically (all or none). Throws `DuplicateJobError` when an id is taken. */
  add(jobs: readonly NewJob[]): Promise<void>;
  /** Deletes a scheduled job for good; false when it is not scheduled (unknown, in flight or sent). */
  remove(id: string): Promise<boolean>;
  /** Atomically claims due jobs (and jobs whose lease expired) for this dispatcher. */
  claimDue(options: ClaimOptions): Promise<ClaimedJob[]>;
  /** The broker accepted these: forget them. Jobs no longer leased to their claim are left alone. */
  acknowledge(claims: readonly ClaimedJob[]): Promise<void>;
  /** Puts claimed jobs back at their due times. */
  release(claims: readonly ClaimedJob[]): Promise<void>;
  /** Moves a corrupt claimed job aside, keeping its raw entry and the reason. */
  quarantine(claim: ClaimedJob, reason: string): Promise<void>;
  /** The stored entry and due time of a scheduled or in-flight job. */
  get(id: string): Promise<{ dueAt: number; entry: string; state: 'scheduled' | 'in_flight' } | undefined>;
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
  close(): Promise<void>;
}
