/**
 * `getScheduler(app)`: the operations on scheduled jobs, as in the original package.
 */
import type { Celery } from './celery.js';
import { Dispatcher, type DispatchSummary, type DispatcherOptions } from '../dispatch/dispatcher.js';
import { DispatcherDaemon, type DaemonOptions } from '../dispatch/daemon.js';
import type { Logger } from '../util/logger.js';
import {
  jobStats,
  listJobs,
  rescheduleJob,
  showJob,
  type JobListing,
  type JobStats,
  type ListJobsOptions,
  type ScheduledJobInfo,
} from '../admin/scheduled-jobs.js';
import {
  countWhere,
  histogramWhere,
  rescheduleWhere,
  retagWhere,
  revokeWhere,
  runNowWhere,
  type BulkOptions,
  type BulkSummary,
  type HistogramRequest,
  type JobQuery,
  type LoadHistogram,
  type Move,
  type QueryCount,
} from '../admin/bulk.js';
import {
  listDeadLetters,
  purgeDeadLetters,
  retryDeadLetters,
  showDeadLetter,
  type DeadLetterInfo,
  type DeadLetterListing,
  type PurgeDeadResult,
  type RetryDeadResult,
} from '../admin/dead-letters.js';

export class Scheduler {
  readonly #app: Celery;
  constructor(app: Celery) {
    this.#app = app;
  }

  /** Deletes a scheduled job for good: true when found and deleted, false when not there (e.g. already sent). */
  revoke(id: string): Promise<boolean> {
    return this.#app.store.remove(id);
  }

  /**
   * How many scheduled jobs match `query` (due range, task, queue, tags, key or id prefix, args
   * match), with the first few in due order: what a bulk action would touch. Counted from the
   * store's indexes; an args match reads the jobs the rest lets through (`scanned`).
   */
  count(query: JobQuery, sampleSize = 5): Promise<QueryCount> {
    return countWhere(this.#app.store, this.#queue(), query, sampleSize);
  }

  /** The jobs matching `query` due per minute, hour or day over a range: the future load, pile-ups first in `busiest`. */
  histogram(query: JobQuery, request: HistogramRequest): Promise<LoadHistogram> {
    return histogramWhere(this.#app.store, this.#queue(), query, request);
  }

  /**
   * Revokes every scheduled job matching `query`, each atomically on its own, a page at a time:
   * a job claimed meanwhile is skipped and counted. Resumable with `cursor` (see `BulkOptions`).
   */
  revokeWhere(query: JobQuery, options: BulkOptions = {}): Promise<BulkSummary> {
    return revokeWhere(this.#app.store, this.#queue(), query, options);
  }

  /**
   * Moves every scheduled job matching `query`: `{ to: Date }`, `{ shiftSeconds: 7200 }`, or
   * `{ spreadSeconds: 1800, jitter?: true }` over a window starting at the query's `from`. Each
   * job atomically on its own; see `Move` and `BulkOptions`.
   */
  rescheduleWhere(query: JobQuery, move: Move, options: BulkOptions = {}): Promise<BulkSummary> {
    return rescheduleWhere(this.#app.store, this.#queue(), query, move, options);
  }

  /** Makes every scheduled job matching `query` due now (those due already are left alone). */
  runNowWhere(query: JobQuery, options: BulkOptions = {}): Promise<BulkSummary> {
    return runNowWhere(this.#app.store, this.#queue(), query, this.#app.now(), options);
  }

  /** Adds and removes tags on every scheduled job matching `query`, each job atomically. */
  retagWhere(query: JobQuery, change: { add?: readonly string[]; remove?: readonly string[] }, options: BulkOptions = {}): Promise<BulkSummary> {
    return retagWhere(this.#app.store, this.#queue(), query, change, options);
  }

  /** Scheduled jobs matching `query` in due order, a page at a time (`limit`, `cursor`); see `listJobs`. */
  find(query: ListJobsOptions = {}): Promise<JobListing> {
    return listJobs(this.#app.store, this.#queue(), query);
  }

  /** `find` by its older name. */
  list(options: ListJobsOptions = {}): Promise<JobListing> {
    return this.find(options);
  }

  #queue(): string {
    return this.#app.config.taskDefaultQueue;
  }

  /** One job the store holds (scheduled or claimed), or undefined. */
  show(id: string): Promise<ScheduledJobInfo | undefined> {
    return showJob(this.#app.store, this.#app.config.taskDefaultQueue, id);
  }

  /** Moves a scheduled job to `eta` atomically; `NotScheduledError` when it is claimed or gone. */
  reschedule(id: string, eta: Date): Promise<void> {
    return rescheduleJob(this.#app.store, id, eta);
  }

  /** Makes a scheduled job due now; `NotScheduledError` when it is claimed or gone. */
  runNow(id: string): Promise<void> {
    return rescheduleJob(this.#app.store, id, this.#app.now(), 'run now');
  }

  /** Counts of what is scheduled, per task and per day (reads every scheduled entry once). */
  stats(options: { days?: number } = {}): Promise<JobStats> {
    return jobStats(this.#app.store, this.#app.now(), options);
  }

  /** Dead letters (jobs that will not be sent as they are), oldest first, a page at a time. */
  deadLetters(options: { limit?: number; cursor?: string } = {}): Promise<DeadLetterListing> {
    return listDeadLetters(this.#app.store, options);
  }

  /** One dead letter, or undefined. */
  deadLetter(id: string): Promise<DeadLetterInfo | undefined> {
    return showDeadLetter(this.#app.store, id);
  }

  /** Schedules dead letters again, due now, with their attempts cleared (by id, or `'all'`). */
  retryDead(ids: readonly string[] | 'all'): Promise<RetryDeadResult> {
    return retryDeadLetters(this.#app.store, ids, this.#app.now());
  }

  /** Deletes dead letters for good (by id, or `'all'`). */
  purgeDead(ids: readonly string[] | 'all'): Promise<PurgeDeadResult> {
    return purgeDeadLetters(this.#app.store, ids);
  }

  /** Sends every job due at or before `until` (default: now) to the broker. */
  dispatchDue(until?: Date, options: DispatchOptions = {}): Promise<DispatchSummary> {
    return this.dispatcher(options).dispatchDue(until);
  }

  /** The long-running dispatcher; `await daemon.run(signal)` until the signal aborts. */
  daemon(options: RunOptions = {}): DispatcherDaemon {
    return new DispatcherDaemon({ ...this.#wiring(), ...options });
  }

  dispatcher(options: DispatchOptions = {}): Dispatcher {
    return new Dispatcher({ ...this.#wiring(), ...options });
  }

  /** What every dispatcher of this app shares: its store, broker, default queue and clock. */
  #wiring(): Pick<DispatcherOptions, 'store' | 'broker' | 'defaultQueue' | 'clock'> {
    return {
      store: this.#app.store,
      broker: this.#app.broker,
      defaultQueue: this.#app.config.taskDefaultQueue,
      clock: () => this.#app.now(),
    };
  }
}

/** Options of `Scheduler.dispatchDue` and `Scheduler.dispatcher`. */
export type DispatchOptions = Partial<Pick<DispatcherOptions, 'batchSize' | 'leaseMs' | 'events' | 'maxAttempts' | 'retryDelayMs' | 'retryDelayMaxMs'>> & {
  logger?: Logger;
};

/** Options of `Scheduler.daemon` (store, broker, queue and clock come from the app). */
export type RunOptions = Partial<Omit<DaemonOptions, 'store' | 'broker' | 'defaultQueue'>>;

const schedulers = new WeakMap<Celery, Scheduler>();

export function getScheduler(app: Celery): Scheduler {
  let s = schedulers.get(app);
  if (!s) {
    s = new Scheduler(app);
    schedulers.set(app, s);
  }
  return s;
}
