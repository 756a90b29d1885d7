/**
 * Turns URLs into stores and brokers. The one place that knows which schemes exist.
 */
import type { Broker } from './broker.js';
import { RedisBroker } from './brokers/redis/redis-broker.js';
import { AmqpBroker, type AmqpBrokerOptions } from './brokers/amqp/amqp-broker.js';
import { ValidationError, malformedEscapeProblem, redactUrl } from './errors.js';
import type { KombuRedisLayout } from './celery/kombu-redis.js';
import { isRedisScheme, type RedisConnectionOptions } from './redis-connection.js';
import type { ScheduleStore } from './store.js';
import { RedisStore } from './stores/redis/redis-store.js';
import { PostgresStore } from './stores/postgres/postgres-store.js';
import { DEFAULT_SQLITE_FILE, SqliteStore } from './stores/sqlite/sqlite-store.js';

/** The store used when none is configured: a SQLite file in the working directory. */
export const DEFAULT_STORE_URL = `sqlite:///${DEFAULT_SQLITE_FILE}`;

export interface StoreOptions extends RedisConnectionOptions {
  /** Redis only: prepended to every key ('' is the original package's layout) */
  keyPrefix?: string;
  /** PostgreSQL only: the schema (default `celery_longterm_scheduler`; or `?schema=` in the URL) */
  schema?: string;
  /** PostgreSQL only: apply pending schema migrations on first use instead of failing */
  migrate?: boolean;
}

/** A URL's scheme, lower-cased (`redis` for `REDIS://…`); undefined when it has none. */
export function urlScheme(url: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
}

function scheme(url: string, what: string, example: string): string {
  if (typeof url !== 'string' || url.trim() === '') throw new ValidationError([`the ${what} URL is empty; pass e.g. ${example}`]);
  const s = urlScheme(url);
  if (!s) throw new ValidationError([`the ${what} URL ${JSON.stringify(redactUrl(url))} has no scheme; pass e.g. ${example}`]);
  const escape = malformedEscapeProblem(url, `the ${what}`);
  if (escape) throw new ValidationError([escape]);
  return s;
}

export type StoreKind = 'sqlite' | 'postgres' | 'redis';

/** Which kind of store `url` names; a `ValidationError` for an empty URL or an unknown scheme. */
export function storeKind(url: string): StoreKind {
  const s = scheme(url, 'store', DEFAULT_STORE_URL);
  if (isRedisScheme(s)) return 'redis';
  if (s === 'sqlite') return 'sqlite';
  if (s === 'postgres' || s === 'postgresql') return 'postgres';
  throw new ValidationError([`store URL scheme "${s}:" is not supported; use sqlite://, postgres://, redis://, rediss:// or sentinel://`]);
}

/**
 * A store for `url`: `sqlite://` (the embedded default), `postgres://` / `postgresql://`, or
 * `redis://` / `rediss://` / `sentinel://` (the Python package's layout).
 */
export function createStore(url: string, options: StoreOptions = {}): ScheduleStore {
  const kind = storeKind(url);
  if (kind === 'redis') return new RedisStore(url, options);
  if (options.keyPrefix) throw new ValidationError([`a key prefix applies to Redis stores only; remove it for ${redactUrl(url)}`]);
  if (kind === 'sqlite') return new SqliteStore(url);
  return new PostgresStore(url, {
    ...(options.schema !== undefined && { schema: options.schema }),
    ...(options.migrate !== undefined && { migrate: options.migrate }),
    ...(options.maxConnections !== undefined && { maxConnections: options.maxConnections }),
    ...(options.socketConnectTimeout !== undefined && { connectTimeoutMs: options.socketConnectTimeout * 1000 }),
  });
}

export function createBroker(url: string, options: RedisConnectionOptions & { layout?: Partial<KombuRedisLayout> } & AmqpBrokerOptions = {}): Broker {
  const s = scheme(url, 'broker', 'redis://localhost:6379/0');
  if (isRedisScheme(s)) return new RedisBroker(url, options);
  if (s === 'amqp' || s === 'amqps' || s === 'pyamqp') {
    const { heartbeat, ca, cert, key } = options;
    const connectTimeout = options.connectTimeout ?? options.socketConnectTimeout;
    return new AmqpBroker(url, { heartbeat, ca, cert, key, connectTimeout });
  }
  throw new ValidationError([`broker URL scheme "${s}:" is not supported; use redis://, rediss://, sentinel://, amqp://, amqps:// or pyamqp://`]);
}
