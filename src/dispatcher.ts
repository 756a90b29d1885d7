/**
 * Dispatch: claim due jobs → build Celery messages → publish → acknowledge.
 *
 * - Claims are atomic in the store, so concurrent dispatchers never claim the same job.
 * - A job is acknowledged (removed) only after the broker accepted its message. A crash in
 *   between leaves it in flight; when its lease ends, any dispatcher claims it again. So a job is
 *   never lost, and at worst sent twice after a crash.
 * - A corrupt entry is moved aside (see the store's corrupt key) and logged; it never stops
 *   the other due jobs from being sent.
 * - Jobs the broker refused are given back at the end of the run, not during it, so one run
 *   never loops on a message the broker keeps refusing.
 */
import { buildTaskMessage, type TaskMessage } from './celery/message.js';
import type { Broker } from './broker.js';
import { CorruptEntryError } from './errors.js';
import { decodeEntry } from './job.js';
import { silentLogger, type Logger } from './logger.js';
import type { ClaimedJob, ScheduleStore } from './store.js';

export interface DispatcherOptions {
  store: ScheduleStore;
  broker: Broker;
  /** Celery's `task_default_queue` */
  defaultQueue?: string;
  /** jobs per claim and per broker round trip; default 500 */
  batchSize?: number;
  /** how long a claim is exclusive; a crashed dispatcher's jobs are re-claimed after it. Default 5 min */
  leaseMs?: number;
  /** the current time; injectable for tests */
  clock?: () => Date;
  logger?: Logger;
}

export interface DispatchSummary {
  sent: number;
  failed: number;
  /** corrupt entries moved aside */
  corrupt: number;
  elapsedMs: number;
  /** set when the run stopped early because the broker could not be reached */
  error?: Error;
}

export const DISPATCH_DEFAULTS = { defaultQueue: 'celery', batchSize: 500, leaseMs: 300_000 } as const;

export class Dispatcher {
  readonly #store: ScheduleStore;
  readonly #broker: Broker;
  readonly #defaultQueue: string;
  readonly #batchSize: number;
  readonly #leaseMs: number;
  readonly #clock: () => Date;
  readonly #log: Logger;

  constructor(o: DispatcherOptions) {
    this.#store = o.store;
    this.#broker = o.broker;
    this.#defaultQueue = o.defaultQueue ?? DISPATCH_DEFAULTS.defaultQueue;
    this.#batchSize = o.batchSize ?? DISPATCH_DEFAULTS.batchSize;
    this.#leaseMs = o.leaseMs ?? DISPATCH_DEFAULTS.leaseMs;
    this.#clock = o.clock ?? (() => new Date());
    this.#log = o.logger ?? silentLogger;
  }

  /** Sends every job due at or before `until` (default: now). */
  async dispatchDue(until?: Date): Promise<DispatchSummary> {
    const started = performance.now();
    const summary: DispatchSummary = { sent: 0, failed: 0, corrupt: 0, elapsedMs: 0 };
    const refused: ClaimedJob[] = [];
    try {
      for (;;) {
        const now = this.#clock();
        const claimed = await this.#store.claimDue({
          until: (until ?? now).getTime() / 1000,
          now: now.getTime() / 1000,
          limit: this.#batchSize,
          leaseMs: this.#leaseMs,
        });
        if (claimed.length === 0) break;
        await this.#sendBatch(claimed, now, summary, refused);
        if (summary.error || claimed.length < this.#batchSize) break;
      }
    } finally {
      if (refused.length > 0) {
        try {
          await this.#store.release(refused);
        } catch (err) {
          this.#log.error('could not give refused jobs back; they will be claimed again when their lease ends', {
            count: refused.length,
            error: errorText(err),
          });
        }
      }
      summary.elapsedMs = performance.now() - started;
    }
    return summary;
  }

  async #sendBatch(claimed: ClaimedJob[], now: Date, summary: DispatchSummary, refused: ClaimedJob[]): Promise<void> {
    const ready: { claim: ClaimedJob; message: TaskMessage }[] = [];
    for (const claim of claimed) {
      try {
        const job = decodeEntry(claim.id, claim.entry);
        ready.push({ claim, message: buildTaskMessage(job, { now, dueAt: claim.dueAt, defaultQueue: this.#defaultQueue }) });
      } catch (err) {
        const reason = err instanceof CorruptEntryError ? err.message : `cannot build a message: ${errorText(err)}`;
        await this.#store.quarantine(claim, reason);
        summary.corrupt++;
        this.#log.warn('moved a corrupt job aside', { id: claim.id, reason });
      }
    }
    if (ready.length === 0) return;

    let outcomes;
    try {
      outcomes = await this.#broker.publish(ready.map((r) => r.message));
    } catch (err) {
      // Nothing was attempted (e.g. broker unreachable): give the batch back and stop this run.
      refused.push(...ready.map((r) => r.claim));
      summary.failed += ready.length;
      this.#log.error('broker unavailable; jobs stay scheduled', { broker: this.#broker.description, count: ready.length, error: errorText(err) });
      summary.error = err instanceof Error ? err : new Error(String(err));
      return;
    }
    const accepted: string[] = [];
    outcomes.forEach((outcome, i) => {
      const r = ready[i];
      if (!r) return;
      if (outcome.ok) {
        accepted.push(r.claim.id);
      } else {
        refused.push(r.claim);
        summary.failed++;
        this.#log.warn('broker refused a job; it stays scheduled', { id: r.claim.id, task: r.message.headers.task, error: errorText(outcome.error) });
      }
    });
    await this.#store.acknowledge(accepted);
    summary.sent += accepted.length;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
