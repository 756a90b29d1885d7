/**
 * Opening Redis connections for the store and the Redis broker, with the original package's
 * connection options (`redis_socket_timeout`, `redis_socket_connect_timeout`,
 * `redis_max_connections`) and errors that name the URL with its password redacted.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ConnectionError, ValidationError, errorMessage, redactUrl } from './errors.js';
import { tlsFromCeleryQuery } from './tls.js';

export interface RedisConnectionOptions {
  /**
   * Sentinel URLs only: the name of the monitored master (Celery's `master_name` transport
   * option). Required with `sentinel://`.
   */
  masterName?: string;
  /** seconds a command may wait for a reply before failing (Celery's `redis_socket_timeout`); default 120 */
  socketTimeout?: number;
  /** seconds to wait for a connection (Celery's `redis_socket_connect_timeout`); default 10 */
  socketConnectTimeout?: number;
  /**
   * The most connections this client opens to one server (Celery's `redis_max_connections`).
   * Commands are pipelined over a single connection, so 1 suffices; the value is validated and
   * enforced by `RedisConnections`.
   */
  maxConnections?: number;
}

export const REDIS_DEFAULTS = { socketTimeout: 120, socketConnectTimeout: 10, maxConnections: 10 } as const satisfies Required<
  Omit<RedisConnectionOptions, 'masterName'>
>;

const REDIS_SCHEMES = new Set(['redis', 'rediss', 'sentinel']);

/** True for the URL schemes (without the colon) of Redis servers: redis, rediss, sentinel. */
export function isRedisScheme(scheme: string): boolean {
  return REDIS_SCHEMES.has(scheme.toLowerCase());
}

export function isRedisUrl(url: string): boolean {
  try {
    return isRedisScheme(new URL(url.split(';')[0] ?? '').protocol.slice(0, -1));
  } catch {
    return false;
  }
}

/**
 * Turns a Redis URL as Celery writes it into ioredis options:
 * - `redis://[user:password@]host[:port][/db]`;
 * - `rediss://…` (TLS) with Celery's query options (see tls.ts);
 * - `sentinel://[:password@]host:port[/db];sentinel://host2:port2;…` with `masterName`.
 */
export function ioredisTarget(url: string, what: string, masterName?: string): RedisOptions {
  const parts = url.split(';').map((u) => u.trim()).filter(Boolean);
  const first = new URL(parts[0] ?? url);
  const db = first.pathname.length > 1 ? Number(first.pathname.slice(1)) : 0;
  const problems: string[] = [];
  if (!Number.isInteger(db) || db < 0) problems.push(`${what} URL ${JSON.stringify(redactUrl(url))} has database ${JSON.stringify(first.pathname.slice(1))}; use a number, e.g. /1`);
  const auth: RedisOptions = {
    ...(first.username && { username: decodeURIComponent(first.username) }),
    ...(first.password && { password: decodeURIComponent(first.password) }),
    db,
  };
  if (first.protocol === 'sentinel:') {
    if (!masterName) problems.push(`${what} URL is a Sentinel URL; also give the master name (Celery's master_name transport option)`);
    if (problems.length) throw new ValidationError(problems);
    const sentinels = parts.map((p) => {
      const u = new URL(p);
      return { host: u.hostname, port: Number(u.port || 26379) };
    });
    return { ...auth, sentinels, name: masterName };
  }
  const target: RedisOptions = { ...auth, host: first.hostname || '127.0.0.1', port: Number(first.port || 6379) };
  if (first.protocol === 'rediss:') target.tls = tlsFromCeleryQuery(first, what, problems);
  if (problems.length) throw new ValidationError(problems);
  return target;
}

export function validateRedisOptions(opts: RedisConnectionOptions): Required<Omit<RedisConnectionOptions, 'masterName'>> {
  const merged = { ...REDIS_DEFAULTS, ...stripUndefined(opts) };
  const problems: string[] = [];
  for (const key of ['socketTimeout', 'socketConnectTimeout'] as const) {
    const v = merged[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) problems.push(`${key} must be a positive number of seconds, got ${String(v)}`);
  }
  if (!Number.isInteger(merged.maxConnections) || merged.maxConnections < 1) {
    problems.push(`maxConnections must be an integer >= 1, got ${String(merged.maxConnections)}`);
  }
  if (problems.length) throw new ValidationError(problems);
  return merged;
}

/**
 * Opens connections to one Redis URL and never more than `maxConnections` of them.
 * `open()` connects eagerly and fails fast with a `ConnectionError` rather than queueing forever.
 */
export class RedisConnections {
  readonly url: string;
  readonly #options: Required<Omit<RedisConnectionOptions, 'masterName'>>;
  readonly #target: RedisOptions;
  readonly #what: string;
  readonly #open = new Set<Redis>();

  constructor(url: string, what: string, options: RedisConnectionOptions = {}) {
    if (!isRedisUrl(url)) {
      throw new ValidationError([`${what} URL ${JSON.stringify(redactUrl(url))} is not a valid Redis URL; use redis://host:port/db, rediss://… or sentinel://…`]);
    }
    this.url = url;
    this.#what = what;
    this.#options = validateRedisOptions(options);
    this.#target = ioredisTarget(url, what, options.masterName);
  }

  async open(extra: RedisOptions = {}): Promise<Redis> {
    if (this.#open.size >= this.#options.maxConnections) {
      throw new ValidationError([
        `the ${this.#what} needs more than maxConnections=${this.#options.maxConnections} Redis connections; raise maxConnections`,
      ]);
    }
    const connectMs = this.#options.socketConnectTimeout * 1000;
    const sentinel = this.#target.sentinels !== undefined;
    let connected = false;
    const deadline = Date.now() + connectMs;
    const client = new Redis({
      ...this.#target,
      lazyConnect: true,
      connectTimeout: connectMs,
      socketTimeout: this.#options.socketTimeout * 1000,
      commandTimeout: this.#options.socketTimeout * 1000,
      maxRetriesPerRequest: 2,
      // reconnect with capped backoff once connected; the first connect fails fast (below)
      retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
      // ioredis goes round the Sentinels forever by default: the first connect gives up at the
      // connect timeout instead; once connected, a later drop is retried for as long as it takes
      ...(sentinel && {
        sentinelRetryStrategy: (times: number) => {
          const delay = Math.min(times * 10, 1000);
          return !connected && Date.now() + delay >= deadline ? null : delay;
        },
      }),
      ...extra,
    });
    // Errors are reported through the promises of the commands that hit them; an unhandled
    // 'error' event would crash the process, so it is observed here (the last one explains a
    // failed first connect).
    let lastError: Error | undefined;
    client.on('error', (err: Error) => {
      lastError = err;
    });
    try {
      await (sentinel ? withDeadline(client.connect(), connectMs) : client.connect());
      connected = true;
    } catch (err) {
      client.disconnect();
      throw new ConnectionError(this.#what, this.url, sentinel ? sentinelFailure(err, lastError, this.#target.name, connectMs) : err);
    }
    this.#open.add(client);
    client.once('end', () => this.#open.delete(client));
    return client;
  }

  /** Closes one connection this opened (once: a second QUIT would leave ioredis's reply timer running). */
  async close(client: Redis): Promise<void> {
    if (!this.#open.delete(client)) return;
    await quit(client);
  }

  async closeAll(): Promise<void> {
    const clients = [...this.#open];
    this.#open.clear();
    await Promise.all(clients.map(quit));
  }
}

/** `promise`, or a rejection after `ms` (the promise's own later outcome is then ignored). */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  promise.catch(() => {}); // settles after the deadline: nobody waits for it any more
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Why a first connect through Sentinels failed, in one line (ioredis says "retry is disabled"). */
function sentinelFailure(err: unknown, last: Error | undefined, master: string | undefined, ms: number): Error {
  const message = errorMessage(err);
  if (message !== 'timed out' && !/All sentinels are unreachable/.test(message)) return err instanceof Error ? err : new Error(message);
  const lastError = /Last error: (.*)$/.exec(message)?.[1] ?? /Last error: (.*)$/.exec(last?.message ?? '')?.[1] ?? last?.message;
  return new Error(`no Sentinel answered for master ${JSON.stringify(master ?? '')} within ${ms / 1000} s${lastError ? ` (last error: ${lastError})` : ''}`, { cause: err });
}

async function quit(client: Redis): Promise<void> {
  if (client.status === 'end' || client.status === 'close') return;
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

/** True for errors that mean "the server cannot be reached", as opposed to a refused command. */
export function isConnectionFailure(err: unknown): boolean {
  if (err instanceof ConnectionError) return true;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EPIPE|Connection is closed|Command timed out|Socket timeout|max retries/i.test(errorMessage(err));
}

/** Wraps a failing command's error with the redacted URL, for one-line CLI messages. */
export function wrapRedisError(err: unknown, what: string, url: string): Error {
  if (err instanceof ConnectionError || err instanceof ValidationError) return err;
  if (isConnectionFailure(err)) return new ConnectionError(what, url, err);
  return err instanceof Error ? err : new Error(String(err));
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * A value made on first use and then kept, except a failure: a rejected attempt is forgotten, so
 * the next call tries again (a server that was down at first use must not stay "down" forever).
 */
export class Lazy<T> {
  readonly #make: () => Promise<T>;
  #value: Promise<T> | undefined;
  constructor(make: () => Promise<T>) {
    this.#make = make;
  }
  get(): Promise<T> {
    this.#value ??= this.#make().catch((err: unknown) => {
      this.#value = undefined;
      throw err;
    });
    return this.#value;
  }
  /** Forgets the value (e.g. on close). */
  reset(): void {
    this.#value = undefined;
  }
}

/** A Redis server's identity: `run_id` is unique per server process. */
export async function serverId(client: Redis): Promise<string> {
  const info = await client.info('server');
  const m = /run_id:(\w+)/.exec(info);
  if (!m?.[1]) throw new Error('INFO server has no run_id');
  return m[1];
}

