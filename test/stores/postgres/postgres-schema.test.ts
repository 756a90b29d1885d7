/** Schema versions: a store refuses a missing, older or newer schema; migrations fix the first two. */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SchemaVersionError } from '../../../src/util/errors.js';
import { MIGRATIONS, SCHEMA_VERSION, migrateSchema, schemaStatus } from '../../../src/stores/postgres/migrations.js';
import { PostgresStore, sendable } from '../../../src/stores/postgres/postgres-store.js';
import { indexFieldsOf } from '../../../src/job/entry.js';
import { jobMatches, type ListRange } from '../../../src/stores/base.js';
import { postgres, requireService, uniqueSchema } from '../../helpers/services.js';
import { dropSchema, sql } from '../../helpers/postgres.js';

const service = await postgres();
const skip = requireService(service, 'PostgreSQL');
afterAll(() => service?.stop());

describe.skipIf(skip)('PostgreSQL schema versions', () => {
  const url = service?.url ?? '';
  const schemas: string[] = [];
  const stores: PostgresStore[] = [];
  const fresh = () => {
    const s = uniqueSchema('schema');
    schemas.push(s);
    return s;
  };
  const open = (schema: string, migrate = false) => {
    const s = new PostgresStore(url, { schema, migrate });
    stores.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const s of schemas.splice(0)) await dropSchema(url, s);
  });

  it('the migrations are numbered 1, 2, ... without gaps', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
  });

  it('a missing schema: SchemaVersionError (found undefined), and nothing is created', async () => {
    const schema = fresh();
    const err = await open(schema)
      .count()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaVersionError);
    expect((err as SchemaVersionError).found).toBeUndefined();
    expect((err as SchemaVersionError).expected).toBe(SCHEMA_VERSION);
    expect((err as Error).message).toMatch(/migrate-schema/);
    expect(await sql(url, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).toEqual([]);
    expect(await schemaStatus(url, { schema })).toEqual({ current: undefined, expected: SCHEMA_VERSION });
  });

  it('migrateSchema creates it; running it again is a no-op; the store then works', async () => {
    const schema = fresh();
    expect(await migrateSchema(url, { schema })).toEqual({ from: undefined, to: SCHEMA_VERSION });
    expect(await migrateSchema(`${url}${url.includes('?') ? '&' : '?'}schema=${schema}`)).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION });
    const rows = await sql<{ version: number }>(url, `SELECT version FROM "${schema}".schema_migrations ORDER BY version`);
    expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await schemaStatus(url, { schema })).toEqual({ current: SCHEMA_VERSION, expected: SCHEMA_VERSION });
    const store = open(schema);
    expect(await store.add([{ id: 'a', dueAt: 1, entry: '[]' }])).toBe(1);
    expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 0 });
  });

  it('migrate: true applies the migrations on first use, once, even from racing stores', async () => {
    const schema = fresh();
    const racing = Array.from({ length: 5 }, () => open(schema, true));
    const [counts, migrations] = await Promise.all([
      Promise.all(racing.map((s) => s.count())),
      Promise.all([migrateSchema(url, { schema }), migrateSchema(url, { schema })]),
    ]);
    expect(counts).toEqual(racing.map(() => ({ scheduled: 0, inFlight: 0, dead: 0 })));
    expect(migrations.every((m) => m.to === SCHEMA_VERSION)).toBe(true);
    const rows = await sql(url, `SELECT version FROM "${schema}".schema_migrations`);
    expect(rows).toHaveLength(MIGRATIONS.length);
  });

  it('an older schema: SchemaVersionError with the version found; migrating brings it up to date', async () => {
    const schema = fresh();
    await sql(
      url,
      `CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); INSERT INTO "${schema}".schema_migrations VALUES (0)`,
    );
    const err = await open(schema)
      .nextDueAt()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaVersionError);
    expect((err as SchemaVersionError).found).toBe(0);
    expect(await migrateSchema(url, { schema })).toEqual({ from: 0, to: SCHEMA_VERSION });
    expect(await open(schema).nextDueAt()).toBeUndefined();
  });

  it('version 1 with jobs in it (scheduled and in flight) migrates to job keys, keeping every job', async () => {
    const schema = fresh();
    const v1 = MIGRATIONS.find((m) => m.version === 1)!;
    await sql(
      url,
      `CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); ${v1.sql}; INSERT INTO schema_migrations VALUES (1)`,
    );
    await sql(url, `INSERT INTO "${schema}".jobs (id, due_at, entry, lease) VALUES ('old-1', 10, '[1]', NULL), ('old-2', 20, '[2]', 99)`);
    expect(await migrateSchema(url, { schema })).toEqual({ from: 1, to: SCHEMA_VERSION });
    const store = open(schema);
    expect(await store.get('old-1')).toEqual({ id: 'old-1', dueAt: 10, entry: '[1]', state: 'scheduled' });
    expect(await store.get('old-2')).toEqual({ id: 'old-2', dueAt: 99, entry: '[2]', state: 'in_flight' });
    expect(await store.addKeyed({ id: 'k', dueAt: 5, entry: '[3]' }, 'K', 'keep')).toEqual({ id: 'k', outcome: 'added' });
    expect(await store.addKeyed({ id: 'k2', dueAt: 5, entry: '[3]' }, 'K', 'keep')).toEqual({ id: 'k', outcome: 'kept' });
    const indexes = await sql<{ indexdef: string }>(url, `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'jobs_job_key_idx'`, [schema]);
    expect(indexes[0]?.indexdef).toMatch(/UNIQUE INDEX .* \(job_key\) WHERE \(job_key IS NOT NULL\)/);
  });

  it('version 2 with corrupt jobs moved aside migrates them to dead letters, and adds attempts', async () => {
    const schema = fresh();
    const upTo2 = MIGRATIONS.filter((m) => m.version <= 2)
      .map((m) => m.sql)
      .join(';');
    await sql(
      url,
      `CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); ${upTo2}; INSERT INTO schema_migrations VALUES (1), (2)`,
    );
    await sql(
      url,
      `INSERT INTO "${schema}".corrupt (id, entry, due_at, reason, moved_at) VALUES ('bad', 'not json', 7, 'stored job "bad" is corrupt: not JSON', to_timestamp(1800000000.5))`,
    );
    await sql(url, `INSERT INTO "${schema}".jobs (id, due_at, entry) VALUES ('ok', 10, '[1]')`);
    expect(await migrateSchema(url, { schema })).toEqual({ from: 2, to: SCHEMA_VERSION });
    const store = open(schema);
    expect(await store.getDead('bad')).toEqual({
      id: 'bad',
      entry: 'not json',
      dueAt: 7,
      reason: 'corrupt',
      error: 'stored job "bad" is corrupt: not JSON',
      attempts: 0,
      diedAt: 1800000000.5,
    });
    expect(await store.count()).toEqual({ scheduled: 1, inFlight: 0, dead: 1 });
    const [claim] = await store.claimDue({ until: 10, now: 10, limit: 10, leaseMs: 1000 });
    expect(claim).toMatchObject({ id: 'ok' });
    expect(claim!.attempts).toBeUndefined();
  });

  it('version 3 with jobs and dead letters: the store says to run migrate-schema; migrating adds tags, keeping every job and dead letter', async () => {
    const schema = fresh();
    const upTo3 = MIGRATIONS.filter((m) => m.version <= 3)
      .map((m) => m.sql)
      .join(';');
    await sql(
      url,
      `CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); ${upTo3}; INSERT INTO schema_migrations VALUES (1), (2), (3)`,
    );
    await sql(
      url,
      `INSERT INTO "${schema}".jobs (id, due_at, entry, lease, job_key, failures) VALUES ('s', 10, '[1]', NULL, 'K', NULL), ('f', 20, '[2]', 99, NULL, NULL);
       INSERT INTO "${schema}".dead (id, entry, due_at, reason, error, attempts, first_failed_at, died_at) VALUES ('d', '[3]', 7, 'rejected', 'too big', 2, 5, 8)`,
    );
    for (const op of [(s: PostgresStore) => s.count(), (s: PostgresStore) => s.get('s'), (s: PostgresStore) => s.deadLetters({ limit: 10 })]) {
      const err = await op(open(schema)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchemaVersionError);
      expect((err as SchemaVersionError).found).toBe(3);
      expect((err as SchemaVersionError).expected).toBe(SCHEMA_VERSION);
      expect((err as Error).message).toMatch(/migrate-schema/);
    }
    expect(await schemaStatus(url, { schema })).toEqual({ current: 3, expected: SCHEMA_VERSION });
    expect(await migrateSchema(url, { schema })).toEqual({ from: 3, to: SCHEMA_VERSION });
    const store = open(schema);
    expect(await store.get('s')).toEqual({ id: 's', dueAt: 10, entry: '[1]', state: 'scheduled', key: 'K' });
    expect(await store.get('f')).toEqual({ id: 'f', dueAt: 99, entry: '[2]', state: 'in_flight' });
    expect(await store.getDead('d')).toEqual({
      id: 'd',
      entry: '[3]',
      dueAt: 7,
      reason: 'rejected',
      error: 'too big',
      attempts: 2,
      firstFailedAt: 5,
      diedAt: 8,
    });
    expect(await store.count()).toEqual({ scheduled: 1, inFlight: 1, dead: 1 });
    // the old jobs work as before: the key is held, the claim acknowledged, the dead letter revived
    expect(await store.addKeyed({ id: 'k', dueAt: 5, entry: '[4]', tags: ['new'] }, 'K', 'keep')).toEqual({ id: 's', outcome: 'kept' });
    await store.acknowledge([{ id: 'f', dueAt: 20, entry: '[2]', token: '99' }]);
    expect(await store.reviveDead(['d'], 30)).toEqual(['scheduled']);
    expect(await store.get('d')).toEqual({ id: 'd', dueAt: 30, entry: '[3]', state: 'scheduled' });
    // and new ones take tags
    await store.add([{ id: 't', dueAt: 40, entry: '[5]', tags: ['tenant:42', 'invoice'] }]);
    expect((await store.get('t'))?.tags).toEqual(['tenant:42', 'invoice']);
    expect(await store.count()).toEqual({ scheduled: 3, inFlight: 0, dead: 0 });
    const indexes = await sql<{ indexname: string; indexdef: string }>(
      url,
      `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'job_tags' ORDER BY indexname`,
      [schema],
    );
    expect(indexes.map((i) => i.indexname)).toEqual(['job_tags_by_job_idx', 'job_tags_pkey']);
    expect(indexes[0]?.indexdef).toMatch(/UNIQUE INDEX .* \(job_id, pos\) INCLUDE \(tag\)/);
    expect(indexes[1]?.indexdef).toMatch(/UNIQUE INDEX .* \(tag, due_at, job_id\)/); // version 5
  });

  it('version 4 with tagged jobs: the store says to run migrate-schema; migrating gives each tag row its job due time, keeping every job, tag and dead letter', async () => {
    const schema = fresh();
    const upTo4 = MIGRATIONS.filter((m) => m.version <= 4)
      .map((m) => m.sql)
      .join(';');
    await sql(
      url,
      `CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); ${upTo4}; INSERT INTO schema_migrations VALUES (1), (2), (3), (4)`,
    );
    // scheduled (tagged and not), in flight (tagged), a dead letter with tags, and a stray tag row of no job
    await sql(
      url,
      `INSERT INTO "${schema}".jobs (id, due_at, entry, lease, job_key, failures, tagged) VALUES
         ('s1', 30, '[1]', NULL, 'K', NULL, true), ('s2', 10, '[2]', NULL, NULL, NULL, true), ('u', 20, '[3]', NULL, NULL, NULL, false), ('f', 5, '[4]', 99, NULL, NULL, true);
       INSERT INTO "${schema}".job_tags (tag, job_id, pos) VALUES
         ('tenant:42', 's1', 0), ('invoice', 's1', 1), ('tenant:42', 's2', 0), ('tenant:42', 'f', 0), ('tenant:42', 'gone', 0);
       INSERT INTO "${schema}".dead (id, entry, due_at, reason, error, attempts, first_failed_at, died_at, tags) VALUES ('d', '[5]', 7, 'rejected', 'too big', 2, 5, 8, '{tenant:42}')`,
    );
    for (const op of [(s: PostgresStore) => s.count(), (s: PostgresStore) => s.list({ limit: 10, tags: { all: ['tenant:42'] } })]) {
      const err = await op(open(schema)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchemaVersionError);
      expect((err as SchemaVersionError).found).toBe(4);
      expect((err as SchemaVersionError).expected).toBe(SCHEMA_VERSION);
      expect((err as Error).message).toMatch(/migrate-schema/);
    }
    expect(await schemaStatus(url, { schema })).toEqual({ current: 4, expected: SCHEMA_VERSION });
    expect(await migrateSchema(url, { schema })).toEqual({ from: 4, to: SCHEMA_VERSION });
    expect(await sql(url, `SELECT tag, due_at, job_id, pos FROM "${schema}".job_tags ORDER BY tag, due_at, job_id`)).toEqual([
      { tag: 'invoice', due_at: 30, job_id: 's1', pos: 1 },
      { tag: 'tenant:42', due_at: 5, job_id: 'f', pos: 0 },
      { tag: 'tenant:42', due_at: 10, job_id: 's2', pos: 0 },
      { tag: 'tenant:42', due_at: 30, job_id: 's1', pos: 0 },
    ]);
    const store = open(schema);
    expect(await store.get('s1')).toEqual({ id: 's1', dueAt: 30, entry: '[1]', state: 'scheduled', tags: ['tenant:42', 'invoice'], key: 'K' });
    expect(await store.get('f')).toEqual({ id: 'f', dueAt: 99, entry: '[4]', state: 'in_flight', tags: ['tenant:42'] });
    expect(await store.count()).toEqual({ scheduled: 3, inFlight: 1, dead: 1 });
    const listed = async (tags: { all?: string[]; any?: string[] }) => (await store.list({ limit: 10, tags })).jobs.map((j) => j.id);
    expect(await listed({ all: ['tenant:42'] })).toEqual(['s2', 's1']);
    expect(await listed({ all: ['tenant:42', 'invoice'] })).toEqual(['s1']);
    // the old jobs move as before, their tags with them: released, revived, acknowledged
    await store.release([{ id: 'f', dueAt: 15, entry: '[4]', token: '99' }]);
    expect(await store.reviveDead(['d'], 12)).toEqual(['scheduled']);
    expect(await listed({ all: ['tenant:42'] })).toEqual(['s2', 'd', 'f', 's1']);
    expect(await store.addKeyed({ id: 'k', dueAt: 1, entry: '[6]', tags: ['tenant:42'] }, 'K', 'replace')).toEqual({
      id: 'k',
      outcome: 'replaced',
      replacedId: 's1',
    });
    expect(await listed({ any: ['invoice', 'tenant:42'] })).toEqual(['k', 's2', 'd', 'f']);
    const indexes = await sql<{ indexname: string; indexdef: string }>(
      url,
      `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'job_tags' ORDER BY indexname`,
      [schema],
    );
    expect(indexes.map((i) => i.indexname)).toEqual(['job_tags_by_job_idx', 'job_tags_pkey']);
    expect(indexes[0]?.indexdef).toMatch(/UNIQUE INDEX .* \(job_id, pos\) INCLUDE \(tag\)/);
    expect(indexes[1]?.indexdef).toMatch(/UNIQUE INDEX .* \(tag, due_at, job_id\)/);
  });

  it('migrate: true brings a version 4 schema up to date on first use, keeping its tags', async () => {
    const schema = fresh();
    const upTo4 = MIGRATIONS.filter((m) => m.version <= 4)
      .map((m) => m.sql)
      .join(';');
    await sql(
      url,
      `CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); ${upTo4}; INSERT INTO schema_migrations VALUES (1), (2), (3), (4);
       INSERT INTO jobs (id, due_at, entry, tagged) VALUES ('old', 10, '[1]', true); INSERT INTO job_tags (tag, job_id, pos) VALUES ('x', 'old', 0)`,
    );
    const store = open(schema, true);
    expect((await store.list({ limit: 10, tags: { all: ['x'] } })).jobs).toEqual([{ id: 'old', dueAt: 10, entry: '[1]', state: 'scheduled', tags: ['x'] }]);
    expect(await schemaStatus(url, { schema })).toEqual({ current: SCHEMA_VERSION, expected: SCHEMA_VERSION });
  });

  it('migrate: true brings a version 3 schema up to date on first use, keeping its jobs', async () => {
    const schema = fresh();
    const upTo3 = MIGRATIONS.filter((m) => m.version <= 3)
      .map((m) => m.sql)
      .join(';');
    await sql(
      url,
      `CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); ${upTo3}; INSERT INTO schema_migrations VALUES (1), (2), (3);
       INSERT INTO jobs (id, due_at, entry) VALUES ('old', 10, '[1]')`,
    );
    const store = open(schema, true);
    expect(await store.get('old')).toEqual({ id: 'old', dueAt: 10, entry: '[1]', state: 'scheduled' });
    expect(await schemaStatus(url, { schema })).toEqual({ current: SCHEMA_VERSION, expected: SCHEMA_VERSION });
  });

  it('a newer schema: SchemaVersionError, also with migrate: true, and migrateSchema changes nothing', async () => {
    const schema = fresh();
    await migrateSchema(url, { schema });
    await sql(url, `INSERT INTO "${schema}".schema_migrations VALUES ($1)`, [SCHEMA_VERSION + 1]);
    for (const migrate of [false, true]) {
      const err = await open(schema, migrate)
        .count()
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchemaVersionError);
      expect((err as SchemaVersionError).found).toBe(SCHEMA_VERSION + 1);
      expect((err as Error).message).toMatch(/upgrade celery-longterm-scheduler/);
    }
    await expect(migrateSchema(url, { schema })).rejects.toBeInstanceOf(SchemaVersionError);
    expect(await schemaStatus(url, { schema })).toEqual({ current: SCHEMA_VERSION + 1, expected: SCHEMA_VERSION });
  });

  it('a store that found no schema works once it has been migrated (no restart needed)', async () => {
    const schema = fresh();
    const store = open(schema);
    await expect(store.count()).rejects.toBeInstanceOf(SchemaVersionError);
    await migrateSchema(url, { schema });
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('tables dropped under a running store: SchemaVersionError, not a raw driver error', async () => {
    const schema = fresh();
    await migrateSchema(url, { schema });
    const store = open(schema);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    await dropSchema(url, schema);
    const err = await store.get('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaVersionError);
    expect((err as SchemaVersionError).found).toBeUndefined();
  });

  it('migrate: true on an up-to-date schema needs no CREATE privilege', async () => {
    const schema = fresh();
    await migrateSchema(url, { schema });
    const role = uniqueSchema('role');
    await sql(
      url,
      `CREATE ROLE ${role} LOGIN; GRANT USAGE ON SCHEMA "${schema}" TO ${role}; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO ${role}; REVOKE CREATE ON SCHEMA public FROM ${role}`,
    );
    try {
      const u = new URL(url);
      u.username = role;
      u.password = '';
      const store = new PostgresStore(u.toString(), { schema, migrate: true });
      stores.push(store);
      expect(await store.add([{ id: 'a', dueAt: 1, entry: '[]' }])).toBe(1);
      expect(await migrateSchema(u.toString(), { schema })).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION });
      await store.close();
    } finally {
      await sql(url, `DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });
  describe('version 6: task and queue columns', () => {
    /** What the columns hold for an entry: `indexFieldsOf`'s names, '' for one that PostgreSQL text cannot hold. */
    const column = (name: string | null) => (name === null ? null : name.includes('\u0000') || !name.isWellFormed() ? '' : name);
    const expected = (entry: string) => {
      const f = indexFieldsOf(entry);
      return { task: column(f.task), queue: column(f.queue) };
    };
    // ordinary, odd and hostile entries; String.raw keeps the JSON escapes as PostgreSQL receives them
    const entries: string[] = [
      String.raw`[["app.a"], {"task_id": "x", "queue": "q1"}]`,
      String.raw`[["app.a"], {"task_id": "x"}]`,
      'not json {',
      String.raw`[[7], {"queue": 3}]`,
      String.raw`[["app.b"], {"queue": null}]`,
      String.raw`[["app.b"], {"queue": "q1", "queue": "q2"}]`, // the last of a key, as JSON.parse
      String.raw`[["app.b"], {"queue": "q2", "queue": 5}]`,
      String.raw`[["app.c"], {"args": ["\u0000"], "queue": "q3"}]`, // PostgreSQL's accessors refuse \u0000 anywhere
      String.raw`[["a\u0000b"], {"queue": "q3"}]`,
      String.raw`[["\ud800x"], {"queue": "q\ud83d\ude00"}]`, // a lone surrogate, and a pair
      String.raw`[["app.\ud83d\ude00"], {"args": ["\u0000"]}]`,
      String.raw`[["x\\u0000"], {"args": ["\udc00"], "queue": "\\\ud83d\ude00"}]`, // escaped backslashes before u
      String.raw`[["app.d"], {"n": 1e1000000, "queue": "big"}]`, // beyond numeric: jsonb refuses, json reads
      ' \n [ [ "app.e" ] , { "queue" : "q\\"1" } ] \t',
      '[]',
      String.raw`[["app.f"]]`,
      String.raw`{"queue": "x"}`,
      String.raw`[["app.g"], ["queue"]]`,
      String.raw`[["app.h", "extra"], {"queue": ""}]`,
      String.raw`[["t"], {"queue": "\u0000"}]`,
      String.raw`[["t"], {"queue": "\udc00"}]`,
      String.raw`[["t"], {"q\u0075eue": "esc", "kwargs": {"queue": "inner"}}]`,
      String.raw`[["\u0074"], {"queue": "\u00e9"}]`,
      String.raw`[["t"], {"queue": "q1"}, "more", {"queue": "no"}]`,
      String.raw`[["t"], {"queue": "q1"}`, // cut short
      String.raw`[["t"], {"queue": 01}]`, // not JSON: a leading zero
    ];

    it('a version 5 schema with jobs migrates: every job gets the task and queue indexFieldsOf reads, as the store writes them, and filters find them', async () => {
      const schema = fresh();
      const upTo5 = MIGRATIONS.filter((m) => m.version <= 5)
        .map((m) => m.sql)
        .join(';');
      await sql(
        url,
        `CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); ${upTo5}; INSERT INTO schema_migrations VALUES (1), (2), (3), (4), (5)`,
      );
      // scheduled (one with a key, one tagged) and in flight
      await sql(
        url,
        `INSERT INTO "${schema}".jobs (id, due_at, entry, lease, job_key, tagged)
         SELECT 'm-' || (n - 1), 1000 + n, e, CASE WHEN n = 2 THEN 99 END, CASE WHEN n = 1 THEN 'K' END, n = 3
         FROM unnest($1::text[]) WITH ORDINALITY AS u(e, n)`,
        [entries],
      );
      await sql(url, `INSERT INTO "${schema}".job_tags (tag, job_id, pos, due_at) VALUES ('x', 'm-2', 0, 1003)`);
      const err = await open(schema)
        .list({ limit: 10, task: 'app.a' })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchemaVersionError);
      expect((err as SchemaVersionError).found).toBe(5);
      expect(await migrateSchema(url, { schema })).toEqual({ from: 5, to: SCHEMA_VERSION });
      const columns = async (prefix: string) =>
        (
          await sql<{ id: string; task: string | null; queue: string | null }>(url, `SELECT id, task, queue FROM "${schema}".jobs WHERE id LIKE $1`, [
            `${prefix}%`,
          ])
        )
          .sort((a, b) => Number(a.id.slice(2)) - Number(b.id.slice(2)))
          .map(({ task, queue }) => ({ task, queue }));
      expect(await columns('m-')).toEqual(entries.map(expected));
      // the same entries added by the store get the same columns
      const store = open(schema);
      await store.add(entries.map((entry, i) => ({ id: `n-${i}`, dueAt: 2000 + i, entry })));
      expect(await columns('n-')).toEqual(entries.map(expected));
      // the functions used to fill them are gone
      expect(await sql(url, `SELECT proname FROM pg_proc WHERE pronamespace = $1::regnamespace`, [schema])).toEqual([]);
      // filters answer as jobMatches over the entries (in flight m-1 left out)
      const scheduled = [
        ...entries.map((entry, i) => ({ id: `m-${i}`, dueAt: 1001 + i, entry })),
        ...entries.map((entry, i) => ({ id: `n-${i}`, dueAt: 2000 + i, entry })),
      ].filter((j) => j.id !== 'm-1');
      const names = new Set(
        entries.flatMap((e) => Object.values(indexFieldsOf(e))).filter((n): n is string => n !== null && n !== '' && n.isWellFormed() && sendable(n)),
      );
      const filters: ListRange[] = [
        ...[...names].map((task) => ({ task })),
        ...[...names].map((q) => ({ queues: [q] })),
        { queues: [null] },
        { queues: ['q1', null, 'q3'] },
        { task: 't', queues: ['q1', 'esc'] },
      ];
      for (const f of filters) {
        const want = scheduled.filter((j) => jobMatches(f, j)).map((j) => j.id);
        const got = (await store.list({ limit: 100, ...f })).jobs.map((j) => j.id);
        expect([f, got]).toEqual([f, want]);
        expect([f, await store.countWhere(f)]).toEqual([f, want.length]);
      }
      // a name holding a NUL cannot be sent: it matches nothing, and is no error
      expect((await store.list({ limit: 10, task: 'a\u0000b' })).jobs).toEqual([]);
      expect(await store.countWhere({ queues: ['\u0000'] })).toBe(0);
      const indexes = await sql<{ indexname: string; indexdef: string }>(
        url,
        `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname IN ('jobs_task_idx', 'jobs_queue_idx', 'jobs_no_queue_idx') ORDER BY indexname`,
        [schema],
      );
      expect(indexes.map((i) => i.indexdef.replace(/^.* USING btree /, ''))).toEqual([
        '(due_at, id) WHERE ((lease IS NULL) AND (queue IS NULL))',
        '(queue, due_at, id) WHERE ((lease IS NULL) AND (queue IS NOT NULL))',
        '(task, due_at, id) WHERE ((lease IS NULL) AND (task IS NOT NULL))',
      ]);
      // the old jobs keep working: the key is held, the tag found, the claim acknowledged
      expect(await store.addKeyed({ id: 'k', dueAt: 5, entry: '[1]' }, 'K', 'keep')).toEqual({ id: 'm-0', outcome: 'kept' });
      expect((await store.list({ limit: 10, tags: { all: ['x'] }, queues: [null] })).jobs.map((j) => j.id)).toEqual(['m-2']);
      await store.acknowledge([{ id: 'm-1', dueAt: 1002, entry: entries[1]!, token: '99' }]);
      expect(await store.count()).toEqual({ scheduled: 2 * entries.length - 1, inFlight: 0, dead: 0 });
    });
  });
});
