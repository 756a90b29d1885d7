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
import { countWhere, revokeWhere, type BulkOptions, type BulkSummary, type JobQuery, type QueryCount } from '../admin/bulk.js';
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
   * How many scheduled jobs match `query` (due range, task, queue, tags, id prefix), with the
   * first few in due order: what a bulk action would touch.
   */
  count(query: JobQuery, sampleSize = 5): Promise<QueryCount> {
    return countWhere(this.#app.store, this.#app.config.taskDefaultQueue, query, sampleSize);
  }

  /**
   * Revokes every scheduled job matching `query`, each atomically on its own, a page at a time:
   * a job claimed meanwhile is skipped and counted. Resumable with `cursor` (see `BulkOptions`).
   */
  revokeWhere(query: JobQuery, options: BulkOptions = {}): Promise<BulkSummary> {
    return revokeWhere(this.#app.store, this.#app.config.taskDefaultQueue, query, options);
  }

  /** Scheduled jobs in due order, filtered, a page at a time (see `listJobs`). */
  list(options: ListJobsOptions = {}): Promise<JobListing> {
    return listJobs(this.#app.store, this.#app.config.taskDefaultQueue, options);
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
