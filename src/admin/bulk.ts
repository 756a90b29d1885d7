/**
 * Acting on every scheduled job that matches a query, on every store: count them (with a sample,
 * what `--dry-run` shows) and revoke them.
 *
 * - **Each job on its own, atomically.** Matches are read a page at a time in due order (tags and
 *   the due range through the store's indexes, the rest matched here: see `listJobs`) and each
 *   page is revoked with one `removeMany`: a job a dispatcher claimed meanwhile (or that was sent
 *   or revoked) is left alone and counted as skipped, never sent twice, never lost.
 * - **Resumable.** Progress carries the cursor after the last page done; pass it back as `cursor`
 *   to go on where an interrupted run stopped. A job already revoked is simply not found again.
 * - Nothing here loads the whole store: one page in memory at a time.
 */
import type { ScheduleStore } from '../stores/store.js';
import { ValidationError } from '../util/errors.js';
import { listJobs, type ListJobsOptions, type ScheduledJobInfo } from './scheduled-jobs.js';

/** Which scheduled jobs: every filter `list` has (due range, task, queue, tags, id prefix). */
export type JobQuery = Omit<ListJobsOptions, 'limit' | 'cursor'>;

export interface BulkOptions {
  /** jobs read and changed per round trip (default 5000, at most 10,000) */
  batchSize?: number;
  /** where an interrupted run stopped (its last progress's `cursor`) */
  cursor?: string;
  /** told after every page */
  onProgress?: (p: BulkProgress) => void;
  /** stops after the page in progress; the summary's `cursor` says where */
  signal?: AbortSignal;
}

export interface BulkProgress {
  /** jobs that matched so far */
  matched: number;
  /** changed as asked */
  changed: number;
  /** matched but no longer scheduled when their turn came (claimed by a dispatcher, sent or revoked meanwhile) */
  skipped: number;
  /** pass as `cursor` to go on after what is done */
  cursor?: string;
}

export interface BulkSummary extends BulkProgress {
  elapsedMs: number;
  /** set when the run stopped early (`signal`): where to go on */
  cursor?: string;
}

export interface QueryCount {
  count: number;
  /** the first matches in due order, at most `sampleSize` */
  sample: ScheduledJobInfo[];
}

const MAX_BATCH = 10_000;

/** How many scheduled jobs match, and the first few: what a dry run prints. */
export async function countWhere(store: ScheduleStore, defaultQueue: string, query: JobQuery, sampleSize = 5): Promise<QueryCount> {
  checkQuery(query);
  let count = 0;
  const sample: ScheduledJobInfo[] = [];
  let cursor: string | undefined;
  do {
    const page = await listJobs(store, defaultQueue, { ...query, limit: 1000, ...(cursor !== undefined && { cursor }) });
    count += page.jobs.length;
    for (const j of page.jobs) if (sample.length < sampleSize) sample.push(j);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { count, sample };
}

/** Revokes every scheduled job matching `query`, a page at a time; see the header. */
export async function revokeWhere(store: ScheduleStore, defaultQueue: string, query: JobQuery, o: BulkOptions = {}): Promise<BulkSummary> {
  checkQuery(query);
  const limit = o.batchSize ?? 5000;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_BATCH)
    throw new ValidationError([`batchSize must be a whole number from 1 to ${MAX_BATCH}, got ${String(o.batchSize)}`]);
  const started = performance.now();
  const p: BulkProgress = { matched: 0, changed: 0, skipped: 0 };
  let cursor = o.cursor;
  for (;;) {
    if (o.signal?.aborted) return { ...p, elapsedMs: performance.now() - started, ...(cursor !== undefined && { cursor }) };
    const page = await listJobs(store, defaultQueue, { ...query, limit, ...(cursor !== undefined && { cursor }) });
    if (page.jobs.length > 0) {
      const gone = await store.removeMany(page.jobs.map((j) => j.id));
      p.matched += page.jobs.length;
      p.changed += gone.length;
      p.skipped += page.jobs.length - gone.length;
    }
    cursor = page.cursor;
    o.onProgress?.({ ...p, ...(cursor !== undefined && { cursor }) });
    if (cursor === undefined) return { ...p, elapsedMs: performance.now() - started };
  }
}

/** A query acts on nothing unless it names something: an empty one would revoke everything by accident. */
function checkQuery(q: JobQuery): void {
  if (q === null || typeof q !== 'object') throw new ValidationError(['the query must be an object of filters, e.g. { tags: ["tenant:42"] }']);
  const known = new Set(['from', 'to', 'task', 'queue', 'tags', 'anyTags', 'idPrefix']);
  const unknown = Object.keys(q).filter((k) => !known.has(k));
  if (unknown.length)
    throw new ValidationError([`unknown filter ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the filters are ${[...known].join(', ')}`]);
  const given = Object.entries(q).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0));
  if (given.length === 0)
    throw new ValidationError([
      'the query has no filter, so it would match every scheduled job; name at least one (a due range, task, queue, tag or id prefix)',
    ]);
  if (q.idPrefix !== undefined && (typeof q.idPrefix !== 'string' || q.idPrefix === ''))
    throw new ValidationError([`idPrefix must be a non-empty string, got ${JSON.stringify(q.idPrefix)}`]);
}
