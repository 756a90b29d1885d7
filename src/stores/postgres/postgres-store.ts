/**
 * The PostgreSQL store. Everything lives in one schema (default `celery_longterm_scheduler`):
 *
 *   jobs(id text COLLATE "C" PRIMARY KEY, due_at float8, entry text, lease float8 NULL,
 *        job_key text COLLATE "C" NULL, failures text NULL, tagged boolean,
 *        task text COLLATE "C" NULL, queue text COLLATE "C" NULL)
 *     lease NULL: the job is scheduled, due at `due_at`;
 *     lease set:  the job is in flight, and `lease` is the lease deadline, which is also the
 *                 claim's token (token = String(lease), as in the other stores).
 *     jobs_scheduled_idx (due_at, id) WHERE lease IS NULL     -- claim and list, in due order
 *     jobs_in_flight_idx (lease, id)  WHERE lease IS NOT NULL -- expired leases
 *     jobs_job_key_idx UNIQUE (job_key) WHERE job_key IS NOT NULL -- one scheduled job per
 *       deduplication key (and a key prefix, a range of it); a claim sets job_key NULL, so jobs
 *       in flight hold no key
 *     jobs_task_idx (task, due_at, id) WHERE lease IS NULL AND task IS NOT NULL
 *     jobs_queue_idx (queue, due_at, id) WHERE lease IS NULL AND queue IS NOT NULL
 *     jobs_no_queue_idx (due_at, id) WHERE lease IS NULL AND queue IS NULL
 *       -- a task's, a queue's and the queue-less jobs in due order (an IS NULL condition on
 *       the queue index would give no order, so those have an index of their own)
 *     failures: the job's failed attempts as JSON (see `encodeAttempts`)
 *     tagged: whether the job has rows in job_tags (set when it is added, and by retagMany)
 *     task, queue: what `indexFieldsOf` reads of the entry, written with every entry by the
 *       statement that writes it (add, addKeyed, reschedule with an entry, reviveDead); NULL
 *       for none, '' for a name PostgreSQL text cannot hold (see `indexColumn`). Not generated
 *       in SQL: any entry string is kept, JSON or not (migration 6 filled them for the jobs
 *       there, in SQL that reads entries as JSON.parse does).
 *   job_tags(tag text COLLATE "C", job_id text COLLATE "C", pos int2, due_at float8) -- a live
 *       job's tags, a row each, `pos` the order given, `due_at` the job's (a copy of jobs.due_at,
 *       kept by the statements that change it); never in the entry, so the Python package reads
 *       every entry as it wrote it
 *     PRIMARY KEY (tag, due_at, job_id)                   -- a tag's jobs in due order (list by tags)
 *     job_tags_by_job_idx UNIQUE (job_id, pos) INCLUDE (tag) -- a job's tags, in order
 *   dead(id, entry, due_at, reason, error, attempts, first_failed_at, died_at, tags text[] NULL)
 *       -- dead letters, each with its own tags (NULL: none)
 *     dead_by_time_idx (died_at, id)
 *   schema_migrations(version, applied_at)                    -- see migrations.ts
 *
 * Ids compare by bytes (COLLATE "C"), so due order (due_at, id) is the same as in every store,
 * and the partial indexes keep a claim an index range scan with millions of future jobs.
 *
 * Claiming is one statement: expired leases (oldest first), then due jobs in due order, both
 * `FOR UPDATE SKIP LOCKED` with a LIMIT, then one UPDATE setting the new lease, of the rows named
 * by `id = ANY (ARRAY(...))`: a primary-key lookup per row whatever the statistics say (joined to
 * the picked rows instead, a fresh or unanalysed table was read whole for every batch: a hash join
 * over a sequential scan). Two dispatchers
 * racing never get the same row: one skips the rows the other holds, and a row whose lease was
 * set meanwhile no longer matches `lease IS NULL` when it is re-checked. Acknowledge, release,
 * renew, retryLater and bury touch only rows whose lease still equals their claim's token, so a
 * dispatcher whose lease expired cannot undo the work of the one that took over.
 *
 * Each add (all of it, or none: one transaction), reschedule and rescheduleMany sends
 * `pg_notify` on the `<schema>_wakeup` channel when it makes a job due before every other
 * scheduled one; the payload is the due time. PostgreSQL delivers it on commit, to `watch()`ers
 * in any process.
 *
 * `addKeyed` is one transaction that first takes a transaction-scoped advisory lock on the key,
 * so concurrent adds of one key (from any connection or process) run one after another; the
 * unique index is the backstop. A claim racing with it is serialised by the holder's row lock
 * (SELECT ... FOR UPDATE): once the claim commits, the row no longer holds the key.
 *
 * Tags are written and deleted in the statement (or transaction) that adds or deletes their job:
 * add and addKeyed insert them with the job, acknowledge, remove and an addKeyed replace delete
 * them with it, bury moves them into the dead letter's `tags` (DELETE ... RETURNING, then the
 * INSERT into dead, one statement), reviveDead moves them back. Every delete of jobs reads
 * `tagged` and deletes from job_tags only the ids of tagged jobs (`= ANY (ARRAY(...))`, an index
 * lookup each), so an untagged job costs nothing more there. Reschedule(Many), release and
 * retryLater, which change a job's due time, set it in the job's tag rows too (again only for
 * tagged jobs); claim and renew change no due time and touch only jobs rows. No foreign key: its
 * per-row trigger would cost every acknowledge, tagged or not.
 *
 * retagMany changes the tag rows of jobs that stay: it locks the scheduled jobs (FOR UPDATE, in
 * id order), then reads and rewrites their rows in later statements of its transaction. A
 * statement started before it commits sees the rows it replaced, not those it wrote (its
 * snapshot is older), even after waiting for the job's lock; so the writers of scheduled jobs
 * that could meet it, remove(Many) and reschedule(Many), change jobs in one statement and the
 * tag rows in a second one of the same transaction, whose snapshot is taken after the locks are
 * held (one statement left the rows a retag wrote behind, of a deleted job, or at the old due
 * time). addKeyed's replace already works so (SELECT ... FOR UPDATE first). The writers of jobs
 * in flight (acknowledge, release, retryLater, bury) never meet it: it leaves those alone, and a
 * claim skips the jobs it holds.
 *
 * A list by tags walks the primary key of job_tags in due order, a leapfrog join of the tags
 * asked for (see `#listTagged`): a few index seeks per job of the rarest tag passed on the way,
 * never a sort of a tag's jobs; in-flight jobs are in job_tags too (their due time is the one
 * they were claimed at) and are skipped by the lookup in jobs, which also checks the other
 * filters. A list without tags is one query the planner serves from the index of its task or
 * queue (several queues: one each, merged in due order), key or id range (prefixes are ranges,
 * `prefixEnd`), or due order. Counts and histograms are SQL too (`#counting`): index-only counts
 * where an index holds what is asked (the visibility map permitting: a table not vacuumed since
 * its rows were written is read row by row), a count per bucket over an index range.
 *
 * What every store does the same (the checks, the closed state, lease arithmetic, paging) is
 * `StoreBase`'s (../base.ts); this file is the rest.
 */
import type pg from 'pg';
import { loadDriver } from '../../util/drivers.js';
import { DuplicateJobError, JobKeyTakenError, SchemaVersionError, ValidationError } from '../../util/errors.js';
import type { NewJob } from '../../job/types.js';
import { indexFieldsOf } from '../../job/entry.js';
import { MAX_TAGS_PER_JOB } from '../../job/tags.js';
import { isWellFormed } from '../../celery/limits.js';
import { StoreBase, retagged, type ClaimQuery, type Lease, type ListRange, type ListedJob, type Position } from '../base.js';
import {
  deadLetterOf,
  decodeAttempts,
  encodeAttempts,
  type Burial,
  type DeadLetter,
  type DeadReason,
  type Retry,
  type ReviveOutcome,
  type ClaimedJob,
  type JobKeyMode,
  type KeyedAddResult,
  type HistogramBucket,
  type JobMove,
  type RetagResult,
  type StoreCounts,
  type StoredJob,
} from '../store.js';
import { connectionConfig, parsePostgresUrl, quoteIdent, wrapPgError, type PostgresTarget, type PostgresUrlOptions } from './connection.js';
import { applyMigrations, currentVersion, SCHEMA_VERSION } from './migrations.js';

export interface PostgresStoreOptions extends PostgresUrlOptions {
  /** apply pending schema migrations on first use (default: false, a `SchemaVersionError` instead) */
  migrate?: boolean;
  /** the most connections in the pool (default 10) */
  maxConnections?: number;
}

/** Rows per INSERT statement of an add (all in one transaction). */
const ADD_CHUNK = 5000;

/** float8 columns come back as strings; PostgreSQL prints the shortest exact form. */
const num = (v: string | number): number => Number(v);

const DEAD_COLUMNS = 'id, entry, due_at, reason, error, attempts, first_failed_at, died_at, tags';

interface DeadRow {
  id: string;
  entry: string | null;
  due_at: string | number;
  reason: DeadReason;
  error: string;
  attempts: number;
  first_failed_at: string | number | null;
  died_at: string | number;
  tags: string[] | null;
}

function deadLetter(r: DeadRow): DeadLetter {
  const d: DeadLetter = { id: r.id, entry: r.entry, dueAt: num(r.due_at), reason: r.reason, error: r.error, attempts: r.attempts, diedAt: num(r.died_at) };
  return {
    ...d,
    ...(r.first_failed_at !== null && { firstFailedAt: num(r.first_failed_at) }),
    ...(r.tags !== null && r.tags.length > 0 && { tags: r.tags }),
  };
}

const hasTags = (job: NewJob): boolean => (job.tags?.length ?? 0) > 0;

/**
 * A task or queue name (`indexFieldsOf`) as the jobs columns hold it: NULL for none, '' for one
 * that PostgreSQL text cannot hold (a NUL or a lone surrogate, which an entry can only spell as
 * a \u escape). '' is no name a filter asks for (each is a non-empty string), so such a job
 * matches no task or queue filter; so would it in every store, but for a filter naming it
 * exactly, which is only possible for a name with a NUL (see `sendable`).
 */
function indexColumn(name: string | null): string | null {
  return name === null ? null : name.includes('\u0000') || !isWellFormed(name) ? '' : name;
}

/** The task and queue columns of an entry. */
function indexColumnsOf(entry: string): { task: string | null; queue: string | null } {
  const f = indexFieldsOf(entry);
  return { task: indexColumn(f.task), queue: indexColumn(f.queue) };
}

/**
 * Whether a filter's name can be sent to PostgreSQL: one holding a NUL cannot, and matches
 * nothing here (no id, key or tag holds one; a task or queue name with one is stored as '').
 */
export const sendable = (v: string): boolean => !v.includes('\u0000');

/**
 * The least string after every string that starts with `p`, in code point order (UTF-8 byte
 * order, COLLATE "C"), or undefined when there is none: `p` with its last code point one up (the
 * surrogates skipped, as no text holds them), a last U+10FFFF dropped first. So `x >= p AND
 * x < prefixEnd(p)` is exactly "x starts with p", and an index range; LIKE would read `%` and `_`
 * in the prefix as wildcards.
 */
export function prefixEnd(p: string): string | undefined {
  const cps = [...p];
  while (cps.length > 0) {
    const last = cps.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) return cps.join('') + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1);
  }
  return undefined;
}

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);
/** The least number above `x` (finite `x`). */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  f64[0] = x;
  u64[0] = x > 0 ? u64[0]! + 1n : u64[0]! - 1n;
  return f64[0];
}
const nextDown = (x: number): number => -nextUp(-x);

/**
 * The least number whose bucket (`bucketOf`: `Math.floor(x / width)`) is `k` or later, or
 * undefined when it takes more than a few steps to find. That is `k * width` whenever the product
 * is exact (any due time in seconds); beyond 2^53 it rounds, and so does the division, so the
 * bucket's edge is found by stepping from it, a number at a time, until Math.floor agrees.
 */
function bucketBegins(k: number, width: number): number | undefined {
  let x = k * width;
  for (let i = 0; Math.floor(x / width) < k; i++) {
    if (i === 64) return undefined;
    x = nextUp(x);
  }
  for (let i = 0; Math.floor(nextDown(x) / width) >= k; i++) {
    if (i === 64) return undefined;
    x = nextDown(x);
  }
  return x;
}

/**
 * The buckets of [from, to] (finite), each as the due times it holds: `lo <= due_at < hi`, exactly
 * the numbers `bucketOf` puts there; undefined when there are more than `most`, or the bucket
 * numbers are too large to step through.
 */
function bucketRanges(from: number, to: number, width: number, most: number): { start: number[]; lo: number[]; hi: number[] } | undefined {
  const k0 = Math.floor(from / width);
  const k1 = Math.floor(to / width);
  if (!Number.isSafeInteger(k0) || !Number.isSafeInteger(k1) || k1 - k0 + 1 > most) return undefined;
  const start: number[] = [];
  const lo: number[] = [];
  const hi: number[] = [];
  let begins: number | undefined = from;
  for (let k = k0; k <= k1; k++) {
    const next = k === k1 ? nextUp(to) : bucketBegins(k + 1, width);
    if (begins === undefined || next === undefined) return undefined;
    start.push(k * width);
    lo.push(begins);
    hi.push(next);
    begins = next;
  }
  return { start, lo, hi };
}

/** Buckets counted bucket by bucket (an index range count each) up to this many; beyond, one GROUP BY. */
const RANGE_BUCKETS = 5000;

/**
 * The condition on `jobs` (as `j`) for each queue of a filter: its name, or none (NULL); names
 * that cannot be sent are left out (they match nothing).
 */
function queueConditions(queues: readonly (string | null)[], param: (v: unknown) => string): string[] {
  return queues.flatMap((q) => (q === null ? ['j.queue IS NULL'] : sendable(q) ? [`j.queue = ${param(q)}::text`] : []));
}

/** SQL conditions on a due time column (given as SQL), and the FROM ... WHERE built on them. */
type Due = (due: (column: string) => string[]) => string;

/** A list's tags made plain: `any` dropped when it holds a tag of `all` (every job listed has it), `any` of one tag moved to `all`. */
function plainTags(f: NonNullable<ListRange['tags']>): { all: string[]; any: string[] } {
  const all = [...f.all];
  const any = f.any.some((tag) => all.includes(tag)) ? [] : [...f.any];
  if (any.length === 1) all.push(...any.splice(0));
  return { all, any };
}

export class PostgresStore extends StoreBase {
  readonly description: string;
  readonly schema: string;
  readonly #target: PostgresTarget;
  readonly #migrate: boolean;
  readonly #pool: pg.Pool;
  readonly #jobs: string;
  readonly #dead: string;
  readonly #tags: string;
  readonly #channel: string;
  readonly #watchers = new Set<() => Promise<void>>();
  #ready: Promise<void> | undefined;

  constructor(url: string, options: PostgresStoreOptions = {}) {
    super();
    this.#target = parsePostgresUrl(url, options);
    const max = options.maxConnections ?? 10;
    if (!Number.isInteger(max) || max < 1) throw new ValidationError([`maxConnections must be a whole number >= 1, not ${max}`]);
    this.description = this.#target.description;
    this.schema = this.#target.schema;
    this.#migrate = options.migrate ?? false;
    const s = quoteIdent(this.schema);
    this.#jobs = `${s}.jobs`;
    this.#dead = `${s}.dead`;
    this.#tags = `${s}.job_tags`;
    this.#channel = `${this.schema}_wakeup`;
    this.#pool = new (loadDriver<typeof pg>('pg').Pool)(connectionConfig(this.#target, { max }));
    this.#pool.on('error', () => {}); // an idle client died; the next query reports it
  }

  /** where the store is, for messages */
  get #where(): string {
    return `${this.description} (schema ${this.schema})`;
  }

  /** Checks (or, with `migrate`, brings up to date) the schema version, once. */
  #prepare(): Promise<void> {
    this.#ready ??= (async () => {
      const client = await this.#pool.connect();
      try {
        let found = await currentVersion(client, this.schema);
        if (this.#migrate && (found === undefined || found < SCHEMA_VERSION)) {
          found = (await applyMigrations(client, this.schema, this.#where)).to;
        }
        if (found !== SCHEMA_VERSION) throw new SchemaVersionError(this.#where, found, SCHEMA_VERSION);
      } finally {
        client.release();
      }
    })().catch((err: unknown) => {
      this.#ready = undefined; // try again next time (the server may be back, or migrated)
      throw err;
    });
    return this.#ready;
  }

  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return this.#run(async () => (await this.#pool.query<R>(sql, params)).rows);
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      await this.#prepare();
      return await fn();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === '42P01' || code === '3F000') {
        // the tables or the schema were dropped under us
        this.#ready = undefined;
        throw new SchemaVersionError(this.#where, undefined, SCHEMA_VERSION);
      }
      throw wrapPgError(err, this.#target.url);
    }
  }

  protected async doAdd(jobs: readonly NewJob[], duplicates: 'reject' | 'skip'): Promise<number> {
    const skip = duplicates === 'skip';
    if (!skip) {
      const seen = new Set<string>();
      for (const j of jobs) {
        if (seen.has(j.id)) throw new DuplicateJobError(j.id);
        seen.add(j.id);
      }
    }
    // Each chunk: insert, then notify when the earliest job added beats every job scheduled
    // before this statement (a CTE sees the table as it was when the statement began). A chunk
    // with tagged jobs also inserts, in the same statement, the tags of the jobs it added (a
    // skipped duplicate keeps its own); a chunk without is the statement it always was.
    const sql = (tagged: boolean) => `
      WITH prior AS (SELECT min(due_at) AS d FROM ${this.#jobs} WHERE lease IS NULL),
      added AS (
        INSERT INTO ${this.#jobs} (id, due_at, entry, task, queue${tagged ? ', tagged' : ''})
        SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $5::text[], $6::text[]${tagged ? ', $7::bool[]' : ''})
        ${skip ? 'ON CONFLICT (id) DO NOTHING' : ''}
        RETURNING ${tagged ? 'id, ' : ''}due_at
      ),
      ${
        tagged
          ? `tags AS (
        INSERT INTO ${this.#tags} (tag, due_at, job_id, pos)
        SELECT t.tag, a.due_at, t.id, t.pos FROM unnest($8::text[], $9::text[], $10::int2[]) AS t(id, tag, pos) JOIN added a ON a.id = t.id
      ),`
          : ''
      }
      first AS (SELECT count(*) AS n, min(due_at) AS d FROM added)
      SELECT first.n::int AS n, CASE WHEN first.n > 0 AND (prior.d IS NULL OR first.d < prior.d)
        THEN pg_notify($4, first.d::text) END AS told
      FROM first, prior`;
    // With duplicates skipped, the first of an id in the call is the one inserted (unnest keeps
    // the order; a later chunk finds it taken): only its tags are given, so none are mixed in.
    const first = new Set<string>();
    const chunk = (i: number): [string, unknown[]] => {
      const part = jobs.slice(i, i + ADD_CHUNK);
      const fields = part.map((j) => indexColumnsOf(j.entry));
      const params: unknown[] = [
        part.map((j) => j.id),
        part.map((j) => j.dueAt),
        part.map((j) => j.entry),
        this.#channel,
        fields.map((f) => f.task),
        fields.map((f) => f.queue),
      ];
      if (!part.some(hasTags)) {
        for (const j of part) first.add(j.id);
        return [sql(false), params];
      }
      const ids: string[] = [];
      const tags: string[] = [];
      const pos: number[] = [];
      for (const j of part) {
        if (first.has(j.id)) continue;
        first.add(j.id);
        for (const [k, tag] of (j.tags ?? []).entries()) {
          ids.push(j.id);
          tags.push(tag);
          pos.push(k);
        }
      }
      return [sql(true), [...params, part.map(hasTags), ids, tags, pos]];
    };
    return this.#run(async () => {
      try {
        if (jobs.length <= ADD_CHUNK) {
          const { rows } = await this.#pool.query<{ n: number }>(...chunk(0));
          return rows[0]?.n ?? 0;
        }
        return await this.#transaction(async (client) => {
          let added = 0;
          for (let i = 0; i < jobs.length; i += ADD_CHUNK) {
            const { rows } = await client.query<{ n: number }>(...chunk(i));
            added += rows[0]?.n ?? 0;
          }
          return added;
        });
      } catch (err) {
        if ((err as { code?: string }).code === '23505' && (err as { constraint?: string }).constraint === 'jobs_pkey') {
          throw new DuplicateJobError(await this.#firstTaken(jobs));
        }
        throw err;
      }
    });
  }

  /** `DELETE FROM job_tags` of the tagged jobs among those `cte` returned (its `id`, `tagged`). */
  #dropTagsOf(cte: string): string {
    // = ANY (ARRAY(...)): an index lookup per tagged id, none at all when there is none
    return `DELETE FROM ${this.#tags} WHERE job_id = ANY (ARRAY(SELECT id FROM ${cte} WHERE tagged))`;
  }

  /**
   * `UPDATE job_tags` of the tagged jobs among those `cte` returned (its `id`, `due_at`, `tagged`):
   * their rows take the job's new due time, so the tag index stays in due order.
   */
  #moveTagsOf(cte: string): string {
    // = ANY (ARRAY(...)) as in #dropTagsOf: an index lookup per tagged id, none without
    return `UPDATE ${this.#tags} t SET due_at = m.due_at FROM ${cte} m
       WHERE t.job_id = ANY (ARRAY(SELECT id FROM ${cte} WHERE tagged)) AND t.job_id = m.id`;
  }

  /** The first of `jobs` whose id is stored (after an add failed on a unique violation). */
  async #firstTaken(jobs: readonly NewJob[]): Promise<string> {
    const { rows } = await this.#pool.query<{ id: string }>(
      `SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)
       WHERE EXISTS (SELECT 1 FROM ${this.#jobs} j WHERE j.id = u.id) ORDER BY u.n LIMIT 1`,
      [jobs.map((j) => j.id)],
    );
    return rows[0]?.id ?? jobs[0]!.id; // removed again meanwhile: name the first
  }

  async #transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  protected async doAddKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult> {
    return this.#run(() =>
      this.#transaction(async (client) => {
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`celery_longterm_scheduler.job_key:${this.schema}:${key}`]);
        // FOR UPDATE waits for a claim of the holder in progress; a claimed row no longer matches
        const { rows } = await client.query<{ id: string }>(`SELECT id FROM ${this.#jobs} WHERE job_key = $1 FOR UPDATE`, [key]);
        const holder = rows[0]?.id;
        if (holder !== undefined && mode === 'keep') return { id: holder, outcome: 'kept' } satisfies KeyedAddResult;
        if (holder !== undefined && mode !== 'replace') throw new JobKeyTakenError(key, holder);
        if (holder !== undefined) {
          // the replaced job goes with its tags
          await client.query(`WITH gone AS (DELETE FROM ${this.#jobs} WHERE id = $1 RETURNING id, tagged) ${this.#dropTagsOf('gone')}`, [holder]);
        }
        const tagged = hasTags(job);
        const { task, queue } = indexColumnsOf(job.entry);
        try {
          await client.query(
            `WITH prior AS (SELECT min(due_at) AS d FROM ${this.#jobs} WHERE lease IS NULL),
             added AS (INSERT INTO ${this.#jobs} (id, due_at, entry, job_key, tagged, task, queue) VALUES ($1, $2, $3, $4, $6, $7, $8) RETURNING due_at)
             ${tagged ? `, tags AS (INSERT INTO ${this.#tags} (tag, due_at, job_id, pos) SELECT t.tag, $2, $1, t.n - 1 FROM unnest($9::text[]) WITH ORDINALITY AS t(tag, n))` : ''}
             SELECT CASE WHEN prior.d IS NULL OR added.due_at < prior.d THEN pg_notify($5, added.due_at::text) END AS told
             FROM added, prior`,
            [job.id, job.dueAt, job.entry, key, this.#channel, tagged, task, queue, ...(tagged ? [job.tags] : [])],
          );
        } catch (err) {
          // the transaction rolls back: a replaced job stays
          if ((err as { code?: string; constraint?: string }).code === '23505' && (err as { constraint?: string }).constraint === 'jobs_pkey') {
            throw new DuplicateJobError(job.id);
          }
          throw err;
        }
        return holder === undefined
          ? ({ id: job.id, outcome: 'added' } satisfies KeyedAddResult)
          : ({ id: job.id, outcome: 'replaced', replacedId: holder } satisfies KeyedAddResult);
      }),
    );
  }

  protected async doRemove(id: string): Promise<boolean> {
    return (await this.#removeScheduled([id])).length === 1;
  }

  protected async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    return this.#removeScheduled(ids);
  }

  /**
   * Deletes the scheduled jobs among `ids`, each on its own (a row a claim holds or took is
   * skipped: under READ COMMITTED the delete waits for the claim's lock and re-checks lease IS
   * NULL), then the tags of those that had any, in a second statement of the transaction: one
   * that sees what a `retagMany` holding a job's lock before us wrote (see the header).
   */
  async #removeScheduled(ids: readonly string[]): Promise<string[]> {
    return this.#run(() =>
      this.#transaction(async (client) => {
        // = ANY (ARRAY(...)): a primary-key lookup per id whatever the statistics say (with a
        // bare array beside `lease IS NULL`, an unanalysed table of 1M jobs was read whole
        // through the partial index for every batch: 1.7 s for 5,000 ids)
        const { rows } = await client.query<{ id: string; tagged: boolean }>(
          `DELETE FROM ${this.#jobs} WHERE id = ANY (ARRAY(SELECT unnest($1::text[]))) AND lease IS NULL RETURNING id, tagged`,
          [ids],
        );
        const tagged = rows.filter((r) => r.tagged).map((r) => r.id);
        if (tagged.length) await client.query(`DELETE FROM ${this.#tags} WHERE job_id = ANY ($1::text[])`, [tagged]);
        return rows.map((r) => r.id);
      }),
    );
  }

  protected async doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean> {
    const change = entry === undefined ? undefined : { entry, ...indexColumnsOf(entry) };
    return (await this.#moveScheduled([id], [dueAt], change)).length === 1;
  }

  protected async doRescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    return this.#moveScheduled(
      moves.map((m) => m.id),
      moves.map((m) => m.dueAt),
    );
  }

  /**
   * Moves the scheduled jobs among `ids` to their due times (and, for one job, to a new entry),
   * each on its own, in one UPDATE; then their tag rows, in a second statement of the
   * transaction, for the reason `#removeScheduled` gives. Sends the wake-up when the earliest
   * moved job is due before every job scheduled before (delivered on commit).
   */
  async #moveScheduled(
    ids: readonly string[],
    dues: readonly number[],
    change?: { entry: string; task: string | null; queue: string | null },
  ): Promise<string[]> {
    return this.#run(() =>
      this.#transaction(async (client) => {
        const set = change ? ', entry = $3, task = $4, queue = $5' : '';
        const { rows } = await client.query<{ id: string; due_at: string; tagged: boolean; prior: string | null }>(
          `WITH m AS (SELECT * FROM unnest($1::text[], $2::float8[]) AS m(id, due_at)),
           moved AS (
             UPDATE ${this.#jobs} j SET due_at = m.due_at${set} FROM m
             WHERE j.id = ANY (ARRAY(SELECT id FROM m)) AND j.id = m.id AND j.lease IS NULL
             RETURNING j.id, j.due_at, j.tagged
           )
           SELECT id, due_at, tagged, (SELECT min(due_at) FROM ${this.#jobs} WHERE lease IS NULL) AS prior FROM moved`,
          [ids, dues, ...(change ? [change.entry, change.task, change.queue] : [])],
        );
        if (rows.length === 0) return [];
        const first = rows.reduce((d, r) => Math.min(d, num(r.due_at)), Infinity);
        const prior = rows[0]!.prior;
        if (prior === null || first < num(prior)) await client.query('SELECT pg_notify($1, $2::float8::text)', [this.#channel, first]);
        const tagged = rows.filter((r) => r.tagged);
        if (tagged.length) {
          await client.query(
            `UPDATE ${this.#tags} t SET due_at = m.due_at FROM unnest($1::text[], $2::float8[]) AS m(id, due_at)
             WHERE t.job_id = ANY ($1::text[]) AND t.job_id = m.id`,
            [tagged.map((r) => r.id), tagged.map((r) => num(r.due_at))],
          );
        }
        return rows.map((r) => r.id);
      }),
    );
  }

  /**
   * One transaction: locks the scheduled jobs among `ids` (in id order, FOR UPDATE), then reads
   * their tags in a statement of its own (so it sees what a writer that held a lock before us
   * committed), works out each job's new tags in `retagged`, and rewrites only the jobs whose tags
   * change: added tags appended after the ones kept (their `pos` after the last), or, when one
   * goes, the job's rows deleted and written again in the new order; `tagged` follows. A claim
   * skips a locked job; a delete or move waits for it.
   */
  protected async doRetagMany(ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<RetagResult> {
    return this.#run(() =>
      this.#transaction(async (client) => {
        const { rows: locked } = await client.query<{ id: string; due_at: string; tagged: boolean }>(
          `SELECT id, due_at, tagged FROM ${this.#jobs} WHERE id = ANY (ARRAY(SELECT unnest($1::text[]))) AND lease IS NULL ORDER BY id FOR UPDATE`,
          [ids],
        );
        const old = new Map<string, { tag: string; pos: number }[]>();
        const hadTags = locked.filter((r) => r.tagged).map((r) => r.id);
        if (hadTags.length) {
          const { rows } = await client.query<{ job_id: string; tag: string; pos: number }>(
            `SELECT job_id, tag, pos FROM ${this.#tags} WHERE job_id = ANY ($1::text[])`,
            [hadTags],
          );
          for (const r of rows) (old.get(r.job_id) ?? old.set(r.job_id, []).get(r.job_id)!).push(r);
        }
        const result: RetagResult = { changed: [], overLimit: [] };
        const cleared: string[] = []; // jobs whose rows are all deleted (and written again, if any)
        const rows = { tag: [] as string[], due: [] as number[], id: [] as string[], pos: [] as number[] };
        const flags = { id: [] as string[], tagged: [] as boolean[] };
        for (const job of locked) {
          const before = (old.get(job.id) ?? []).sort((a, b) => a.pos - b.pos);
          const tags = retagged(
            before.map((t) => t.tag),
            add,
            remove,
          );
          if (tags.length > MAX_TAGS_PER_JOB) {
            result.overLimit.push(job.id);
            continue;
          }
          result.changed.push(job.id);
          const kept = before.length - before.filter((t) => remove.includes(t.tag)).length;
          if (kept === tags.length && kept === before.length) continue; // nothing added or removed
          const write = (tag: string, pos: number) => {
            rows.tag.push(tag);
            rows.due.push(num(job.due_at));
            rows.id.push(job.id);
            rows.pos.push(pos);
          };
          if (kept === before.length) {
            const last = before.reduce((p, t) => Math.max(p, t.pos), -1);
            tags.slice(kept).forEach((tag, i) => write(tag, last + 1 + i));
          } else {
            if (before.length) cleared.push(job.id);
            tags.forEach(write);
          }
          if (job.tagged !== tags.length > 0) {
            flags.id.push(job.id);
            flags.tagged.push(tags.length > 0);
          }
        }
        if (cleared.length || flags.id.length) {
          await client.query(
            `WITH cleared AS (DELETE FROM ${this.#tags} WHERE job_id = ANY ($1::text[]))
             UPDATE ${this.#jobs} j SET tagged = f.tagged FROM unnest($2::text[], $3::bool[]) AS f(id, tagged)
             WHERE j.id = ANY ($2::text[]) AND j.id = f.id`,
            [cleared, flags.id, flags.tagged],
          );
        }
        if (rows.id.length) {
          await client.query(`INSERT INTO ${this.#tags} (tag, due_at, job_id, pos) SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::int2[])`, [
            rows.tag,
            rows.due,
            rows.id,
            rows.pos,
          ]);
        }
        return result;
      }),
    );
  }

  protected async doClaim(o: ClaimQuery, { token }: Lease): Promise<ClaimedJob[]> {
    const rows = await this.#query<{ id: string; due_at: string; entry: string; failures: string | null }>(
      `WITH expired AS (
         SELECT id, lease AS due_at FROM ${this.#jobs}
         WHERE lease IS NOT NULL AND lease <= $2
         ORDER BY lease, id LIMIT $3 FOR UPDATE SKIP LOCKED
       ),
       due AS (
         SELECT id, due_at FROM ${this.#jobs}
         WHERE lease IS NULL AND due_at <= $1
         ORDER BY due_at, id LIMIT greatest($3 - (SELECT count(*) FROM expired), 0) FOR UPDATE SKIP LOCKED
       ),
       picked AS (
         SELECT id, due_at, 0 AS k FROM expired UNION ALL SELECT id, due_at, 1 AS k FROM due
       ),
       claimed AS (
         UPDATE ${this.#jobs} j SET lease = $4, job_key = NULL WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
         RETURNING j.id, j.entry, j.failures
       )
       SELECT c.id, p.due_at, c.entry, c.failures FROM claimed c JOIN picked p USING (id) ORDER BY p.k, p.due_at, c.id`,
      [o.until, o.now, o.limit, token],
    );
    return rows.map((r) => {
      const claim: ClaimedJob = { id: r.id, dueAt: num(r.due_at), entry: r.entry, token };
      const attempts = r.failures === null ? undefined : decodeAttempts(r.failures);
      return attempts ? { ...claim, attempts } : claim;
    });
  }

  protected async doRenew(claims: readonly ClaimedJob[], lease: Lease): Promise<readonly ClaimedJob[]> {
    const rows = await this.#query<{ id: string }>(
      `UPDATE ${this.#jobs} j SET lease = $3
       FROM unnest($1::text[], $2::float8[]) AS c(id, lease)
       WHERE j.id = c.id AND j.lease = c.lease RETURNING j.id`,
      [claims.map((c) => c.id), claims.map((c) => Number(c.token)), lease.token],
    );
    const kept = new Set(rows.map((r) => r.id));
    return claims.filter((c) => kept.has(c.id));
  }

  protected async doStillHeld(claims: readonly ClaimedJob[]): Promise<readonly ClaimedJob[]> {
    const rows = await this.#query<{ id: string }>(
      `SELECT j.id FROM ${this.#jobs} j JOIN unnest($1::text[], $2::float8[]) AS c(id, lease) ON j.id = c.id AND j.lease = c.lease`,
      [claims.map((c) => c.id), claims.map((c) => Number(c.token))],
    );
    const held = new Set(rows.map((r) => r.id));
    return claims.filter((c) => held.has(c.id));
  }

  protected async doAcknowledge(claims: readonly ClaimedJob[]): Promise<void> {
    await this.#query(
      `WITH gone AS (
         DELETE FROM ${this.#jobs} j USING unnest($1::text[], $2::float8[]) AS c(id, lease)
         WHERE j.id = c.id AND j.lease = c.lease RETURNING j.id, j.tagged
       )
       ${this.#dropTagsOf('gone')}`,
      [claims.map((c) => c.id), claims.map((c) => Number(c.token))],
    );
  }

  protected async doRelease(claims: readonly ClaimedJob[]): Promise<void> {
    await this.#query(
      `WITH moved AS (
         UPDATE ${this.#jobs} j SET lease = NULL, due_at = c.due_at
         FROM unnest($1::text[], $2::float8[], $3::float8[]) AS c(id, lease, due_at)
         WHERE j.id = c.id AND j.lease = c.lease RETURNING j.id, j.due_at, j.tagged
       )
       ${this.#moveTagsOf('moved')}`,
      [claims.map((c) => c.id), claims.map((c) => Number(c.token)), claims.map((c) => c.dueAt)],
    );
  }

  protected async doRetryLater(retries: readonly Retry[]): Promise<void> {
    await this.#query(
      `WITH moved AS (
         UPDATE ${this.#jobs} j SET lease = NULL, due_at = c.due_at, failures = c.failures
         FROM unnest($1::text[], $2::float8[], $3::float8[], $4::text[]) AS c(id, lease, due_at, failures)
         WHERE j.id = c.id AND j.lease = c.lease RETURNING j.id, j.due_at, j.tagged
       )
       ${this.#moveTagsOf('moved')}`,
      [
        retries.map((r) => r.claim.id),
        retries.map((r) => Number(r.claim.token)),
        retries.map((r) => r.retryAt),
        retries.map((r) => encodeAttempts(r.attempts)),
      ],
    );
  }

  protected async doBury(burials: readonly Burial[]): Promise<void> {
    const letters = burials.map((b) => deadLetterOf(b, null));
    await this.#query(
      `WITH c AS (
         SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::text[], $5::text[], $6::int[], $7::float8[], $8::float8[])
           AS c(id, lease, due_at, reason, error, attempts, first_failed_at, died_at)
       ),
       gone AS (
         DELETE FROM ${this.#jobs} j USING c WHERE j.id = c.id AND j.lease = c.lease RETURNING j.id, j.entry, j.tagged
       ),
       moved AS (${this.#dropTagsOf('gone')} RETURNING job_id, tag, pos),
       kept AS (SELECT job_id AS id, array_agg(tag ORDER BY pos) AS tags FROM moved GROUP BY job_id)
       INSERT INTO ${this.#dead} (id, entry, due_at, reason, error, attempts, first_failed_at, died_at, tags)
       SELECT c.id, gone.entry, c.due_at, c.reason, c.error, c.attempts, c.first_failed_at, c.died_at, kept.tags
       FROM gone JOIN c USING (id) LEFT JOIN kept USING (id)
       ON CONFLICT (id) DO UPDATE SET entry = excluded.entry, due_at = excluded.due_at, reason = excluded.reason, error = excluded.error,
         attempts = excluded.attempts, first_failed_at = excluded.first_failed_at, died_at = excluded.died_at, tags = excluded.tags`,
      [
        burials.map((b) => b.claim.id),
        burials.map((b) => Number(b.claim.token)),
        letters.map((d) => d.dueAt),
        letters.map((d) => d.reason),
        letters.map((d) => d.error),
        letters.map((d) => d.attempts),
        letters.map((d) => d.firstFailedAt ?? null),
        letters.map((d) => d.diedAt),
      ],
    );
  }

  protected async doDeadLetters(after: Position | undefined, read: number): Promise<readonly DeadLetter[]> {
    const params: unknown[] = [read];
    const where = after ? `WHERE (died_at, id) > ($2::float8, $3::text COLLATE "C")` : '';
    if (after) params.push(after.dueAt, after.id);
    const rows = await this.#query<DeadRow>(`SELECT ${DEAD_COLUMNS} FROM ${this.#dead} ${where} ORDER BY died_at, id LIMIT $1`, params);
    return rows.map(deadLetter);
  }

  protected async doGetDead(id: string): Promise<DeadLetter | undefined> {
    const [row] = await this.#query<DeadRow>(`SELECT ${DEAD_COLUMNS} FROM ${this.#dead} WHERE id = $1`, [id]);
    return row && deadLetter(row);
  }

  protected async doReviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]> {
    return this.#run(() =>
      this.#transaction(async (client) => {
        const wanted = [...new Set(ids)];
        const dead = await client.query<{ id: string; entry: string | null }>(`SELECT id, entry FROM ${this.#dead} WHERE id = ANY($1::text[]) FOR UPDATE`, [
          wanted,
        ]);
        const entries = new Map(dead.rows.map((r) => [r.id, r.entry]));
        const candidates = dead.rows.filter((r): r is { id: string; entry: string } => r.entry !== null);
        const fields = candidates.map((r) => indexColumnsOf(r.entry));
        const prior = await client.query<{ d: string | null }>(`SELECT min(due_at) AS d FROM ${this.#jobs} WHERE lease IS NULL`);
        // ON CONFLICT: an id a job took meanwhile (scheduled again) stays a dead letter, with its
        // tags; a revived job takes its dead letter's tags back, in the same statement
        const added = candidates.length
          ? await client.query<{ id: string }>(
              `WITH added AS (
                 INSERT INTO ${this.#jobs} (id, due_at, entry, tagged, task, queue)
                 SELECT d.id, $2, d.entry, coalesce(cardinality(d.tags), 0) > 0, f.task, f.queue
                 FROM ${this.#dead} d JOIN unnest($1::text[], $3::text[], $4::text[]) AS f(id, task, queue) ON f.id = d.id
                 WHERE d.id = ANY ($1::text[])
                 ON CONFLICT (id) DO NOTHING RETURNING id, tagged
               ),
               tags AS (
                 INSERT INTO ${this.#tags} (tag, due_at, job_id, pos)
                 SELECT t.tag, $2, d.id, t.n - 1 FROM added a JOIN ${this.#dead} d ON d.id = a.id CROSS JOIN LATERAL unnest(d.tags) WITH ORDINALITY AS t(tag, n)
                 WHERE a.tagged
               )
               SELECT id FROM added`,
              [candidates.map((r) => r.id), dueAt, fields.map((f) => f.task), fields.map((f) => f.queue)],
            )
          : { rows: [] };
        const first = prior.rows[0]?.d;
        if (added.rows.length > 0 && (first === null || first === undefined || dueAt < num(first))) {
          await client.query('SELECT pg_notify($1, $2::float8::text)', [this.#channel, dueAt]); // delivered on commit
        }
        const revived = new Set(added.rows.map((r) => r.id));
        if (revived.size) await client.query(`DELETE FROM ${this.#dead} WHERE id = ANY($1::text[])`, [[...revived]]);
        const seen = new Set<string>();
        return ids.map((id): ReviveOutcome => {
          const first = !seen.has(id);
          seen.add(id);
          if (revived.has(id)) return first ? 'scheduled' : 'not_dead'; // as if one at a time: the second finds it gone
          if (!entries.has(id)) return 'not_dead';
          return entries.get(id) === null ? 'no_entry' : 'id_taken';
        });
      }),
    );
  }

  protected async doPurgeDead(ids: readonly string[] | 'all'): Promise<number> {
    const rows =
      ids === 'all'
        ? await this.#query<{ n: number }>(`WITH gone AS (DELETE FROM ${this.#dead} RETURNING 1) SELECT count(*)::int AS n FROM gone`)
        : await this.#query<{ n: number }>(
            `WITH gone AS (DELETE FROM ${this.#dead} WHERE id = ANY($1::text[]) RETURNING 1) SELECT count(*)::int AS n FROM gone`,
            [ids],
          );
    return rows[0]?.n ?? 0;
  }

  protected async doGet(id: string): Promise<StoredJob | undefined> {
    const [row] = await this.#query<{ due_at: string; entry: string; lease: string | null; job_key: string | null }>(
      `SELECT due_at, entry, lease, job_key FROM ${this.#jobs} WHERE id = $1`,
      [id],
    );
    if (!row) return undefined;
    if (row.lease !== null) return { id, dueAt: num(row.lease), entry: row.entry, state: 'in_flight' };
    return { id, dueAt: num(row.due_at), entry: row.entry, state: 'scheduled', ...(row.job_key !== null && { key: row.job_key }) };
  }

  protected async doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>> {
    // put in order here: array_agg(tag ORDER BY pos) sorted each job's rows on its own, a sort
    // set up per job, which was most of the time of a page of 5,000 tagged jobs
    const rows = await this.#query<{ job_id: string; tag: string; pos: number }>(`SELECT job_id, tag, pos FROM ${this.#tags} WHERE job_id = ANY ($1::text[])`, [
      ids,
    ]);
    const byJob = new Map<string, { tag: string; pos: number }[]>();
    for (const r of rows) (byJob.get(r.job_id) ?? byJob.set(r.job_id, []).get(r.job_id)!).push(r);
    return new Map([...byJob].map(([id, tags]) => [id, tags.sort((a, b) => a.pos - b.pos).map((t) => t.tag)]));
  }

  /**
   * The conditions on `jobs` (as `j`) of a range's task, key prefix and id prefix, and its queues
   * unless `queues` is false (a list in due order asks each queue on its own); undefined when no
   * job can match (a name that cannot be sent).
   */
  #jobConditions(r: ListRange, param: (v: unknown) => string, queues = true): string[] | undefined {
    const where: string[] = [];
    if (r.task !== undefined) {
      if (!sendable(r.task)) return undefined;
      where.push(`j.task = ${param(r.task)}::text`);
    }
    for (const [column, prefix] of [
      ['j.job_key', r.keyPrefix],
      ['j.id', r.idPrefix],
    ] as const) {
      if (prefix === undefined) continue;
      if (!sendable(prefix)) return undefined;
      where.push(`${column} >= ${param(prefix)}::text COLLATE "C"`);
      const end = prefixEnd(prefix);
      if (end !== undefined) where.push(`${column} < ${param(end)}::text COLLATE "C"`);
    }
    if (queues && r.queues) {
      const either = queueConditions(r.queues, param);
      if (either.length === 0) return undefined;
      where.push(either.length === 1 ? either[0]! : `(${either.join(' OR ')})`);
    }
    return where;
  }

  protected async doList(r: ListRange, read: number): Promise<readonly ListedJob[]> {
    if (r.tags) return this.#listTagged(r, r.tags, read);
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    const where = this.#jobConditions(r, param, false);
    const branches = r.queues ? queueConditions(r.queues, param) : [undefined];
    if (!where || branches.length === 0) return [];
    where.unshift('j.lease IS NULL');
    if (r.from !== undefined) where.push(`j.due_at >= ${param(r.from)}::float8`);
    if (r.to !== undefined) where.push(`j.due_at <= ${param(r.to)}::float8`);
    if (r.after) where.push(`(j.due_at, j.id) > (${param(r.after.dueAt)}::float8, ${param(r.after.id)}::text COLLATE "C")`);
    const limit = param(read);
    // A queue each (one index each, in due order) when there are several: each its first `read`,
    // merged (a Merge Append of index scans); an OR of them would be one unordered bitmap scan
    const select = (queue: string | undefined) =>
      `SELECT j.id, j.due_at, j.entry FROM ${this.#jobs} j WHERE ${[...where, ...(queue ? [queue] : [])].join(' AND ')} ORDER BY j.due_at, j.id LIMIT ${limit}`;
    const sql =
      branches.length === 1
        ? select(branches[0])
        : `SELECT * FROM (${branches.map((q) => `(${select(q)})`).join(' UNION ALL ')}) u ORDER BY due_at, id LIMIT ${limit}`;
    const rows = await this.#query<{ id: string; due_at: string; entry: string }>(sql, params);
    return rows.map((row) => ({ id: row.id, dueAt: num(row.due_at), entry: row.entry }));
  }

  /**
   * A list by tags, walking the tag index in due order (a leapfrog join, one step per round of the
   * recursive query): each of `all` is a stream of (due_at, job_id) in job_tags, `any` one more
   * (the least next position among its tags). A step seeks each stream in turn, from where the
   * previous one landed, to its first position at or after it (an index descent, LIMIT 1); when
   * the last lands where the first did, every stream holds that job, and the next step starts
   * just after it, else at the last's position (nothing between can be in all of them). Each hit
   * is then looked up in jobs (scheduled only, matching the range's other filters), and the walk
   * stops at `read` of them. So the work is a few index descents per job of the rarest stream
   * passed on the way, never a sort of a tag's jobs, and no plan the statistics may pick instead:
   * a LIMIT 1 index seek, a LATERAL lookup of one row. The lookup names the job's due time too (a
   * scheduled job's tag rows hold it), so it reads jobs_scheduled_idx at the walk's place in due
   * order, pages the previous lookups just read, not the primary key at random: a page of 5,000
   * tagged jobs read a third of the pages it did by id. The rows come in the walk's order, which
   * is due order (PostgreSQL runs a recursive query only as far as its reader asks, and a LATERAL
   * lookup keeps the order; an ORDER BY would make it walk to the end first).
   */
  async #listTagged(r: ListRange, f: NonNullable<ListRange['tags']>, read: number): Promise<readonly ListedJob[]> {
    const { all, any } = plainTags(f);
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    const where = this.#jobConditions(r, param);
    if (!where) return [];
    // where the walk starts: at `from`, or just after the cursor (ids hold no NUL, so the least
    // id after `id` is `id` + U+0001, in bytes)
    const start =
      r.after && (r.from === undefined || r.after.dueAt >= r.from)
        ? { dueAt: r.after.dueAt, id: `${r.after.id}\u0001` }
        : { dueAt: r.from ?? -Infinity, id: '' };
    const upTo = r.to === undefined ? '' : ` AND due_at <= ${param(r.to)}::float8`;
    const seek = (tag: string, d: string, id: string) =>
      `SELECT due_at, job_id FROM ${this.#tags} WHERE tag = ${tag} AND (due_at, job_id) >= (${d}, ${id})${upTo} ORDER BY due_at, job_id LIMIT 1`;
    const streams = all.map((tag) => (d: string, id: string) => seek(`${param(tag)}::text`, d, id));
    if (any.length) {
      const tags = param(any);
      streams.push(
        (d, id) =>
          `SELECT s.due_at, s.job_id FROM unnest(${tags}::text[]) AS a(tag) CROSS JOIN LATERAL (${seek('a.tag COLLATE "C"', d, id)}) s ORDER BY s.due_at, s.job_id LIMIT 1`,
      );
    }
    const last = `s${streams.length}`;
    const steps = streams
      .map((stream, i) =>
        i === 0
          ? `CROSS JOIN LATERAL (${stream('w.due_at', 'CASE WHEN w.hit THEN w.job_id || chr(1) ELSE w.job_id END')}) s1`
          : `CROSS JOIN LATERAL (${stream(`s${i}.due_at`, `s${i}.job_id`)}) s${i + 1}`,
      )
      .join('\n         ');
    const rows = await this.#query<{ id: string; due_at: string; entry: string }>(
      `WITH RECURSIVE walk (due_at, job_id, hit) AS (
         SELECT ${param(start.dueAt)}::float8, ${param(start.id)}::text COLLATE "C", false
         UNION ALL
         SELECT ${last}.due_at, ${last}.job_id, (${last}.due_at, ${last}.job_id) = (s1.due_at, s1.job_id)
         FROM walk w
         ${steps}
       )
       SELECT j.id, j.due_at, j.entry FROM walk w
       CROSS JOIN LATERAL (SELECT j.id, j.due_at, j.entry FROM ${this.#jobs} j WHERE ${['j.due_at = w.due_at', 'j.id = w.job_id', 'j.lease IS NULL', ...where].join(' AND ')} LIMIT 1) j
       WHERE w.hit LIMIT ${param(read)}`,
      params,
    );
    return rows.map((row) => ({ id: row.id, dueAt: num(row.due_at), entry: row.entry }));
  }

  /**
   * The scheduled jobs of `r`, in SQL, to count: `rows(due)` is a FROM ... WHERE of rows, one per
   * job due where `due` says (conditions on a due time column) and a `due_at` each, less the rows
   * of `less(due)`, when given. Undefined when no job can match.
   *
   * - No tags: jobs, by the partial index the filters pick (due order, task, queue; index-only
   *   where it holds every column asked).
   * - One tag and nothing else: its rows in the primary key of job_tags (index-only), less those
   *   of jobs in flight (few; their tag rows stay, at the due time they were claimed at, which is
   *   also theirs in jobs), so no job is looked up.
   * - Otherwise: jobs, each tag a semi-join of its rows in the due range; the planner orders them.
   */
  #counting(r: ListRange, param: (v: unknown) => string): { rows: Due; less?: Due } | undefined {
    const where = this.#jobConditions(r, param);
    if (!where) return undefined;
    const and = (parts: string[]) => parts.join(' AND ');
    if (!r.tags) return { rows: (due) => `FROM ${this.#jobs} j WHERE ${and(['j.lease IS NULL', ...due('j.due_at'), ...where])}` };
    const { all, any } = plainTags(r.tags);
    if (all.length === 1 && any.length === 0 && where.length === 0) {
      const tag = `${param(all[0])}::text`;
      return {
        rows: (due) => `FROM ${this.#tags} t WHERE ${and([`t.tag = ${tag}`, ...due('t.due_at')])}`,
        less: (due) =>
          `FROM ${this.#jobs} f WHERE ${and(['f.lease IS NOT NULL', 'f.tagged', ...due('f.due_at')])}
           AND EXISTS (SELECT 1 FROM ${this.#tags} x WHERE x.tag = ${tag} AND x.due_at = f.due_at AND x.job_id = f.id)`,
      };
    }
    // each tag row names the whole key (tag, due_at, job_id): a probe of the primary key when
    // the planner starts from jobs (it may start from a tag instead), never a walk of the tag's rows
    const semi = (due: (column: string) => string[]) =>
      [...all.map((tag) => `t.tag = ${param(tag)}::text`), ...(any.length ? [`t.tag = ANY (${param(any)}::text[])`] : [])].map(
        (tag) => `EXISTS (SELECT 1 FROM ${this.#tags} t WHERE ${and([tag, ...due('t.due_at'), 't.due_at = j.due_at', 't.job_id = j.id'])})`,
      );
    return { rows: (due) => `FROM ${this.#jobs} j WHERE ${and(['j.lease IS NULL', 'j.tagged', ...due('j.due_at'), ...where, ...semi(due)])}` };
  }

  protected override async doCountWhere(r: ListRange): Promise<number> {
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    const counting = this.#counting(r, param);
    if (!counting) return 0;
    const due = (column: string) => [
      ...(r.from !== undefined ? [`${column} >= ${param(r.from)}::float8`] : []),
      ...(r.to !== undefined ? [`${column} <= ${param(r.to)}::float8`] : []),
    ];
    const less = counting.less ? ` - (SELECT count(*) ${counting.less(due)})` : '';
    const [row] = await this.#query<{ n: string }>(`SELECT (SELECT count(*) ${counting.rows(due)})${less} AS n`, params);
    return Number(row?.n ?? 0);
  }

  /**
   * Up to `RANGE_BUCKETS` buckets: a count per bucket, each over the due times `bucketRanges`
   * gives it (an index range each: a descent and the bucket's entries, never a sort or a hash of
   * the jobs); beyond, one GROUP BY of `floor(due_at / width) * width`, what `bucketOf` computes
   * (PostgreSQL's float8 division and floor round as JavaScript's do). Rows to take away (jobs in
   * flight) are grouped so, once.
   */
  protected override async doHistogram(r: ListRange & { from: number; to: number }, width: number): Promise<HistogramBucket[]> {
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    const counting = this.#counting(r, param);
    if (!counting) return [];
    let widthParam: string | undefined;
    const bucket = () => `floor(due_at / ${(widthParam ??= `${param(width)}::float8`)}) * ${widthParam}`;
    const inRange = (column: string) => [`${column} >= ${param(r.from)}::float8`, `${column} <= ${param(r.to)}::float8`];
    const buckets = bucketRanges(r.from, r.to, width, RANGE_BUCKETS);
    const counted = buckets
      ? `SELECT b.start, c.n FROM unnest(${param(buckets.start)}::float8[], ${param(buckets.lo)}::float8[], ${param(buckets.hi)}::float8[]) AS b(start, lo, hi)
         CROSS JOIN LATERAL (SELECT count(*) AS n ${counting.rows((column) => [`${column} >= b.lo`, `${column} < b.hi`])}) c`
      : `SELECT ${bucket()} AS start, count(*) AS n ${counting.rows(inRange)} GROUP BY 1`;
    const sql = counting.less
      ? `WITH c AS (${counted}), f AS (SELECT ${bucket()} AS start, count(*) AS n ${counting.less(inRange)} GROUP BY 1)
         SELECT c.start, c.n - coalesce(f.n, 0) AS n FROM c LEFT JOIN f USING (start) WHERE c.n > coalesce(f.n, 0) ORDER BY c.start`
      : `SELECT start, n FROM (${counted}) c WHERE n > 0 ORDER BY start`;
    const rows = await this.#query<{ start: string | number; n: string }>(sql, params);
    return rows.map((row) => ({ start: num(row.start), count: Number(row.n) }));
  }

  protected async doCount(): Promise<StoreCounts> {
    const [row] = await this.#query<{ scheduled: number; in_flight: number; dead: number }>(
      `SELECT (SELECT count(*) FROM ${this.#jobs} WHERE lease IS NULL)::int AS scheduled,
              (SELECT count(*) FROM ${this.#jobs} WHERE lease IS NOT NULL)::int AS in_flight,
              (SELECT count(*) FROM ${this.#dead})::int AS dead`,
    );
    return { scheduled: row?.scheduled ?? 0, inFlight: row?.in_flight ?? 0, dead: row?.dead ?? 0 };
  }

  protected async doNextDueAt(): Promise<number | undefined> {
    const [row] = await this.#query<{ t: string | null }>(
      `SELECT least((SELECT min(due_at) FROM ${this.#jobs} WHERE lease IS NULL),
                    (SELECT min(lease) FROM ${this.#jobs} WHERE lease IS NOT NULL)) AS t`,
    );
    return row?.t == null ? undefined : num(row.t);
  }

  /**
   * LISTENs on a connection of its own. When that connection dies it reconnects (every second
   * until it can); wake-ups sent meanwhile are lost, which is why the daemon also polls.
   */
  async watch(onSooner: (dueAt: number) => void): Promise<() => Promise<void>> {
    this.assertOpen();
    let stopped = false;
    let client: pg.Client | undefined;
    let retry: NodeJS.Timeout | undefined;
    const listen = async (): Promise<void> => {
      const c = new (loadDriver<typeof pg>('pg').Client)(connectionConfig(this.#target));
      const lost = () => {
        if (client !== c) return;
        client = undefined;
        void c.end().catch(() => {});
        if (!stopped) retry = setTimeout(reconnect, 1000);
      };
      c.on('error', lost);
      c.on('end', lost);
      c.on('notification', (n) => {
        const dueAt = Number(n.payload);
        if (n.channel === this.#channel && Number.isFinite(dueAt)) onSooner(dueAt);
      });
      try {
        await c.connect();
        await c.query(`LISTEN ${quoteIdent(this.#channel)}`);
      } catch (err) {
        await c.end().catch(() => {});
        throw wrapPgError(err, this.#target.url);
      }
      if (stopped) return void (await c.end().catch(() => {}));
      client = c;
    };
    const reconnect = () => {
      retry = undefined;
      if (!stopped) listen().catch(() => (retry = stopped ? undefined : setTimeout(reconnect, 1000)));
    };
    await listen();
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      this.#watchers.delete(stop);
      clearTimeout(retry);
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
    };
    this.#watchers.add(stop);
    return stop;
  }

  /**
   * `postgres:<system identifier>:<start time>:<database oid>:<schema>`: the server (its cluster's
   * system identifier, where `pg_control_system()` may be read, and when it started: a socket and
   * a TCP connection to one server agree, a replica or a copy of it does not), the database and
   * the schema. Needs no privileges and no schema: creates and changes nothing.
   */
  protected async doIdentity(): Promise<string> {
    const server = `extract(epoch FROM pg_postmaster_start_time())::text AS started,
      (SELECT oid::text FROM pg_catalog.pg_database WHERE datname = current_database()) AS db`;
    try {
      let row: { system: string | null; started: string; db: string } | undefined;
      try {
        [row] = (
          await this.#pool.query<{ system: string; started: string; db: string }>(
            `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system, ${server}`,
          )
        ).rows;
      } catch (err) {
        if ((err as { code?: unknown }).code !== '42501') throw err; // not allowed to read pg_control_system()
        [row] = (await this.#pool.query<{ system: null; started: string; db: string }>(`SELECT NULL AS system, ${server}`)).rows;
      }
      if (!row) throw new Error('the server returned no row for its identity');
      return `postgres:${row.system ?? '-'}:${row.started}:${row.db}:${this.schema}`;
    } catch (err) {
      throw wrapPgError(err, this.#target.url);
    }
  }

  protected async doClose(): Promise<void> {
    await Promise.all([...this.#watchers].map((stop) => stop()));
    await this.#pool.end();
  }
}
