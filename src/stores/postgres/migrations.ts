/**
 * The PostgreSQL store's schema, as numbered migrations. Each runs once, in order, inside one
 * transaction with `search_path` set to the store's schema (so the SQL names no schema), under an
 * advisory lock so two processes migrating at once do not race. Applied versions are recorded in
 * `<schema>.schema_migrations`.
 *
 * Never edit a released migration: add a new one with the next version.
 */
import type pg from 'pg';
import { loadDriver } from '../../util/drivers.js';
import { SchemaVersionError } from '../../util/errors.js';
import { connectionConfig, parsePostgresUrl, quoteIdent, wrapPgError, type PostgresUrlOptions } from './connection.js';

export interface Migration {
  version: number;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE jobs (
        id     text COLLATE "C" PRIMARY KEY,
        due_at double precision NOT NULL,
        entry  text NOT NULL,
        lease  double precision NULL
      );
      CREATE INDEX jobs_scheduled_idx ON jobs (due_at, id) WHERE lease IS NULL;
      CREATE INDEX jobs_in_flight_idx ON jobs (lease, id) WHERE lease IS NOT NULL;
      CREATE TABLE corrupt (
        id       text COLLATE "C" PRIMARY KEY,
        entry    text NULL,
        due_at   double precision NOT NULL,
        reason   text NOT NULL,
        moved_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    // deduplication keys (addKeyed): the key a scheduled job holds; a claim clears it
    version: 2,
    sql: `
      ALTER TABLE jobs ADD COLUMN job_key text COLLATE "C" NULL;
      CREATE UNIQUE INDEX jobs_job_key_idx ON jobs (job_key) WHERE job_key IS NOT NULL;
    `,
  },
  {
    // attempts (the failed attempts of a job, as JSON) and dead letters; the corrupt jobs moved
    // aside before become dead letters
    version: 3,
    sql: `
      ALTER TABLE jobs ADD COLUMN failures text NULL;
      CREATE TABLE dead (
        id              text COLLATE "C" PRIMARY KEY,
        entry           text NULL,
        due_at          double precision NOT NULL,
        reason          text NOT NULL,
        error           text NOT NULL,
        attempts        integer NOT NULL,
        first_failed_at double precision NULL,
        died_at         double precision NOT NULL
      );
      CREATE INDEX dead_by_time_idx ON dead (died_at, id);
      INSERT INTO dead (id, entry, due_at, reason, error, attempts, died_at)
        SELECT id, entry, due_at, 'corrupt', reason, 0, extract(epoch FROM moved_at) FROM corrupt;
      DROP TABLE corrupt;
    `,
  },
  {
    // tags (job/tags.ts), beside the job, never in its entry: job_tags holds a live job's tags,
    // a row each (pos: the order given), keyed by tag for search and by job for reading and
    // deleting them; jobs.tagged says whether a job has any, so deleting an untagged job (an
    // acknowledge) never looks in job_tags; a dead letter keeps its tags in dead.tags. Adding a
    // column with a constant default rewrites nothing: the jobs there stay as they are, untagged.
    version: 4,
    sql: `
      ALTER TABLE jobs ADD COLUMN tagged boolean NOT NULL DEFAULT false;
      CREATE TABLE job_tags (
        tag    text COLLATE "C" NOT NULL,
        job_id text COLLATE "C" NOT NULL,
        pos    smallint NOT NULL,
        PRIMARY KEY (tag, job_id)
      );
      CREATE UNIQUE INDEX job_tags_by_job_idx ON job_tags (job_id, pos) INCLUDE (tag);
      ALTER TABLE dead ADD COLUMN tags text[] NULL;
    `,
  },
  {
    // list by tags: job_tags keeps its job's due time, and its key becomes (tag, due_at, job_id),
    // a tag's jobs in due order (the search by tag it served before it still serves; a job holds
    // a tag once, and its rows share its due time, so the key is as unique as (tag, job_id) was).
    // Altered in place, not rebuilt, so the table keeps its owner and grants; the key is dropped
    // before the update and built after it, once. Every tag row gets its job's due time; a row
    // of no job (there should be none) goes.
    version: 5,
    sql: `
      ALTER TABLE job_tags DROP CONSTRAINT job_tags_pkey;
      ALTER TABLE job_tags ADD COLUMN due_at double precision NULL;
      UPDATE job_tags t SET due_at = j.due_at FROM jobs j WHERE j.id = t.job_id;
      DELETE FROM job_tags WHERE due_at IS NULL;
      ALTER TABLE job_tags ALTER COLUMN due_at SET NOT NULL;
      ALTER TABLE job_tags ADD CONSTRAINT job_tags_pkey PRIMARY KEY (tag, due_at, job_id);
    `,
  },
  {
    // search by task and queue (issue 13): each job's task and queue, as `indexFieldsOf` reads
    // them from its entry, in columns of their own (see `indexColumn` in postgres-store.ts: NULL
    // for none, '' for a name no filter can be sent as), indexed in due order among scheduled
    // jobs, a job naming no queue in an index of its own (an IS NULL condition gives no order).
    // The store writes them with every entry; a generated column would cast the entry to JSON in
    // SQL, which refuses entries the store must keep (not JSON at all, or JSON that PostgreSQL's
    // parser rejects and JSON.parse reads).
    //
    // The jobs there get theirs in SQL, matching indexFieldsOf (functions dropped again at the
    // end): `jsonb` first (one parse); where jsonb refuses what JSON.parse reads (a number beyond
    // numeric's range; a \u0000 or a lone surrogate, anywhere in the entry), `json`, which checks
    // the syntax only; where its accessors refuse (those escapes, again anywhere), the entry read
    // twice with each such escape replaced, once by \u0001 and once by \u0002: a name read the same
    // both times holds none of them and is exact, one read differently holds one and gets ''. Not
    // JSON, or nested past the parser's stack: no task, no queue. The columns are added as
    // generated ones and made plain at once, so the table is rewritten once (no dead rows, no
    // index updated row by row) and keeps its owner and grants.
    version: 6,
    sql: `
      CREATE FUNCTION migrate6_escapes(e text, repl text) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $f$
      DECLARE
        out text := '';
        i int := 1;
        p int;
        code int;
        lo int;
      BEGIN
        -- every backslash of valid JSON starts an escape inside a string: read them left to right
        LOOP
          p := strpos(substr(e, i), '\\');
          EXIT WHEN p = 0;
          p := i + p - 1;
          out := out || substr(e, i, p - i);
          IF substr(e, p + 1, 1) = 'u' THEN
            code := ('x' || substr(e, p + 2, 4))::bit(16)::int;
            IF code BETWEEN 55296 AND 56319 AND substr(e, p + 6, 2) = '\\u' THEN
              lo := ('x' || substr(e, p + 8, 4))::bit(16)::int;
              IF lo BETWEEN 56320 AND 57343 THEN
                out := out || substr(e, p, 12); -- a surrogate pair: one character
                i := p + 12;
                CONTINUE;
              END IF;
            END IF;
            out := out || CASE WHEN code = 0 OR code BETWEEN 55296 AND 57343 THEN repl ELSE substr(e, p, 6) END;
            i := p + 6;
          ELSE
            out := out || substr(e, p, 2);
            i := p + 2;
          END IF;
        END LOOP;
        RETURN out || substr(e, i);
      END $f$;
      CREATE FUNCTION migrate6_fields(j json) RETURNS text[] LANGUAGE sql IMMUTABLE STRICT AS $f$
        SELECT ARRAY[
          CASE WHEN json_typeof(j) = 'array' AND json_typeof(j->0) = 'array' AND json_typeof(j->0->0) = 'string' THEN j->0->>0 END,
          CASE WHEN json_typeof(j) = 'array' AND json_typeof(j->1) = 'object' AND json_typeof(j->1->'queue') = 'string' THEN j->1->>'queue' END]
      $f$;
      CREATE FUNCTION migrate6_entry(e text) RETURNS text[] LANGUAGE plpgsql IMMUTABLE STRICT AS $f$
      DECLARE
        b jsonb;
        j json;
        a text[];
        z text[];
      BEGIN
        BEGIN
          b := e::jsonb;
          RETURN ARRAY[
            CASE WHEN jsonb_typeof(b) = 'array' AND jsonb_typeof(b->0) = 'array' AND jsonb_typeof(b->0->0) = 'string' THEN b->0->>0 END,
            CASE WHEN jsonb_typeof(b) = 'array' AND jsonb_typeof(b->1) = 'object' AND jsonb_typeof(b->1->'queue') = 'string' THEN b->1->>'queue' END];
        EXCEPTION WHEN others THEN
          NULL;
        END;
        BEGIN
          j := e::json;
        EXCEPTION WHEN others THEN
          RETURN ARRAY[NULL, NULL]::text[]; -- not JSON
        END;
        BEGIN
          RETURN migrate6_fields(j);
        EXCEPTION WHEN others THEN
          NULL;
        END;
        a := migrate6_fields(migrate6_escapes(e, '\\u0001')::json);
        z := migrate6_fields(migrate6_escapes(e, '\\u0002')::json);
        RETURN ARRAY[CASE WHEN a[1] IS DISTINCT FROM z[1] THEN '' ELSE a[1] END, CASE WHEN a[2] IS DISTINCT FROM z[2] THEN '' ELSE a[2] END];
      END $f$;
      ALTER TABLE jobs
        ADD COLUMN task text COLLATE "C" GENERATED ALWAYS AS ((migrate6_entry(entry))[1]) STORED,
        ADD COLUMN queue text COLLATE "C" GENERATED ALWAYS AS ((migrate6_entry(entry))[2]) STORED;
      ALTER TABLE jobs ALTER COLUMN task DROP EXPRESSION, ALTER COLUMN queue DROP EXPRESSION;
      DROP FUNCTION migrate6_entry(text);
      DROP FUNCTION migrate6_fields(json);
      DROP FUNCTION migrate6_escapes(text, text);
      CREATE INDEX jobs_task_idx ON jobs (task, due_at, id) WHERE lease IS NULL AND task IS NOT NULL;
      CREATE INDEX jobs_queue_idx ON jobs (queue, due_at, id) WHERE lease IS NULL AND queue IS NOT NULL;
      CREATE INDEX jobs_no_queue_idx ON jobs (due_at, id) WHERE lease IS NULL AND queue IS NULL;
    `,
  },
];

/** The schema version this code needs. */
export const SCHEMA_VERSION = Math.max(...MIGRATIONS.map((m) => m.version));

/** The recorded schema version, or undefined when the schema (or its version table) is missing. */
export async function currentVersion(client: pg.ClientBase, schema: string): Promise<number | undefined> {
  // Read pg_class as a table (this statement's snapshot), not with to_regclass, whose catalog
  // cache may not yet show a table another session created while we waited for the lock.
  const { rows } = await client.query<{ exists: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = $1 AND c.relname = 'schema_migrations') AS exists`,
    [schema],
  );
  if (!rows[0]?.exists) return undefined;
  const v = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${quoteIdent(schema)}.schema_migrations`);
  return v.rows[0]?.v ?? undefined;
}

/**
 * Applies the pending migrations on `client` in one transaction. Throws `SchemaVersionError`
 * when the schema is newer than this code (nothing is changed then).
 */
export async function applyMigrations(client: pg.ClientBase, schema: string, where: string): Promise<{ from: number | undefined; to: number }> {
  const s = quoteIdent(schema);
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`celery_longterm_scheduler.migrate:${schema}`]);
    const from = await currentVersion(client, schema);
    if (from !== undefined && from > SCHEMA_VERSION) throw new SchemaVersionError(where, from, SCHEMA_VERSION);
    if (from === SCHEMA_VERSION) {
      await client.query('COMMIT'); // up to date: no DDL, so no CREATE privilege needed
      return { from, to: SCHEMA_VERSION };
    }
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`SET LOCAL search_path TO ${s}`);
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    for (const m of MIGRATIONS) {
      if (from !== undefined && m.version <= from) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [m.version]);
    }
    await client.query('COMMIT');
    return { from, to: SCHEMA_VERSION };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Runs `fn` with a client of its own, connected to `url`, closing it afterwards. */
async function withClient<T>(url: string, options: PostgresUrlOptions, fn: (client: pg.Client, where: string, schema: string) => Promise<T>): Promise<T> {
  const target = parsePostgresUrl(url, options);
  const client = new (loadDriver<typeof pg>('pg').Client)(connectionConfig(target));
  client.on('error', () => {}); // reported by the failing query instead
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw wrapPgError(err, target.url);
  }
  try {
    return await fn(client, `${target.description} (schema ${target.schema})`, target.schema);
  } catch (err) {
    throw wrapPgError(err, target.url);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Brings the store's schema up to date (creating it when missing). Running it again is a no-op.
 * `from` is the version found (undefined when there was none), `to` the version now.
 */
export function migrateSchema(url: string, options: PostgresUrlOptions = {}): Promise<{ from: number | undefined; to: number }> {
  return withClient(url, options, (client, where, schema) => applyMigrations(client, schema, where));
}

/** The schema version found (undefined when none) and the one this code needs; changes nothing. */
export function schemaStatus(url: string, options: PostgresUrlOptions = {}): Promise<{ current: number | undefined; expected: number }> {
  return withClient(url, options, async (client, _where, schema) => ({ current: await currentVersion(client, schema), expected: SCHEMA_VERSION }));
}
