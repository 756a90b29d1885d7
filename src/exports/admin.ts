/**
 * `celery-longterm-scheduler/admin`: what the CLI's operator commands do, on any store: list,
 * show, reschedule and count jobs, copy or move them between stores, create or upgrade schemas.
 */
export {
  listJobs,
  showJob,
  rescheduleJob,
  jobStats,
  type ScheduledJobInfo,
  type ListJobsOptions,
  type JobListing,
  type JobStats,
} from '../admin/scheduled-jobs.js';
export { migrateJobs, type MigrateOptions, type MigrateProgress, type MigrateSummary } from '../admin/copy-jobs.js';
export {
  countWhere,
  histogramWhere,
  rescheduleWhere,
  retagWhere,
  revokeWhere,
  runNowWhere,
  MAX_RESCHEDULE,
  type JobQuery,
  type BulkOptions,
  type BulkProgress,
  type BulkSummary,
  type HistogramRequest,
  type HistogramUnit,
  type LoadHistogram,
  type Move,
  type QueryCount,
} from '../admin/bulk.js';
export { compileQuery, parseArgsMatch, type CompiledQuery } from '../admin/query.js';
export { migrateStoreSchema, type SchemaResult } from '../admin/schema.js';
export { migrateSchema, schemaStatus } from '../stores/postgres/migrations.js';
