/**
 * The seam between the scheduler/dispatcher and a place that keeps jobs until they are due.
 * Only what they need: add, remove, claim due with a lease, acknowledge, release, count.
 */
import type { NewJob } from './job.js';

/** A job a dispatcher claimed: it is in flight until acknowledged or released. */
export interface ClaimedJob {
  id: string;
  /** unix seconds */
  dueAt: number;
  /** the stored JSON, or null when the index names a job whose entry is missing */
  entry: string | null;
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
  /** The broker accepted these: forget them. */
  acknowledge(ids: readonly string[]): Promise<void>;
  /** Puts claimed jobs back at their due times. */
  release(jobs: readonly Pick<ClaimedJob, 'id' | 'dueAt'>[]): Promise<void>;
  /** Moves a corrupt claimed job aside, keeping its raw entry and the reason. */
  quarantine(job: ClaimedJob, reason: string): Promise<void>;
  /** The stored entry and due time of a scheduled or in-flight job. */
  get(id: string): Promise<{ dueAt: number; entry: string; state: 'scheduled' | 'in_flight' } | undefined>;
  count(): Promise<StoreCounts>;
  close(): Promise<void>;
}
