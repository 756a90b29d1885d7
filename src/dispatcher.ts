/**
 * Dispatch: claim due jobs → build Celery messages → publish → acknowledge.
 *
 * - Claims are atomic in the store and leased to a token, so concurrent dispatchers never claim
 *   the same job, and a dispatcher whose lease ran out can no longer remove or re-send it.
 * - **Exactly once** when the store and the broker are the same Redis server (any database
 *   numbers): publish and removal are one atomic script (`handoff`). Killing the dispatcher at
 *   any moment leaves the job either in the store or in the broker.
 * - **At least once** otherwise: a job is acknowledged (removed) only after the broker accepted
 *   it. A crash in between leaves it in flight; when its lease ends any dispatcher sends it again.
 * - A corrupt entry is moved aside (see the store's corrupt key) and logged; it never stops the
 *   other due jobs from being sent.
 * - Jobs the broker refused are given back at the end of the run, not during it, so one run never
 *   loops on a message the broker keeps refusing.
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
  /** how long a claim is exclusive; a crashed dispatcher's jobs are re-claimed after it. Default 60 s */
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

/** How jobs leave the store: atomically with the publish, or acknowledged after it. */
export type HandoffMode = 'atomic' | 'publish-then-ack';

export const DISPATCH_DEFAULTS = { defaultQueue: 'celery', batchSize: 500, leaseMs: 60_000 } as const;

export class Dispatcher {
  readonly #store: ScheduleStore;
  readonly #broker: Broker;
  readonly #defaultQueue: string;
  readonly #batchSize: number;
  readonly #leaseMs: number;
  readonly #clock: () => Date;
  readonly #log: Logger;
  #mode: HandoffMode | undefined;

  constructor(o: DispatcherOptions) {
    this.#store = o.store;
    this.#broker = o.broker;
    this.#defaultQueue = o.defaultQueue ?? DISPATCH_DEFAULTS.defaultQueue;
    this.#batchSize = o.batchSize ?? DISPATCH_DEFAULTS.batchSize;
    this.#leaseMs = o.leaseMs ?? DISPATCH_DEFAULTS.leaseMs;
    this.#clock = o.clock ?? (() => new Date());
    this.#log = o.logger ?? silentLogger;
  }

  /**
   * `atomic` when the store can hand off to this broker on the same Redis server.
   * Decided once both can be reached; until then, undefined.
   */
  get mode(): HandoffMode | undefined {
    return this.#mode;
  }

  /**
   * Sends every job due at or before `until` (default: now). Stops after the current batch when
   * `signal` aborts. Broker trouble ends the run with `summary.error`; store trouble throws.
   */
  async dispatchDue(until?: Date, signal?: AbortSignal): Promise<DispatchSummary> {
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
        if (summary.error || claimed.length < this.#batchSize || signal?.aborted) break;
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

    try {
      if ((await this.#handoffMode()) === 'atomic') await this.#handOff(ready, summary, refused);
      else await this.#publishThenAck(ready, summary, refused);
    } catch (err) {
      if (err instanceof BrokerFailure) {
        // Nothing was published: give the batch back and end this run.
        refused.push(...ready.map((r) => r.claim));
        summary.failed += ready.length;
        summary.error = err.cause instanceof Error ? err.cause : err;
        return;
      }
      throw err;
    }
  }

  async #publishThenAck(ready: { claim: ClaimedJob; message: TaskMessage }[], summary: DispatchSummary, refused: ClaimedJob[]): Promise<void> {
    const outcomes = await brokerCall(() => this.#broker.publish(ready.map((r) => r.message)));
    const accepted: ClaimedJob[] = [];
    outcomes.forEach((outcome, i) => {
      const r = ready[i];
      if (!r) return;
      if (outcome.ok) accepted.push(r.claim);
      else this.#refuse(r, outcome.error, summary, refused);
    });
    await this.#store.acknowledge(accepted);
    summary.sent += accepted.length;
  }

  async #handOff(ready: { claim: ClaimedJob; message: TaskMessage }[], summary: DispatchSummary, refused: ClaimedJob[]): Promise<void> {
    const prepare = this.#broker.prepareRedisPushes?.bind(this.#broker);
    const handOff = this.#store.handOff?.bind(this.#store);
    if (!prepare || !handOff) throw new Error('atomic hand-off needs a Redis store and a Redis broker');
    const prepared = await brokerCall(() => prepare(ready.map((r) => r.message)));
    const routable: { claim: ClaimedJob; pushes: Exclude<(typeof prepared)[number], Error> }[] = [];
    prepared.forEach((p, i) => {
      const r = ready[i];
      if (!r) return;
      if (p instanceof Error) this.#refuse(r, p, summary, refused);
      else routable.push({ claim: r.claim, pushes: p });
    });
    if (routable.length === 0) return;
    const done = await handOff(
      routable.map((r) => r.claim),
      routable.map((r) => r.pushes),
    );
    // A job not handed off lost its lease to another dispatcher, which now sends it.
    summary.sent += done.filter(Boolean).length;
  }

  #refuse(r: { claim: ClaimedJob; message: TaskMessage }, error: Error, summary: DispatchSummary, refused: ClaimedJob[]): void {
    refused.push(r.claim);
    summary.failed++;
    this.#log.warn('broker refused a job; it stays scheduled', { id: r.claim.id, task: r.message.headers.task, error: errorText(error) });
  }

  async #handoffMode(): Promise<HandoffMode> {
    if (this.#mode) return this.#mode;
    const storeAt = this.#store.redisLocation?.bind(this.#store);
    const brokerAt = this.#broker.redisLocation?.bind(this.#broker);
    if (!storeAt || !brokerAt || !this.#store.handOff || !this.#broker.prepareRedisPushes) {
      this.#mode = 'publish-then-ack';
      return this.#mode;
    }
    const [s, b] = await Promise.all([storeAt(), brokerCall(brokerAt)]);
    this.#mode = s.server === b.server ? 'atomic' : 'publish-then-ack';
    return this.#mode;
  }
}

/** Marks an error as the broker's, so a run can tell a broker outage from a store outage. */
class BrokerFailure extends Error {
  constructor(cause: unknown) {
    super(errorText(cause), { cause });
  }
}

async function brokerCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new BrokerFailure(err);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
