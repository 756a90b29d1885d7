/**
 * What operators ask of the store, on every store: list scheduled jobs in due order, show one,
 * move one (reschedule, run now), and count them (stats). Entries are decoded here, once, into
 * what a person wants to read: task name, arguments, queue, due time and state.
 */
import { CorruptEntryError, NotScheduledError, ValidationError, errorMessage } from '../util/errors.js';
import { decodeEntry, taskNameOf } from '../job/entry.js';
import { type Job } from '../job/types.js';
import { compileQuery, type JobQuery } from './query.js';
import { checkRepresentable } from '../celery/time.js';
import { cursorAfter, type ScheduleStore, type StoredJob } from '../stores/store.js';

/** One scheduled job as people read it. */
export interface ScheduledJobInfo {
  id: string;
  /** the Celery task name; '?' when the entry cannot be decoded */
  task: string;
  /** an invalid Date when the stored time is outside what a Date holds; see `dueAtUnix` */
  dueAt: Date;
  /** the stored due time exactly, unix seconds (another writer may have stored any number) */
  dueAtUnix: number;
  /** `claimed`: a dispatcher is sending it now (its `dueAt` is then the lease deadline) */
  state: 'scheduled' | 'claimed';
  args: unknown[];
  kwargs: Record<string, unknown>;
  /** the queue it will be sent to (the default queue when the job names none and no exchange) */
  queue: string | undefined;
  exchange?: string;
  routingKey?: string;
  priority?: number;
  /** its part in a canvas: the steps of a chain still to run (next first), its group, a chord's body */
  canvas?: { chain?: string[]; groupId?: string; groupIndex?: number; chordBody?: string };
  /** its tags, when it has any (kept beside the entry, never in it) */
  tags?: readonly string[];
  /** the deduplication key it holds (`addKeyed`, `schedule --key`): `show` only, not in lists */
  key?: string;
  /** the stored JSON, exactly */
  entry: string;
  /** set when the entry cannot be turned into a message (the dispatcher will move it aside) */
  corrupt?: string;
}

export interface ListJobsOptions extends JobQuery {
  /** the most jobs to return (default 50) */
  limit?: number;
  /** where the previous page ended */
  cursor?: string;
  /**
   * With an args match (a scan): the most jobs read for this page (default 50,000). A page that
   * reaches it ends early, with fewer jobs than `limit` and a `cursor` to go on from.
   */
  scanBudget?: number;
}

export interface JobListing {
  jobs: ScheduledJobInfo[];
  /** pass as `cursor` for the next page; absent when there is none */
  cursor?: string;
  /** with an args match: how many jobs this page read and decoded to find its matches */
  scanned?: number;
}

export interface JobStats {
  /** scheduled jobs (waiting in the store) */
  scheduled: number;
  /** claimed by a dispatcher, being sent */
  inFlight: number;
  /** dead letters: jobs that will not be sent as they are (see `dead list`) */
  dead: number;
  /** scheduled jobs whose due time has passed */
  overdue: number;
  /** the earliest due time of a scheduled job (an invalid Date when outside what a Date holds) */
  nextDueAt: Date | undefined;
  /** the same, unix seconds as stored */
  nextDueAtUnix: number | undefined;
  /** how long the most overdue job has waited past its due time, in seconds (0 when none) */
  oldestOverdueSeconds: number;
  /** scheduled jobs per task name, most first */
  byTask: { task: string; count: number }[];
  /** scheduled jobs due on each UTC day from today, for `days` days (days with none included) */
  byDay: { day: string; count: number }[];
  /** when these were counted */
  at: Date;
}

const PAGE = 1000;

export function describeJob(stored: StoredJob, defaultQueue: string): ScheduledJobInfo {
  const base = {
    id: stored.id,
    dueAt: new Date(stored.dueAt * 1000),
    dueAtUnix: stored.dueAt,
    state: stored.state === 'in_flight' ? ('claimed' as const) : ('scheduled' as const),
    entry: stored.entry,
    ...(stored.tags && stored.tags.length > 0 && { tags: stored.tags }),
    ...(stored.key !== undefined && { key: stored.key }),
  };
  let job: Job;
  try {
    job = decodeEntry(stored.id, stored.entry);
  } catch (err) {
    const reason = err instanceof CorruptEntryError ? err.message : errorMessage(err);
    return { ...base, task: '?', args: [], kwargs: {}, queue: undefined, corrupt: reason };
  }
  const canvas = canvasOf(job);
  return {
    ...base,
    task: job.task,
    args: job.args,
    kwargs: job.kwargs,
    queue: job.queue ?? (job.exchange === undefined ? defaultQueue : undefined),
    ...(job.exchange !== undefined && { exchange: job.exchange }),
    ...(job.routingKey !== undefined && { routingKey: job.routingKey }),
    ...(job.priority !== undefined && { priority: job.priority }),
    ...(canvas && { canvas }),
  };
}

function canvasOf(job: Job): ScheduledJobInfo['canvas'] {
  if (!job.chain?.length && job.groupId === undefined && job.chord === undefined) return undefined;
  return {
    ...(job.chain?.length && { chain: [...job.chain].reverse().map((s) => s.task) }),
    ...(job.groupId !== undefined && { groupId: job.groupId }),
    ...(job.groupIndex !== undefined && { groupIndex: job.groupIndex }),
    ...(job.chord !== undefined && { chordBody: job.chord.task }),
  };
}

/** Jobs read per store call while scanning for an args match. */
const SCAN_PAGE = 1000;
const DEFAULT_SCAN_BUDGET = 50_000;

/**
 * Scheduled jobs in due order, filtered, a page at a time. The store answers every filter but an
 * args match (see query.ts); with one, pages of the store's matches are read and decoded here
 * until the page is full or `scanBudget` jobs were read.
 */
export async function listJobs(store: ScheduleStore, defaultQueue: string, o: ListJobsOptions = {}): Promise<JobListing> {
  const { limit: rawLimit, cursor: start, scanBudget: rawBudget, ...query } = o;
  const limit = rawLimit ?? 50;
  if (!Number.isInteger(limit) || limit < 1) throw new ValidationError([`limit must be a whole number >= 1, got ${String(rawLimit)}`]);
  const budget = rawBudget ?? DEFAULT_SCAN_BUDGET;
  if (!Number.isInteger(budget) || budget < 1) throw new ValidationError([`scanBudget must be a whole number >= 1, got ${String(rawBudget)}`]);
  const { filter, match } = compileQuery(query, defaultQueue);
  if (!match) {
    const page = await store.list({ ...filter, limit, ...(start !== undefined && { cursor: start }) });
    const jobs = page.jobs.map((j) => describeJob(j, defaultQueue));
    return page.cursor === undefined ? { jobs } : { jobs, cursor: page.cursor };
  }
  const jobs: ScheduledJobInfo[] = [];
  let cursor = start;
  let scanned = 0;
  for (;;) {
    const page = await store.list({ ...filter, limit: Math.min(Math.max(SCAN_PAGE, limit), budget - scanned), ...(cursor !== undefined && { cursor }) });
    for (const [i, stored] of page.jobs.entries()) {
      scanned++;
      const info = describeJob(stored, defaultQueue);
      if (info.corrupt !== undefined || !match(info)) continue;
      jobs.push(info);
      if (jobs.length === limit) {
        const more = i < page.jobs.length - 1 || page.cursor !== undefined;
        return more ? { jobs, cursor: cursorAfter(stored), scanned } : { jobs, scanned };
      }
    }
    if (page.cursor === undefined) return { jobs, scanned };
    cursor = page.cursor;
    if (scanned >= budget) return { jobs, cursor, scanned };
  }
}

/** One job, scheduled or claimed; undefined when the store does not hold it. */
export async function showJob(store: ScheduleStore, defaultQueue: string, id: string): Promise<ScheduledJobInfo | undefined> {
  const stored = await store.get(id);
  return stored && describeJob(stored, defaultQueue);
}

/**
 * Moves a scheduled job to `dueAt` in one atomic change. A job that a dispatcher has claimed, or
 * that is gone, is never touched: `NotScheduledError` says which.
 */
export async function rescheduleJob(store: ScheduleStore, id: string, dueAt: Date, action = 'reschedule'): Promise<void> {
  if (!(dueAt instanceof Date) || !Number.isFinite(dueAt.getTime()))
    throw new ValidationError([`the new due time for ${JSON.stringify(id)} is not a valid Date; pass a Date`]);
  const t = checkRepresentable(dueAt, `the new due time for ${JSON.stringify(id)}`).getTime();
  if (await store.reschedule(id, t / 1000)) return;
  const now = await store.get(id);
  throw new NotScheduledError(id, now?.state === 'in_flight' ? 'claimed' : 'unknown', action);
}

/** The most days `jobStats` counts ahead: ten years (a day per slot, so memory grows with it). */
export const MAX_STATS_DAYS = 3660;

/** Counts what is scheduled. Reads every scheduled job's entry once (for per-task counts). */
export async function jobStats(store: ScheduleStore, now: Date, o: { days?: number } = {}): Promise<JobStats> {
  const days = o.days ?? 30;
  if (!Number.isInteger(days) || days < 1 || days > MAX_STATS_DAYS) {
    throw new ValidationError([`days must be a whole number from 1 to ${MAX_STATS_DAYS} (ten years), got ${String(o.days)}`]);
  }
  const nowS = now.getTime() / 1000;
  const counts = await store.count();
  const dayStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const byDay = Array.from({ length: days }, (_, i) => ({ day: new Date(dayStart + i * 86_400_000).toISOString().slice(0, 10), count: 0 }));
  const byTask = new Map<string, number>();
  let overdue = 0;
  let first: number | undefined;
  let cursor: string | undefined;
  do {
    const page = await store.list({ limit: PAGE, ...(cursor !== undefined && { cursor }) });
    for (const j of page.jobs) {
      first ??= j.dueAt;
      if (j.dueAt <= nowS) overdue++;
      const slot = byDay[Math.floor((j.dueAt * 1000 - dayStart) / 86_400_000)]; // undefined before today or past `days`
      if (slot) slot.count++;
      const task = taskNameOf(j.entry);
      byTask.set(task, (byTask.get(task) ?? 0) + 1);
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return {
    scheduled: counts.scheduled,
    inFlight: counts.inFlight,
    dead: counts.dead,
    overdue,
    nextDueAt: first === undefined ? undefined : new Date(first * 1000),
    nextDueAtUnix: first,
    oldestOverdueSeconds: first !== undefined && first < nowS ? Math.round((nowS - first) * 1000) / 1000 : 0,
    byTask: [...byTask].map(([task, count]) => ({ task, count })).sort((a, b) => b.count - a.count || (a.task < b.task ? -1 : 1)),
    byDay,
    at: now,
  };
}
