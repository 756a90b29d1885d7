/**
 * `celery-longterm-scheduler/stores`: the stores themselves, for code that works with one
 * directly (a custom dispatcher, tests, tools). Applications need only the root export.
 */
export { createStore, DEFAULT_STORE_URL, type StoreOptions } from '../stores/registry.js';
export type {
  ScheduleStore,
  ClaimedJob,
  StoreCounts,
  StoredJob,
  AddOptions,
  ListOptions,
  JobPage,
  RenewOptions,
  ClaimOptions,
  JobKeyMode,
  KeyedAddResult,
} from '../stores/store.js';
export type { NewJob } from '../job/types.js';
export { MemoryStore } from '../stores/memory/memory-store.js';
export { SqliteStore, parseSqliteUrl, DEFAULT_SQLITE_FILE, SQLITE_SCHEMA_VERSION, type SqliteStoreOptions } from '../stores/sqlite/sqlite-store.js';
export { PostgresStore, type PostgresStoreOptions } from '../stores/postgres/postgres-store.js';
export { RedisStore, type RedisStoreOptions } from '../stores/redis/redis-store.js';
