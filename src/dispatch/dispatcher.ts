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
 * - **Poison jobs cost only themselves.** A job whose entry cannot become a message (corrupt), or
 *   whose message the broker can never carry (over a limit, or it closed the channel: a
 *   `MessageRejectedError`), becomes a dead letter at once. A job the broker refuses (unroutable,
 *   nacked, a broker key of another type) is an attempt: it is tried again after an exponential
 *   backoff counted from now (`retryDelayMs`, doubling up to `retryDelayMaxMs`), and after
 *   `maxAttempts` refusals it becomes a dead letter. Dead letters are kept with their entry,
 *   reason, error and attempts (see the store's `bury`), never sent, never lost. The rest of the
 *   batch is sent once, counted once.
 * - Refused jobs go back at the end of the run, not during it, and at their next attempt's time,
 *   so neither one run nor the daemon loops on a message the broker keeps refusing. A broker that
 *   cannot be reached is not the job's fault: those jobs go back unchanged, no attempt counted.
 * - Leases are renewed every third of the lease while this run still holds its claims (a broker
 *   slow to confirm, a RabbitMQ connection blocked by a memory alarm), so a healthy dispatcher's
 *   jobs are never re-claimed and sent twice by another one, however long the broker stalls.
 */
import { buildTaskMessage, type TaskMessage } from '../celery/message.js';
import type { Broker } from '../brokers/broker.js';
import { ConnectionError, CorruptEntryError, MessageRejectedError, UnsupportedEntryError, ValidationError, errorMessage, firstLine } from '../util/errors.js';
import { decodeEntry } from '../job/entry.js';
import type { Logger } from '../util/logger.js';
import { DispatchEvents, type DispatchDetail, type DispatchSummary, type HandoffMode } from './events.js';
import { logDispatchEvents } from './log-events.js';
import type { RedisPush } from '../redis/handoff.js';
import type { Attempts, Burial, ClaimedJob, Retry, ScheduleStore } from '../stores/store.js';

export interface DispatcherOptions {
  store: ScheduleStore;
  broker: Broker;
  /** Celery's `task_default_queue` */
  defaultQueue?: string;
  /** jobs per claim and per broker round trip; default 500 */
  batchSize?: number;
  /**
   * How long a claim is exclusive; a crashed dispatcher's jobs are re-claimed after it. Default
   * 60 s; at least 1 s (a lease shorter than a claim-to-acknowledge round trip would let a second
   * dispatcher re-claim and send jobs the first is still sending), at most a day.
   */
  leaseMs?: number;
  /** refusals by the broker before a job becomes a dead letter; default 10 */
  maxAttempts?: number;
  /** the wait before the attempt after a first refusal, in ms; doubles with each refusal. Default 10 s */
  retryDelayMs?: number;
  /** the longest wait between two attempts, in ms; default 1 h */
  retryDelayMaxMs?: number;
  /** the current time; injectable for tests */
  clock?: () => Date;
  /** writes the dispatcher's log lines (`log-events.ts`) from its events */
  logger?: Logger;
  /** where it emits what each run did (and, in a daemon, when the store or broker goes down or comes back); default a new one, see `events` */
  events?: DispatchEvents;
}

export type { DispatchDetail, DispatchSummary, HandoffMode } from './events.js';

export const DISPATCH_DEFAULTS = {
  defaultQueue: 'celery',
  batchSize: 500,
  leaseMs: 60_000,
  maxAttempts: 10,
  retryDelayMs: 10_000,
  retryDelayMaxMs: 3_600_000,
} as const;

/** The bounds of the dispatcher's settings (see `DispatcherOptions`); the CLI's flags take the same. */
export const DISPATCH_LIMITS = {
  leaseMs: { min: 1000, max: 86_400_000 },
  batchSize: { min: 1, max: 10_000 },
  maxAttempts: { min: 1, max: 1000 },
  retryDelayMs: { min: 1, max: 86_400_000 },
  retryDelayMaxMs: { min: 1, max: 604_800_000 },
} as const;

/** Why, past the number, a setting out of its bounds does harm. */
const LIMIT_REASONS: Partial<Record<keyof typeof DISPATCH_LIMITS, string>> = {
  leaseMs: ' ms (a lease shorter than a claim-to-acknowledge round trip lets two dispatchers send the same job)',
  retryDelayMs: ' ms',
  retryDelayMaxMs: ' ms',
};

function checkDispatcherOptions(o: DispatcherOptions): void {
  const problems: string[] = [];
  for (const [name, { min, max }] of Object.entries(DISPATCH_LIMITS) as [keyof typeof DISPATCH_LIMITS, { min: number; max: number }][]) {
    const v = o[name];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      problems.push(`${name} must be a whole number from ${min} to ${max}${LIMIT_REASONS[name] ?? ''}, got ${String(v)}`);
  }
  if (problems.length) throw new ValidationError(problems);
}

export class Dispatcher {
  readonly #store: ScheduleStore;
  readonly #broker: Broker;
  readonly #defaultQueue: string;
  readonly #batchSize: number;
  readonly #leaseMs: number;
  readonly #maxAttempts: number;
  readonly #retryDelayMs: number;
  readonly #retryDelayMaxMs: number;
  readonly #clock: () => Date;
  /** what each run did, for metrics, logs and tests (see events.ts) */
  readonly events: DispatchEvents;
  #mode: HandoffMode | undefined;

  constructor(o: DispatcherOptions) {
    checkDispatcherOptions(o);
    this.#store = o.store;
    this.#broker = o.broker;
    this.#defaultQueue = o.defaultQueue ?? DISPATCH_DEFAULTS.defaultQueue;
    this.#batchSize = o.batchSize ?? DISPATCH_DEFAULTS.batchSize;
    this.#leaseMs = o.leaseMs ?? DISPATCH_DEFAULTS.leaseMs;
    this.#maxAttempts = o.maxAttempts ?? DISPATCH_DEFAULTS.maxAttempts;
    this.#retryDelayMs = o.retryDelayMs ?? DISPATCH_DEFAULTS.retryDelayMs;
    this.#retryDelayMaxMs = o.retryDelayMaxMs ?? DISPATCH_DEFAULTS.retryDelayMaxMs;
    this.#clock = o.clock ?? (() => new Date());
    this.events = o.events ?? new DispatchEvents();
    if (o.logger) logDispatchEvents(this.events, o.logger);
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
    const run: RunState = {
      summary: { sent: 0, failed: 0, dead: 0, corrupt: 0, elapsedMs: 0 },
      detail: { latenessSeconds: [], refused: 0, deadByReason: { corrupt: 0, unsupported: 0, rejected: 0, max_attempts: 0 } },
      giveBack: [],
      retries: [],
      leases: new LeaseKeeper(this.#store, this.#leaseMs, this.#clock, this.events),
    };
    const { summary, leases } = run;
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
          batch = await this.#prepare(claimed, now, run);
        } catch (err) {
          if (!(err instanceof BrokerFailure)) throw err;
          this.#brokerDown(
            err,
            claimed.filter((c) => leases.holds(c)),
            run,
          );
        }
        if (sending) await sending;
        if (summary.error) {
          if (batch)
            this.#brokerDown(
              undefined,
              batch.ready.map((r) => r.claim),
              run,
            );
          break;
        }
        if (claimed.length === this.#batchSize && !signal?.aborted) next = claim(); // queued before the send below
        if (batch) {
          const b = batch;
          sending = this.#send(b, run).catch((err: unknown) => {
            if (!(err instanceof BrokerFailure)) throw err;
            this.#brokerDown(
              err,
              b.ready.map((r) => r.claim).filter((c) => leases.holds(c)),
              run,
            );
          });
          // observed here, awaited before the next send or at the end
          sending.catch(() => {});
        }
      }
      if (sending) await sending;
    } finally {
      leases.stop();
      await this.#settleRefused(run);
      summary.failed = run.giveBack.length + run.retries.length;
      summary.elapsedMs = performance.now() - started;
      this.events.emit('run', { summary, detail: run.detail, mode: this.#mode });
    }
    return summary;
  }

  /** Gives back what the broker could not take (unchanged), and what it refused (at its next attempt). */
  async #settleRefused(run: RunState): Promise<void> {
    const { giveBack, retries, leases } = run;
    const settle = async (claims: ClaimedJob[], fn: () => Promise<void>, what: string): Promise<void> => {
      if (claims.length === 0) return;
      try {
        await leases.settle(claims, fn);
      } catch (err) {
        this.events.emit('giveBackFailed', { what, count: claims.length, error: err });
      }
    };
    await settle(giveBack, () => this.#store.release(giveBack), 'jobs');
    await settle(
      retries.map((r) => r.claim),
      () => this.#store.retryLater(retries),
      'refused jobs',
    );
  }

  /** Decodes and builds a batch (corrupt entries become dead letters); in atomic mode also routes it. */
  async #prepare(claimed: ClaimedJob[], now: Date, run: RunState): Promise<Batch | undefined> {
    const ready: Batch['ready'] = [];
    const corrupt: Burial[] = [];
    const nowS = now.getTime() / 1000;
    for (const claim of claimed) {
      try {
        const job = decodeEntry(claim.id, claim.entry);
        ready.push({ claim, message: buildTaskMessage(job, { now, dueAt: claim.dueAt, defaultQueue: this.#defaultQueue }) });
      } catch (err) {
        const reason = err instanceof CorruptEntryError ? err.message : `cannot build a message: ${errorMessage(err)}`;
        const why = err instanceof UnsupportedEntryError ? 'unsupported' : 'corrupt';
        corrupt.push({ claim, reason: why, error: oneLine(reason), diedAt: nowS, ...(claim.attempts && { attempts: claim.attempts }) });
      }
    }
    await this.#bury(corrupt, run);
    if (ready.length === 0) return undefined;
    if ((await this.#handoffMode()) === 'publish-then-ack') return { ready };
    const prepare = this.#broker.prepareRedisPushes?.bind(this.#broker);
    if (!prepare) throw new Error('atomic hand-off needs a Redis broker');
    const prepared = await brokerCall(() => prepare(ready.map((r) => r.message)));
    const routable: Batch['ready'] = [];
    const pushes: RedisPush[][] = [];
    const refused: Burial[] = [];
    prepared.forEach((p, i) => {
      const r = ready[i];
      if (!r) return;
      if (p instanceof Error) this.#refuse(r, p, nowS, run, refused);
      else {
        routable.push(r);
        pushes.push(p);
      }
    });
    await this.#bury(refused, run);
    return routable.length ? { ready: routable, pushes } : undefined;
  }

  /** Publishes and removes a prepared batch: in one atomic step, or publish then acknowledge. */
  async #send(batch: Batch, run: RunState): Promise<void> {
    const { summary, leases } = run;
    const claims = batch.ready.map((r) => r.claim);
    const burials: Burial[] = [];
    if (batch.pushes) {
      const handOff = this.#store.handOff?.bind(this.#store);
      if (!handOff) throw new Error('atomic hand-off needs a Redis store');
      const pushes = batch.pushes;
      const done = await leases.settle(claims, () => handOff(claims, pushes));
      const nowS = this.#clock().getTime() / 1000;
      const sent: ClaimedJob[] = [];
      done.forEach((d, i) => {
        const r = batch.ready[i];
        if (!r) return;
        if (d === true) sent.push(r.claim);
        else if (d instanceof Error) {
          leases.hold([r.claim]); // still leased to us: settled with the refused ones
          this.#refuse(r, d, nowS, run, burials);
        }
        // false: it lost its lease to another dispatcher, which now sends it
      });
      summary.sent += sent.length;
      if (this.events.has('run')) this.#lateness(sent, run.detail);
      await this.#bury(burials, run);
      return;
    }
    const outcomes = await brokerCall(() => this.#broker.publish(batch.ready.map((r) => r.message)));
    const accepted: ClaimedJob[] = [];
    const lost: ClaimedJob[] = [];
    let outage: ConnectionError | undefined;
    const nowS = this.#clock().getTime() / 1000;
    outcomes.forEach((outcome, i) => {
      const r = batch.ready[i];
      if (!r) return;
      if (outcome.ok) accepted.push(r.claim);
      else if (outcome.error instanceof ConnectionError) {
        // the connection died mid-batch: an outage, reported once by the caller, not a refusal
        outage ??= outcome.error;
        lost.push(r.claim);
      } else this.#refuse(r, outcome.error, nowS, run, burials);
    });
    if (outage) this.#brokerDown(new BrokerFailure(outage), lost, run);
    const acceptedAt = this.events.has('run') ? this.#clock().getTime() / 1000 : 0;
    await leases.settle(accepted, () => this.#store.acknowledge(accepted));
    summary.sent += accepted.length;
    if (this.events.has('run')) this.#lateness(accepted, run.detail, acceptedAt);
    await this.#bury(burials, run);
  }

  /** Records, for `run` listeners, how late each sent job left (now, or when the broker accepted it). */
  #lateness(sent: readonly ClaimedJob[], detail: DispatchDetail, at = this.#clock().getTime() / 1000): void {
    for (const c of sent) detail.latenessSeconds.push(Math.max(0, at - c.dueAt));
  }

  /** The broker could not be reached: nothing of these was published; give them back, end the run. */
  #brokerDown(err: BrokerFailure | undefined, claims: ClaimedJob[], run: RunState): void {
    run.giveBack.push(...claims);
    if (err && !run.summary.error) run.summary.error = err.cause instanceof Error ? err.cause : err;
  }

  /**
   * The broker refused one job: a dead letter at once when it can never carry it, else an
   * attempt, tried again after a backoff, or a dead letter once out of attempts.
   */
  #refuse(r: { claim: ClaimedJob; message: TaskMessage }, error: Error, now: number, run: RunState, burials: Burial[]): void {
    const { claim } = r;
    const before = claim.attempts;
    const attempts: Attempts = {
      count: (before?.count ?? 0) + 1,
      lastError: oneLine(errorMessage(error)),
      firstFailedAt: before?.firstFailedAt ?? now,
      firstDueAt: before?.firstDueAt ?? claim.dueAt,
    };
    if (error instanceof MessageRejectedError || attempts.count >= this.#maxAttempts) {
      burials.push({ claim, reason: error instanceof MessageRejectedError ? 'rejected' : 'max_attempts', error: attempts.lastError, diedAt: now, attempts });
      return;
    }
    const delayMs = Math.min(this.#retryDelayMaxMs, this.#retryDelayMs * 2 ** (attempts.count - 1));
    run.retries.push({ claim, retryAt: now + delayMs / 1000, attempts });
    this.events.emit('refused', {
      id: claim.id,
      task: String(r.message.headers.task),
      attempt: attempts.count,
      maxAttempts: this.#maxAttempts,
      retryInMs: delayMs,
      error: attempts.lastError,
      nthInRun: ++run.detail.refused,
    });
  }

  /** Makes jobs dead letters (each still leased to this run), counted and logged. */
  async #bury(burials: Burial[], run: RunState): Promise<void> {
    if (burials.length === 0) return;
    await run.leases.settle(
      burials.map((b) => b.claim),
      () => this.#store.bury(burials),
    );
    for (const b of burials) {
      if (b.reason === 'corrupt') run.summary.corrupt++;
      run.detail.deadByReason[b.reason]++;
      this.events.emit('dead', { id: b.claim.id, reason: b.reason, attempts: b.attempts?.count ?? 0, error: b.error, nthInRun: ++run.summary.dead });
    }
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
    private readonly events: DispatchEvents,
  ) {
    this.#timer = setInterval(() => void this.renew(), Math.max(1, leaseMs / 3));
    this.#timer.unref();
  }

  hold(claims: ClaimedJob[]): ClaimedJob[] {
    for (const c of claims) this.#held.add(c);
    return claims;
  }

  /** Whether `claim` is held (not yet settled, and its lease not lost). */
  holds(claim: ClaimedJob): boolean {
    return this.#held.has(claim);
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
        if (lost > 0) this.events.emit('leaseLost', { count: lost });
      } catch (err) {
        this.events.emit('renewFailed', { count: claims.length, error: err });
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

/** What one dispatch run collects as it goes. */
interface RunState {
  summary: DispatchSummary;
  detail: DispatchDetail;
  /** jobs the broker could not take (unreachable): given back unchanged at the end */
  giveBack: ClaimedJob[];
  /** jobs the broker refused: given back at their next attempt at the end */
  retries: Retry[];
  leases: LeaseKeeper;
}

/** An error's first line, redacted and cut to 1,000 characters: what a dead letter keeps. */
function oneLine(text: string): string {
  return firstLine(text).slice(0, 1000);
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

async function brokerCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new BrokerFailure(err);
  }
}
