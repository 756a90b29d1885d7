/**
 * `getScheduler(app)`: the operations on scheduled jobs, as in the original package.
 */
import type { Celery } from './app.js';
import { Dispatcher, type DispatchSummary, type DispatcherOptions } from './dispatcher.js';
import { DispatcherDaemon, type DaemonOptions } from './dispatcher-daemon.js';
import type { Logger } from './logger.js';

export class Scheduler {
  readonly #app: Celery;
  constructor(app: Celery) {
    this.#app = app;
  }

  /** Deletes a scheduled job for good: true when found and deleted, false when not there (e.g. already sent). */
  revoke(id: string): Promise<boolean> {
    return this.#app.store.remove(id);
  }

  /** Sends every job due at or before `until` (default: now) to the broker. */
  dispatchDue(until?: Date, options: Partial<Pick<DispatcherOptions, 'batchSize' | 'leaseMs' | 'observer'>> & { logger?: Logger } = {}): Promise<DispatchSummary> {
    return this.dispatcher(options).dispatchDue(until);
  }

  /** The long-running dispatcher; `await daemon.run(signal)` until the signal aborts. */
  daemon(options: RunOptions = {}): DispatcherDaemon {
    return new DispatcherDaemon({ ...this.#wiring(), ...options });
  }

  dispatcher(options: Partial<Pick<DispatcherOptions, 'batchSize' | 'leaseMs' | 'observer'>> & { logger?: Logger } = {}): Dispatcher {
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
