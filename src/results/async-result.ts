/**
 * Results of sent and scheduled tasks: `AsyncResult` (what `sendTask` / `applyAsync` return),
 * reading Celery's Redis result backend (docs/protocol.md §6.3), and revoking.
 *
 * - **State.** `SCHEDULED` while the job waits in our store (scheduled, or claimed by a dispatcher
 *   that is sending it); after that, the status in Celery's result backend, or `PENDING` when
 *   there is no record (as Celery reports an unknown id).
 * - **Waiting.** `get()` reads `celery-task-meta-<id>` and listens on the channel of the same
 *   name, where Celery's Redis backend PUBLISHes every record it writes. It reads once before
 *   subscribing and once after, so an update landing in between is not missed, and also re-reads
 *   every `intervalMs` (default 1 s) in case pub/sub messages are lost (e.g. on a reconnect).
 *   One subscriber connection per app serves every waiting `get()`.
 * - **Revoking.** `revoke()` deletes the job from our store when it is still scheduled there
 *   (`'removed'`; with a result backend it also records REVOKED there, as a worker would, so
 *   `state()` and `get()` tell the truth). Otherwise the message is in the broker, or being
 *   sent, and `revoke()` sends Celery's revoke broadcast (`'broadcast'`), the same message as
 *   Python's `app.control.revoke(id)`: every worker live at that moment remembers the id and
 *   discards the task when it meets it. Workers started later do not know (unless they share a
 *   `--statedb`), exactly as with Celery.
 */
import type { Broker } from '../brokers/broker.js';
import type { ScheduleStore } from '../stores/store.js';
import { ErrorCode, ResultTimeoutError, SchedulerError, ValidationError } from '../util/errors.js';
import { READY_STATES, RedisResultBackend, SCHEDULED, outcomeOf, revokeBroadcast, revokedMeta, type TaskMeta } from './redis-backend.js';

/** Options of `AsyncResult.get`. */
export interface GetOptions {
  /** how long to wait, in ms (default 30 000); on expiry `get` rejects with `ResultTimeoutError` */
  timeoutMs?: number;
  /** how often to re-read the record besides listening for its updates, in ms (default 1000) */
  intervalMs?: number;
}

/** What an `AsyncResult` needs of its app (the `Celery` client is one). */
export interface ResultApp {
  readonly store: ScheduleStore;
  readonly broker: Broker;
  readonly resultBackend: RedisResultBackend | undefined;
  readonly config: { readonly controlExchange: string };
  now(): Date;
}

/** What `applyAsync` / `sendTask` return. `id` is the Celery task id the worker will see. */
export class AsyncResult {
  readonly id: string;
  /** when the job is due (for scheduled jobs), else undefined: it was published at once, or is unknown */
  readonly dueAt: Date | undefined;
  /**
   * With a `jobKey`: `added` (this call stored the job), `replaced` (it took the place of
   * `replacedId`) or `kept` (the job already holding the key, returned as it is).
   */
  readonly keyOutcome: 'added' | 'replaced' | 'kept' | undefined;
  /** with `keyOutcome: 'replaced'`: the id of the job this one replaced */
  readonly replacedId: string | undefined;
  readonly #app: ResultApp;
  /** false when we published it ourselves at once: it was never in the store */
  readonly #mayBeStored: boolean;

  /**
   * `new AsyncResult(app, id)` for any task id (the store is checked); `sendTask` passes
   * `{ dueAt }` for a scheduled job and `{ published: true }` for one sent at once.
   */
  constructor(app: ResultApp, id: string, init: { dueAt?: Date; published?: boolean; keyOutcome?: 'added' | 'replaced' | 'kept'; replacedId?: string } = {}) {
    this.#app = app;
    this.id = id;
    this.dueAt = init.dueAt;
    this.keyOutcome = init.keyOutcome;
    this.replacedId = init.replacedId;
    this.#mayBeStored = init.published !== true;
  }

  toString(): string {
    return this.id;
  }

  /** `SCHEDULED` while in our store; else the backend's status (`PENDING` when it has no record). */
  async state(): Promise<string> {
    if (await this.#inStore()) return SCHEDULED;
    const meta = await this.#backend().getMeta(this.id);
    return meta?.status ?? 'PENDING';
  }

  /** True once the task will not change any more (SUCCESS, FAILURE or REVOKED). */
  async ready(): Promise<boolean> {
    return READY_STATES.has(await this.state());
  }

  /** The backend's record, when there is one. */
  async meta(): Promise<TaskMeta | undefined> {
    return this.#backend().getMeta(this.id);
  }

  /**
   * Waits for the task to finish and resolves with its return value. Rejects with
   * `TaskFailedError` (FAILURE), `TaskRevokedError` (REVOKED) or `ResultTimeoutError`.
   */
  async get(options: GetOptions = {}): Promise<unknown> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const intervalMs = options.intervalMs ?? 1000;
    const problems: string[] = [];
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) problems.push(`timeoutMs must be a number of ms >= 0, got ${String(timeoutMs)}`);
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) problems.push(`intervalMs must be a number of ms > 0, got ${String(intervalMs)}`);
    if (problems.length) throw new ValidationError(problems);
    const backend = this.#backend();
    const meta = await backend.waitForReady(this.id, { timeoutMs, intervalMs });
    if (!meta) throw new ResultTimeoutError(this.id, timeoutMs, await this.state().catch(() => 'unknown'));
    const outcome = outcomeOf(this.id, meta);
    if ('error' in outcome) throw outcome.error;
    return outcome.value;
  }

  /**
   * Removes the job from our store while it is still scheduled there (`'removed'`); otherwise
   * sends Celery's revoke broadcast to the workers (`'broadcast'`). See the module comment.
   */
  async revoke(): Promise<'removed' | 'broadcast'> {
    if (this.#mayBeStored && (await this.#app.store.remove(this.id))) {
      const backend = this.#app.resultBackend;
      // best effort: the job is gone either way; the record only makes state()/get() say REVOKED
      if (backend) await backend.storeMeta(revokedMeta(this.id, this.#app.now())).catch(() => undefined);
      return 'removed';
    }
    const broker = this.#app.broker;
    if (!broker.broadcast) {
      throw new SchedulerError(
        ErrorCode.PUBLISH,
        `the broker ${broker.description} cannot broadcast, so task ${JSON.stringify(this.id)} cannot be revoked there`,
      );
    }
    await broker.broadcast(revokeBroadcast(this.id, { controlExchange: this.#app.config.controlExchange, now: this.#app.now() }));
    return 'broadcast';
  }

  async #inStore(): Promise<boolean> {
    if (!this.#mayBeStored) return false;
    return (await this.#app.store.get(this.id)) !== undefined;
  }

  #backend(): RedisResultBackend {
    const backend = this.#app.resultBackend;
    if (!backend) {
      throw new ValidationError([
        `no result backend is configured, so the result of task ${JSON.stringify(this.id)} cannot be read; pass resultBackend (Celery's result_backend), e.g. redis://localhost:6379/1`,
      ]);
    }
    return backend;
  }
}
