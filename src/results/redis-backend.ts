/**
 * Celery's Redis result backend, read side (docs/protocol.md §6.3): the `celery-task-meta-<id>`
 * records and their pub/sub channels, the chord counter, and the REVOKED record we write when a
 * job is revoked before it was sent; plus the revoke broadcast message. `async-result.ts` is
 * what callers hold.
 */
import type { Redis } from 'ioredis';
import type { BroadcastMessage } from '../brokers/broker.js';
import { formatCeleryTime } from '../celery/time.js';
import { urlScheme } from '../util/url.js';
import { ErrorCode, SchedulerError, TaskFailedError, TaskRevokedError, ValidationError, redactUrl } from '../util/errors.js';
import { Lazy, RedisConnections, wrapRedisError, type RedisConnectionOptions } from '../redis/connection.js';

/** Our state for a job still in the long-term store. */
export const SCHEDULED = 'SCHEDULED';
/** Celery's `READY_STATES`: the task will not change any more. */
export const READY_STATES: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);
/** Celery's default `result_expires`, in seconds (1 day). */
export const DEFAULT_RESULT_EXPIRES = 86_400;
/** Celery's `task_keyprefix` of key/value result backends. */
export const TASK_KEYPREFIX = 'celery-task-meta-';
/** Celery's `group_keyprefix` of key/value result backends (group results, chord counters). */
export const GROUP_KEYPREFIX = 'celery-taskset-meta-';

/**
 * The prefix `result_backend_transport_options.global_keyprefix` gives result keys (docs/protocol.md §6.3): unlike
 * the broker's, it gets a `_` appended unless it already ends in one of `:_-.`.
 */
export function resultKeyPrefix(globalKeyprefix: string | undefined): string {
  if (!globalKeyprefix) return '';
  return ':_-.'.includes(globalKeyprefix.slice(-1)) ? globalKeyprefix : `${globalKeyprefix}_`;
}

/** The Redis key (and pub/sub channel) of a task's result record. */
export function resultKey(taskId: string, globalKeyprefix?: string): string {
  return `${resultKeyPrefix(globalKeyprefix)}${TASK_KEYPREFIX}${taskId}`;
}

/** A result record as Celery stores it (`_get_result_meta`). */
export interface TaskMeta {
  status: string;
  result: unknown;
  traceback: string | null;
  children?: unknown[];
  date_done?: string | null;
  task_id: string;
  [key: string]: unknown;
}

/** Reads a stored record; a `SchedulerError` (CORRUPT_ENTRY) for anything that is not one. */
export function parseTaskMeta(raw: string, key: string): TaskMeta {
  let meta: unknown;
  try {
    meta = JSON.parse(raw);
  } catch {
    meta = undefined;
  }
  if (typeof meta !== 'object' || meta === null || typeof (meta as { status?: unknown }).status !== 'string') {
    throw new SchedulerError(
      ErrorCode.CORRUPT_ENTRY,
      `the result record ${JSON.stringify(key)} is not a JSON Celery result (is result_serializer json?): ${raw.slice(0, 80)}`,
    );
  }
  return meta as TaskMeta;
}

/** The error a FAILURE record stands for (`{exc_type, exc_message, exc_module}`, docs/protocol.md §6.3). */
export function failureFromMeta(taskId: string, meta: TaskMeta): TaskFailedError {
  const r = (typeof meta.result === 'object' && meta.result !== null ? meta.result : {}) as Record<string, unknown>;
  const excType = typeof r.exc_type === 'string' ? r.exc_type : 'Exception';
  return new TaskFailedError(taskId, {
    excType,
    excMessage: excMessageText(r.exc_message),
    ...(typeof r.exc_module === 'string' && { excModule: r.exc_module }),
    ...(typeof meta.traceback === 'string' && { traceback: meta.traceback }),
  });
}

/** Celery stores the exception's `args` (a list); one string argument is the message itself. */
function excMessageText(m: unknown): string {
  if (typeof m === 'string') return m;
  if (Array.isArray(m)) return m.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(', ');
  return m === undefined || m === null ? '' : JSON.stringify(m);
}

/** What a settled record means for `get()`: the value, or the error to reject with. */
export function outcomeOf(taskId: string, meta: TaskMeta): { value: unknown } | { error: Error } {
  if (meta.status === 'SUCCESS') return { value: meta.result };
  if (meta.status === 'FAILURE') return { error: failureFromMeta(taskId, meta) };
  const r = (typeof meta.result === 'object' && meta.result !== null ? meta.result : {}) as Record<string, unknown>;
  const reason = r.exc_message === undefined ? undefined : excMessageText(r.exc_message);
  return { error: new TaskRevokedError(taskId, reason) };
}

/**
 * The record a worker writes when it discards a revoked task (`mark_as_revoked`): status REVOKED
 * and a `TaskRevokedError('revoked')` as the result. We write the same when we remove a job from
 * the store, so readers in any language see it as revoked.
 */
export function revokedMeta(taskId: string, now: Date): TaskMeta {
  return {
    status: 'REVOKED',
    result: { exc_type: 'TaskRevokedError', exc_message: ['revoked'], exc_module: 'celery.exceptions' },
    traceback: null,
    children: [],
    date_done: formatCeleryTime(now),
    task_id: taskId,
  };
}

let lamportClock = 0;

/**
 * Celery's revoke broadcast (`app.control.revoke(id)`): kombu's pidbox command on the fanout
 * exchange `<control_exchange>.pidbox`, routing key '', addressed to every worker
 * (`destination: null`), no reply wanted. Headers as kombu's `Mailbox._publish`: a Lamport
 * `clock` and `expires` = now + 1 s (Celery's broadcast timeout; workers do not check it).
 */
export function revokeBroadcast(
  taskId: string,
  options: { controlExchange?: string; now?: Date; terminate?: boolean; signal?: string } = {},
): BroadcastMessage {
  const now = options.now ?? new Date();
  lamportClock += 1;
  return {
    exchange: `${options.controlExchange ?? 'celery'}.pidbox`,
    routingKey: '',
    body: {
      method: 'revoke',
      arguments: { task_id: taskId, terminate: options.terminate ?? false, signal: options.signal ?? 'SIGTERM' },
      destination: null,
      pattern: null,
      matcher: null,
    },
    headers: { clock: lamportClock, expires: now.getTime() / 1000 + 1 },
  };
}

export interface RedisResultBackendOptions extends RedisConnectionOptions {
  /** `result_backend_transport_options.global_keyprefix` (the `_` rule applies) */
  globalKeyprefix?: string;
  /** seconds a record we write lives (Celery's `result_expires`); default 1 day */
  resultExpires?: number;
}

const WHAT = 'Celery result backend (Redis)';

/** Celery's Redis result backend, read side (plus the REVOKED record of a removed job). */
export class RedisResultBackend {
  readonly description: string;
  readonly globalKeyprefix: string;
  readonly #expires: number;
  readonly #connections: RedisConnections;
  readonly #client: Lazy<Redis>;
  readonly #subscriber: Lazy<Redis>;
  /** per channel, the waiters listening on it */
  readonly #listeners = new Map<string, Set<(raw: string) => void>>();
  /** the waits in progress: `close()` ends them */
  readonly #waits = new Set<(err: Error) => void>();

  /** Validates the URL (redis:// or rediss:// only) and options; connects on first use. */
  constructor(url: string, options: RedisResultBackendOptions = {}) {
    const scheme = urlScheme(url);
    if (scheme !== 'redis' && scheme !== 'rediss') {
      throw new ValidationError([
        `resultBackend ${JSON.stringify(redactUrl(url))} is not supported; only Redis result backends are (redis:// or rediss://, e.g. redis://localhost:6379/1)`,
      ]);
    }
    const problems: string[] = [];
    if (options.globalKeyprefix !== undefined && typeof options.globalKeyprefix !== 'string') {
      problems.push(`resultBackendTransportOptions.global_keyprefix must be a string, got ${typeof options.globalKeyprefix}`);
    }
    const expires = options.resultExpires ?? DEFAULT_RESULT_EXPIRES;
    if (!Number.isInteger(expires) || expires < 1) problems.push(`resultExpires must be a whole number of seconds >= 1, got ${String(expires)}`);
    if (problems.length) throw new ValidationError(problems);
    const { globalKeyprefix: _g, resultExpires: _e, ...redis } = options;
    this.#connections = new RedisConnections(url, WHAT, redis);
    this.description = redactUrl(url);
    this.globalKeyprefix = options.globalKeyprefix ?? '';
    this.#expires = expires;
    this.#client = new Lazy(() => this.#connections.open());
    this.#subscriber = new Lazy(async () => {
      const sub = await this.#connections.open({ maxRetriesPerRequest: null });
      sub.on('message', (channel: string, message: string) => {
        for (const f of this.#listeners.get(channel) ?? []) f(message);
      });
      return sub;
    });
  }

  key(taskId: string): string {
    return resultKey(taskId, this.globalKeyprefix);
  }

  /** The stored record, or undefined when there is none (Celery's PENDING). */
  async getMeta(taskId: string): Promise<TaskMeta | undefined> {
    const key = this.key(taskId);
    let raw: string | null;
    try {
      raw = await (await this.#client.get()).get(key);
    } catch (err) {
      throw wrapRedisError(err, WHAT, this.#connections.url);
    }
    return raw === null ? undefined : parseTaskMeta(raw, key);
  }

  /**
   * Writes a chord's size where Celery's Redis backend counts its header's results
   * (`celery-taskset-meta-<group id>.s`, `set_chord_size`), to live `holdSeconds` plus
   * `result_expires`: a chord scheduled for later keeps its counter until it runs.
   */
  async setChordSize(groupId: string, size: number, holdSeconds: number): Promise<void> {
    const key = `${resultKeyPrefix(this.globalKeyprefix)}${GROUP_KEYPREFIX}${groupId}.s`;
    try {
      await (await this.#client.get()).setex(key, Math.ceil(holdSeconds) + this.#expires, String(size));
    } catch (err) {
      throw wrapRedisError(err, WHAT, this.#connections.url);
    }
  }

  /** Writes a record as Celery's backend does: SETEX, then PUBLISH on the key's channel. */
  async storeMeta(meta: TaskMeta): Promise<void> {
    const key = this.key(meta.task_id);
    const value = JSON.stringify(meta);
    try {
      const client = await this.#client.get();
      const replies = await client.multi().setex(key, this.#expires, value).publish(key, value).exec();
      const failed = replies?.find(([err]) => err);
      if (failed?.[0]) throw failed[0];
    } catch (err) {
      throw wrapRedisError(err, WHAT, this.#connections.url);
    }
  }

  /**
   * Resolves with the first settled record (SUCCESS, FAILURE or REVOKED), or with `undefined`
   * when `timeoutMs` passes first. GET, SUBSCRIBE, GET, then every message and every
   * `intervalMs` a GET: no update can slip between reading and listening.
   */
  async waitForReady(taskId: string, options: { timeoutMs: number; intervalMs: number }): Promise<TaskMeta | undefined> {
    const first = await this.getMeta(taskId);
    if (first && READY_STATES.has(first.status)) return first;
    const key = this.key(taskId);
    const deadline = Date.now() + options.timeoutMs;
    let wake: (() => void) | undefined;
    let pushed: TaskMeta | undefined;
    const listener = (raw: string): void => {
      try {
        const meta = parseTaskMeta(raw, key);
        if (READY_STATES.has(meta.status)) pushed = meta;
      } catch {
        // an unreadable message: the next GET reports it
      }
      wake?.();
    };
    let closed: Error | undefined;
    const onClose = (err: Error): void => {
      closed = err;
      wake?.();
    };
    this.#waits.add(onClose);
    let unsubscribe: (() => Promise<void>) | undefined;
    try {
      unsubscribe = await this.#listen(key, listener);
      for (;;) {
        if (closed) throw closed;
        if (pushed) return pushed;
        const meta = await this.getMeta(taskId);
        if (closed) throw closed;
        if (meta && READY_STATES.has(meta.status)) return meta;
        if (pushed) return pushed;
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.min(left, options.intervalMs));
          function done(): void {
            clearTimeout(timer);
            wake = undefined;
            resolve();
          }
          wake = done;
        });
      }
    } finally {
      this.#waits.delete(onClose);
      await unsubscribe?.();
    }
  }

  async #listen(channel: string, listener: (raw: string) => void): Promise<() => Promise<void>> {
    let sub: Redis;
    try {
      sub = await this.#subscriber.get();
    } catch (err) {
      throw wrapRedisError(err, WHAT, this.#connections.url);
    }
    let set = this.#listeners.get(channel);
    const fresh = set === undefined;
    if (!set) {
      set = new Set();
      this.#listeners.set(channel, set);
    }
    set.add(listener);
    const stop = async (): Promise<void> => {
      const s = this.#listeners.get(channel);
      if (!s?.delete(listener) || s.size > 0) return;
      this.#listeners.delete(channel);
      await sub.unsubscribe(channel).catch(() => undefined);
    };
    if (fresh) {
      try {
        await sub.subscribe(channel);
      } catch (err) {
        await stop();
        throw wrapRedisError(err, WHAT, this.#connections.url);
      }
    }
    return stop;
  }

  /** Closes both connections and ends every wait in progress (it rejects); idempotent. A later call reconnects. */
  async close(): Promise<void> {
    const waits = [...this.#waits];
    this.#waits.clear();
    for (const end of waits) end(new SchedulerError(ErrorCode.CONNECTION, `the app was closed while waiting for a task result from ${this.description}`));
    this.#client.reset();
    this.#subscriber.reset();
    this.#listeners.clear();
    await this.#connections.closeAll();
  }
}
