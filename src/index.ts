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
export { Celery, Task, AsyncResult, CELERY_DEFAULTS, type CeleryConfig, type TaskCall } from './app.js';
export { SCHEDULED, READY_STATES, type GetOptions, type TaskMeta } from './results.js';
export { Scheduler, getScheduler, type RunOptions } from './scheduler.js';
export type { DispatchSummary, HandoffMode } from './dispatcher.js';
export { signature, type Signature, type TaskOptions, type Job } from './job.js';
export { chain, group, chord, Chain, Group, Chord, signatureOptions, type SignatureOptions, type CanvasOptions, type CanvasResult } from './canvas.js';
export { DEFAULT_STORE_URL } from './connect.js';
export type { JobKeyMode } from './job-types.js';
export type { ScheduledJobInfo, ListJobsOptions, JobListing, JobStats } from './scheduled-jobs.js';
export type { Logger } from './logger.js';
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
} from './errors.js';
