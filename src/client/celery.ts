/**
 * The Celery client: `new Celery(config)`, `app.task(name)`, `applyAsync`, `sendTask`.
 *
 * With an `eta` or `countdown`, a call writes a job into the long-term store and leaves the
 * broker alone; the dispatcher sends it when due. Without them (or with `eta: null`), the task is
 * published to the broker at once, like Celery's own `apply_async`.
 */
import type { Broker } from '../brokers/broker.js';
import { headersBytes } from '../celery/amqp-limits.js';
import { MAX_BODY_BYTES, MAX_HEADERS_BYTES } from '../celery/limits.js';
import { buildTaskMessage } from '../celery/message.js';
import { DEFAULT_STORE_URL, createStore } from '../stores/registry.js';
import { createBroker } from '../brokers/registry.js';
import { ValidationError } from '../util/errors.js';
import { encodeEntry } from '../job/entry.js';
import { type Job, type NewJob, type Signature } from '../job/types.js';
import { resolveTaskCall, signature, type TaskOptions } from '../job/options.js';
import { resolveTags } from '../job/tags.js';
import type { Logger } from '../util/logger.js';
import type { ScheduleStore } from '../stores/store.js';
import { DISPATCH_DEFAULTS } from '../dispatch/dispatcher.js';
import { validateRedisOptions } from '../redis/connection.js';
import { layoutFromTransportOptions, type KombuRedisLayout } from '../celery/kombu-redis.js';
import { AsyncResult } from '../results/async-result.js';
import { RedisResultBackend } from '../results/redis-backend.js';
import { bindSignature, signatureOptions, type CanvasOptions, type CanvasResult, type Plannable, type SignatureOptions } from './canvas.js';

export { AsyncResult } from '../results/async-result.js';

export interface CeleryConfig {
  /** Celery's `broker_url`; default `redis://localhost:6379/0` */
  broker?: string;
  /**
   * Where jobs wait (the original's `longterm_scheduler_backend`): `sqlite://`, `postgres://` or
   * `redis://`. Default `sqlite:///celery-longterm-scheduler.db`, a file in the working directory.
   */
  longtermSchedulerBackend?: string;
  /** PostgreSQL store: apply pending schema migrations on first use instead of failing (default false) */
  longtermSchedulerMigrate?: boolean;
  /** a key prefix for the store, to share a Redis database; default '' (the original's layout) */
  longtermSchedulerKeyPrefix?: string;
  /** seconds; Celery's `redis_socket_timeout` (default 120) */
  redisSocketTimeout?: number;
  /** seconds; Celery's `redis_socket_connect_timeout` (default 10) */
  redisSocketConnectTimeout?: number;
  /** Celery's `redis_max_connections` (default 10) */
  redisMaxConnections?: number;
  /** Celery's `task_default_queue` (default 'celery') */
  taskDefaultQueue?: string;
  /**
   * Celery's `broker_transport_options`, under Celery's names. Used here: `global_keyprefix`,
   * `sep`, `priority_steps`, `fanout_prefix`, `fanout_patterns` (Redis broker, must match the
   * workers') and `master_name` (Sentinel).
   */
  brokerTransportOptions?: Record<string, unknown>;
  /** the Sentinel master name when `longtermSchedulerBackend` is a `sentinel://` URL */
  longtermSchedulerMasterName?: string;
  /**
   * Celery's `result_backend`, for `AsyncResult.state()` / `get()`. Only Redis result backends
   * (`redis://`, `rediss://`) are supported, e.g. `redis://localhost:6379/1`. Default: none.
   */
  resultBackend?: string;
  /** Celery's `result_backend_transport_options`; used here: `global_keyprefix` (docs/protocol.md §6.3) */
  resultBackendTransportOptions?: { global_keyprefix?: string };
  /** seconds; Celery's `result_expires`, for the REVOKED record `revoke()` writes (default 86400) */
  resultExpires?: number;
  /** Celery's `control_exchange` (default 'celery'): revoke broadcasts go to `<control_exchange>.pidbox` */
  controlExchange?: string;
  /** the current time; injectable for tests */
  clock?: () => Date;
  /**
   * Where connections report what an operator should know but that fails nothing (e.g. a Redis
   * that needs no password although the URL gives one). Default: `process.emitWarning`.
   */
  logger?: Logger;
}

export const CELERY_DEFAULTS = {
  broker: 'redis://localhost:6379/0',
  longtermSchedulerBackend: DEFAULT_STORE_URL,
  longtermSchedulerKeyPrefix: '',
  taskDefaultQueue: DISPATCH_DEFAULTS.defaultQueue,
  controlExchange: 'celery',
} as const;

/** kombu's Redis `fanout_prefix` / `fanout_patterns` transport options (both default true). */
function fanoutOptions(t: Record<string, unknown>): { fanoutPrefix?: boolean | string; fanoutPatterns?: boolean } {
  const problems: string[] = [];
  const { fanout_prefix: prefix, fanout_patterns: patterns } = t;
  if (prefix !== undefined && typeof prefix !== 'boolean' && typeof prefix !== 'string')
    problems.push(`fanout_prefix must be true, false or a string, got ${typeof prefix}`);
  if (patterns !== undefined && typeof patterns !== 'boolean') problems.push(`fanout_patterns must be true or false, got ${typeof patterns}`);
  if (problems.length) throw new ValidationError(problems);
  return {
    ...(prefix !== undefined && { fanoutPrefix: prefix as boolean | string }),
    ...(patterns !== undefined && { fanoutPatterns: patterns as boolean }),
  };
}

/** One call of `sendTasks`. */
export interface TaskCall {
  name: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  options: TaskOptions;
}

export class Task {
  readonly name: string;
  readonly #app: Celery;
  readonly #defaults: TaskOptions;
  constructor(app: Celery, name: string, defaults: TaskOptions = {}) {
    this.#app = app;
    this.name = name;
    this.#defaults = defaults;
  }
  applyAsync(args?: unknown[], kwargs?: Record<string, unknown>, options: TaskOptions = {}): Promise<AsyncResult> {
    return this.#app.sendTask(this.name, args, kwargs, { ...this.#defaults, ...options });
  }
  /** Publishes at once with positional arguments, like Celery's `delay`. */
  delay(...args: unknown[]): Promise<AsyncResult> {
    return this.applyAsync(args);
  }
  /**
   * A signature of this task, for `link` / `linkError` and canvas (`chain`, `group`, `chord`),
   * with its own options (`queue`, `countdown`, `priority`, `immutable`, ...), as Celery's `s()`.
   */
  s(args: unknown[] = [], kwargs: Record<string, unknown> = {}, options: SignatureOptions = {}): Signature {
    // the task's own defaults (app.task(name, defaults)) travel in its signatures, under what was given
    const sig = signature(this.name, args, kwargs, {
      immutable: options.immutable ?? false,
      options: signatureOptions({ ...this.#signatureDefaults(), ...options }),
    });
    return bindSignature(sig, this.#app);
  }
  /** The defaults of this task that a signature can carry (routing, priority, limits; a relative expires). */
  #signatureDefaults(): SignatureOptions {
    const d = this.#defaults;
    return {
      ...(d.queue !== undefined && { queue: d.queue }),
      ...(d.routingKey !== undefined && { routingKey: d.routingKey }),
      ...(d.exchange !== undefined && { exchange: d.exchange }),
      ...(d.priority !== undefined && { priority: d.priority }),
      ...(typeof d.expires === 'number' && { expires: d.expires }),
      ...(d.timeLimit !== undefined && { timeLimit: d.timeLimit }),
      ...(d.softTimeLimit !== undefined && { softTimeLimit: d.softTimeLimit }),
      ...(d.shadow !== undefined && { shadow: d.shadow }),
      ...(d.ignoreResult !== undefined && { ignoreResult: d.ignoreResult }),
      ...(d.headers !== undefined && { headers: d.headers }),
    };
  }
  /** An immutable signature (Celery's `si()`): the parent's result is not put in front of its args. */
  si(args: unknown[] = [], kwargs: Record<string, unknown> = {}, options: Omit<SignatureOptions, 'immutable'> = {}): Signature {
    return this.s(args, kwargs, { ...options, immutable: true });
  }
}

export class Celery {
  readonly config: Readonly<
    Required<
      Omit<
        CeleryConfig,
        'clock' | 'logger' | 'longtermSchedulerMasterName' | 'longtermSchedulerMigrate' | 'resultBackend' | 'resultBackendTransportOptions' | 'resultExpires'
      >
    >
  > & {
    longtermSchedulerMasterName?: string;
    longtermSchedulerMigrate?: boolean;
    resultBackend?: string;
    resultBackendTransportOptions?: { global_keyprefix?: string };
    resultExpires?: number;
  };
  readonly #clock: () => Date;
  readonly #logger: Logger | undefined;
  /** the kombu layout from `brokerTransportOptions`, parsed (and so validated) once */
  readonly #layout: KombuRedisLayout;
  #store: ScheduleStore | undefined;
  #broker: Broker | undefined;
  /** validated at construction; connects on first use */
  #resultBackend: RedisResultBackend | undefined;

  constructor(config: CeleryConfig = {}) {
    this.#logger = config.logger;
    const redis = validateRedisOptions({
      socketTimeout: config.redisSocketTimeout,
      socketConnectTimeout: config.redisSocketConnectTimeout,
      maxConnections: config.redisMaxConnections,
    });
    this.config = {
      broker: config.broker ?? CELERY_DEFAULTS.broker,
      longtermSchedulerBackend: config.longtermSchedulerBackend ?? CELERY_DEFAULTS.longtermSchedulerBackend,
      longtermSchedulerKeyPrefix: config.longtermSchedulerKeyPrefix ?? CELERY_DEFAULTS.longtermSchedulerKeyPrefix,
      redisSocketTimeout: redis.socketTimeout,
      redisSocketConnectTimeout: redis.socketConnectTimeout,
      redisMaxConnections: redis.maxConnections,
      taskDefaultQueue: config.taskDefaultQueue ?? CELERY_DEFAULTS.taskDefaultQueue,
      brokerTransportOptions: config.brokerTransportOptions ?? {},
      ...(config.longtermSchedulerMasterName !== undefined && { longtermSchedulerMasterName: config.longtermSchedulerMasterName }),
      ...(config.longtermSchedulerMigrate !== undefined && { longtermSchedulerMigrate: config.longtermSchedulerMigrate }),
      controlExchange: config.controlExchange ?? CELERY_DEFAULTS.controlExchange,
      ...(config.resultBackend !== undefined && { resultBackend: config.resultBackend }),
      ...(config.resultBackendTransportOptions !== undefined && { resultBackendTransportOptions: config.resultBackendTransportOptions }),
      ...(config.resultExpires !== undefined && { resultExpires: config.resultExpires }),
    };
    if (typeof this.config.controlExchange !== 'string' || this.config.controlExchange === '') {
      throw new ValidationError([`controlExchange must be a non-empty string (Celery's control_exchange, default 'celery')`]);
    }
    fanoutOptions(this.config.brokerTransportOptions); // bad options fail here, changing nothing
    if (this.config.resultBackend !== undefined) {
      this.#resultBackend = new RedisResultBackend(this.config.resultBackend, {
        ...this.#redisOptions(),
        ...(this.config.resultBackendTransportOptions?.global_keyprefix !== undefined && {
          globalKeyprefix: this.config.resultBackendTransportOptions.global_keyprefix,
        }),
        ...(this.config.resultExpires !== undefined && { resultExpires: this.config.resultExpires }),
      });
    }
    this.#layout = layoutFromTransportOptions(this.config.brokerTransportOptions); // bad options fail here, changing nothing
    this.#clock = config.clock ?? (() => new Date());
  }

  /** The long-term store (opened on first use). */
  get store(): ScheduleStore {
    this.#store ??= createStore(this.config.longtermSchedulerBackend, {
      ...this.#redisOptions(),
      keyPrefix: this.config.longtermSchedulerKeyPrefix,
      ...(this.config.longtermSchedulerMasterName !== undefined && { masterName: this.config.longtermSchedulerMasterName }),
      ...(this.config.longtermSchedulerMigrate !== undefined && { migrate: this.config.longtermSchedulerMigrate }),
    });
    return this.#store;
  }

  /** The Celery broker (opened on first use). */
  get broker(): Broker {
    const t = this.config.brokerTransportOptions;
    // fanoutPrefix/fanoutPatterns are RedisBrokerOptions; createBroker hands its options to the
    // Redis broker as they are (the AMQP broker ignores them)
    const options: Parameters<typeof createBroker>[1] & ReturnType<typeof fanoutOptions> = {
      ...this.#redisOptions(),
      layout: this.#layout,
      ...(typeof t.master_name === 'string' && { masterName: t.master_name }),
      ...fanoutOptions(t),
    };
    this.#broker ??= createBroker(this.config.broker, options);
    return this.#broker;
  }

  /** Celery's Redis result backend, when `resultBackend` is configured (connects on first use). */
  get resultBackend(): RedisResultBackend | undefined {
    return this.#resultBackend;
  }

  /** The result of any task id (like Celery's `app.AsyncResult(id)`). */
  asyncResult(id: string): AsyncResult {
    return new AsyncResult(this, id);
  }

  now(): Date {
    return this.#clock();
  }

  task(name: string, defaults?: TaskOptions): Task {
    return new Task(this, name, defaults);
  }

  /**
   * Sends a task by name. With `eta`/`countdown` it is stored until due (the broker is not
   * touched); otherwise it is published now. Validation happens first: bad input changes nothing.
   */
  async sendTask(name: string, args?: unknown[], kwargs?: Record<string, unknown>, options: TaskOptions = {}): Promise<AsyncResult> {
    const now = this.#clock();
    const { job, dueAt, key, tags } = resolveTaskCall(name, args, kwargs, options, now);
    if (dueAt !== undefined) {
      const stored = this.#storable(job, dueAt, now, tags);
      if (key) {
        const r = await this.store.addKeyed(stored, key.key, key.mode); // JobKeyTakenError when 'reject'
        if (r.outcome === 'kept') {
          const held = await this.store.get(r.id);
          return new AsyncResult(this, r.id, held ? { dueAt: new Date(held.dueAt * 1000), keyOutcome: 'kept' } : { keyOutcome: 'kept' });
        }
        return new AsyncResult(this, r.id, {
          dueAt: new Date(dueAt * 1000),
          keyOutcome: r.outcome,
          ...(r.replacedId !== undefined && { replacedId: r.replacedId }),
        });
      }
      await this.store.add([stored]);
      return new AsyncResult(this, job.id, { dueAt: new Date(dueAt * 1000) });
    }
    const message = buildTaskMessage(job, { now, defaultQueue: this.config.taskDefaultQueue });
    const [outcome] = await this.broker.publish([message]);
    if (outcome && !outcome.ok) throw outcome.error;
    return new AsyncResult(this, job.id, { published: true });
  }

  /**
   * Stores a canvas (`chain`, `group`, `chord`) to run at `eta` or after `countdown`, in the
   * layout the Python package writes for it (see canvas.ts), all jobs or none. A chord needs
   * `resultBackend`: its size goes to the backend's counter key first. `canvas.applyAsync(options)`
   * calls this.
   */
  async applyCanvas(canvas: Plannable, options: CanvasOptions): Promise<CanvasResult> {
    const now = this.#clock();
    const plan = canvas.plan(options, now);
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const id of plan.taskIds) {
      if (seen.has(id))
        problems.push(`the task id ${JSON.stringify(id)} is given to two tasks of this canvas; each task needs its own (omit taskId for a random one)`);
      seen.add(id);
    }
    if (plan.chordSize !== undefined && !this.#resultBackend) {
      problems.push(
        "a chord needs Celery's Redis result backend (the worker counts the header's results there); set resultBackend, e.g. redis://localhost:6379/1",
      );
    }
    const tags = resolveTags(options.tags, problems);
    const jobs: NewJob[] = [];
    for (const job of plan.jobs) {
      try {
        jobs.push(this.#storable(job, plan.dueAt, now, tags));
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        problems.push(...err.problems.map((p) => `task ${job.id}: ${p}`));
      }
    }
    if (problems.length) throw new ValidationError(problems);
    if (plan.chordSize !== undefined && plan.groupId !== undefined) {
      // until the due time, plus result_expires as Celery gives it
      await this.#resultBackend?.setChordSize(plan.groupId, plan.chordSize, Math.max(0, plan.dueAt - now.getTime() / 1000));
    }
    await this.store.add(jobs);
    const dueAt = new Date(plan.dueAt * 1000);
    const stored = new Set(jobs.map((j) => j.id));
    const results = plan.taskIds.map((id) => new AsyncResult(this, id, stored.has(id) ? { dueAt } : {}));
    const resultIndex = plan.resultId === undefined ? -1 : plan.taskIds.lastIndexOf(plan.resultId);
    return { result: results[resultIndex], groupId: plan.groupId, results, scheduledIds: jobs.map((j) => j.id), dueAt };
  }

  /**
   * Schedules many jobs in one round trip, all or none: every call is validated first, and each
   * must have an `eta` or `countdown`. Returns one result per call, in order.
   */
  async sendTasks(calls: readonly TaskCall[]): Promise<AsyncResult[]> {
    const now = this.#clock();
    const problems: string[] = [];
    const jobs: NewJob[] = [];
    calls.forEach((call, i) => {
      try {
        const { job, dueAt, key, tags } = resolveTaskCall(call.name, call.args, call.kwargs, call.options, now);
        if (dueAt === undefined) throw new ValidationError(['needs an eta or countdown (sendTasks only schedules)']);
        if (key) throw new ValidationError(['jobKey is not supported by sendTasks; schedule keyed jobs one at a time with applyAsync or sendTask']);
        jobs.push(this.#storable(job, dueAt, now, tags));
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        problems.push(...err.problems.map((p) => `calls[${i}]: ${p}`));
      }
    });
    if (problems.length) throw new ValidationError(problems);
    const ids = new Set<string>();
    for (const j of jobs) {
      if (ids.has(j.id)) throw new ValidationError([`taskId ${JSON.stringify(j.id)} appears twice in one sendTasks call`]);
      ids.add(j.id);
    }
    await this.store.add(jobs);
    return jobs.map((j) => new AsyncResult(this, j.id, { dueAt: new Date(j.dueAt * 1000) }));
  }

  /** Closes every connection this app opened. Safe to call twice. */
  async close(): Promise<void> {
    const store = this.#store;
    const broker = this.#broker;
    this.#store = undefined;
    this.#broker = undefined;
    await Promise.all([store?.close(), broker?.close(), this.#resultBackend?.close()]);
  }

  /**
   * The store row for a job due at `dueAt`: its entry, once the job is known to be carriable. A
   * job no broker could carry when it is due is refused (a store outlives its broker, so both
   * brokers' limits hold): its headers over what amqplib can encode, its body over RabbitMQ's
   * maximum. The fixed header set is small, so the message is built only when user headers or a
   * long task name could make it large. Names and ids are checked by `resolveTaskCall`.
   */
  #storable(job: Job, dueAt: number, now: Date, tags?: readonly string[]): NewJob {
    const entry = encodeEntry(job);
    const problems: string[] = [];
    if (Buffer.byteLength(entry, 'utf8') > MAX_BODY_BYTES)
      problems.push(
        `the job's arguments take more than ${MAX_BODY_BYTES} bytes, over RabbitMQ's default max_message_size; store large data elsewhere and pass a reference`,
      );
    if (job.headers !== undefined || job.task.length > 1000 || (job.shadow?.length ?? 0) > 1000) {
      const msg = buildTaskMessage(job, { now, dueAt, defaultQueue: this.config.taskDefaultQueue });
      const bytes = headersBytes(msg.headers);
      if (typeof bytes === 'string') problems.push(`${bytes}; pass JSON values without a "!" key`);
      else if (bytes > MAX_HEADERS_BYTES)
        problems.push(
          `the message headers would take ${bytes} bytes encoded, over the ${MAX_HEADERS_BYTES} RabbitMQ can be sent (amqplib's limit); put large values in kwargs instead`,
        );
    }
    if (problems.length) throw new ValidationError(problems);
    return { id: job.id, dueAt, entry, ...(tags && tags.length > 0 && { tags }) };
  }

  #redisOptions() {
    return {
      socketTimeout: this.config.redisSocketTimeout,
      socketConnectTimeout: this.config.redisSocketConnectTimeout,
      maxConnections: this.config.redisMaxConnections,
      ...(this.#logger && { logger: this.#logger }),
    };
  }
}
