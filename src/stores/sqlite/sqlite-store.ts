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
 *            A list by tags reads job_tags, never every job (see "Listing by tags" below).
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
 * Listing by tags (`list({ tags: { all, any } })`): job_tags serves it, never a read of every
 * job. One statement reads a driver's rows and checks them against the rest of the filter:
 * - the driver is one tag of `all`, or the tags of `any` together: a tag's rows from the page's
 *   start (the cursor, or `from`) to `to` are one range of job_tags' primary key, already in due
 *   order; several tags' ranges are merged lazily (MERGE (UNION): no sort, each job once);
 * - each driver row is checked by seeks in job_tags (its primary key, or the job_tags_job index
 *   that covers (job_id, tag, due_at)), one per tag tried: every other tag of `all` (sparsest
 *   first, stopping at one the job lacks) and one of `any` unless `any` drives; only then is
 *   the job read, by jobs' primary key (due_at, id), and a job in flight left out (a claim
 *   leaves its tag rows);
 * - the statement stops at the page (`read` rows), so the driver is read only up to the page's
 *   last match.
 * With one way to drive (a single tag of `all` and no `any`, or only `any`) that way drives.
 * With more, each way's first `PROBE_ROWS` rows from the page's start are counted first: the
 * way with the fewest, or (all having that many) whose rows reach furthest in due time, is the
 * sparsest there, and reads the fewest rows for the page.
 * Cost: one tag's page is a seek and the page's rows, however many jobs hold the tag; any of
 * several tags, about the page's rows in all; tags held together, the probes and the sparsest
 * way's rows up to the page's last match, at most all its rows in the range (when few jobs hold
 * them all: e.g. two tags of half the jobs each, never held together, read half the jobs).
 *
 * Wake-ups: SQLite has no notifications. `watch` hears about jobs made due sooner than all
 * others by `add` or `reschedule` through any SqliteStore in THIS process on the same file; jobs
 * added by other processes are found by the dispatcher daemon's poll, at most a second later.
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
import { StoreBase, type ClaimQuery, type Lease, type ListRange, type ListedJob, type Position } from '../base.js';
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
  type JobMove,
  type RetagResult,
  type StoreCounts,
  type StoredJob,
} from '../store.js';

export const DEFAULT_SQLITE_FILE = 'celery-longterm-scheduler.db';
/** The schema this code writes; `PRAGMA user_version` of a file it made. */
export const SQLITE_SCHEMA_VERSION = 5;
/** `PRAGMA application_id` of a file this code made: 'CLTS'. */
export const SQLITE_APPLICATION_ID = 0x434c5453;

const WHAT = 'long-term scheduler store (SQLite)';
const FORMS = 'use sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:';
/** Page cache per connection, in KiB (negative for KiB in the pragma): keeps bulk adds fast. */
const CACHE_KIB = 32 * 1024;

/** How far a list by tags probes each way to drive it, in rows (see "Listing by tags"). */
const PROBE_ROWS = 256;

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
];

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

/** Where a list's page starts: at `from` (inclusive), or past a cursor's position. */
type PageStart = { from: number } | { after: Position };

/** A list by tags' named parameters: the driver's tags, the checks' JSON arrays, the bounds, the page's rows. */
type TagParams = Record<string, string | number>;

/** One way to drive a list by tags: the tags whose rows are read, and what is left to check. */
interface TagWay {
  drive: readonly string[];
  /** tags of `all` the driver does not give */
  all: readonly string[];
  /** `any`, when the driver does not give it; empty otherwise */
  any: readonly string[];
}

/**
 * The job_tags rows (due_at, job_id) of the `n` tags @t0.. from the page's start to @to, in due
 * order, each job once: one primary-key range per tag, several merged (MERGE (UNION), no sort).
 */
function drivenSql(n: number, start: 'from' | 'after'): string {
  const past = start === 'after' ? '(due_at, job_id) > (@afterDue, @afterId)' : 'due_at >= @from';
  const arm = (i: number) => `SELECT due_at, job_id FROM job_tags WHERE tag = @t${i} AND ${past} AND due_at <= @to`;
  return `${Array.from({ length: n }, (_, i) => arm(i)).join(' UNION ')} ORDER BY 1, 2`;
}

/**
 * A way's page: its driver rows checked for the other tags, then joined to their scheduled jobs.
 * The checks name only the driver row, so they run before the join: a row that fails them costs
 * a seek in job_tags (small, cached) for each tag tried, not a read of the job (a seek in the
 * far larger jobs). A check is a seek per tag on (tag, due_at, job_id) (job_tags' primary key,
 * or the job_tags_job index, which covers it), in the order given: `all` stops at the first
 * tag the job lacks, `any` at the first it holds.
 * (Their LIMIT keeps each check a subquery of the driver row: without it, SQLite may turn an
 * EXISTS into a join placed after jobs, reading every driver row's job.)
 */
function tagListSql(way: TagWay, start: 'from' | 'after'): string {
  const holds = 'job_tags x WHERE x.tag = w.value AND x.due_at = d.due_at AND x.job_id = d.job_id';
  return [
    `SELECT j.id, j.due_at AS dueAt, j.entry FROM (${drivenSql(way.drive.length, start)}) d`,
    'CROSS JOIN jobs j ON j.due_at = d.due_at AND j.id = d.job_id WHERE',
    ...(way.all.length ? [`NOT EXISTS (SELECT 1 FROM json_each(@all) w WHERE NOT EXISTS (SELECT 1 FROM ${holds}) LIMIT 1) AND`] : []),
    ...(way.any.length ? [`EXISTS (SELECT 1 FROM json_each(@any) w WHERE EXISTS (SELECT 1 FROM ${holds}) LIMIT 1) AND`] : []),
    'j.lease IS NULL ORDER BY d.due_at, d.job_id LIMIT @read',
  ].join(' ');
}

/** A way's first `PROBE_ROWS` driver rows from the page's start: how many, and the last due time. */
function tagProbeSql(way: TagWay, start: 'from' | 'after'): string {
  return `SELECT count(*) AS rows, max(due_at) AS reach FROM (SELECT due_at FROM (${drivenSql(way.drive.length, start)}) LIMIT ${PROBE_ROWS})`;
}

/** A way's probe (`tagProbeSql`): reach is NULL when it has no rows. */
interface Probe {
  rows: number;
  reach: number | null;
}

/** The open database and its prepared statements and transactions. */
class Connection {
  readonly db: Database.Database;
  readonly insert: Database.Statement<[string, number, string, TagsColumn]>;
  readonly insertOrIgnore: Database.Statement<[string, number, string, TagsColumn]>;
  readonly insertKeyed: Database.Statement<[string, number, string, string, TagsColumn]>;
  readonly keyHolder: Database.Statement<[string], string>;
  readonly removeById: Database.Statement<[string]>;
  readonly firstDue: Database.Statement<[], number>;
  readonly remove: Database.Statement<[string]>;
  readonly reschedule: Database.Statement<[number, string | null, string]>;
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
  readonly get: Database.Statement<[string], { dueAt: number; entry: string; lease: number | null }>;
  readonly listFrom: Database.Statement<[number, number, number], Row>;
  readonly listAfter: Database.Statement<[number, string, number, number], Row>;
  readonly count: Database.Statement<[], StoreCounts>;
  readonly nextDue: Database.Statement<[], { due: number | null; lease: number | null }>;
  /** the list by tags statements, by SQL: a few shapes (tags driving, checks, page start) */
  readonly #byTags = new Map<string, Database.Statement<[TagParams], unknown>>();

  constructor(db: Database.Database) {
    this.db = db;
    const jobColumns = 'id, due_at AS dueAt, entry';
    this.insert = db.prepare('INSERT INTO jobs (id, due_at, entry, tags) VALUES (?, ?, ?, ?)');
    this.insertOrIgnore = db.prepare('INSERT OR IGNORE INTO jobs (id, due_at, entry, tags) VALUES (?, ?, ?, ?)');
    this.insertKeyed = db.prepare('INSERT INTO jobs (id, due_at, entry, job_key, tags) VALUES (?, ?, ?, ?, ?)');
    this.keyHolder = db.prepare<[string], string>('SELECT id FROM jobs WHERE job_key = ?').pluck();
    this.removeById = db.prepare('DELETE FROM jobs WHERE id = ?');
    this.firstDue = db.prepare<[], number>('SELECT due_at FROM jobs WHERE lease IS NULL ORDER BY due_at, id LIMIT 1').pluck();
    this.remove = db.prepare('DELETE FROM jobs WHERE id = ? AND lease IS NULL');
    this.reschedule = db.prepare('UPDATE jobs SET due_at = ?, entry = coalesce(?, entry) WHERE id = ? AND lease IS NULL');
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
    this.get = db.prepare('SELECT due_at AS dueAt, entry, lease FROM jobs WHERE id = ?');
    // two forms, so that the index range starts where the page does
    this.listFrom = db.prepare(`SELECT ${jobColumns} FROM jobs WHERE lease IS NULL AND due_at >= ? AND due_at <= ? ORDER BY due_at, id LIMIT ?`);
    this.listAfter = db.prepare(`SELECT ${jobColumns} FROM jobs WHERE lease IS NULL AND (due_at, id) > (?, ?) AND due_at <= ? ORDER BY due_at, id LIMIT ?`);
    this.count = db.prepare(
      'SELECT (SELECT count(*) FROM jobs WHERE lease IS NULL) AS scheduled, (SELECT count(*) FROM jobs WHERE lease IS NOT NULL) AS inFlight, (SELECT count(*) FROM dead) AS dead',
    );
    this.nextDue = db.prepare(
      'SELECT (SELECT min(due_at) FROM jobs WHERE lease IS NULL) AS due, (SELECT min(lease) FROM jobs WHERE lease IS NOT NULL) AS lease',
    );
  }

  /** Up to `read` scheduled jobs holding `tags` from `start` to `to`, in due order (see "Listing by tags"). */
  listByTags(tags: { all: readonly string[]; any: readonly string[] }, start: PageStart, to: number, read: number): Row[] {
    const form = 'after' in start ? 'after' : 'from';
    const bounds: TagParams = 'after' in start ? { afterDue: start.after.dueAt, afterId: start.after.id, to } : { from: start.from, to };
    const drive = (way: TagWay): TagParams => ({ ...bounds, ...Object.fromEntries(way.drive.map((t, i) => [`t${i}`, t])) });
    const ways: TagWay[] = tags.all.map((t) => ({ drive: [t], all: tags.all.filter((u) => u !== t), any: tags.any }));
    if (tags.any.length) ways.push({ drive: tags.any, all: tags.all, any: [] });
    let way = ways[0]!;
    if (ways.length > 1) {
      // sparsest first: fewest rows from the page's start, then (all having PROBE_ROWS) the
      // furthest reach; its rows are the fewest the page needs read
      const probes = new Map(ways.map((w) => [w, this.#byTagsStatement(tagProbeSql(w, form)).get(drive(w)) as Probe]));
      const sparsest = (v: TagWay, w: TagWay) => {
        const [p, q] = [probes.get(v)!, probes.get(w)!];
        return p.rows - q.rows || (q.reach ?? 0) - (p.reach ?? 0);
      };
      way = [...ways].sort(sparsest)[0]!;
      // the job lacks a sparse tag of `all` most often: check those first
      const rank = new Map(
        ways
          .slice(0, tags.all.length)
          .sort(sparsest)
          .map((w, i) => [w.drive[0]!, i]),
      );
      way = { ...way, all: [...way.all].sort((t, u) => rank.get(t)! - rank.get(u)!) };
    }
    const params: TagParams = {
      ...drive(way),
      ...(way.all.length && { all: JSON.stringify(way.all) }),
      ...(way.any.length && { any: JSON.stringify(way.any) }),
      read,
    };
    return this.#byTagsStatement(tagListSql(way, form)).all(params) as Row[];
  }

  #byTagsStatement(sql: string): Database.Statement<[TagParams], unknown> {
    let statement = this.#byTags.get(sql);
    if (statement === undefined) this.#byTags.set(sql, (statement = this.db.prepare<[TagParams]>(sql)));
    return statement;
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
  readonly #url: string;
  /** the in-process wake-up registry's key: the file, or a private name for :memory: */
  readonly #key: string;
  readonly #watchers = new Set<(dueAt: number) => void>();
  #connection: Connection | undefined;

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
    if (problems.length) throw new ValidationError(problems);
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
    const { added, sooner } = this.#run((c) =>
      c.write(() => {
        const first = c.firstDue.get();
        let added = 0;
        let earliest = Infinity;
        for (const job of jobs) {
          const tags = tagsColumn(job.tags);
          if (skip) {
            // a job already there keeps its own tags
            if (c.insertOrIgnore.run(job.id, job.dueAt, job.entry, tags).changes === 0) continue;
          } else {
            try {
              c.insert.run(job.id, job.dueAt, job.entry, tags);
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
      }),
    );
    if (sooner !== undefined) notify(this.#key, sooner);
    return added;
  }

  protected async doAddKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult> {
    const { result, sooner } = this.#run((c) =>
      c.write(() => {
        // inside BEGIN IMMEDIATE: no other connection writes until this commits
        const holder = c.keyHolder.get(key);
        if (holder !== undefined && mode === 'keep') return { result: { id: holder, outcome: 'kept' } as KeyedAddResult, sooner: undefined };
        if (holder !== undefined && mode !== 'replace') throw new JobKeyTakenError(key, holder);
        // the replaced job is gone for good: its tag rows with it (jobs_tags_gone)
        if (holder !== undefined) c.removeById.run(holder);
        const first = c.firstDue.get();
        const tags = tagsColumn(job.tags);
        try {
          c.insertKeyed.run(job.id, job.dueAt, job.entry, key, tags);
        } catch (err) {
          // thrown inside the transaction: the removal above is rolled back too
          if (isDuplicateId(err)) throw new DuplicateJobError(job.id);
          throw err;
        }
        if (tags !== null) c.addTags.run(job.dueAt, job.id, tags);
        const result: KeyedAddResult = holder === undefined ? { id: job.id, outcome: 'added' } : { id: job.id, outcome: 'replaced', replacedId: holder };
        return { result, sooner: first === undefined || job.dueAt < first ? job.dueAt : undefined };
      }),
    );
    if (sooner !== undefined) notify(this.#key, sooner);
    return result;
  }

  protected async doRemove(id: string): Promise<boolean> {
    // its tag rows go with it, in this one statement (jobs_tags_gone)
    return this.#run((c) => c.remove.run(id).changes === 1);
  }

  protected async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    // one transaction (one commit), each job's delete on its own: claimed ones are left alone
    return this.#run((c) => c.write(() => ids.filter((id) => c.remove.run(id).changes === 1)));
  }

  // TODO(issue 13): batched, and retag
  protected async doRescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    const moved: string[] = [];
    for (const m of moves) if (await this.doReschedule(m.id, m.dueAt, undefined)) moved.push(m.id);
    return moved;
  }

  protected async doRetagMany(_ids: readonly string[], _add: readonly string[], _remove: readonly string[]): Promise<RetagResult> {
    throw new Error('retagMany: not yet');
  }

  protected async doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean> {
    const sooner = this.#run((c) =>
      c.write(() => {
        const first = c.firstDue.get();
        if (c.reschedule.run(dueAt, entry ?? null, id).changes === 0) return undefined;
        return first === undefined || dueAt < first ? dueAt : null;
      }),
    );
    if (sooner === undefined) return false;
    if (sooner !== null) notify(this.#key, sooner);
    return true;
  }

  protected async doClaim(o: ClaimQuery, { token, deadline }: Lease): Promise<ClaimedJob[]> {
    return this.#run((c) =>
      c.write(() => {
        let rows = c.expired.all(o.now, o.limit);
        if (rows.length < o.limit) rows = rows.concat(c.due.all(o.until, o.limit - rows.length));
        const out: ClaimedJob[] = [];
        for (const r of rows) {
          c.lease.run(deadline, r.id);
          const attempts = r.failures === null ? undefined : decodeAttempts(r.failures);
          out.push(attempts ? { id: r.id, dueAt: r.dueAt, entry: r.entry, token, attempts } : { id: r.id, dueAt: r.dueAt, entry: r.entry, token });
        }
        return out;
      }),
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
    const { outcomes, sooner } = this.#run((c) =>
      c.write(() => {
        const first = c.firstDue.get();
        let revived = false;
        const outcomes = ids.map((id): ReviveOutcome => {
          const d = c.deadGet.get(id);
          if (!d) return 'not_dead';
          if (d.entry === null) return 'no_entry';
          if (c.hasId.get(id) !== undefined) return 'id_taken';
          // the job gets its tags back from the dead letter's record
          c.insert.run(id, dueAt, d.entry, d.tags);
          if (d.tags !== null) c.addTags.run(dueAt, id, d.tags);
          c.deadDelete.run(id);
          revived = true;
          return 'scheduled';
        });
        return { outcomes, sooner: revived && (first === undefined || dueAt < first) };
      }),
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
    const row = this.#run((c) => c.get.get(id));
    if (!row) return undefined;
    return row.lease === null ? { id, dueAt: row.dueAt, entry: row.entry, state: 'scheduled' } : { id, dueAt: row.lease, entry: row.entry, state: 'in_flight' };
  }

  protected async doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>> {
    // a lookup by id each (the jobs_id index): the column is read with the job's row
    const out = new Map<string, readonly string[]>();
    this.#run((c) => {
      for (const id of ids) {
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
    // past the cursor, every job is due at or after it: start there unless `from` is later
    const start: PageStart = after && after.dueAt >= from ? { after } : { from };
    const tags = r.tags;
    if (tags) return this.#run((c) => c.listByTags(tags, start, to, read));
    return this.#run((c) => ('after' in start ? c.listAfter.all(start.after.dueAt, start.after.id, to, read) : c.listFrom.all(from, to, read)));
  }

  protected async doCount(): Promise<StoreCounts> {
    return this.#run((c) => c.count.get()!);
  }

  protected async doNextDueAt(): Promise<number | undefined> {
    const { due, lease } = this.#run((c) => c.nextDue.get()!);
    if (due === null) return lease ?? undefined;
    return lease === null ? due : Math.min(due, lease);
  }

  /**
   * Calls `onSooner(dueAt)` when an `add` or `reschedule` through any SqliteStore in this process,
   * on this file, makes a job due before every other. Changes made by other processes are not
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
    for (const w of [...this.#watchers]) this.#unwatch(w);
    const c = this.#connection;
    this.#connection = undefined;
    c?.db.close();
  }
}
