/**
 * Turns a store URL into a store: the one place that knows which store schemes exist. Each
 * store's driver loads only when a store of its kind is made (util/drivers.ts).
 */
import { ValidationError, redactUrl } from '../util/errors.js';
import { requireScheme } from '../util/url.js';
import { isRedisScheme, type RedisConnectionOptions } from '../redis/connection.js';
import type { ScheduleStore } from './store.js';
import { RedisStore } from './redis/redis-store.js';
import { RedisClusterStore } from './redis/cluster-store.js';
import { isClusterScheme } from '../redis/cluster.js';
import { PostgresStore } from './postgres/postgres-store.js';
import { DEFAULT_SQLITE_FILE, SqliteStore } from './sqlite/sqlite-store.js';

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

export type StoreKind = 'sqlite' | 'postgres' | 'redis' | 'redis-cluster';

/** Which kind of store `url` names; a `ValidationError` for an empty URL or an unknown scheme. */
export function storeKind(url: string): StoreKind {
  const s = requireScheme(url, 'store', DEFAULT_STORE_URL);
  if (isRedisScheme(s)) return 'redis';
  if (isClusterScheme(s)) return 'redis-cluster';
  if (s === 'sqlite') return 'sqlite';
  if (s === 'postgres' || s === 'postgresql') return 'postgres';
  throw new ValidationError([`store URL scheme "${s}:" is not supported; use sqlite://, postgres://, redis://, rediss://, sentinel:// or redis+cluster://`]);
}

/**
 * A store for `url`: `sqlite://` (the embedded default), `postgres://` / `postgresql://`, or
 * `redis://` / `rediss://` / `sentinel://` (the Python package's layout).
 */
export function createStore(url: string, options: StoreOptions = {}): ScheduleStore {
  const kind = storeKind(url);
  if (kind === 'redis') return new RedisStore(url, options);
  if (kind === 'redis-cluster') {
    return new RedisClusterStore(url, {
      ...(options.keyPrefix !== undefined && { keyPrefix: options.keyPrefix }),
      ...(options.socketTimeout !== undefined && { socketTimeout: options.socketTimeout }),
      ...(options.socketConnectTimeout !== undefined && { socketConnectTimeout: options.socketConnectTimeout }),
    });
  }
  if (options.keyPrefix) throw new ValidationError([`a key prefix applies to Redis stores only; remove it for ${redactUrl(url)}`]);
  if (kind === 'sqlite') return new SqliteStore(url);
  return new PostgresStore(url, {
    ...(options.schema !== undefined && { schema: options.schema }),
    ...(options.migrate !== undefined && { migrate: options.migrate }),
    ...(options.maxConnections !== undefined && { maxConnections: options.maxConnections }),
    ...(options.socketConnectTimeout !== undefined && { connectTimeoutMs: options.socketConnectTimeout * 1000 }),
  });
}
