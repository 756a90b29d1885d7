/**
 * Opening Redis connections for the store and the Redis broker, with the original package's
 * connection options (`redis_socket_timeout`, `redis_socket_connect_timeout`,
 * `redis_max_connections`) and errors that name the URL with its password redacted.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ConnectionError, ValidationError, errorMessage, malformedEscapeProblem, redactUrl } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { tlsFromCeleryQuery } from '../util/tls.js';

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
  /**
   * Where to report what an operator should know but that fails nothing, e.g. a server that needs
   * no password although the URL gives one. Default: `process.emitWarning`.
   */
  logger?: Logger;
}

/** The numeric connection options, validated and with their defaults. */
type ConnectionLimits = Required<Omit<RedisConnectionOptions, 'masterName' | 'logger'>>;

export const REDIS_DEFAULTS = { socketTimeout: 120, socketConnectTimeout: 10, maxConnections: 10 } as const satisfies ConnectionLimits;

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
 * - `rediss://…` (TLS) with Celery's query options (see util/tls.ts);
 * - `sentinel://[:password@]host:port[/db];sentinel://host2:port2;…` with `masterName`.
 */
export function ioredisTarget(url: string, what: string, masterName?: string): RedisOptions {
  const escape = malformedEscapeProblem(url, what);
  if (escape) throw new ValidationError([escape]);
  const parts = url
    .split(';')
    .map((u) => u.trim())
    .filter(Boolean);
  const urls = parts.map((p) => {
    try {
      return new URL(p);
    } catch {
      throw new ValidationError([
        `${what} URL ${JSON.stringify(redactUrl(p))} is not a valid Redis URL; use redis://host:port/db, rediss://… or sentinel://host:port;sentinel://…`,
      ]);
    }
  });
  const first = urls[0];
  if (!first) throw new ValidationError([`${what} URL ${JSON.stringify(redactUrl(url))} is empty; use redis://host:port/db, rediss://… or sentinel://…`]);
  const db = first.pathname.length > 1 ? Number(first.pathname.slice(1)) : 0;
  const problems: string[] = [];
  if (!Number.isInteger(db) || db < 0)
    problems.push(`${what} URL ${JSON.stringify(redactUrl(url))} has database ${JSON.stringify(first.pathname.slice(1))}; use a number, e.g. /1`);
  const auth: RedisOptions = {
    ...(first.username && { username: decodeURIComponent(first.username) }),
    ...(first.password && { password: decodeURIComponent(first.password) }),
    db,
  };
  if (first.protocol === 'sentinel:') {
    if (!masterName) problems.push(`${what} URL is a Sentinel URL; also give the master name (Celery's master_name transport option)`);
    if (problems.length) throw new ValidationError(problems);
    const sentinels = urls.map((u) => ({ host: u.hostname, port: Number(u.port || 26379) }));
    return { ...auth, sentinels, name: masterName };
  }
  const target: RedisOptions = { ...auth, host: first.hostname || '127.0.0.1', port: Number(first.port || 6379) };
  if (first.protocol === 'rediss:') target.tls = tlsFromCeleryQuery(first, what, problems);
  if (problems.length) throw new ValidationError(problems);
  return target;
}

export function validateRedisOptions(opts: RedisConnectionOptions): ConnectionLimits {
  const { masterName: _m, logger: _l, ...limits } = opts;
  const merged = { ...REDIS_DEFAULTS, ...stripUndefined(limits) };
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
  readonly #options: ConnectionLimits;
  readonly #target: RedisOptions;
  readonly #what: string;
  readonly #open = new Set<Redis>();
  /** connections still being made: `closeAll` ends them too, or they would outlive it */
  readonly #connecting = new Set<Redis>();
  /** bumped by `closeAll`: a connection it ended while being made is not handed out */
  #generation = 0;
  readonly #logger: Logger | undefined;
  /** the unneeded-password warning is given once per pool, not once per (re)connection */
  #warnedPassword = false;

  constructor(url: string, what: string, options: RedisConnectionOptions = {}) {
    if (!isRedisUrl(url)) {
      throw new ValidationError([
        `${what} URL ${JSON.stringify(redactUrl(url))} is not a valid Redis URL; use redis://host:port/db, rediss://… or sentinel://…`,
      ]);
    }
    this.url = url;
    this.#what = what;
    this.#options = validateRedisOptions(options);
    this.#target = ioredisTarget(url, what, options.masterName);
    this.#logger = options.logger;
  }

  async open(extra: RedisOptions = {}): Promise<Redis> {
    if (this.#open.size >= this.#options.maxConnections) {
      throw new ValidationError([`the ${this.#what} needs more than maxConnections=${this.#options.maxConnections} Redis connections; raise maxConnections`]);
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
      // reconnect with capped backoff once connected; a first connect that fails stays failed
      // (no reconnect behind the caller's back, which would keep the process alive)
      retryStrategy: (times) => (connected ? Math.min(50 * 2 ** times, 2000) : null),
      // ioredis's CLIENT SETINFO is sent after an asynchronous read of its package.json: when the
      // server has just refused the password, it lands in the offline queue of a client that is
      // closed already, and its command timer (the socket timeout, 120 s) keeps the process alive
      disableClientInfo: true,
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
    // ioredis clears its socket-timeout timer only when data arrives: a connection that closes
    // with a reply pending (a refused AUTH, a quit mid-command) leaves it running, and it keeps
    // the process alive for the whole socket timeout (120 s). The field is ioredis's own.
    client.on('close', () => clearTimeout((client as unknown as { socketTimeoutTimer?: NodeJS.Timeout }).socketTimeoutTimer));
    // A refused AUTH closes the connection, but ioredis may have finished its ready check first
    // (its INFO reply follows AUTH's): the first connect must still fail, and not reconnect.
    let refused: Error | undefined;
    if (this.#target.password !== undefined) {
      quietAuth(
        client,
        (reason) => this.#unneededPassword(reason),
        (err) => {
          refused ??= err;
        },
      );
    }
    const generation = this.#generation;
    this.#connecting.add(client);
    try {
      await (sentinel ? withDeadline(client.connect(), connectMs) : client.connect());
      if (refused) throw refused;
      if (generation !== this.#generation) throw new Error('the connections were closed while this one was being made');
      connected = true;
    } catch (err) {
      if (client.status !== 'end') client.disconnect();
      // a refused password closes the connection: "Connection is closed." hides the server's reason
      const cause = sentinel ? sentinelFailure(err, lastError, this.#target.name, connectMs) : (refused ?? (isClosed(err) && lastError ? lastError : err));
      throw new ConnectionError(this.#what, this.url, cause);
    } finally {
      this.#connecting.delete(client);
    }
    this.#open.add(client);
    client.once('end', () => this.#open.delete(client));
    return client;
  }

  #unneededPassword(reason: 'no-password' | 'no-username'): void {
    if (this.#warnedPassword) return;
    this.#warnedPassword = true;
    const where = `the ${this.#what} at ${redactUrl(this.url)}`;
    const message =
      reason === 'no-password'
        ? `${where} does not require a password, but the URL gives one: anyone who can reach the server can use it; set one on the server (requirepass or an ACL user), or remove it from the URL`
        : `${where} does not take a user name (Redis older than 6), so the password was not checked; remove the user name from the URL`;
    if (this.#logger) this.#logger.warn(message);
    else process.emitWarning(message, { code: 'CLS_REDIS_UNCHECKED_PASSWORD' });
  }

  /** Closes one connection this opened (once: a second QUIT would leave ioredis's reply timer running). */
  async close(client: Redis): Promise<void> {
    if (!this.#open.delete(client)) return;
    await quit(client);
  }

  async closeAll(): Promise<void> {
    this.#generation++;
    for (const c of this.#connecting) c.disconnect();
    const clients = [...this.#open];
    this.#open.clear();
    await Promise.all(clients.map(quit));
  }
}

/**
 * ioredis answers a password the server does not need with a bare `console.warn` ("[WARN] Redis
 * server does not require a password, but a password was supplied."): a stray line in the
 * operator's output, outside any log format. It sends that AUTH through the client's own `auth`
 * method, so this one client's `auth` (never a global) is wrapped: those replies are reported
 * through `report` and answered as the success ioredis treats them as after warning; every other
 * reply, a refused password included, passes through unchanged.
 */
function quietAuth(client: Redis, report: (reason: 'no-password' | 'no-username') => void, refused: (err: Error) => void): void {
  type Callback = (err: Error | null | undefined, result?: unknown) => void;
  const auth = client.auth.bind(client) as (...args: unknown[]) => Promise<unknown>;
  const unneeded = (err: unknown): 'no-password' | 'no-username' | undefined => {
    const message = errorMessage(err);
    if (/no password is set|without any password configured for the default user/.test(message)) return 'no-password';
    if (/wrong number of arguments for 'auth' command/.test(message)) return 'no-username';
    return undefined;
  };
  const wrapped = (...args: unknown[]): Promise<unknown> => {
    const last = args.at(-1);
    if (typeof last !== 'function') {
      return auth(...args).catch((err: unknown) => {
        const reason = unneeded(err);
        if (!reason) throw err;
        report(reason);
        return 'OK';
      });
    }
    // ioredis's connect handler passes a callback and relies on its timing: it must run before
    // the replies that follow AUTH are handled, so it is called straight from ioredis's own
    const callback = last as Callback;
    return auth(...args.slice(0, -1), (err: Error | null | undefined, result?: unknown) => {
      const reason = err ? unneeded(err) : undefined;
      if (reason) report(reason);
      else if (err) refused(err);
      if (reason) callback(null, 'OK');
      else callback(err, result);
    });
  };
  Object.defineProperty(client, 'auth', { value: wrapped, configurable: true, writable: true });
}

function isClosed(err: unknown): boolean {
  return /Connection is closed/.test(errorMessage(err));
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
  return new Error(`no Sentinel answered for master ${JSON.stringify(master ?? '')} within ${ms / 1000} s${lastError ? ` (last error: ${lastError})` : ''}`, {
    cause: err,
  });
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
  // Redis names neither the key nor the command: say what it means and what to do
  if (/^WRONGTYPE Operation against a key/.test(errorMessage(err)))
    return new Error(
      `WRONGTYPE: a key of the ${what} at ${redactUrl(url)} holds another kind of value than this code writes there; another program uses the same key names: give each its own database or key prefix`,
      { cause: err },
    );
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
