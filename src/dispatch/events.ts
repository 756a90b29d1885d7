/**
 * The one way to observe dispatching: typed events that the dispatcher and the daemon emit, and
 * that the log lines (`log-events.ts`), the Prometheus metrics and the tests all listen to.
 *
 * - Listeners are called synchronously, in the order they were added. Whatever a listener throws
 *   is dropped: observing must never change what the dispatcher does (a metrics bug cannot stop
 *   a job from being sent, or make one be sent twice).
 * - The daemon emits on its dispatcher's `events`, so one object carries a whole `run`.
 * - Events carry no secrets beyond what the store and broker `description`s hold (their URLs,
 *   passwords redacted) and error objects, which listeners that print them must redact.
 */
import type { DeadReason } from '../stores/store.js';

/** What a dispatch run did (also returned by `dispatchDue`). */
export interface DispatchSummary {
  sent: number;
  /** not sent in this run and still scheduled: refused (tried again later) or given back (the broker could not be reached) */
  failed: number;
  /** made dead letters in this run: corrupt entries, messages the broker can never carry, jobs out of attempts */
  dead: number;
  /** of `dead`, the corrupt entries */
  corrupt: number;
  elapsedMs: number;
  /** set when the run stopped early because the broker could not be reached */
  error?: Error;
}

/** What a dispatch run reports besides the summary. */
export interface DispatchDetail {
  /**
   * Per sent job, seconds from its due time to the broker accepting it (never below 0). A job
   * re-claimed after a lease ran out counts from its old lease deadline (the store's `dueAt`).
   * Measured only while something listens to `run`.
   */
  latenessSeconds: number[];
  /** how many of `summary.failed` the broker refused (e.g. unroutable); the rest were given back because it could not be reached */
  refused: number;
  /** jobs made dead letters in this run, by reason (`summary.dead` in all) */
  deadByReason: Record<DeadReason, number>;
}

/** How jobs leave the store: atomically with the publish, or acknowledged after it. */
export type HandoffMode = 'atomic' | 'publish-then-ack';

/** Every event, by name, with what it carries. */
export interface DispatchEventMap {
  /** after every dispatch run, including runs that found nothing due and runs a store error ended */
  run: { summary: DispatchSummary; detail: DispatchDetail; mode: HandoffMode | undefined };
  /** the broker refused one job; it stays scheduled and is tried again after `retryInMs` */
  refused: { id: string; task: string; attempt: number; maxAttempts: number; retryInMs: number; error: string; nthInRun: number };
  /** one job was made a dead letter */
  dead: { id: string; reason: DeadReason; attempts: number; error: string; nthInRun: number };
  /** jobs could not be given back to the store; they are claimed again when their lease ends */
  giveBackFailed: { what: string; count: number; error: unknown };
  /** a lease renewal found jobs no longer leased to this run: another dispatcher may send them too */
  leaseLost: { count: number };
  /** a lease renewal failed; it is tried again a third of a lease later */
  renewFailed: { count: number; error: unknown };
  /** the daemon started its loop */
  started: { store: string; broker: string; pollIntervalMs: number };
  /** the daemon's loop ended */
  stopped: Record<string, never>;
  /** a daemon pass that sent, refused or made a dead letter of at least one job */
  pass: { summary: DispatchSummary; mode: HandoffMode | undefined };
  /** the daemon saw the store go down (with why) or come back */
  storeState: { up: boolean; store: string; error?: unknown };
  /** the daemon saw the broker go down (with why) or come back */
  brokerState: { up: boolean; broker: string; error?: unknown };
}

export type DispatchEventName = keyof DispatchEventMap;

export type DispatchListener<K extends DispatchEventName> = (event: DispatchEventMap[K]) => void;

/** Listeners for several events at once, as `listen` takes them. */
export type DispatchListeners = { [K in DispatchEventName]?: DispatchListener<K> };

export class DispatchEvents {
  readonly #listeners = new Map<DispatchEventName, Set<(event: never) => void>>();

  /** Calls `fn` on every `name` event from now on; the returned function stops it. */
  on<K extends DispatchEventName>(name: K, fn: DispatchListener<K>): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(fn);
    return () => void set.delete(fn);
  }

  /** `on` for each listener given; the returned function stops them all. */
  listen(listeners: DispatchListeners): () => void {
    const offs = (Object.keys(listeners) as DispatchEventName[]).map((name) => this.on(name, listeners[name] as DispatchListener<typeof name>));
    return () => offs.forEach((off) => off());
  }

  /** Whether anything listens to `name` (the dispatcher skips measuring what nobody reads). */
  has(name: DispatchEventName): boolean {
    return (this.#listeners.get(name)?.size ?? 0) > 0;
  }

  /** Tells every listener of `name`; what a listener throws is dropped. */
  emit<K extends DispatchEventName>(name: K, event: DispatchEventMap[K]): void {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const fn of set) {
      try {
        (fn as DispatchListener<K>)(event);
      } catch {
        // ignored on purpose: observing never changes dispatching
      }
    }
  }
}
