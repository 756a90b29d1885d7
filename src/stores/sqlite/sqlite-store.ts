/**
 * The SQLite store: one database file on the dispatcher's host, for setups without Redis.
 * Several dispatcher processes on that host may share the file; SQLite's locks keep them apart.
 *
 *   jobs     due_at REAL, id TEXT, entry TEXT (the entry JSON), lease REAL NULL,
 *            job_key TEXT NULL (the deduplication key a scheduled job holds; see addKeyed)
 *              PRIMARY KEY (due_at, id) WITHOUT ROWID: rows are stored in due order, so the jobs
 *              a claim takes, leases and later deletes sit side by side on a few pages, however
 *              many future jobs there are and however random the task ids (with rows in id
 *              order, each of them dirtied a page of its own: half the dispatch rate with a
 *              million jobs stored, and slower bulk adds)
 *              lease NULL: scheduled, due at due_at
 *              lease set:  in flight until that deadline, which is also the claim's token (as in
 *                          the other stores: holding a claim means lease == Number(token))
 *            unique index jobs_id (id)                               ids are unique; lookups by id
 *            index jobs_lease (lease, id)  WHERE lease IS NOT NULL  expired leases first
 *            unique index jobs_key (job_key) WHERE job_key IS NOT NULL  one scheduled job per key;
 *                          a claim sets job_key NULL, so jobs in flight never hold a key
 *            failures TEXT NULL (the job's failed attempts as JSON, see `encodeAttempts`; NULL
 *                          for a job never refused)
 *            tags TEXT NULL (the job's tags as a JSON array, in the order given; NULL for a job
 *                          without tags): what `get` and `list` show, what `bury` moves into
 *                          dead.tags, and what the triggers below test
 *            task TEXT NULL, queue TEXT NULL   the entry's task name and queue as `indexFieldsOf`
 *                          reads them (NULL: none, or not a string, or not JSON), what a task or
 *                          queue filter compares. Written with the entry, from JavaScript, by
 *                          every statement that writes one (add, addKeyed, reschedule with an
 *                          entry, reviveDead), so they are `indexFieldsOf`'s to the last odd
 *                          entry (SQLite's JSON functions read some entries otherwise: a repeated
 *                          key, deep nesting); version 6 filled them in through a SQL function
 *                          calling it
 *            The scheduled jobs, three ways, each a partial index WHERE lease IS +NULL (a claim
 *            takes a job out of them, release and retryLater put it back, an acknowledgement of
 *            a claimed job touches none of them):
 *              index jobs_due (due_at)               entries (due_at, id): the scheduled jobs in
 *                          due order, about 50 bytes a job (the rows, with their entries, are
 *                          several times that): counts and histograms step through it
 *              index jobs_task (task, due_at, id)    a task's scheduled jobs in due order
 *              index jobs_queue (queue, due_at, id)  a queue's (NULL: names none) in due order
 *            `lease IS +NULL`, not `lease IS NULL`: SQLite must read the row to test the latter,
 *            whereas the former tells it the column's value in every entry of the index, so a
 *            statement saying it needs nothing else reads the index alone (a covering index).
 *            Only a statement saying exactly `lease IS +NULL` can use these indexes; the claim
 *            and the plain list say `lease IS NULL`, and keep to the table's primary key.
 *   job_tags tag TEXT, due_at REAL, job_id TEXT   the tag -> jobs index: one row per tag of a live
 *              (scheduled or in-flight) job; tags are never in the entry, which stays the Python
 *              package's
 *              PRIMARY KEY (tag, due_at, job_id) WITHOUT ROWID: a tag's jobs in due order, each
 *                          naming the job's row by that table's key (due_at, id)
 *            index job_tags_job (job_id)   a job's rows
 *            Written right after the insert of a tagged job (add, addKeyed, reviveDead), in its
 *            transaction; kept right by two triggers on jobs, inside the statement that changes
 *            the job, whatever code runs it:
 *              jobs_tags_due   AFTER UPDATE OF due_at WHEN NEW.tags IS NOT NULL: the rows move to
 *                              the new due time (reschedule, release, retryLater)
 *              jobs_tags_gone  AFTER DELETE WHEN OLD.tags IS NOT NULL: the rows go (acknowledge,
 *                              remove, bury, an addKeyed replace)
 *            An untagged job costs the triggers' WHEN test and nothing more; a claim (or renewal)
 *            changes neither due_at nor tags and fires neither. A migration that rebuilds jobs
 *            (as version 3 did) must create both triggers again.
 *            A search by tags reads job_tags, never every job (see "Searching" below).
 *   revoked  due_at REAL, id TEXT   PRIMARY KEY (due_at, id) WITHOUT ROWID: scheduled jobs that
 *              `removeWhere` revoked and the reaper has not deleted yet (see "Revoked" below)
 *   dead     id TEXT PRIMARY KEY, entry TEXT NULL, due_at REAL, reason TEXT, error TEXT,
 *            attempts INTEGER, first_failed_at REAL NULL, died_at REAL   dead letters
 *            tags TEXT NULL (the tags the job had, as jobs.tags: a burial moves them here out
 *                          of jobs and job_tags, a revival moves them back)
 *            index dead_by_time (died_at, id)
 *
 * Guarantees:
 * - Every change is one transaction, and every write transaction takes the write lock first
 *   (BEGIN IMMEDIATE): dispatcher processes sharing the file never claim the same job.
 * - WAL mode with `synchronous=FULL` (the default): once `add` resolves, the job survives a
 *   crash or a power loss. `?synchronous=normal` is faster; a power loss may then lose the last
 *   commits, but never corrupts the file.
 * - The schema version is `PRAGMA user_version` and `PRAGMA application_id` marks the file as
 *   ours. A new file is created (mode 0600) with the schema, an older schema is migrated on open,
 *   a newer one is refused (`SchemaVersionError`), and another application's database is left alone.
 * - Ids compare as bytes (SQLite's BINARY collation), which is `compareIds`'s order.
 *
 * Searching (`list` with a filter, `countWhere`, `histogram`; the statements are built in
 * sqlite-search.ts): one statement reads a driver's rows and checks them against the rest of the
 * filter, never a read of every job unless nothing else can drive.
 * - The ways to drive: one tag of `all`, or the tags of `any` together (job_tags' primary key,
 *   live jobs: scheduled or in flight); the task (jobs_task); the queues (jobs_queue); each a
 *   range per tag or queue from the page's start (the cursor, or `from`) to `to`, already in due
 *   order, several merged lazily (MERGE (UNION): no sort, each job once). The key prefix
 *   (jobs_key) and the id prefix (jobs_id, live jobs) are one range each, in key or id order,
 *   sorted afterwards. With no filter but the due range, or none better, jobs_due drives.
 * - A prefix is the range [prefix, prefix with its last code point made the next), which is
 *   exact in SQLite's BINARY order (UTF-8 bytes, i.e. code points): no LIKE, so no wildcards
 *   (`%`, `_`) and no case folding.
 * - Each driver row is checked, the cheapest checks first: the other tags by seeks in job_tags
 *   (its primary key, or job_tags_job, which covers (job_id, tag, due_at)), `all` sparsest first
 *   and stopping at a tag the job lacks, `any` stopping at one it holds; the id prefix on the
 *   row's id; only then is the job read (jobs' primary key (due_at, id)) for the task, queue and
 *   key checks, the entry, and to leave out a job in flight.
 * - Choosing the way: with one way in due order, that one. With more (or a prefix), each way's
 *   first rows from the page's start are counted, up to `PROBE_ROWS` for a way in due order and
 *   `SORT_ROWS` for a prefix: a way with fewer is read whole, so the one with the fewest rows
 *   drives; failing that, the way in due order whose first rows reach furthest in due time is the
 *   sparsest there; a page never sorts a prefix's rows past `SORT_ROWS` (it then drives by due
 *   order, jobs_due, and checks the prefix), whereas a count or histogram, which reads every row
 *   of its way in any order, still takes the prefix's.
 * - A page stops at its `read` rows, so the driver is read only up to the page's last match. A
 *   count reads every match: from the driving index alone when nothing needs the job's row (the
 *   indexes of the task, queues and key prefix, and jobs_due, hold only scheduled jobs: a job in
 *   flight holds no key); driven by tags or an id prefix, the live jobs matching are counted from
 *   job_tags or jobs_id, less the matching jobs in flight (jobs_lease: few).
 * - A histogram, in one read transaction, is a statement per non-empty bucket: it counts the
 *   matches in the bucket's range of due times and finds the first match after it, whose bucket
 *   is the next one counted (driven by a prefix, the matches' due times are read and bucketed).
 *   A bucket's range is exactly the times `bucketOf` puts in it (see `bucketEnd`).
 * Cost: a page of one tag, task or queue is a seek and the page's rows, however many jobs hold
 * it; several drivers, the probes and the sparsest way's rows up to the page's last match, at
 * most all its rows in the range (when few jobs match them all: e.g. two tags of half the jobs
 * each, never held together, read half the jobs). A count or histogram steps through its
 * driver's entries in the range: all scheduled jobs' (jobs_due) for an unfiltered one.
 *
 * Revoked: `removeWhere` (a bulk revoke by query) marks each scheduled match in `revoked` rather
 * than deleting its row. A delete writes the row's page and a page of each of five indexes
 * (jobs_id, jobs_due, jobs_task, jobs_queue, job_tags_job), and jobs matched by a tag are spread
 * over all of them: revoking 10% of a million jobs rewrote nearly every page of a 440 MB file (8 s),
 * whereas the marks are appended in due order to one small table (1.5 s, in the benchmark).
 * - A revoked job is gone to everything but the reaper. Every read that returns or counts
 *   scheduled jobs (get, list, searches, counts, histograms, the next due time, the claim) leaves
 *   out the rows in `revoked`, with one seek per row read, but only while it holds any (each read
 *   or write first looks, in its own transaction); the store's counts take the marks away.
 * - A write naming a job (add, addKeyed, reschedule, remove, retag, revive) first deletes it if it
 *   is revoked, in its transaction, so it finds the job gone and its id and key free. Only
 *   scheduled jobs are marked (a job in flight is left alone, as `removeMany` does), and no write
 *   changes a marked row but a delete: a mark always names a scheduled job's row.
 * - The reaper deletes the marked jobs (their tag rows go by jobs_tags_gone), `REAP_BATCH` in a
 *   write transaction, a pause between: it starts in any process whose store finds marks, so a
 *   revoke made by a short CLI run is reaped by the dispatcher daemon, or by the next command.
 *   Until then the rows take their space in the file; `reaper: false` turns it off for a store.
 *
 * Wake-ups: SQLite has no notifications. `watch` hears about jobs made due sooner than all
 * others by `add`, `reschedule` or `rescheduleMany` through any SqliteStore in THIS process on
 * the same file; jobs added by other processes are found by the dispatcher daemon's poll, at
 * most a second later.
 *
 * What every store does the same (the checks, the closed state, lease arithmetic, paging) is
 * `StoreBase`'s (../base.ts); this file is the rest.
 */
import { closeSync, existsSync, openSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type Database from 'better-sqlite3';
import { loadDriver } from '../../util/drivers.js';
import { ConnectionError, DuplicateJobError, JobKeyTakenError, SchedulerError, SchemaVersionError, ValidationError } from '../../util/errors.js';
import type { NewJob } from '../../job/types.js';
import { indexFieldsOf } from '../../job/entry.js';
import { MAX_TAGS_PER_JOB } from '../../job/tags.js';
import { StoreBase, filtersJobs, retagged, type ClaimQuery, type Lease, type ListRange, type ListedJob, type Position } from '../base.js';
import { SCHEDULED, Search, revokedSql } from './sqlite-search.js';
import {
  deadLetterOf,
  decodeAttempts,
  encodeAttempts,
  type Burial,
  type ClaimedJob,
  type DeadLetter,
  type Retry,
  type ReviveOutcome,
  type JobKeyMode,
  type KeyedAddResult,
  type HistogramBucket,
  type JobMove,
  type RetagResult,
  type StoreCounts,
  type StoredJob,
} from '../store.js';

export const DEFAULT_SQLITE_FILE = 'celery-longterm-scheduler.db';
/** The schema this code writes; `PRAGMA user_version` of a file it made. */
export const SQLITE_SCHEMA_VERSION = 7;
/** `PRAGMA application_id` of a file this code made: 'CLTS'. */
export const SQLITE_APPLICATION_ID = 0x434c5453;

const WHAT = 'long-term scheduler store (SQLite)';
const FORMS = 'use sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:';
/** Page cache per connection, in KiB (negative for KiB in the pragma): keeps bulk adds fast. */
const CACHE_KIB = 32 * 1024;

/** The SQL function a migration computes `indexFieldsOf` with: index_field(entry, 'task' | 'queue'). */
const INDEX_FIELD = 'clts_index_field';

/** Each step brings the schema from version i to i + 1. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE jobs (id TEXT PRIMARY KEY, due_at REAL NOT NULL, entry TEXT NOT NULL, lease REAL) WITHOUT ROWID;
   CREATE INDEX jobs_due ON jobs (due_at, id) WHERE lease IS NULL;
   CREATE INDEX jobs_lease ON jobs (lease, id) WHERE lease IS NOT NULL;
   CREATE TABLE corrupt (id TEXT PRIMARY KEY, entry TEXT, due_at REAL NOT NULL, reason TEXT NOT NULL, moved_at REAL NOT NULL);`,
  // 2: deduplication keys (addKeyed)
  `ALTER TABLE jobs ADD COLUMN job_key TEXT;
   CREATE UNIQUE INDEX jobs_key ON jobs (job_key) WHERE job_key IS NOT NULL;`,
  // 3: rows stored in due order (see the header); dropping the old table drops its indexes
  `CREATE TABLE jobs_by_due (due_at REAL NOT NULL, id TEXT NOT NULL, entry TEXT NOT NULL, lease REAL, job_key TEXT, PRIMARY KEY (due_at, id)) WITHOUT ROWID;
   INSERT INTO jobs_by_due (due_at, id, entry, lease, job_key) SELECT due_at, id, entry, lease, job_key FROM jobs;
   DROP TABLE jobs;
   ALTER TABLE jobs_by_due RENAME TO jobs;
   CREATE UNIQUE INDEX jobs_id ON jobs (id);
   CREATE INDEX jobs_lease ON jobs (lease, id) WHERE lease IS NOT NULL;
   CREATE UNIQUE INDEX jobs_key ON jobs (job_key) WHERE job_key IS NOT NULL;`,
  // 4: attempts and dead letters; the corrupt jobs moved aside before become dead letters
  `ALTER TABLE jobs ADD COLUMN failures TEXT;
   CREATE TABLE dead (id TEXT PRIMARY KEY, entry TEXT, due_at REAL NOT NULL, reason TEXT NOT NULL, error TEXT NOT NULL,
                      attempts INTEGER NOT NULL, first_failed_at REAL, died_at REAL NOT NULL) WITHOUT ROWID;
   CREATE INDEX dead_by_time ON dead (died_at, id);
   INSERT INTO dead (id, entry, due_at, reason, error, attempts, died_at) SELECT id, entry, due_at, 'corrupt', reason, 0, moved_at FROM corrupt;
   DROP TABLE corrupt;`,
  // 5: tags (see the header); adding a NULL column rewrites no row, so this is quick on any file
  `ALTER TABLE jobs ADD COLUMN tags TEXT;
   ALTER TABLE dead ADD COLUMN tags TEXT;
   CREATE TABLE job_tags (tag TEXT NOT NULL, due_at REAL NOT NULL, job_id TEXT NOT NULL, PRIMARY KEY (tag, due_at, job_id)) WITHOUT ROWID;
   CREATE INDEX job_tags_job ON job_tags (job_id);
   CREATE TRIGGER jobs_tags_due AFTER UPDATE OF due_at ON jobs WHEN NEW.tags IS NOT NULL AND NEW.due_at IS NOT OLD.due_at
     BEGIN UPDATE job_tags SET due_at = NEW.due_at WHERE job_id = NEW.id; END;
   CREATE TRIGGER jobs_tags_gone AFTER DELETE ON jobs WHEN OLD.tags IS NOT NULL
     BEGIN DELETE FROM job_tags WHERE job_id = OLD.id; END;`,
  // 6: the task and queue of each job, and the indexes of scheduled jobs (see the header and
  // "Searching"); the columns are filled in before the indexes are built
  `ALTER TABLE jobs ADD COLUMN task TEXT;
   ALTER TABLE jobs ADD COLUMN queue TEXT;
   UPDATE jobs SET task = ${INDEX_FIELD}(entry, 'task'), queue = ${INDEX_FIELD}(entry, 'queue');
   CREATE INDEX jobs_due ON jobs (due_at) WHERE ${SCHEDULED};
   CREATE INDEX jobs_task ON jobs (task, due_at, id) WHERE ${SCHEDULED};
   CREATE INDEX jobs_queue ON jobs (queue, due_at, id) WHERE ${SCHEDULED};`,
  // 7: revoked jobs not yet reaped (see "Revoked" in the header)
  `CREATE TABLE revoked (due_at REAL NOT NULL, id TEXT NOT NULL, PRIMARY KEY (due_at, id)) WITHOUT ROWID;`,
];

/** How many revoked jobs one reaper step deletes (one write transaction, tens of milliseconds). */
const REAP_BATCH = 500;
/** The reaper's pause between steps, in ms: other work of this process runs in between. */
const REAP_PAUSE_MS = 5;

/** A taken id: the unique index on id (or the primary key, for the same id and due time). */
function isDuplicateId(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || (code === 'SQLITE_CONSTRAINT_UNIQUE' && err instanceof Error && err.message.includes('jobs.id'));
}

export type SqliteSynchronous = 'normal' | 'full';

export interface SqliteStoreOptions {
  /** `full` (the default): a job survives power loss once `add` resolves; `normal`: faster. Overrides `?synchronous=`. */
  synchronous?: SqliteSynchronous;
  /** How long to wait for another process's write lock, in ms (default 5000). Overrides `?busy_timeout=`. */
  busyTimeoutMs?: number;
  /**
   * `false`: this store never deletes revoked jobs itself (see `removeWhere`); another store on
   * the file does, or this one's reads and writes keep leaving them out. Default `true`.
   */
  reaper?: boolean;
}

export interface SqliteLocation {
  /** the absolute file path, or ':memory:' for a private in-memory database */
  file: string;
  synchronous: SqliteSynchronous;
  busyTimeoutMs: number;
}

/**
 * Reads a store URL in SQLAlchemy's form: `sqlite:///relative/path.db` (relative to `cwd`),
 * `sqlite:////absolute/path.db`, or `sqlite://:memory:`. Query options: `synchronous=normal|full`
 * and `busy_timeout=<ms>`. A `ValidationError` for anything else.
 */
export function parseSqliteUrl(url: string, cwd: string = process.cwd()): SqliteLocation {
  const m = /^sqlite:\/\/([^?#]*)(?:\?([^#]*))?$/i.exec(url);
  if (!m) throw new ValidationError([`store URL ${JSON.stringify(url)} is not a SQLite URL; ${FORMS}`]);
  const rest = m[1] ?? '';
  let file: string;
  if (rest === ':memory:' || rest === '/:memory:') file = ':memory:';
  else if (!rest.startsWith('/')) {
    const why = rest === '' ? 'has no file path' : 'names a host, which SQLite has none of';
    throw new ValidationError([`store URL ${JSON.stringify(url)} ${why}; ${FORMS}`]);
  } else {
    let path: string;
    try {
      path = decodeURIComponent(rest.slice(1));
    } catch {
      throw new ValidationError([`store URL ${JSON.stringify(url)} has a bad %-escape in its path; ${FORMS}`]);
    }
    if (path === '' || path.endsWith('/')) throw new ValidationError([`store URL ${JSON.stringify(url)} names no file; ${FORMS}`]);
    file = isAbsolute(path) ? path : resolve(cwd, path);
  }

  const problems: string[] = [];
  let synchronous: SqliteSynchronous = 'full';
  let busyTimeoutMs = 5000;
  for (const [key, value] of new URLSearchParams(m[2] ?? '')) {
    if (key === 'synchronous') {
      const v = value.toLowerCase();
      if (v === 'normal' || v === 'full') synchronous = v;
      else problems.push(`store URL option synchronous=${value} is not supported; use synchronous=full (the default) or synchronous=normal`);
    } else if (key === 'busy_timeout') {
      if (/^\d+$/.test(value)) busyTimeoutMs = Number(value);
      else problems.push(`store URL option busy_timeout=${value} is not a whole number of milliseconds; e.g. busy_timeout=5000`);
    } else {
      problems.push(`store URL option ${JSON.stringify(key)} is not known; SQLite URLs take synchronous=normal|full and busy_timeout=<ms>`);
    }
  }
  if (problems.length) throw new ValidationError(problems);
  return { file, synchronous, busyTimeoutMs };
}

/* In-process wake-ups: watchers by database file, shared by every SqliteStore in this process. */
const watchersByFile = new Map<string, Set<(dueAt: number) => void>>();
let memoryDatabases = 0;

function notify(key: string, dueAt: number): void {
  for (const w of [...(watchersByFile.get(key) ?? [])]) {
    // A watcher is a hint (the daemon also polls): its failure must not turn a committed change
    // into a reported failure.
    try {
      w(dueAt);
    } catch {
      /* ignored */
    }
  }
}

let sqliteDriver: typeof Database | undefined;

/** better-sqlite3, loaded on first use (see util/drivers.ts). */
export function betterSqlite3(): typeof Database {
  sqliteDriver ??= loadDriver<typeof Database>('better-sqlite3');
  return sqliteDriver;
}

function sqliteCode(err: unknown): string | undefined {
  // no driver loaded yet: no error of ours can be one of its errors
  return sqliteDriver !== undefined && err instanceof sqliteDriver.SqliteError ? err.code : undefined;
}

interface Row {
  id: string;
  dueAt: number;
  entry: string;
}

interface ClaimRow extends Row {
  failures: string | null;
}

/** A job's tags as jobs.tags and dead.tags hold them: a JSON array, or NULL for none. */
type TagsColumn = string | null;

/** jobs.task and jobs.queue of an entry: `indexFieldsOf`, NULL for none. */
type Fields = [task: string | null, queue: string | null];

function fieldsOf(entry: string): Fields {
  const f = indexFieldsOf(entry);
  return [f.task, f.queue];
}

/** The column value for a new job's tags (NULL for none). */
function tagsColumn(tags: readonly string[] | undefined): TagsColumn {
  return tags && tags.length > 0 ? JSON.stringify(tags) : null;
}

/** A dead letter as its row reads (an absent first failure or no tags is NULL). */
type DeadRow = Omit<DeadLetter, 'firstFailedAt' | 'tags'> & { firstFailedAt: number | null; tags: TagsColumn };

function deadLetter(r: DeadRow): DeadLetter {
  const { firstFailedAt, tags, ...rest } = r;
  return {
    ...rest,
    ...(firstFailedAt !== null && { firstFailedAt }),
    ...(tags !== null && { tags: JSON.parse(tags) as string[] }),
  };
}

/** The open database and its prepared statements and transactions. */
class Connection {
  readonly db: Database.Database;
  /** a new job: id, due_at, entry, tags, then its task and queue (`fieldsOf`) */
  readonly insert: Database.Statement<[string, number, string, TagsColumn, ...Fields]>;
  readonly insertOrIgnore: Database.Statement<[string, number, string, TagsColumn, ...Fields]>;
  readonly insertKeyed: Database.Statement<[string, number, string, string, TagsColumn, ...Fields]>;
  readonly keyHolder: Database.Statement<[string], string>;
  readonly removeById: Database.Statement<[string]>;
  readonly firstDue: Database.Statement<[], number>;
  readonly remove: Database.Statement<[string]>;
  /** a scheduled job to a new due time (the entry kept) */
  readonly reschedule: Database.Statement<[number, string]>;
  /** a scheduled job to a new due time and entry, with the entry's task and queue */
  readonly rescheduleEntry: Database.Statement<[number, string, ...Fields, string]>;
  /** a scheduled job's due time and tags, for a retag */
  readonly scheduledTags: Database.Statement<[string], { dueAt: number; tags: TagsColumn }>;
  readonly setTags: Database.Statement<[TagsColumn, string]>;
  /** deletes a job's job_tags rows: (JSON array of tags, due_at, job_id) */
  readonly dropTags: Database.Statement<[string, number, string]>;
  readonly expired: Database.Statement<[number, number], ClaimRow>;
  readonly due: Database.Statement<[number, number], ClaimRow>;
  readonly lease: Database.Statement<[number, string]>;
  readonly renew: Database.Statement<[number, string, number]>;
  readonly held: Database.Statement<[string, number], number>;
  readonly ack: Database.Statement<[string, number]>;
  readonly release: Database.Statement<[number, string, number]>;
  readonly retry: Database.Statement<[number, string, string, number]>;
  readonly take: Database.Statement<[string, number], { entry: string; tags: TagsColumn }>;
  readonly bury: Database.Statement<[string, string | null, number, string, string, number, number | null, number, TagsColumn]>;
  /** writes a new job's job_tags rows: (due_at, job_id, tags JSON) */
  readonly addTags: Database.Statement<[number, string, string]>;
  readonly tagsOf: Database.Statement<[string], TagsColumn>;
  readonly deadFirst: Database.Statement<[number], DeadRow>;
  readonly deadAfter: Database.Statement<[number, string, number], DeadRow>;
  readonly deadGet: Database.Statement<[string], DeadRow>;
  readonly deadDelete: Database.Statement<[string]>;
  readonly deadDeleteAll: Database.Statement<[]>;
  readonly hasId: Database.Statement<[string], number>;
  readonly get: Database.Statement<[string], { dueAt: number; entry: string; lease: number | null; jobKey: string | null }>;
  readonly listFrom: Database.Statement<[number, number, number], Row>;
  readonly listAfter: Database.Statement<[number, string, number, number], Row>;
  readonly count: Database.Statement<[], StoreCounts>;
  readonly nextDue: Database.Statement<[], { due: number | null; lease: number | null }>;
  /* Revoked jobs (see "Revoked" in the header): the statements above that read scheduled jobs
     have a form leaving them out, used while `revoked` holds any */
  readonly anyRevoked: Database.Statement<[], number>;
  readonly revokedCount: Database.Statement<[], number>;
  /** marks a scheduled job revoked: 1 change if it was scheduled and not revoked yet */
  readonly revoke: Database.Statement<[string]>;
  /** a revoked job's row deleted (its tag rows with it), returning its due time */
  readonly reapId: Database.Statement<[string], number>;
  readonly unrevoke: Database.Statement<[number, string]>;
  readonly revokedFirst: Database.Statement<[number], { dueAt: number; id: string }>;
  readonly reapRow: Database.Statement<[number, string]>;
  readonly firstDueLive: Database.Statement<[], number>;
  readonly dueLive: Database.Statement<[number, number], ClaimRow>;
  readonly isRevoked: Database.Statement<[string], number>;
  readonly listFromLive: Database.Statement<[number, number, number], Row>;
  readonly listAfterLive: Database.Statement<[number, string, number, number], Row>;
  /** list with a filter, countWhere and histogram (sqlite-search.ts) */
  readonly search: Search;

  constructor(db: Database.Database) {
    this.db = db;
    const jobColumns = 'id, due_at AS dueAt, entry';
    this.insert = db.prepare('INSERT INTO jobs (id, due_at, entry, tags, task, queue) VALUES (?, ?, ?, ?, ?, ?)');
    this.insertOrIgnore = db.prepare('INSERT OR IGNORE INTO jobs (id, due_at, entry, tags, task, queue) VALUES (?, ?, ?, ?, ?, ?)');
    this.insertKeyed = db.prepare('INSERT INTO jobs (id, due_at, entry, job_key, tags, task, queue) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.keyHolder = db.prepare<[string], string>('SELECT id FROM jobs WHERE job_key = ?').pluck();
    this.removeById = db.prepare('DELETE FROM jobs WHERE id = ?');
    // the first entry of jobs_due, however many jobs are in flight before it
    this.firstDue = db.prepare<[], number>(`SELECT due_at FROM jobs WHERE ${SCHEDULED} ORDER BY due_at, id LIMIT 1`).pluck();
    this.remove = db.prepare('DELETE FROM jobs WHERE id = ? AND lease IS NULL');
    // OR FAIL: no constraint can fail here (the id stays, so the new key (due_at, id) is the job's
    // alone), and saying so spares SQLite the statement journal it keeps to undo a failed
    // statement half-way, which costs as much again as the move (its trigger included)
    this.reschedule = db.prepare('UPDATE OR FAIL jobs SET due_at = ? WHERE id = ? AND lease IS NULL');
    this.rescheduleEntry = db.prepare('UPDATE OR FAIL jobs SET due_at = ?, entry = ?, task = ?, queue = ? WHERE id = ? AND lease IS NULL');
    this.scheduledTags = db.prepare('SELECT due_at AS dueAt, tags FROM jobs WHERE id = ? AND lease IS NULL');
    this.setTags = db.prepare('UPDATE jobs SET tags = ? WHERE id = ?');
    this.dropTags = db.prepare('DELETE FROM job_tags WHERE tag IN (SELECT value FROM json_each(?)) AND due_at = ? AND job_id = ?');
    this.expired = db.prepare('SELECT id, lease AS dueAt, entry, failures FROM jobs WHERE lease IS NOT NULL AND lease <= ? ORDER BY lease, id LIMIT ?');
    this.due = db.prepare(`SELECT ${jobColumns}, failures FROM jobs WHERE lease IS NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?`);
    // a job in flight holds no deduplication key
    this.lease = db.prepare('UPDATE jobs SET lease = ?, job_key = NULL WHERE id = ?');
    this.renew = db.prepare('UPDATE jobs SET lease = ? WHERE id = ? AND lease = ?');
    this.held = db.prepare<[string, number], number>('SELECT 1 FROM jobs WHERE id = ? AND lease = ?').pluck();
    this.ack = db.prepare('DELETE FROM jobs WHERE id = ? AND lease = ?');
    this.release = db.prepare('UPDATE jobs SET lease = NULL, due_at = ? WHERE id = ? AND lease = ?');
    this.retry = db.prepare('UPDATE jobs SET lease = NULL, due_at = ?, failures = ? WHERE id = ? AND lease = ?');
    this.take = db.prepare('DELETE FROM jobs WHERE id = ? AND lease = ? RETURNING entry, tags');
    this.bury = db.prepare(
      'INSERT OR REPLACE INTO dead (id, entry, due_at, reason, error, attempts, first_failed_at, died_at, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    // OR IGNORE: a row that is there already says the same (a job holds each tag once)
    this.addTags = db.prepare('INSERT OR IGNORE INTO job_tags (tag, due_at, job_id) SELECT value, ?, ? FROM json_each(?)');
    this.tagsOf = db.prepare<[string], TagsColumn>('SELECT tags FROM jobs WHERE id = ?').pluck();
    const deadColumns = 'id, entry, due_at AS dueAt, reason, error, attempts, first_failed_at AS firstFailedAt, died_at AS diedAt, tags';
    this.deadFirst = db.prepare(`SELECT ${deadColumns} FROM dead ORDER BY died_at, id LIMIT ?`);
    this.deadAfter = db.prepare(`SELECT ${deadColumns} FROM dead WHERE (died_at, id) > (?, ?) ORDER BY died_at, id LIMIT ?`);
    this.deadGet = db.prepare(`SELECT ${deadColumns} FROM dead WHERE id = ?`);
    this.deadDelete = db.prepare('DELETE FROM dead WHERE id = ?');
    this.deadDeleteAll = db.prepare('DELETE FROM dead');
    this.hasId = db.prepare<[string], number>('SELECT 1 FROM jobs WHERE id = ?').pluck();
    this.get = db.prepare('SELECT due_at AS dueAt, entry, lease, job_key AS jobKey FROM jobs WHERE id = ?');
    // two forms, so that the index range starts where the page does
    this.listFrom = db.prepare(`SELECT ${jobColumns} FROM jobs WHERE lease IS NULL AND due_at >= ? AND due_at <= ? ORDER BY due_at, id LIMIT ?`);
    this.listAfter = db.prepare(`SELECT ${jobColumns} FROM jobs WHERE lease IS NULL AND (due_at, id) > (?, ?) AND due_at <= ? ORDER BY due_at, id LIMIT ?`);
    // the scheduled ones counted in jobs_due, a covering index, not in the table
    this.count = db.prepare(
      `SELECT (SELECT count(*) FROM jobs WHERE ${SCHEDULED}) AS scheduled, (SELECT count(*) FROM jobs WHERE lease IS NOT NULL) AS inFlight, (SELECT count(*) FROM dead) AS dead`,
    );
    this.nextDue = db.prepare(
      `SELECT (SELECT min(due_at) FROM jobs WHERE ${SCHEDULED}) AS due, (SELECT min(lease) FROM jobs WHERE lease IS NOT NULL) AS lease`,
    );
    const revokedRow = (alias: string) => revokedSql(`${alias}.due_at`, `${alias}.id`);
    const live = (alias: string) => `NOT ${revokedRow(alias)}`;
    this.anyRevoked = db.prepare<[], number>('SELECT EXISTS (SELECT 1 FROM revoked)').pluck();
    this.revokedCount = db.prepare<[], number>('SELECT count(*) FROM revoked').pluck();
    this.revoke = db.prepare('INSERT OR IGNORE INTO revoked (due_at, id) SELECT due_at, id FROM jobs WHERE id = ? AND lease IS NULL');
    this.reapId = db.prepare<[string], number>(`DELETE FROM jobs WHERE id = ? AND ${revokedRow('jobs')} RETURNING due_at`).pluck();
    this.unrevoke = db.prepare('DELETE FROM revoked WHERE due_at = ? AND id = ?');
    this.revokedFirst = db.prepare('SELECT due_at AS dueAt, id FROM revoked ORDER BY due_at, id LIMIT ?');
    this.reapRow = db.prepare('DELETE FROM jobs WHERE due_at = ? AND id = ?');
    this.firstDueLive = db.prepare<[], number>(`SELECT due_at FROM jobs j WHERE ${SCHEDULED} AND ${live('j')} ORDER BY due_at, id LIMIT 1`).pluck();
    this.dueLive = db.prepare(`SELECT ${jobColumns}, failures FROM jobs j WHERE lease IS NULL AND due_at <= ? AND ${live('j')} ORDER BY due_at, id LIMIT ?`);
    this.isRevoked = db.prepare<[string], number>(`SELECT 1 FROM jobs j WHERE id = ? AND ${revokedRow('j')}`).pluck();
    this.listFromLive = db.prepare(
      `SELECT ${jobColumns} FROM jobs j WHERE lease IS NULL AND due_at >= ? AND due_at <= ? AND ${live('j')} ORDER BY due_at, id LIMIT ?`,
    );
    this.listAfterLive = db.prepare(
      `SELECT ${jobColumns} FROM jobs j WHERE lease IS NULL AND (due_at, id) > (?, ?) AND due_at <= ? AND ${live('j')} ORDER BY due_at, id LIMIT ?`,
    );
    this.search = new Search(db);
  }

  /** Whether the store holds revoked jobs not reaped yet (one read of revoked's first page). */
  revoked(): boolean {
    return this.anyRevoked.get() === 1;
  }

  /** The due time of the first scheduled job (revoked ones left out while there are any). */
  firstScheduled(revoked: boolean): number | undefined {
    return (revoked ? this.firstDueLive : this.firstDue).get();
  }

  /**
   * Deletes those of `ids` that are revoked, in the caller's write transaction: a write naming a
   * revoked job then finds it gone, as it is, and its id and key are free again.
   */
  reap(ids: Iterable<string>): void {
    for (const id of ids) {
      const dueAt = this.reapId.get(id);
      if (dueAt !== undefined) this.unrevoke.run(dueAt, id);
    }
  }

  /** Deletes up to `n` revoked jobs, the first due first; whether there may be more. */
  reapSome(n: number): boolean {
    const rows = this.revokedFirst.all(n);
    for (const r of rows) {
      this.reapRow.run(r.dueAt, r.id);
      this.unrevoke.run(r.dueAt, r.id);
    }
    return rows.length === n;
  }

  /** Runs `fn` in a write transaction that takes the write lock first (BEGIN IMMEDIATE). */
  write<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }
}

export class SqliteStore extends StoreBase {
  readonly description: string;
  /** the database file's absolute path, or ':memory:' */
  readonly file: string;
  readonly synchronous: SqliteSynchronous;
  readonly busyTimeoutMs: number;
  readonly #reaper: boolean;
  readonly #url: string;
  /** the in-process wake-up registry's key: the file, or a private name for :memory: */
  readonly #key: string;
  readonly #watchers = new Set<(dueAt: number) => void>();
  #connection: Connection | undefined;
  /** the reaper's next step, while one is due */
  #reaping: NodeJS.Timeout | undefined;

  constructor(url: string, options: SqliteStoreOptions = {}) {
    super();
    const location = parseSqliteUrl(url);
    const problems: string[] = [];
    if (options.synchronous !== undefined && options.synchronous !== 'normal' && options.synchronous !== 'full') {
      problems.push(`synchronous must be 'full' or 'normal', not ${JSON.stringify(options.synchronous)}`);
    }
    if (options.busyTimeoutMs !== undefined && !(Number.isInteger(options.busyTimeoutMs) && options.busyTimeoutMs >= 0)) {
      problems.push(`busyTimeoutMs must be a whole number of milliseconds >= 0, not ${String(options.busyTimeoutMs)}`);
    }
    if (options.reaper !== undefined && typeof options.reaper !== 'boolean') problems.push(`reaper must be true or false, not ${String(options.reaper)}`);
    if (problems.length) throw new ValidationError(problems);
    this.#reaper = options.reaper ?? true;
    this.#url = url;
    this.description = url;
    this.file = location.file;
    this.synchronous = options.synchronous ?? location.synchronous;
    this.busyTimeoutMs = options.busyTimeoutMs ?? location.busyTimeoutMs;
    this.#key = this.file === ':memory:' ? `:memory:${++memoryDatabases}` : this.file;
  }

  /** The open connection; opens (and creates or migrates) the file on first use. */
  #open(): Connection {
    this.assertOpen(); // closed: never opened again
    this.#connection ??= this.#connect();
    return this.#connection;
  }

  #connect(): Connection {
    if (this.file !== ':memory:') this.#createFile();
    let db: Database.Database | undefined;
    try {
      db = new (betterSqlite3())(this.file, { timeout: this.busyTimeoutMs });
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (this.file !== ':memory:' && mode !== 'wal') throw new Error(`the database cannot use WAL mode (it stays in ${String(mode)} mode)`);
      db.pragma(`synchronous = ${this.synchronous.toUpperCase()}`);
      db.pragma(`cache_size = -${CACHE_KIB}`);
      this.#migrate(db);
      return new Connection(db);
    } catch (err) {
      db?.close();
      throw this.#wrap(err);
    }
  }

  /** Creates a missing file readable by its owner only (SQLite's -wal and -shm files inherit the mode). */
  #createFile(): void {
    if (existsSync(this.file)) return;
    try {
      closeSync(openSync(this.file, 'wx', 0o600));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return; // another process just made it
      const dir = dirname(this.file);
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        const why = code === 'ENOENT' ? `the directory ${dir} does not exist` : `a part of ${dir} is not a directory`;
        throw new ConnectionError(WHAT, this.#url, new Error(why, { cause: err }), {
          action: 'open',
          hint: 'create it, or point the store URL at a directory that exists',
        });
      }
      throw new ConnectionError(WHAT, this.#url, err, { action: 'open', hint: `check that this user may create and write files in ${dir}` });
    }
  }

  /** Creates or migrates the schema; refuses a newer schema or another application's database. */
  #migrate(db: Database.Database): void {
    db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      const app = db.pragma('application_id', { simple: true }) as number;
      const tables = db.prepare<[], number>("SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").pluck().get() ?? 0;
      const ours = app === SQLITE_APPLICATION_ID || (app === 0 && version === 0 && tables === 0);
      if (app !== 0 && !ours) throw this.#foreign();
      if (version > SQLITE_SCHEMA_VERSION) throw new SchemaVersionError(this.description, version, SQLITE_SCHEMA_VERSION);
      if (!ours) throw this.#foreign();
      if (version === SQLITE_SCHEMA_VERSION) return;
      // what migration 6 fills jobs.task and jobs.queue with: the values every write gives them
      db.function(INDEX_FIELD, { deterministic: true }, (entry, field) => indexFieldsOf(String(entry))[field === 'task' ? 'task' : 'queue']);
      for (let v = version; v < SQLITE_SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION}`);
      db.pragma(`application_id = ${SQLITE_APPLICATION_ID}`);
    }).immediate();
  }

  #foreign(): ValidationError {
    return new ValidationError([`${this.file} holds another application's database; point the store URL at a file of its own`]);
  }

  /** Turns driver errors into this package's errors, one line each. */
  #wrap(err: unknown): unknown {
    if (err instanceof SchedulerError) return err;
    const code = sqliteCode(err);
    if (code === undefined) return err;
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      const locked = new Error(`the database is locked by another process (waited ${this.busyTimeoutMs} ms)`, { cause: err });
      return new ConnectionError(WHAT, this.#url, locked, { action: 'use', hint: 'retry, or raise ?busy_timeout=' });
    }
    if (code === 'SQLITE_NOTADB') {
      return new ValidationError([`${this.file} is not a SQLite database; point the store URL at the scheduler's own file`]);
    }
    return new ConnectionError(WHAT, this.#url, err, {
      action: 'use',
      hint: `check the file ${this.file}: that it exists, that this user may write it and its directory, and that the disk has room`,
    });
  }

  /**
   * Runs a synchronous read in one read transaction (one snapshot), with whether the store holds
   * revoked jobs then, which the read must leave out; if it does, the reaper is started.
   */
  #read<T>(fn: (c: Connection, revoked: boolean) => T): T {
    return this.#run((c) =>
      c.db.transaction(() => {
        const revoked = c.revoked();
        if (revoked) this.#reapSoon();
        return fn(c, revoked);
      })(),
    );
  }

  /**
   * Runs `fn` in a write transaction after reaping those of `ids` that are revoked (see "Revoked"):
   * `fn` then finds them gone. `fn` gets whether revoked jobs remain, to leave out.
   */
  #write<T>(ids: () => Iterable<string>, fn: (c: Connection, revoked: boolean) => T): T {
    return this.#run((c) =>
      c.write(() => {
        let revoked = c.revoked();
        if (revoked) {
          const named = [...ids()];
          if (named.length) {
            c.reap(named);
            revoked = c.revoked();
          }
          if (revoked) this.#reapSoon();
        }
        return fn(c, revoked);
      }),
    );
  }

  /**
   * The reaper: deletes the revoked jobs, `REAP_BATCH` a step, a pause between steps, until none
   * is left or the store closes. Whatever reads or writes the store starts it when it finds any,
   * so revoked jobs another process left are reaped here too; a step that fails (the file busy
   * past the timeout, say) stops it until the next finds them.
   */
  #reapSoon(): void {
    if (!this.#reaper || this.#reaping !== undefined || this.#connection === undefined) return;
    this.#reaping = setTimeout(() => {
      const c = this.#connection;
      let more = false;
      try {
        if (c) more = c.write(() => c.reapSome(REAP_BATCH));
      } catch {
        /* tried again when a read or write next finds revoked jobs */
      }
      this.#reaping = undefined;
      if (more) this.#reapSoon();
    }, REAP_PAUSE_MS);
    this.#reaping.unref();
  }

  /** Runs a synchronous database step with the connection, wrapping driver errors. */
  #run<T>(fn: (c: Connection) => T): T {
    const c = this.#open();
    try {
      return fn(c);
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  protected async doAdd(jobs: readonly NewJob[], duplicates: 'reject' | 'skip'): Promise<number> {
    const skip = duplicates === 'skip';
    // read before the write lock is taken
    const fields = jobs.map((job) => fieldsOf(job.entry));
    const { added, sooner } = this.#write(
      () => jobs.map((j) => j.id),
      (c, revoked) => {
        const first = c.firstScheduled(revoked);
        let added = 0;
        let earliest = Infinity;
        for (const [i, job] of jobs.entries()) {
          const tags = tagsColumn(job.tags);
          if (skip) {
            // a job already there keeps its own tags
            if (c.insertOrIgnore.run(job.id, job.dueAt, job.entry, tags, ...fields[i]!).changes === 0) continue;
          } else {
            try {
              c.insert.run(job.id, job.dueAt, job.entry, tags, ...fields[i]!);
            } catch (err) {
              if (isDuplicateId(err)) throw new DuplicateJobError(job.id);
              throw err;
            }
          }
          if (tags !== null) c.addTags.run(job.dueAt, job.id, tags);
          added++;
          if (job.dueAt < earliest) earliest = job.dueAt;
        }
        return { added, sooner: added > 0 && (first === undefined || earliest < first) ? earliest : undefined };
      },
    );
    if (sooner !== undefined) notify(this.#key, sooner);
    return added;
  }

  protected async doAddKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult> {
    const fields = fieldsOf(job.entry);
    const { result, sooner } = this.#write(
      () => [job.id],
      (c, revoked) => {
        // inside BEGIN IMMEDIATE: no other connection writes until this commits; a revoked
        // holder is reaped, and the key is free
        if (revoked) {
          const held = c.keyHolder.get(key);
          if (held !== undefined) c.reap([held]);
        }
        const holder = c.keyHolder.get(key);
        if (holder !== undefined && mode === 'keep') return { result: { id: holder, outcome: 'kept' } as KeyedAddResult, sooner: undefined };
        if (holder !== undefined && mode !== 'replace') throw new JobKeyTakenError(key, holder);
        // the replaced job is gone for good: its tag rows with it (jobs_tags_gone)
        if (holder !== undefined) c.removeById.run(holder);
        const first = c.firstScheduled(revoked);
        const tags = tagsColumn(job.tags);
        try {
          c.insertKeyed.run(job.id, job.dueAt, job.entry, key, tags, ...fields);
        } catch (err) {
          // thrown inside the transaction: the removal above is rolled back too
          if (isDuplicateId(err)) throw new DuplicateJobError(job.id);
          throw err;
        }
        if (tags !== null) c.addTags.run(job.dueAt, job.id, tags);
        const result: KeyedAddResult = holder === undefined ? { id: job.id, outcome: 'added' } : { id: job.id, outcome: 'replaced', replacedId: holder };
        return { result, sooner: first === undefined || job.dueAt < first ? job.dueAt : undefined };
      },
    );
    if (sooner !== undefined) notify(this.#key, sooner);
    return result;
  }

  protected async doRemove(id: string): Promise<boolean> {
    // its tag rows go with it, in this one statement (jobs_tags_gone)
    // a revoked job is gone already: reaped, and not removed again
    return this.#write(
      () => [id],
      (c) => c.remove.run(id).changes === 1,
    );
  }

  protected async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    // one transaction (one commit), each job's delete on its own: claimed ones are left alone
    return this.#write(
      () => ids,
      (c) => ids.filter((id) => c.remove.run(id).changes === 1),
    );
  }

  /**
   * `removeWhere`'s chunk: each scheduled job marked revoked, which is a write to the small
   * revoked table in due order rather than to every index of jobs; the reaper deletes them
   * afterwards (see "Revoked").
   */
  protected override async doRemoveMatches(ids: string[]): Promise<string[]> {
    const revoked = this.#run((c) => c.write(() => ids.filter((id) => c.revoke.run(id).changes === 1)));
    if (revoked.length) this.#reapSoon();
    return revoked;
  }

  protected async doRescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    // one transaction (one commit), each job's move one statement: its tag rows follow it
    // (jobs_tags_due), and one in flight or unknown changes nothing
    const { moved, sooner } = this.#write(
      () => moves.map((m) => m.id),
      (c, revoked) => {
        const first = c.firstScheduled(revoked);
        const moved: string[] = [];
        let earliest = Infinity;
        for (const m of moves) {
          if (c.reschedule.run(m.dueAt, m.id).changes === 0) continue;
          moved.push(m.id);
          if (m.dueAt < earliest) earliest = m.dueAt;
        }
        // as `reschedule` wakes: a job moved before every job scheduled until now
        return { moved, sooner: moved.length > 0 && (first === undefined || earliest < first) ? earliest : undefined };
      },
    );
    if (sooner !== undefined) notify(this.#key, sooner);
    return moved;
  }

  protected async doRetagMany(ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<RetagResult> {
    // one transaction (one commit); each job's tags column and tag rows change together, and
    // only as far as they differ: the rows of the tags it loses go, those of the tags it gains
    // come, at its due time
    return this.#write(
      () => ids,
      (c) => {
        const out: RetagResult = { changed: [], overLimit: [] };
        for (const id of ids) {
          const job = c.scheduledTags.get(id);
          if (job === undefined) continue; // in flight or unknown
          const old: string[] = job.tags === null ? [] : (JSON.parse(job.tags) as string[]);
          const tags = retagged(old, add, remove);
          if (tags.length > MAX_TAGS_PER_JOB) {
            out.overLimit.push(id);
            continue;
          }
          const lost = old.filter((t) => !tags.includes(t));
          const gained = tags.filter((t) => !old.includes(t));
          if (lost.length || gained.length) {
            c.setTags.run(tagsColumn(tags), id);
            if (lost.length) c.dropTags.run(JSON.stringify(lost), job.dueAt, id);
            if (gained.length) c.addTags.run(job.dueAt, id, JSON.stringify(gained));
          }
          out.changed.push(id);
        }
        return out;
      },
    );
  }

  protected async doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean> {
    const fields = entry === undefined ? undefined : fieldsOf(entry);
    const sooner = this.#write(
      () => [id],
      (c, revoked) => {
        const first = c.firstScheduled(revoked);
        const done = entry === undefined ? c.reschedule.run(dueAt, id) : c.rescheduleEntry.run(dueAt, entry, ...fields!, id);
        if (done.changes === 0) return undefined;
        return first === undefined || dueAt < first ? dueAt : null;
      },
    );
    if (sooner === undefined) return false;
    if (sooner !== null) notify(this.#key, sooner);
    return true;
  }

  protected async doClaim(o: ClaimQuery, { token, deadline }: Lease): Promise<ClaimedJob[]> {
    return this.#write(
      () => [],
      (c, revoked) => {
        let rows = c.expired.all(o.now, o.limit);
        if (rows.length < o.limit) rows = rows.concat((revoked ? c.dueLive : c.due).all(o.until, o.limit - rows.length));
        const out: ClaimedJob[] = [];
        for (const r of rows) {
          c.lease.run(deadline, r.id);
          const attempts = r.failures === null ? undefined : decodeAttempts(r.failures);
          out.push(attempts ? { id: r.id, dueAt: r.dueAt, entry: r.entry, token, attempts } : { id: r.id, dueAt: r.dueAt, entry: r.entry, token });
        }
        return out;
      },
    );
  }

  protected async doRenew(claims: readonly ClaimedJob[], lease: Lease): Promise<readonly ClaimedJob[]> {
    return this.#run((c) => c.write(() => claims.filter((claim) => c.renew.run(lease.deadline, claim.id, Number(claim.token)).changes === 1)));
  }

  protected async doStillHeld(claims: readonly ClaimedJob[]): Promise<readonly ClaimedJob[]> {
    return this.#run((c) => claims.filter((claim) => c.held.get(claim.id, Number(claim.token)) !== undefined));
  }

  protected async doAcknowledge(claims: readonly ClaimedJob[]): Promise<void> {
    this.#run((c) =>
      c.write(() => {
        for (const claim of claims) c.ack.run(claim.id, Number(claim.token));
      }),
    );
  }

  protected async doRelease(claims: readonly ClaimedJob[]): Promise<void> {
    this.#run((c) =>
      c.write(() => {
        for (const claim of claims) c.release.run(claim.dueAt, claim.id, Number(claim.token));
      }),
    );
  }

  protected async doRetryLater(retries: readonly Retry[]): Promise<void> {
    this.#run((c) =>
      c.write(() => {
        for (const r of retries) c.retry.run(r.retryAt, encodeAttempts(r.attempts), r.claim.id, Number(r.claim.token));
      }),
    );
  }

  protected async doBury(burials: readonly Burial[]): Promise<void> {
    this.#run((c) =>
      c.write(() => {
        for (const b of burials) {
          const taken = c.take.get(b.claim.id, Number(b.claim.token));
          if (taken === undefined) continue; // no longer ours
          // its tags move into the dead letter's own record; their rows went with the job (jobs_tags_gone)
          const d = deadLetterOf(b, taken.entry);
          c.bury.run(d.id, d.entry, d.dueAt, d.reason, d.error, d.attempts, d.firstFailedAt ?? null, d.diedAt, taken.tags);
        }
      }),
    );
  }

  protected async doDeadLetters(after: Position | undefined, read: number): Promise<readonly DeadLetter[]> {
    const rows = this.#run((c) => (after ? c.deadAfter.all(after.dueAt, after.id, read) : c.deadFirst.all(read)));
    return rows.map(deadLetter);
  }

  protected async doGetDead(id: string): Promise<DeadLetter | undefined> {
    const row = this.#run((c) => c.deadGet.get(id));
    return row && deadLetter(row);
  }

  protected async doReviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]> {
    const { outcomes, sooner } = this.#write(
      () => ids,
      (c, revoked) => {
        const first = c.firstScheduled(revoked);
        let revived = false;
        const outcomes = ids.map((id): ReviveOutcome => {
          const d = c.deadGet.get(id);
          if (!d) return 'not_dead';
          if (d.entry === null) return 'no_entry';
          if (c.hasId.get(id) !== undefined) return 'id_taken';
          // the job gets its tags back from the dead letter's record
          c.insert.run(id, dueAt, d.entry, d.tags, ...fieldsOf(d.entry));
          if (d.tags !== null) c.addTags.run(dueAt, id, d.tags);
          c.deadDelete.run(id);
          revived = true;
          return 'scheduled';
        });
        return { outcomes, sooner: revived && (first === undefined || dueAt < first) };
      },
    );
    if (sooner) notify(this.#key, dueAt);
    return outcomes;
  }

  protected async doPurgeDead(ids: readonly string[] | 'all'): Promise<number> {
    return this.#run((c) =>
      c.write(() => {
        if (ids === 'all') return c.deadDeleteAll.run().changes;
        let n = 0;
        for (const id of ids) n += c.deadDelete.run(id).changes;
        return n;
      }),
    );
  }

  protected async doGet(id: string): Promise<StoredJob | undefined> {
    const row = this.#read((c, revoked) => (revoked && c.isRevoked.get(id) !== undefined ? undefined : c.get.get(id)));
    if (!row) return undefined;
    if (row.lease !== null) return { id, dueAt: row.lease, entry: row.entry, state: 'in_flight' };
    return { id, dueAt: row.dueAt, entry: row.entry, state: 'scheduled', ...(row.jobKey !== null && { key: row.jobKey }) };
  }

  protected async doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>> {
    // a lookup by id each (the jobs_id index): the column is read with the job's row
    const out = new Map<string, readonly string[]>();
    this.#read((c, revoked) => {
      for (const id of ids) {
        if (revoked && c.isRevoked.get(id) !== undefined) continue;
        const tags = c.tagsOf.get(id);
        if (typeof tags === 'string') out.set(id, JSON.parse(tags) as string[]);
      }
    });
    return out;
  }

  protected async doList(r: ListRange, read: number): Promise<readonly ListedJob[]> {
    const from = r.from ?? -Infinity;
    const to = r.to ?? Infinity;
    const after = r.after;
    return this.#read((c, revoked) => {
      if (filtersJobs(r)) return c.search.list(r, read, revoked);
      // past the cursor, every job is due at or after it: start there unless `from` is later
      if (after && after.dueAt >= from) return (revoked ? c.listAfterLive : c.listAfter).all(after.dueAt, after.id, to, read);
      return (revoked ? c.listFromLive : c.listFrom).all(from, to, read);
    });
  }

  protected override async doCountWhere(r: ListRange): Promise<number> {
    return this.#read((c, revoked) => c.search.count(r, revoked));
  }

  protected override async doHistogram(r: ListRange & { from: number; to: number }, bucketSeconds: number): Promise<HistogramBucket[]> {
    return this.#read((c, revoked) => c.search.histogram(r, bucketSeconds, revoked));
  }

  protected async doCount(): Promise<StoreCounts> {
    return this.#read((c, revoked) => {
      const counts = c.count.get()!;
      // every revoked job is a scheduled one, counted in jobs_due until reaped
      return revoked ? { ...counts, scheduled: counts.scheduled - c.revokedCount.get()! } : counts;
    });
  }

  protected async doNextDueAt(): Promise<number | undefined> {
    const { due, lease } = this.#read((c, revoked) => {
      const next = c.nextDue.get()!;
      return revoked ? { ...next, due: c.firstScheduled(true) ?? null } : next;
    });
    if (due === null) return lease ?? undefined;
    return lease === null ? due : Math.min(due, lease);
  }

  /**
   * Calls `onSooner(dueAt)` when an `add`, `reschedule` or `rescheduleMany` through any SqliteStore
   * in this process, on this file, makes a job due before every other. Changes made by other processes are not
   * heard: the dispatcher daemon finds them by polling (at most a second later).
   */
  async watch(onSooner: (dueAt: number) => void): Promise<() => Promise<void>> {
    this.assertOpen();
    const listener = (dueAt: number) => onSooner(dueAt);
    let set = watchersByFile.get(this.#key);
    if (!set) watchersByFile.set(this.#key, (set = new Set()));
    set.add(listener);
    this.#watchers.add(listener);
    return async () => this.#unwatch(listener);
  }

  #unwatch(listener: (dueAt: number) => void): void {
    this.#watchers.delete(listener);
    const set = watchersByFile.get(this.#key);
    set?.delete(listener);
    if (set?.size === 0) watchersByFile.delete(this.#key);
  }

  /**
   * `sqlite:<device>:<inode>` of the database file, so the same file reached by another path (a
   * symlink, a hard link, a relative path) is the same store; `sqlite:path:<real path>` for a
   * file not made yet; each `:memory:` database its own. Only looks at the file: opens, creates
   * and migrates nothing.
   */
  protected async doIdentity(): Promise<string> {
    if (this.file === ':memory:') return `sqlite:${this.#key}`;
    try {
      const s = statSync(this.file, { bigint: true });
      return `sqlite:${s.dev}:${s.ino}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConnectionError(WHAT, this.#url, err);
    }
    let dir = dirname(this.file);
    try {
      dir = realpathSync(dir);
    } catch {
      /* a missing directory: the path as given (opening the store will say it is missing) */
    }
    return `sqlite:path:${join(dir, basename(this.file))}`;
  }

  protected async doClose(): Promise<void> {
    clearTimeout(this.#reaping);
    this.#reaping = undefined;
    for (const w of [...this.#watchers]) this.#unwatch(w);
    const c = this.#connection;
    this.#connection = undefined;
    c?.db.close();
  }
}
