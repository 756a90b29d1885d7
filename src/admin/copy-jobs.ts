/**
 * Copies scheduled jobs from one store to another (any kind to any kind, including a Redis store
 * the Python package wrote): ids, due times and entries byte for byte, and our tags with them.
 *
 * - **Safe to run twice**: jobs already in the target (same id) are left alone and counted as
 *   skipped, so a second run copies nothing and changes nothing.
 * - **Resumable**: the copy walks the source in due order; the summary's `cursor` says where it
 *   stopped, and `after` starts there. Without it, a rerun skips what is already copied.
 * - Jobs a source dispatcher has claimed (in flight) are not copied: that dispatcher sends them.
 * - **Two handles on one store are refused** before anything is read or written (a move would
 *   remove every job): stores are compared by `identity()`, so another URL, host name or path to
 *   the same store is caught too.
 *
 * **`move`** sends no job twice while dispatchers run on both stores, and a crash never loses one.
 * Jobs due within a day (`HOLD_WITHIN_SECONDS`) are the ones a dispatcher may claim while they
 * move. They are added to the target HELD: due at `HOLD_AT` (later than any time a Celery eta can
 * name, so no dispatcher claims them), with their real due times and entries kept in a wrapper
 * entry (`holdEntry`). Then, job by job, the source gives the job up or not, in one atomic step of
 * its own (`remove`):
 *
 * - removed: the job is moved to its real due time and entry in the target (`reschedule`, atomic),
 *   where the target's dispatcher sends it;
 * - not removed (the source's dispatcher claimed it meanwhile, or it was revoked): the held copy is
 *   removed from the target, and the source's dispatcher sends the job.
 *
 * So a job is claimable in one store at a time. Jobs due later are added at their due times and
 * then removed from the source (a job the source no longer has is removed from the target again):
 * no dispatcher claims them in that instant, unless the move stalls for a day in the middle of a
 * page or a dispatcher claims a day ahead (`dispatch --timestamp`). A job the target already held
 * is left there and removed from the source (the target's copy is the one that counts).
 *
 * A crash (SIGKILL, power loss) in the middle of a page leaves each job in the source, in the
 * target, or in both, never in neither. Up to a page of jobs due later may be in both stores (the
 * next run removes them from the source; run it before they are due). Up to a page of jobs due
 * soon may be left held in the target, not sent until the next `move` from the same source, which
 * finishes them first (whatever `after` says): a held copy whose job the source still schedules is
 * moved on as above; one the source has in flight is dropped (the source's dispatcher sends it);
 * one the source no longer has is moved to its due time (the source gave it up just before the
 * crash). Of the held jobs, only one in that last case can be sent twice: when the crash came
 * after the source's dispatcher claimed it and before the held copy was dropped, and that
 * dispatcher sent it before the rerun.
 */
import { ValidationError } from '../util/errors.js';
import { parseCursor, type ScheduleStore, type StoredJob } from '../stores/store.js';

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
  /** the current time, which decides which jobs are due soon (held while they move); injectable for tests */
  clock?: () => Date;
}

export interface MigrateProgress {
  /** jobs read from the source so far */
  seen: number;
  /** scheduled jobs in the source when the copy started (jobs added since may raise `seen` above it) */
  total: number;
  /** jobs this run put in the target at their due times (for `move`: moved) */
  copied: number;
  /** already in the target */
  skipped: number;
  /** removed from the source (`move`) */
  removed: number;
  /** `move`: jobs the source's dispatcher claimed (or that were revoked) while they moved; the source's dispatcher sends them */
  leftToSource: number;
  /** held copies an interrupted `move` from this source had left in the target, finished by this run */
  resumed: number;
  /**
   * jobs held by an interrupted `move` that this run cannot finish, left alone: in the source (a
   * move into it), in the target from another source, or (without `move`) from this one. They are
   * sent only once that move is run again.
   */
  held: number;
}

export interface MigrateSummary extends MigrateProgress {
  elapsedMs: number;
  /** where the copy stopped when it was aborted: pass as `after` to resume; absent when done */
  cursor?: string;
}

/**
 * The due time of a job held in the target while it moves: 10000-01-01T00:00:00Z, the first
 * second after any time a Celery eta (a Python datetime) can name, so no dispatcher claims it.
 */
export const HOLD_AT = 253_402_300_800;
/** `move` holds the jobs due within this many seconds of their page being read (see the header). */
export const HOLD_WITHIN_SECONDS = 86_400;
const HOLD_KEY = 'celery_longterm_scheduler:moving';
/** Jobs of a page whose store calls run at once (pipelined on Redis, spread over PostgreSQL's pool). */
const CONCURRENCY = 16;

/** What a held copy keeps: the source it came from, and the job's real due time and entry. */
export interface Hold {
  /** the source's `identity()` */
  from: string;
  /** the source's description (its URL, password redacted), for messages */
  source: string;
  dueAt: number;
  entry: string;
}

/** The entry of a held copy: `{"celery_longterm_scheduler:moving": Hold}`, never a valid task entry. */
export function holdEntry(hold: Hold): string {
  return JSON.stringify({ [HOLD_KEY]: { from: hold.from, source: hold.source, dueAt: hold.dueAt, entry: hold.entry } });
}

/** The hold an entry made by `holdEntry` keeps; undefined for any other entry. */
export function readHold(entry: string): Hold | undefined {
  if (!entry.startsWith(`{"${HOLD_KEY}":`)) return undefined;
  try {
    const h = (JSON.parse(entry) as Record<string, Partial<Hold> | undefined>)[HOLD_KEY];
    if (
      h &&
      typeof h.from === 'string' &&
      typeof h.source === 'string' &&
      typeof h.dueAt === 'number' &&
      Number.isFinite(h.dueAt) &&
      typeof h.entry === 'string'
    ) {
      return { from: h.from, source: h.source, dueAt: h.dueAt, entry: h.entry };
    }
  } catch {
    /* not ours */
  }
  return undefined;
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
  const source = await checkStores(from, to);
  // Both stores are opened first, so a target that cannot be reached (or whose schema is not
  // ready) fails the run even when the source is empty, instead of reporting "copied 0". One at
  // a time: when one fails, no connection of the other is still being opened, which closing the
  // stores would miss (a Redis connection left open keeps the process from exiting). The source
  // first: a run whose source fails creates nothing in the target (no SQLite file, no schema).
  const sourceCounts = await from.count();
  await to.count();
  const progress: MigrateProgress = { seen: 0, total: sourceCounts.scheduled, copied: 0, skipped: 0, removed: 0, leftToSource: 0, resumed: 0, held: 0 };
  const move = new Move(from, to, source, progress, options.clock ?? (() => new Date()));

  await move.resume(limit, options.move === true);
  let cursor = options.after;
  for (;;) {
    if (options.signal?.aborted) return { ...progress, elapsedMs: performance.now() - started, ...(cursor !== undefined && { cursor }) };
    const page = await from.list({ limit, ...(cursor !== undefined && { cursor }) });
    progress.seen += page.jobs.length;
    const jobs = page.jobs.filter((j) => {
      if (readHold(j.entry) === undefined) return true;
      progress.held++; // held in the source by a move into it: that move's to finish
      return false;
    });
    if (jobs.length > 0) await (options.move ? move.page(jobs) : move.copy(jobs));
    if (page.jobs.length > 0) options.onProgress?.({ ...progress });
    if (page.cursor === undefined) return { ...progress, elapsedMs: performance.now() - started };
    cursor = page.cursor;
  }
}

/** A job's tags as `add` takes them: they travel with the job (held copies included). */
function tagsOf(j: StoredJob): { tags?: readonly string[] } {
  return j.tags && j.tags.length > 0 ? { tags: j.tags } : {};
}

/** The steps of a move (see the header), counted in `progress`. */
class Move {
  constructor(
    readonly from: ScheduleStore,
    readonly to: ScheduleStore,
    /** the source's identity */
    readonly source: string,
    readonly progress: MigrateProgress,
    readonly clock: () => Date,
  ) {}

  /** Without `move`: adds the jobs at their due times, leaving those the target has alone. */
  async copy(jobs: readonly StoredJob[]): Promise<void> {
    const added = await this.to.add(
      jobs.map((j) => ({ id: j.id, dueAt: j.dueAt, entry: j.entry, ...tagsOf(j) })),
      { duplicates: 'skip' },
    );
    this.progress.copied += added;
    this.progress.skipped += jobs.length - added;
  }

  /** Moves one page of the source's scheduled jobs: those due soon held, the others at their due times. */
  async page(jobs: readonly StoredJob[]): Promise<void> {
    const soon = this.clock().getTime() / 1000 + HOLD_WITHIN_SECONDS;
    const held = new Set(jobs.filter((j) => j.dueAt <= soon).map((j) => j.id));
    const wanted = new Map(
      jobs.map((j) => [
        j.id,
        held.has(j.id)
          ? { id: j.id, dueAt: HOLD_AT, entry: holdEntry({ from: this.source, source: this.from.description, dueAt: j.dueAt, entry: j.entry }), ...tagsOf(j) }
          : { id: j.id, dueAt: j.dueAt, entry: j.entry, ...tagsOf(j) },
      ]),
    );
    const added = await this.to.add([...wanted.values()], { duplicates: 'skip' });
    let ours: readonly StoredJob[] = jobs;
    if (added < jobs.length) {
      // some ids were taken in the target: find which
      const mine: StoredJob[] = [];
      await eachAtOnce(jobs, async (j) => {
        const want = wanted.get(j.id)!;
        const there = await this.to.get(j.id);
        // ours, or the same job left there by an interrupted run
        if (there?.state === 'scheduled' && there.dueAt === want.dueAt && there.entry === want.entry) return void mine.push(j);
        this.progress.skipped++;
        if (there && readHold(there.entry)) return void this.progress.held++; // held for another source's move: leave ours alone
        if (await this.from.remove(j.id)) this.progress.removed++; // the target has the job: its copy is the one
      });
      ours = mine;
    }
    await eachAtOnce(ours, (j) => (held.has(j.id) ? this.settle(j.id, j.dueAt, j.entry) : this.handOver(j.id)));
  }

  /** A job due later, in the target at its due time already: removed from the source, or from the target when the source no longer has it. */
  async handOver(id: string): Promise<void> {
    if (await this.from.remove(id)) {
      this.progress.removed++;
      this.progress.copied++;
    } else {
      await this.to.remove(id); // the source's dispatcher claimed it a day ahead, or it was revoked
      this.progress.leftToSource++;
    }
  }

  /**
   * A job held in the target: the source gives it up (then it takes its real due time and entry
   * in the target) or not (then the held copy goes, and the source's dispatcher sends the job).
   */
  async settle(id: string, dueAt: number, entry: string): Promise<void> {
    if (await this.from.remove(id)) {
      this.progress.removed++;
      // false only when the held copy was revoked in the target meanwhile: the job is gone, as asked
      if (await this.to.reschedule(id, dueAt, entry)) this.progress.copied++;
    } else {
      await this.to.remove(id);
      this.progress.leftToSource++;
    }
  }

  /**
   * Finishes the held copies an interrupted move from this source left in the target (with
   * `move`; without it, only counts them), and counts the other holds found there.
   */
  async resume(limit: number, move: boolean): Promise<void> {
    let cursor: string | undefined;
    do {
      const page = await this.to.list({ from: HOLD_AT, limit, ...(cursor !== undefined && { cursor }) });
      await eachAtOnce(page.jobs, async (j) => {
        const hold = readHold(j.entry);
        if (hold === undefined) return; // a real job, due that late
        if (!move || !this.isSource(hold)) return void this.progress.held++;
        const there = await this.from.get(j.id);
        if (there?.state === 'scheduled' && readHold(there.entry) === undefined) {
          await this.settle(j.id, there.dueAt, there.entry); // interrupted before the source gave it up
        } else if (there?.state === 'in_flight') {
          await this.to.remove(j.id); // the source's dispatcher has it
          this.progress.leftToSource++;
        } else if (there === undefined) {
          // the source gave it up just before the interruption (or, rarely, its dispatcher sent it: see the header)
          if (await this.to.reschedule(j.id, hold.dueAt, hold.entry)) this.progress.copied++;
        } else {
          return void this.progress.held++; // the source holds it for another move
        }
        this.progress.resumed++;
      });
      cursor = page.cursor;
    } while (cursor !== undefined);
  }

  /**
   * Whether a hold came from this source: the same identity; or, since a Redis server's identity
   * (its `run_id`) changes when it restarts, the same Redis database and key prefix at the same URL.
   */
  isSource(hold: Hold): boolean {
    if (hold.from === this.source) return true;
    const place = (identity: string) => (identity.startsWith('redis:') ? identity.slice(identity.indexOf(':', 'redis:'.length)) : undefined);
    return place(this.source) !== undefined && place(hold.from) === place(this.source) && hold.source === this.from.description;
  }
}

/**
 * Runs `fn` on every item, `CONCURRENCY` at a time. After a failure no new item is started; the
 * ones under way finish (so no store call is left running when the stores are closed), then the
 * first error is thrown.
 */
async function eachAtOnce<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let error: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        if (!failed) error = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  if (failed) throw error;
}

function isCursor(cursor: string): boolean {
  try {
    parseCursor(cursor);
    return true;
  } catch {
    return false;
  }
}

/** What two stores share when their identities are equal, by the identity's kind. */
const SAME: Record<string, string> = {
  redis: 'the same Redis server, database and key prefix',
  sqlite: 'the same database file',
  postgres: 'the same PostgreSQL server, database and schema',
  memory: 'the same memory store',
};

/**
 * The source's identity, after checking that it is a SQLite file that exists (opening it would
 * create it), and that `from` and `to` are two stores (`ValidationError`s). Reads the source's
 * identity first; creates and changes nothing.
 */
async function checkStores(from: ScheduleStore, to: ScheduleStore): Promise<string> {
  const source = await from.identity();
  if (source.startsWith('sqlite:path:')) {
    throw new ValidationError([
      `the source ${from.description} names ${source.slice('sqlite:path:'.length)}, which does not exist; check the path (migrate never creates its source)`,
    ]);
  }
  const target = await to.identity();
  if (source !== target) return source;
  const why = SAME[source.slice(0, source.indexOf(':'))] ?? 'the same store';
  throw new ValidationError([
    `the source ${from.description} and the target ${to.description} are one store (${why}); migrate copies between two different stores, so pass another target`,
  ]);
}
