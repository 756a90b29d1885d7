/**
 * celery-longterm-scheduler: schedule Celery tasks far in the future.
 *
 * Jobs wait in a separate store (SQLite by default, PostgreSQL, or Redis in the Python package's
 * layout) and a dispatcher hands each one to the Celery broker (Redis or RabbitMQ), as an ordinary
 * protocol-2 message, only when it is due.
 */
export { Celery, Task, AsyncResult, CELERY_DEFAULTS, type CeleryConfig, type TaskCall } from './app.js';
export {
  RedisResultBackend,
  resultKey,
  resultKeyPrefix,
  revokeBroadcast,
  revokedMeta,
  SCHEDULED,
  READY_STATES,
  type GetOptions,
  type TaskMeta,
  type RedisResultBackendOptions,
} from './results.js';
export { Scheduler, getScheduler, type RunOptions } from './scheduler.js';
export { Dispatcher, DISPATCH_DEFAULTS, type DispatcherOptions, type DispatchSummary, type HandoffMode } from './dispatcher.js';
export { DispatcherDaemon, DAEMON_DEFAULTS, MAX_TIMER_MS, type DaemonOptions } from './dispatcher-daemon.js';
export { signature, type Signature, type TaskOptions, type Job } from './job.js';
export { chain, group, chord, Chain, Group, Chord, signatureOptions, type SignatureOptions, type CanvasOptions, type CanvasResult } from './canvas.js';
export { createStore, createBroker, DEFAULT_STORE_URL, type StoreOptions } from './connect.js';
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
} from './store.js';
export {
  listJobs,
  showJob,
  rescheduleJob,
  jobStats,
  type ScheduledJobInfo,
  type ListJobsOptions,
  type JobListing,
  type JobStats,
} from './scheduled-jobs.js';
export { DispatcherMetrics, MetricsRegistry, type HealthReport, type ComponentHealth } from './metrics.js';
export { startMetricsServer } from './metrics-server.js';
export { MemoryStore } from './stores/memory/memory-store.js';
export { SqliteStore, parseSqliteUrl, DEFAULT_SQLITE_FILE, SQLITE_SCHEMA_VERSION, type SqliteStoreOptions } from './stores/sqlite/sqlite-store.js';
export { PostgresStore, type PostgresStoreOptions } from './stores/postgres/postgres-store.js';
export { migrateSchema, schemaStatus } from './stores/postgres/migrations.js';
export { migrateJobs, type MigrateOptions, type MigrateProgress, type MigrateSummary } from './migrate.js';
export { migrateStoreSchema, type SchemaResult } from './schema.js';
export type { Broker, BroadcastMessage, PublishOutcome } from './broker.js';
export type { Logger } from './logger.js';
export { RedisStore, INDEX_KEY, IN_FLIGHT_KEY, IN_FLIGHT_ENTRIES_KEY, CORRUPT_KEY, WAKEUP_CHANNEL, type RedisStoreOptions } from './stores/redis/redis-store.js';
export { RedisBroker, fanoutChannel, type RedisBrokerOptions } from './brokers/redis/redis-broker.js';
export { AmqpBroker, parseAmqpUrl, type AmqpBrokerOptions, type AmqpLocation } from './brokers/amqp/amqp-broker.js';
export { buildTaskMessage, type TaskMessage } from './celery/message.js';
export { formatCeleryTime } from './celery/time.js';
export {
  SchedulerError,
  ValidationError,
  ConnectionError,
  CorruptEntryError,
  UnsupportedEntryError,
  UnsupportedPickleError,
  DuplicateJobError,
  JobKeyTakenError,
  UnroutableError,
  LockedError,
  SchemaVersionError,
  NotScheduledError,
  TaskFailedError,
  TaskRevokedError,
  ResultTimeoutError,
  ErrorCode,
  redactUrl,
} from './errors.js';
