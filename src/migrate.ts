/**
 * Copies scheduled jobs from one store to another (any kind to any kind, including a Redis store
 * the Python package wrote): ids, due times and entries byte for byte.
 *
 * - **Safe to run twice**: jobs already in the target (same id) are left alone and counted as
 *   skipped, so a second run copies nothing and changes nothing.
 * - **Resumable**: the copy walks the source in due order; the summary's `cursor` says where it
 *   stopped, and `after` starts there. Without it, a rerun skips what is already copied.
 * - **`move`** removes from the source only jobs the target holds (just added, or already there),
 *   after the target has them, a page at a time: a crash never loses a job, at worst it is in
 *   both stores, and the next run finishes the move.
 * - Jobs a source dispatcher has claimed (in flight) are not copied: that dispatcher sends them.
 * - **Two handles on one store are refused** before anything is read or written (a move would
 *   remove every job): stores are compared by `identity()`, so another URL, host name or path to
 *   the same store is caught too.
 */
import { ValidationError } from './errors.js';
import { parseCursor, type ScheduleStore } from './store.js';

export interface MigrateOptions {
  /** remove each job from the source once the target holds it */
  move?: boolean;
  /** jobs per page (per read and per write); default 1,000 */
  batchSize?: number;
  /** start after this cursor (a previous summary's `cursor`) */
  after?: string;
  /** called after every page */
  onProgress?: (progress: MigrateProgress) => void;
  /** stops after the page in flight */
  signal?: AbortSignal;
}

export interface MigrateProgress {
  /** jobs read from the source so far */
  seen: number;
  /** scheduled jobs in the source when the copy started (jobs added since may raise `seen` above it) */
  total: number;
  copied: number;
  /** already in the target */
  skipped: number;
  /** removed from the source (`move`) */
  removed: number;
}

export interface MigrateSummary extends MigrateProgress {
  elapsedMs: number;
  /** where the copy stopped when it was aborted: pass as `after` to resume; absent when done */
  cursor?: string;
}

export async function migrateJobs(from: ScheduleStore, to: ScheduleStore, options: MigrateOptions = {}): Promise<MigrateSummary> {
  const started = performance.now();
  const limit = options.batchSize ?? 1000;
  const problems: string[] = [];
  if (!(Number.isInteger(limit) && limit >= 1)) problems.push(`batchSize must be a whole number >= 1, not ${String(limit)}`);
  if (options.after !== undefined && !isCursor(options.after)) {
    problems.push(`${JSON.stringify(options.after)} is not a cursor migrate printed; pass the one an interrupted run reported, or none to start over`);
  }
  if (problems.length) throw new ValidationError(problems);
  await checkStores(from, to);
  // Both stores are opened first, so a target that cannot be reached (or whose schema is not
  // ready) fails the run even when the source is empty, instead of reporting "copied 0". One at
  // a time: when one fails, no connection of the other is still being opened, which closing the
  // stores would miss (a Redis connection left open keeps the process from exiting). The source
  // first: a run whose source fails creates nothing in the target (no SQLite file, no schema).
  const sourceCounts = await from.count();
  await to.count();
  const progress: MigrateProgress = { seen: 0, total: sourceCounts.scheduled, copied: 0, skipped: 0, removed: 0 };
  let cursor = options.after;
  for (;;) {
    if (options.signal?.aborted) return { ...progress, elapsedMs: performance.now() - started, ...(cursor !== undefined && { cursor }) };
    const page = await from.list({ limit, ...(cursor !== undefined && { cursor }) });
    if (page.jobs.length > 0) {
      const added = await to.add(
        page.jobs.map((j) => ({ id: j.id, dueAt: j.dueAt, entry: j.entry })),
        { duplicates: 'skip' },
      );
      progress.seen += page.jobs.length;
      progress.copied += added;
      progress.skipped += page.jobs.length - added;
      if (options.move) {
        // every job of the page is in the target now (added, or there already)
        for (const j of page.jobs) if (await from.remove(j.id)) progress.removed++;
      }
      options.onProgress?.({ ...progress });
    }
    if (page.cursor === undefined) return { ...progress, elapsedMs: performance.now() - started };
    cursor = page.cursor;
  }
}

/** What two stores share when their identities are equal, by the identity's kind. */
const SAME: Record<string, string> = {
  redis: 'the same Redis server, database and key prefix',
  sqlite: 'the same database file',
  postgres: 'the same PostgreSQL server, database and schema',
  memory: 'the same memory store',
};

function isCursor(cursor: string): boolean {
  try {
    parseCursor(cursor);
    return true;
  } catch {
    return false;
  }
}

/**
 * A `ValidationError` when the source is a SQLite file that does not exist (opening it would
 * create it), or when `from` and `to` are one store. Reads the source's identity first; creates
 * and changes nothing.
 */
async function checkStores(from: ScheduleStore, to: ScheduleStore): Promise<void> {
  const source = await from.identity();
  if (source.startsWith('sqlite:path:')) {
    throw new ValidationError([`the source ${from.description} names ${source.slice('sqlite:path:'.length)}, which does not exist; check the path (migrate never creates its source)`]);
  }
  const target = await to.identity();
  if (source !== target) return;
  const why = SAME[source.slice(0, source.indexOf(':'))] ?? 'the same store';
  throw new ValidationError([
    `the source ${from.description} and the target ${to.description} are one store (${why}); migrate copies between two different stores, so pass another target`,
  ]);
}
