/**
 * celery-longterm-scheduler: schedule Celery tasks far in the future.
 *
 * Jobs wait in a separate store (SQLite by default, PostgreSQL, or Redis in the Python package's
 * layout) and a dispatcher hands each one to the Celery broker (Redis or RabbitMQ), as an ordinary
 * protocol-2 message, only when it is due.
 *
 * This is the API applications call. The parts for embedding or tooling are subpath exports:
 * `/stores`, `/brokers`, `/dispatch`, `/admin`, `/metrics`, `/protocol`, `/testing`.
 */
export { Celery, Task, AsyncResult, CELERY_DEFAULTS, type CeleryConfig, type TaskCall } from './client/celery.js';
export { SCHEDULED, READY_STATES, type TaskMeta } from './results/redis-backend.js';
export type { GetOptions } from './results/async-result.js';
export { Scheduler, getScheduler, type RunOptions } from './client/scheduler.js';
export type { JobQuery, BulkOptions, BulkProgress, BulkSummary, HistogramRequest, HistogramUnit, LoadHistogram, Move, QueryCount } from './admin/bulk.js';
export type { DispatchSummary, HandoffMode } from './dispatch/dispatcher.js';
export type { DispatchEvents, DispatchEventMap, DispatchListeners } from './dispatch/events.js';
export { type Signature, type Job } from './job/types.js';
export { signature, type TaskOptions } from './job/options.js';
export { chain, group, chord, Chain, Group, Chord, signatureOptions, type SignatureOptions, type CanvasOptions, type CanvasResult } from './client/canvas.js';
export { DEFAULT_STORE_URL } from './stores/registry.js';
export type { JobKeyMode } from './job/types.js';
export type { ScheduledJobInfo, ListJobsOptions, JobListing, JobStats } from './admin/scheduled-jobs.js';
export type { Logger } from './util/logger.js';
export {
  SchedulerError,
  ValidationError,
  ConnectionError,
  CorruptEntryError,
  UnsupportedEntryError,
  UnsupportedPickleError,
  DriverMissingError,
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
} from './util/errors.js';
