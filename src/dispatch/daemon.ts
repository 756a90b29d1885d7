/**
 * The long-running dispatcher (`celery-longterm-scheduler run`).
 *
 * It sleeps until the next job is due, not for a fixed period, and wakes early when a sooner job
 * is added through our API or CLI from any process (the store's `watch`). Jobs written by other
 * writers (the Python package, redis-cli) are found by a poll backstop, at most `pollIntervalMs`
 * apart. Timers are clamped to Node's 2^31-1 ms limit, so a job due in 400 days still fires on
 * time. Broker and store outages are logged once per state change and retried with jittered
 * exponential backoff; nothing is lost while they last.
 */
import { Dispatcher, type DispatcherOptions } from './dispatcher.js';
import type { DispatchEvents } from './events.js';
import { ValidationError } from '../util/errors.js';

/** Node's setTimeout fires at once for delays above this (2^31-1 ms, ~24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface DaemonOptions extends DispatcherOptions {
  /** the longest sleep between two looks at the store; default 1000 ms */
  pollIntervalMs?: number;
  /** backoff after a failure: starts here, doubles, capped at `backoffMaxMs`, jittered; default 100 ms */
  backoffInitialMs?: number;
  /** default 30 s */
  backoffMaxMs?: number;
  /** injectable sleep (tests use a virtual clock); resolves early when `signal` aborts */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export const DAEMON_DEFAULTS = { pollIntervalMs: 1000, backoffInitialMs: 100, backoffMaxMs: 30_000 } as const;

export type Health = 'up' | 'down';

export class DispatcherDaemon {
  readonly dispatcher: Dispatcher;
  readonly #o: DaemonOptions;
  readonly #clock: () => Date;
  readonly #poll: number;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  #wake: AbortController | undefined;
  #wakeAt = Infinity;
  #stopWatching: (() => Promise<void>) | undefined;
  #store: Health = 'up';
  #broker: Health = 'up';
  #failures = 0;

  constructor(o: DaemonOptions) {
    this.#o = o;
    this.dispatcher = new Dispatcher(o);
    this.#clock = o.clock ?? (() => new Date());
    this.#poll = o.pollIntervalMs ?? DAEMON_DEFAULTS.pollIntervalMs;
    this.#sleep = o.sleep ?? sleep;
  }

  /** The dispatcher's events, which the loop also emits on (`started`, `pass`, `storeState`, ...). */
  get events(): DispatchEvents {
    return this.dispatcher.events;
  }

  /**
   * What the loop last saw of the store and the broker: `down` from a failure until a pass
   * succeeds again (for the broker: until a job is sent again). Both start `up`.
   */
  get health(): { store: Health; broker: Health } {
    return { store: this.#store, broker: this.#broker };
  }

  /** Wakes the loop now (e.g. a sooner job was scheduled in this process). */
  wake(): void {
    this.#wake?.abort();
  }

  /** Runs until `signal` aborts; the batch in progress is finished or released first. */
  async run(signal: AbortSignal): Promise<void> {
    this.events.emit('started', { store: this.#o.store.description, broker: this.#o.broker.description, pollIntervalMs: this.#poll });
    try {
      while (!signal.aborted) {
        const delay = await this.#pass(signal);
        if (signal.aborted) break;
        if (delay > 0) await this.#nap(delay, signal);
      }
    } finally {
      await this.#stopWatching?.().catch(() => {});
      this.#stopWatching = undefined;
      this.events.emit('stopped', {});
    }
  }

  /** One look at the store: dispatch what is due, and return how long to sleep. */
  async #pass(signal: AbortSignal): Promise<number> {
    try {
      await this.#ensureWatching();
      const summary = await this.dispatcher.dispatchDue(undefined, signal);
      this.#setStore('up');
      if (summary.sent || summary.failed || summary.dead) this.events.emit('pass', { summary, mode: this.dispatcher.mode });
      if (summary.error) {
        this.#setBroker('down', summary.error);
        return this.#backoff();
      }
      if (summary.sent > 0) this.#setBroker('up');
      this.#failures = 0;
      const next = await this.#o.store.nextDueAt();
      const untilNext = next === undefined ? Infinity : next * 1000 - this.#clock().getTime();
      return Math.max(0, Math.min(untilNext, this.#poll, MAX_TIMER_MS));
    } catch (err) {
      if (signal.aborted) return 0;
      // A configuration error (e.g. too few maxConnections) is not an outage: retrying cannot fix it.
      if (err instanceof ValidationError) throw err;
      this.#setStore('down', err);
      return this.#backoff();
    }
  }

  async #ensureWatching(): Promise<void> {
    if (this.#stopWatching || !this.#o.store.watch) return;
    this.#stopWatching = await this.#o.store.watch((dueAt) => {
      if (dueAt * 1000 < this.#wakeAt) this.wake();
    });
  }

  async #nap(ms: number, signal: AbortSignal): Promise<void> {
    const wake = new AbortController();
    this.#wake = wake;
    this.#wakeAt = this.#clock().getTime() + ms;
    const onAbort = () => wake.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await this.#sleep(ms, wake.signal);
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#wake = undefined;
      this.#wakeAt = Infinity;
    }
  }

  #backoff(): number {
    const initial = this.#o.backoffInitialMs ?? DAEMON_DEFAULTS.backoffInitialMs;
    const max = this.#o.backoffMaxMs ?? DAEMON_DEFAULTS.backoffMaxMs;
    const ceiling = Math.min(max, initial * 2 ** this.#failures++);
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2); // "equal jitter"
  }

  #setStore(health: Health, err?: unknown): void {
    if (health === this.#store) return;
    this.#store = health;
    this.events.emit('storeState', { up: health === 'up', store: this.#o.store.description, ...(health === 'down' && { error: err }) });
  }

  #setBroker(health: Health, err?: unknown): void {
    if (health === this.#broker) return;
    this.#broker = health;
    this.events.emit('brokerState', { up: health === 'up', broker: this.#o.broker.description, ...(health === 'down' && { error: err }) });
  }
}

/** A timer that resolves after `ms` (clamped to Node's limit) or as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
