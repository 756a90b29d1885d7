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
 * - Leases are renewed every third of the lease while this run still holds its claims (a broker
 *   slow to confirm, a RabbitMQ connection blocked by a memory alarm), so a healthy dispatcher's
 *   jobs are never re-claimed and sent twice by another one, however long the broker stalls.
 */
import { buildTaskMessage, type TaskMessage } from './celery/message.js';
import type { Broker } from './broker.js';
import { ConnectionError, CorruptEntryError, errorMessage } from './errors.js';
import { decodeEntry } from './job.js';
import { silentLogger, type Logger } from './logger.js';
import type { RedisPush } from './redis-handoff.js';
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
  /** told what each run did (and, by the daemon, when the store or broker goes down or comes back); e.g. metrics */
  observer?: DispatchObserver;
}

/** What a dispatch run reports to its observer besides the summary. */
export interface DispatchDetail {
  /**
   * Per sent job, seconds from its due time to the broker accepting it (never below 0). A job
   * re-claimed after a lease ran out counts from its old lease deadline (the store's `dueAt`).
   */
  latenessSeconds: number[];
  /** how many of `summary.failed` the broker refused (e.g. unroutable); the rest were given back because it could not be reached */
  refused: number;
}

/**
 * Hooks for metrics and the like, all optional. They are called synchronously; an observer that
 * throws is ignored, never allowed to change what the dispatcher does.
 */
export interface DispatchObserver {
  /** after every dispatch run, including runs that found nothing due and runs a store error ended */
  onDispatched?(summary: DispatchSummary, detail: DispatchDetail): void;
  /** the daemon saw the store go down (with why) or come back */
  onStoreState?(up: boolean, error?: unknown): void;
  /** the daemon saw the broker go down (with why) or come back */
  onBrokerState?(up: boolean, error?: unknown): void;
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
  readonly #observer: DispatchObserver | undefined;
  #mode: HandoffMode | undefined;

  constructor(o: DispatcherOptions) {
    this.#store = o.store;
    this.#broker = o.broker;
    this.#defaultQueue = o.defaultQueue ?? DISPATCH_DEFAULTS.defaultQueue;
    this.#batchSize = o.batchSize ?? DISPATCH_DEFAULTS.batchSize;
    this.#leaseMs = o.leaseMs ?? DISPATCH_DEFAULTS.leaseMs;
    this.#clock = o.clock ?? (() => new Date());
    this.#log = o.logger ?? silentLogger;
    this.#observer = o.observer;
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
   *
   * Two batches overlap: while the store/broker sends batch k, batch k+1 is already claimed and
   * its messages are built here, so Node and Redis work side by side.
   */
  async dispatchDue(until?: Date, signal?: AbortSignal): Promise<DispatchSummary> {
    const started = performance.now();
    const summary: DispatchSummary = { sent: 0, failed: 0, corrupt: 0, elapsedMs: 0 };
    const refused: ClaimedJob[] = [];
    const detail: DispatchDetail = { latenessSeconds: [], refused: 0 };
    const claim = () => {
      const now = this.#clock();
      const claims = this.#store.claimDue({
        until: (until ?? now).getTime() / 1000,
        now: now.getTime() / 1000,
        limit: this.#batchSize,
        leaseMs: this.#leaseMs,
      });
      return { now, claims };
    };
    const leases = new LeaseKeeper(this.#store, this.#leaseMs, this.#clock, this.#log);
    let next: { now: Date; claims: Promise<ClaimedJob[]> } | undefined = claim();
    let sending: Promise<void> | undefined;
    try {
      while (next) {
        const { now, claims } = next;
        next = undefined;
        const claimed = leases.hold(await claims);
        if (claimed.length === 0) break;
        let batch: Batch | undefined;
        try {
          batch = await this.#prepare(claimed, now, summary, refused, leases, detail);
        } catch (err) {
          if (!(err instanceof BrokerFailure)) throw err;
          this.#brokerDown(err, claimed, summary, refused);
        }
        if (sending) await sending;
        if (summary.error) {
          if (batch) this.#brokerDown(undefined, batch.ready.map((r) => r.claim), summary, refused);
          break;
        }
        if (claimed.length === this.#batchSize && !signal?.aborted) next = claim(); // queued before the send below
        if (batch) {
          const b = batch;
          sending = this.#send(b, summary, refused, leases, detail).catch((err: unknown) => {
            if (!(err instanceof BrokerFailure)) throw err;
            this.#brokerDown(err, b.ready.map((r) => r.claim), summary, refused);
          });
          // observed here, awaited before the next send or at the end
          sending.catch(() => {});
        }
      }
      if (sending) await sending;
    } finally {
      leases.stop();
      if (refused.length > 0) {
        try {
          await leases.settle(refused, () => this.#store.release(refused));
        } catch (err) {
          this.#log.error('could not give refused jobs back; they will be claimed again when their lease ends', {
            count: refused.length,
            error: errorMessage(err),
          });
        }
      }
      summary.elapsedMs = performance.now() - started;
      if (this.#observer?.onDispatched) notify(() => this.#observer?.onDispatched?.(summary, detail));
    }
    return summary;
  }

  /** Decodes and builds a batch (moving corrupt entries aside); in atomic mode also routes it. */
  async #prepare(claimed: ClaimedJob[], now: Date, summary: DispatchSummary, refused: ClaimedJob[], leases: LeaseKeeper, detail: DispatchDetail): Promise<Batch | undefined> {
    const ready: Batch['ready'] = [];
    for (const claim of claimed) {
      try {
        const job = decodeEntry(claim.id, claim.entry);
        ready.push({ claim, message: buildTaskMessage(job, { now, dueAt: claim.dueAt, defaultQueue: this.#defaultQueue }) });
      } catch (err) {
        const reason = err instanceof CorruptEntryError ? err.message : `cannot build a message: ${errorMessage(err)}`;
        await leases.settle([claim], () => this.#store.quarantine(claim, reason));
        summary.corrupt++;
        this.#log.warn('moved a corrupt job aside', { id: claim.id, reason });
      }
    }
    if (ready.length === 0) return undefined;
    if ((await this.#handoffMode()) === 'publish-then-ack') return { ready };
    const prepare = this.#broker.prepareRedisPushes?.bind(this.#broker);
    if (!prepare) throw new Error('atomic hand-off needs a Redis broker');
    const prepared = await brokerCall(() => prepare(ready.map((r) => r.message)));
    const routable: Batch['ready'] = [];
    const pushes: RedisPush[][] = [];
    prepared.forEach((p, i) => {
      const r = ready[i];
      if (!r) return;
      if (p instanceof Error) this.#refuse(r, p, summary, refused, detail);
      else {
        routable.push(r);
        pushes.push(p);
      }
    });
    return routable.length ? { ready: routable, pushes } : undefined;
  }

  /** Publishes and removes a prepared batch: in one atomic step, or publish then acknowledge. */
  async #send(batch: Batch, summary: DispatchSummary, refused: ClaimedJob[], leases: LeaseKeeper, detail: DispatchDetail): Promise<void> {
    const claims = batch.ready.map((r) => r.claim);
    if (batch.pushes) {
      const handOff = this.#store.handOff?.bind(this.#store);
      if (!handOff) throw new Error('atomic hand-off needs a Redis store');
      const pushes = batch.pushes;
      const done = await leases.settle(claims, () => handOff(claims, pushes));
      // A job not handed off lost its lease to another dispatcher, which now sends it.
      summary.sent += done.filter(Boolean).length;
      if (this.#observer) this.#lateness(claims.filter((_, i) => done[i]), detail);
      return;
    }
    const outcomes = await brokerCall(() => this.#broker.publish(batch.ready.map((r) => r.message)));
    const accepted: ClaimedJob[] = [];
    const lost: ClaimedJob[] = [];
    let outage: ConnectionError | undefined;
    outcomes.forEach((outcome, i) => {
      const r = batch.ready[i];
      if (!r) return;
      if (outcome.ok) accepted.push(r.claim);
      else if (outcome.error instanceof ConnectionError) {
        // the connection died mid-batch: an outage, reported once by the caller, not a refusal
        outage ??= outcome.error;
        lost.push(r.claim);
      } else this.#refuse(r, outcome.error, summary, refused, detail);
    });
    if (outage) this.#brokerDown(new BrokerFailure(outage), lost, summary, refused);
    const acceptedAt = this.#observer ? this.#clock().getTime() / 1000 : 0;
    await leases.settle(accepted, () => this.#store.acknowledge(accepted));
    summary.sent += accepted.length;
    if (this.#observer) this.#lateness(accepted, detail, acceptedAt);
  }

  /** Records, for the observer, how late each sent job left (now, or when the broker accepted it). */
  #lateness(sent: readonly ClaimedJob[], detail: DispatchDetail, at = this.#clock().getTime() / 1000): void {
    for (const c of sent) detail.latenessSeconds.push(Math.max(0, at - c.dueAt));
  }

  /** The broker could not be reached: nothing of these was published; give them back, end the run. */
  #brokerDown(err: BrokerFailure | undefined, claims: ClaimedJob[], summary: DispatchSummary, refused: ClaimedJob[]): void {
    refused.push(...claims);
    summary.failed += claims.length;
    if (err && !summary.error) summary.error = err.cause instanceof Error ? err.cause : err;
  }

  #refuse(r: { claim: ClaimedJob; message: TaskMessage }, error: Error, summary: DispatchSummary, refused: ClaimedJob[], detail: DispatchDetail): void {
    refused.push(r.claim);
    summary.failed++;
    detail.refused++;
    this.#log.warn('broker refused a job; it stays scheduled', { id: r.claim.id, task: r.message.headers.task, error: errorMessage(error) });
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

/**
 * Keeps a run's claims leased until each is settled (acknowledged, handed off, released or moved
 * aside). Every third of the lease it renews the claims still held; the store gives each a new
 * token, written into the claim object, so the settling call that follows uses it. Renewals and
 * settling calls never overlap: a settle with a token a renewal just replaced would do nothing.
 */
class LeaseKeeper {
  readonly #held = new Set<ClaimedJob>();
  readonly #timer: NodeJS.Timeout;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: ScheduleStore,
    private readonly leaseMs: number,
    private readonly clock: () => Date,
    private readonly log: Logger,
  ) {
    this.#timer = setInterval(() => void this.renew(), Math.max(1, leaseMs / 3));
    this.#timer.unref();
  }

  hold(claims: ClaimedJob[]): ClaimedJob[] {
    for (const c of claims) this.#held.add(c);
    return claims;
  }

  /** Runs a call that settles `claims` (with their current tokens), then stops renewing them. */
  settle<T>(claims: readonly ClaimedJob[], fn: () => Promise<T>): Promise<T> {
    return this.#exclusive(async () => {
      try {
        return await fn();
      } finally {
        for (const c of claims) this.#held.delete(c);
      }
    });
  }

  renew(): Promise<void> {
    return this.#exclusive(async () => {
      const claims = [...this.#held];
      if (claims.length === 0) return;
      try {
        const renewed = new Map((await this.store.renew(claims, { now: this.clock().getTime() / 1000, leaseMs: this.leaseMs })).map((c) => [c.id, c.token]));
        let lost = 0;
        for (const c of claims) {
          const token = renewed.get(c.id);
          if (token === undefined) {
            this.#held.delete(c);
            lost++;
          } else c.token = token;
        }
        if (lost > 0) this.log.warn('lost the lease of claimed jobs; another dispatcher may send them too', { count: lost });
      } catch (err) {
        this.log.warn('could not renew leases; will try again', { count: claims.length, error: errorMessage(err) });
      }
    });
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}

interface Batch {
  ready: { claim: ClaimedJob; message: TaskMessage }[];
  /** set in atomic mode: the LPUSHes of each message, in `ready` order */
  pushes?: RedisPush[][];
}

/** Marks an error as the broker's, so a run can tell a broker outage from a store outage. */
class BrokerFailure extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause });
  }
}

/** Calls an observer hook; whatever it throws is dropped (metrics must never break dispatch). */
export function notify(fn: () => void): void {
  try {
    fn();
  } catch {
    // ignored on purpose
  }
}

async function brokerCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new BrokerFailure(err);
  }
}

