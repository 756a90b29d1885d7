/**
 * The PostgreSQL store. Everything lives in one schema (default `celery_longterm_scheduler`):
 *
 *   jobs(id text COLLATE "C" PRIMARY KEY, due_at float8, entry text, lease float8 NULL,
 *        job_key text COLLATE "C" NULL, failures text NULL, tagged boolean)
 *     lease NULL: the job is scheduled, due at `due_at`;
 *     lease set:  the job is in flight, and `lease` is the lease deadline, which is also the
 *                 claim's token (token = String(lease), as in the other stores).
 *     jobs_scheduled_idx (due_at, id) WHERE lease IS NULL     -- claim and list, in due order
 *     jobs_in_flight_idx (lease, id)  WHERE lease IS NOT NULL -- expired leases
 *     jobs_job_key_idx UNIQUE (job_key) WHERE job_key IS NOT NULL -- one scheduled job per
 *       deduplication key; a claim sets job_key NULL, so jobs in flight hold no key
 *     failures: the job's failed attempts as JSON (see `encodeAttempts`)
 *     tagged: whether the job has rows in job_tags (set when it is added, never changed after)
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
 * Each add (all of it, or none: one transaction) and each reschedule sends `pg_notify` on the
 * `<schema>_wakeup` channel when it makes a job due before every other scheduled one; the
 * payload is the due time. PostgreSQL delivers it on commit, to `watch()`ers in any process.
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
 * lookup each), so an untagged job costs nothing more there. Reschedule, release and retryLater,
 * which change a job's due time, set it in the job's tag rows in the same statement (again only
 * for tagged jobs, `#moveTagsOf`); claim and renew change no due time and touch only jobs rows.
 * No foreign key: its per-row trigger would cost every acknowledge, tagged or not.
 *
 * A list by tags walks the primary key of job_tags in due order, a leapfrog join of the tags
 * asked for (see `#listTagged`): a few index seeks per job of the rarest tag passed on the way,
 * never a sort of a tag's jobs; in-flight jobs are in job_tags too (their due time is the one
 * they were claimed at) and are skipped by the lookup in jobs.
 *
 * What every store does the same (the checks, the closed state, lease arithmetic, paging) is
 * `StoreBase`'s (../base.ts); this file is the rest.
 */
import type pg from 'pg';
import { loadDriver } from '../../util/drivers.js';
import { DuplicateJobError, JobKeyTakenError, SchemaVersionError, ValidationError } from '../../util/errors.js';
import type { NewJob } from '../../job/types.js';
import { StoreBase, type ClaimQuery, type Lease, type ListRange, type ListedJob, type Position } from '../base.js';
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
        INSERT INTO ${this.#jobs} (id, due_at, entry${tagged ? ', tagged' : ''})
        SELECT * FROM unnest($1::text[], $2::float8[], $3::text[]${tagged ? ', $5::bool[]' : ''})
        ${skip ? 'ON CONFLICT (id) DO NOTHING' : ''}
        RETURNING ${tagged ? 'id, ' : ''}due_at
      ),
      ${
        tagged
          ? `tags AS (
        INSERT INTO ${this.#tags} (tag, due_at, job_id, pos)
        SELECT t.tag, a.due_at, t.id, t.pos FROM unnest($6::text[], $7::text[], $8::int2[]) AS t(id, tag, pos) JOIN added a ON a.id = t.id
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
      const params: unknown[] = [part.map((j) => j.id), part.map((j) => j.dueAt), part.map((j) => j.entry), this.#channel];
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
        try {
          await client.query(
            `WITH prior AS (SELECT min(due_at) AS d FROM ${this.#jobs} WHERE lease IS NULL),
             added AS (INSERT INTO ${this.#jobs} (id, due_at, entry, job_key, tagged) VALUES ($1, $2, $3, $4, $6) RETURNING due_at)
             ${tagged ? `, tags AS (INSERT INTO ${this.#tags} (tag, due_at, job_id, pos) SELECT t.tag, $2, $1, t.n - 1 FROM unnest($7::text[]) WITH ORDINALITY AS t(tag, n))` : ''}
             SELECT CASE WHEN prior.d IS NULL OR added.due_at < prior.d THEN pg_notify($5, added.due_at::text) END AS told
             FROM added, prior`,
            [job.id, job.dueAt, job.entry, key, this.#channel, tagged, ...(tagged ? [job.tags] : [])],
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
    const rows = await this.#query(
      `WITH gone AS (DELETE FROM ${this.#jobs} WHERE id = $1 AND lease IS NULL RETURNING id, tagged),
       tags AS (${this.#dropTagsOf('gone')})
       SELECT id FROM gone`,
      [id],
    );
    return rows.length === 1;
  }

  protected async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    // one statement; each row's delete stands on its own (a row a claim holds or took is skipped:
    // under READ COMMITTED the delete waits for the claim's lock and re-checks lease IS NULL)
    const rows = await this.#query<{ id: string }>(
      `WITH gone AS (DELETE FROM ${this.#jobs} WHERE id = ANY ($1::text[]) AND lease IS NULL RETURNING id, tagged),
       tags AS (${this.#dropTagsOf('gone')})
       SELECT id FROM gone`,
      [ids],
    );
    return rows.map((r) => r.id);
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
    const rows = await this.#query<{ n: number }>(
      `WITH prior AS (SELECT min(due_at) AS d FROM ${this.#jobs} WHERE lease IS NULL),
       moved AS (
         UPDATE ${this.#jobs} SET due_at = $2, entry = coalesce($3, entry)
         WHERE id = $1 AND lease IS NULL RETURNING id, due_at, tagged
       ),
       tags AS (${this.#moveTagsOf('moved')})
       SELECT count(*)::int AS n, CASE WHEN count(*) > 0 AND (min(prior.d) IS NULL OR $2 < min(prior.d))
         THEN pg_notify($4, $2::float8::text) END AS told
       FROM moved, prior`,
      [id, dueAt, entry ?? null, this.#channel],
    );
    return (rows[0]?.n ?? 0) > 0;
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
        const candidates = dead.rows.filter((r) => r.entry !== null).map((r) => r.id);
        const prior = await client.query<{ d: string | null }>(`SELECT min(due_at) AS d FROM ${this.#jobs} WHERE lease IS NULL`);
        // ON CONFLICT: an id a job took meanwhile (scheduled again) stays a dead letter, with its
        // tags; a revived job takes its dead letter's tags back, in the same statement
        const added = candidates.length
          ? await client.query<{ id: string }>(
              `WITH added AS (
                 INSERT INTO ${this.#jobs} (id, due_at, entry, tagged)
                 SELECT id, $2, entry, coalesce(cardinality(tags), 0) > 0 FROM ${this.#dead} WHERE id = ANY ($1::text[])
                 ON CONFLICT (id) DO NOTHING RETURNING id, tagged
               ),
               tags AS (
                 INSERT INTO ${this.#tags} (tag, due_at, job_id, pos)
                 SELECT t.tag, $2, d.id, t.n - 1 FROM added a JOIN ${this.#dead} d ON d.id = a.id CROSS JOIN LATERAL unnest(d.tags) WITH ORDINALITY AS t(tag, n)
                 WHERE a.tagged
               )
               SELECT id FROM added`,
              [candidates, dueAt],
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
    const [row] = await this.#query<{ due_at: string; entry: string; lease: string | null }>(`SELECT due_at, entry, lease FROM ${this.#jobs} WHERE id = $1`, [
      id,
    ]);
    if (!row) return undefined;
    return row.lease === null
      ? { id, dueAt: num(row.due_at), entry: row.entry, state: 'scheduled' }
      : { id, dueAt: num(row.lease), entry: row.entry, state: 'in_flight' };
  }

  protected async doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>> {
    const rows = await this.#query<{ job_id: string; tags: string[] }>(
      `SELECT job_id, array_agg(tag ORDER BY pos) AS tags FROM ${this.#tags} WHERE job_id = ANY ($1::text[]) GROUP BY job_id`,
      [ids],
    );
    return new Map(rows.map((r) => [r.job_id, r.tags]));
  }

  protected async doList(r: ListRange, read: number): Promise<readonly ListedJob[]> {
    if (r.tags) return this.#listTagged(r, r.tags, read);
    const where = ['lease IS NULL'];
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    if (r.from !== undefined) where.push(`due_at >= ${param(r.from)}`);
    if (r.to !== undefined) where.push(`due_at <= ${param(r.to)}`);
    if (r.after) where.push(`(due_at, id) > (${param(r.after.dueAt)}::float8, ${param(r.after.id)}::text COLLATE "C")`);
    const rows = await this.#query<{ id: string; due_at: string; entry: string }>(
      `SELECT id, due_at, entry FROM ${this.#jobs} WHERE ${where.join(' AND ')} ORDER BY due_at, id LIMIT ${param(read)}`,
      params,
    );
    return rows.map((row) => ({ id: row.id, dueAt: num(row.due_at), entry: row.entry }));
  }

  /**
   * A list by tags, walking the tag index in due order (a leapfrog join, one step per round of the
   * recursive query): each of `all` is a stream of (due_at, job_id) in job_tags, `any` one more
   * (the least next position among its tags). A step seeks each stream in turn, from where the
   * previous one landed, to its first position at or after it (an index descent, LIMIT 1); when
   * the last lands where the first did, every stream holds that job, and the next step starts
   * just after it, else at the last's position (nothing between can be in all of them). Each hit
   * is then looked up in jobs (scheduled only), and the walk stops at `read` of them. So the work
   * is a few index descents per job of the rarest stream passed on the way, never a sort of a
   * tag's jobs, and no plan the statistics may pick instead: a LIMIT 1 index seek, a LATERAL
   * lookup by primary key. The rows come in the walk's order, which is due order (PostgreSQL
   * runs a recursive query only as far as its reader asks, and a LATERAL lookup keeps the order;
   * an ORDER BY would make it walk to the end first).
   */
  async #listTagged(r: ListRange, f: NonNullable<ListRange['tags']>, read: number): Promise<readonly ListedJob[]> {
    const all = [...f.all];
    // a tag of `any` in `all` is held by every job listed; `any` of one tag is one more of `all`
    const any = f.any.some((tag) => all.includes(tag)) ? [] : [...f.any];
    if (any.length === 1) all.push(...any.splice(0));
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
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
       CROSS JOIN LATERAL (SELECT id, due_at, entry FROM ${this.#jobs} WHERE id = w.job_id AND lease IS NULL LIMIT 1) j
       WHERE w.hit LIMIT ${param(read)}`,
      params,
    );
    return rows.map((row) => ({ id: row.id, dueAt: num(row.due_at), entry: row.entry }));
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
