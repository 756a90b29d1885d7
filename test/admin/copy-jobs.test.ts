/**
 * Moving jobs between stores (`migrate`) and schema management (`migrate-schema`), through the
 * CLI in-process and the library, on real stores: a Redis store in the Python package's bare
 * layout (a private server), SQLite temp files, and a PostgreSQL schema per test.
 */
import { existsSync, linkSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli as runCli } from '../helpers/cli.js';
import { createStore } from '../../src/stores/registry.js';
import { ValidationError } from '../../src/util/errors.js';
import { migrateJobs } from '../../src/admin/copy-jobs.js';
import type { ScheduleStore } from '../../src/stores/store.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { fixture } from '../helpers/fixture.js';
import { dropSchema, schemaUrl, sql } from '../helpers/postgres.js';
import { postgres, privateRedis, requireService, uniqueSchema, type RedisService } from '../helpers/services.js';

const redis = await privateRedis();
const pgService = await postgres();
const skipRedis = requireService(redis, 'Redis');
const skipPg = requireService(pgService, 'PostgreSQL');

const cli = (...argv: string[]) => runCli(argv);

async function everyJob(store: ScheduleStore): Promise<{ id: string; dueAt: number; entry: string }[]> {
  const out: { id: string; dueAt: number; entry: string }[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ limit: 7, ...(cursor !== undefined && { cursor }) });
    out.push(...page.jobs.map(({ id, dueAt, entry }) => ({ id, dueAt, entry })));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'cls-migrate-'));
let fileNo = 0;
const sqliteUrl = () => `sqlite:///${join(dir, `s${fileNo++}.db`)}`;
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await redis?.stop(); // the private server this file started (it was left running, one per test run)
});

describe.skipIf(skipRedis)('migrate from a store the Python package wrote', () => {
  let url: string;
  const expected = fixture.entries
    .map((e) => ({ id: e.key, dueAt: e.score, entry: e.value }))
    .sort((a, b) => a.dueAt - b.dueAt || Buffer.compare(Buffer.from(a.id), Buffer.from(b.id)));

  beforeAll(async () => {
    url = (redis as RedisService).urlFor(3);
    const raw = new Redis(url);
    for (const e of fixture.entries) {
      await raw.set(e.key, e.value);
      await raw.zadd('scheduled_task_id_by_time', e.score, e.key);
    }
    raw.disconnect();
  });

  it('copies every job to SQLite with ids, due times and entries intact; a second run copies nothing', async () => {
    const to = sqliteUrl();
    const first = await cli('migrate', '--from', url, '--to', to, '--batch-size', '5', '--json');
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ seen: expected.length, copied: expected.length, skipped: 0, removed: 0 });
    const target = createStore(to);
    try {
      expect(await everyJob(target)).toEqual(expected);
    } finally {
      await target.close();
    }
    const again = await cli('migrate', '--from', url, '--to', to, '--json');
    expect(JSON.parse(again.stdout)).toMatchObject({ copied: 0, skipped: expected.length });
    const source = createStore(url);
    try {
      expect((await source.count()).scheduled).toBe(expected.length); // a copy leaves the source alone
    } finally {
      await source.close();
    }
  });

  it('prints a readable summary and progress lines without --json', async () => {
    const r = await cli('migrate', '--from', url, '--to', sqliteUrl(), '--batch-size', '4');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^copied ${expected.length}, already there 0; ${expected.length} jobs in [\\d.]+ (ms|s) \\(\\d+/s\\)\\n$`));
    expect(r.stderr).toMatch(/100% 13\/13 jobs/);
  });
});

describe('migrate between SQLite stores', () => {
  it('--move removes from the source only what the target holds, and resumes where an interrupted run stopped', async () => {
    const fromUrl = sqliteUrl();
    const toUrl = sqliteUrl();
    const from = createStore(fromUrl);
    const to = createStore(toUrl);
    try {
      const jobs = Array.from({ length: 250 }, (_, i) => ({ id: `m${i}`, dueAt: 2_000_000_000 + i, entry: JSON.stringify([['t'], { task_id: `m${i}` }]) }));
      await from.add(jobs);
      // the target already holds one of them, with other content: it is kept, and still removed from the source
      await to.add([{ id: 'm7', dueAt: 1, entry: '[["other"],{}]' }]);
      const stop = new AbortController();
      const partial = await migrateJobs(from, to, { move: true, batchSize: 100, signal: stop.signal, onProgress: () => stop.abort() });
      expect(partial).toMatchObject({ seen: 100, copied: 99, skipped: 1, removed: 100 });
      expect(partial.cursor).toBeDefined();
      const rest = await migrateJobs(from, to, { move: true, batchSize: 100, after: partial.cursor! });
      expect(rest).toMatchObject({ seen: 150, copied: 150, skipped: 0, removed: 150 });
      expect(await from.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
      expect((await to.count()).scheduled).toBe(250);
      expect(await to.get('m7')).toMatchObject({ dueAt: 1, entry: '[["other"],{}]' });
      expect(await to.get('m249')).toMatchObject({ dueAt: 2_000_000_249, entry: jobs[249]!.entry });
    } finally {
      await from.close();
      await to.close();
    }
  });

  it('a target it cannot reach fails the run even when the source is empty, with the password hidden', async () => {
    const empty = sqliteUrl();
    const made = createStore(empty);
    await made.count(); // an empty store (a source file that does not exist is refused)
    await made.close();
    const r = await cli('migrate', '--from', empty, '--to', 'postgres://u:secret@127.0.0.1:1/x');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: cannot reach the long-term scheduler store \(PostgreSQL\) at postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/x: /);
    const missingDir = await cli('migrate', '--from', empty, '--to', `sqlite:///${join(dir, 'no-such-dir', 'x.db')}`);
    expect(missingDir.code).toBe(1);
    expect(missingDir.stderr.split('\n')).toHaveLength(2);
  });

  it('a bad URL fails with one line, exit 2, and touches nothing', async () => {
    const r = await cli('migrate', '--from', 'mysql://u:secret@h/db', '--to', sqliteUrl());
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'error: store URL scheme "mysql:" is not supported; use sqlite://, postgres://, redis://, rediss://, sentinel:// or redis+cluster://\n',
    );
  });
});

describe.skipIf(skipPg)('migrate-schema and migrate on PostgreSQL', () => {
  const schema = uniqueSchema('cli');
  let url: string;
  beforeAll(() => {
    url = schemaUrl(pgService!.url, schema);
  });
  afterAll(() => dropSchema(pgService!.url, schema));

  it('refuses a store without a schema, creates it on migrate-schema, and a second run is a no-op', async () => {
    const before = await cli('--backend', url, 'schedule', 't.x', '--countdown', '60');
    expect(before.code).toBe(1);
    expect(before.stderr).toMatch(
      /^error: the store .* has no scheduler schema yet, this code needs version \d+; run `celery-longterm-scheduler migrate-schema --backend <url>`/,
    );
    expect((await cli('--backend', url, 'migrate-schema', '--status', '--json')).stdout).toMatch(/"from":null|"to":null|needs migrate-schema/);
    const first = await cli('--backend', url, 'migrate-schema', '--json');
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ kind: 'postgres', changed: true });
    const second = await cli('--backend', url, 'migrate-schema');
    expect(second.stdout).toMatch(/schema already at version \d+; nothing to do/);
    expect((await cli('--backend', url, 'schedule', 't.x', '--countdown', '60')).code).toBe(0);
  });

  it('moves every job from SQLite into PostgreSQL', async () => {
    const fromUrl = sqliteUrl();
    const from = createStore(fromUrl);
    await from.add(Array.from({ length: 1200 }, (_, i) => ({ id: `p${i}`, dueAt: 1_900_000_000 + i / 10, entry: `[["t"],{"task_id":"p${i}"}]` })));
    await from.close();
    const r = await cli('migrate', '--from', fromUrl, '--to', url, '--move', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ copied: 1200, removed: 1200 });
    const target = createStore(url);
    try {
      const all = await everyJob(target);
      expect(all.filter((j) => j.id.startsWith('p'))).toHaveLength(1200);
      expect(all.find((j) => j.id === 'p1199')).toEqual({ id: 'p1199', dueAt: 1_900_000_000 + 1199 / 10, entry: '[["t"],{"task_id":"p1199"}]' });
    } finally {
      await target.close();
    }
  });
});

/** Three jobs due in 2033, for stores that must be left exactly as they were. */
const threeJobs = ['a', 'b', 'c'].map((id, i) => ({ id, dueAt: 2_000_000_000 + i, entry: `[["t"],{"task_id":"${id}"}]` }));

async function seeded(url: string, options: { keyPrefix?: string; migrate?: boolean } = {}): Promise<void> {
  const store = createStore(url, options);
  try {
    await store.add(threeJobs);
  } finally {
    await store.close();
  }
}

async function jobsIn(url: string, options: { keyPrefix?: string } = {}): Promise<{ id: string; dueAt: number; entry: string }[]> {
  const store = createStore(url, options);
  try {
    return await everyJob(store);
  } finally {
    await store.close();
  }
}

/** `migrate` from `from` to `to`, with and without --move: refused with one line, exit 2, and nothing changed. */
async function expectRefused(from: string[], to: string[], left: () => Promise<unknown>): Promise<void> {
  for (const move of [['--move'], []]) {
    const r = await cli('migrate', ...from, ...to, ...move);
    expect(r.stderr).toMatch(
      /^error: the source .* and the target .* are one store \(the same [^)]+\); migrate copies between two different stores, so pass another target\n$/,
    );
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(await left()).toEqual(threeJobs);
  }
}

describe('migrate refuses a store as its own target, however it is reached', () => {
  describe.skipIf(skipRedis)('Redis: the same server run_id, database and key prefix', () => {
    it('by another host name, and by the identical URL', async () => {
      const port = new URL((redis as RedisService).url).port;
      const url = `redis://127.0.0.1:${port}/5`;
      await seeded(url, { keyPrefix: 'same:' });
      const left = () => jobsIn(url, { keyPrefix: 'same:' });
      await expectRefused(['--from', url, '--from-key-prefix', 'same:'], ['--to', `redis://localhost:${port}/5`, '--to-key-prefix', 'same:'], left);
      await expectRefused(['--from', url, '--from-key-prefix', 'same:'], ['--to', url, '--to-key-prefix', 'same:'], left);
    });

    it('still moves between two key prefixes of one database, and between two databases of one server', async () => {
      const port = new URL((redis as RedisService).url).port;
      const url = `redis://127.0.0.1:${port}/6`;
      await seeded(url, { keyPrefix: 'one:' });
      const toPrefix = await cli(
        'migrate',
        '--from',
        url,
        '--from-key-prefix',
        'one:',
        '--to',
        `redis://localhost:${port}/6`,
        '--to-key-prefix',
        'two:',
        '--move',
        '--json',
      );
      expect(toPrefix.code).toBe(0);
      expect(JSON.parse(toPrefix.stdout)).toMatchObject({ copied: 3, removed: 3 });
      expect(await jobsIn(url, { keyPrefix: 'two:' })).toEqual(threeJobs);
      const toDb = await cli(
        'migrate',
        '--from',
        url,
        '--from-key-prefix',
        'two:',
        '--to',
        `redis://127.0.0.1:${port}/7`,
        '--to-key-prefix',
        'two:',
        '--move',
        '--json',
      );
      expect(toDb.code).toBe(0);
      expect(JSON.parse(toDb.stdout)).toMatchObject({ copied: 3, removed: 3 });
      expect(await jobsIn(`redis://127.0.0.1:${port}/7`, { keyPrefix: 'two:' })).toEqual(threeJobs);
      expect(await jobsIn(url, { keyPrefix: 'two:' })).toEqual([]);
    });
  });

  describe('SQLite: the same file', () => {
    it('by the identical URL, a relative path, a symlink and a hard link', async () => {
      const url = sqliteUrl();
      const file = url.slice('sqlite:///'.length);
      await seeded(url);
      const left = () => jobsIn(url);
      symlinkSync(file, `${file}.symlink`);
      linkSync(file, `${file}.hardlink`);
      for (const other of [url, `sqlite:///${relative(process.cwd(), file)}`, `sqlite:///${file}.symlink`, `sqlite:///${file}.hardlink`]) {
        await expectRefused(['--from', url], ['--to', other], left);
        await expectRefused(['--from', other], ['--to', url], left);
      }
    });

    it('two :memory: databases are two stores', async () => {
      const r = await cli('migrate', '--from', 'sqlite://:memory:', '--to', 'sqlite://:memory:', '--move', '--json');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ seen: 0, copied: 0 });
    });
  });

  describe.skipIf(skipPg)('PostgreSQL: the same server, database and schema', () => {
    const schema = uniqueSchema('same');
    const other = uniqueSchema('other');
    const role = `cls_test_${randomBytes(4).toString('hex')}`;
    let url: string;
    beforeAll(async () => {
      url = schemaUrl(pgService!.url, schema);
      await seeded(url, { migrate: true });
    });
    afterAll(async () => {
      await dropSchema(pgService!.url, schema);
      await dropSchema(pgService!.url, other);
      await sql(pgService!.url, `DROP ROLE IF EXISTS ${role}`);
    });

    it('by another host name, by the identical URL, and over the Unix socket instead of TCP', async () => {
      const left = () => jobsIn(url);
      const byName = new URL(url);
      byName.hostname = byName.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
      await expectRefused(['--from', url], ['--to', byName.toString()], left);
      await expectRefused(['--from', url], ['--to', url], left);
      const [{ dir } = { dir: '' }] = await sql<{ dir: string }>(
        pgService!.url,
        "SELECT split_part(current_setting('unix_socket_directories'), ',', 1) AS dir",
      );
      const port = new URL(url).port || '5432';
      if (dir && existsSync(join(dir.trim(), `.s.PGSQL.${port}`))) {
        const bySocket = new URL(url);
        bySocket.searchParams.set('host', dir.trim()); // the driver takes host= over the URL's host
        const [{ socket } = { socket: false }] = await sql<{ socket: boolean }>(bySocket.toString(), 'SELECT inet_server_addr() IS NULL AS socket');
        expect(socket).toBe(true);
        await expectRefused(['--from', bySocket.toString()], ['--to', url], left);
      } else {
        console.warn('[skip] no PostgreSQL Unix socket here: the socket-vs-TCP case is not checked');
      }
    });

    it('reads the identity as a role without privileges, and another schema is another store', async () => {
      await sql(pgService!.url, `CREATE ROLE ${role} LOGIN`);
      const asRole = new URL(url);
      asRole.username = role;
      asRole.password = '';
      const plain = createStore(asRole.toString());
      const admin = createStore(url);
      try {
        const identity = await plain.identity();
        expect(identity).toBe(await admin.identity());
        expect(identity).toMatch(/^postgres:\d+:[\d.]+:\d+:same_[0-9a-f]+$/); // with the server's system identifier
      } finally {
        await plain.close();
        await admin.close();
      }
      const r = await cli('--migrate', 'migrate', '--from', url, '--to', schemaUrl(pgService!.url, other), '--json');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ copied: 3 });
    });
  });

  it('memory: two handles on the same jobs are one store, another MemoryStore is not', async () => {
    const store = new MemoryStore();
    await store.add(threeJobs);
    await expect(migrateJobs(store, store.handle(), { move: true })).rejects.toThrow(ValidationError);
    await expect(migrateJobs(store, store, { move: true })).rejects.toThrow(/are one store \(the same memory store\)/);
    expect(await everyJob(store)).toEqual(threeJobs);
    expect(await migrateJobs(store, new MemoryStore(), { move: true })).toMatchObject({ copied: 3, removed: 3 });
  });
});

describe('a migrate that fails before copying creates and changes nothing', () => {
  /** A fresh directory, and the target URL of a file in it that must not appear. */
  function emptyDir(): { dir: string; to: string } {
    const d = mkdtempSync(join(dir, 'untouched-'));
    return { dir: d, to: `sqlite:///${join(d, 'target.db')}` };
  }

  it('a source it cannot reach leaves no target file', async () => {
    const { dir: d, to } = emptyDir();
    const r = await cli('migrate', '--from', 'redis://127.0.0.1:1/0', '--to', to, '--move');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot reach the long-term scheduler store \(Redis\) at redis:\/\/127\.0\.0\.1:1\/0: [^\n]+\n$/);
    expect(readdirSync(d)).toEqual([]);
  });

  it('a source SQLite file that does not exist is refused, and neither file is made', async () => {
    const { dir: d, to } = emptyDir();
    const from = join(d, 'typo.db');
    const r = await cli('migrate', '--from', `sqlite:///${from}`, '--to', to, '--move');
    expect(r.stderr).toBe(`error: the source sqlite:///${from} names ${from}, which does not exist; check the path (migrate never creates its source)\n`);
    expect(r.code).toBe(2);
    expect(readdirSync(d)).toEqual([]);
  });

  it('a source that is not a SQLite database leaves no target file', async () => {
    const { dir: d, to } = emptyDir();
    writeFileSync(join(d, 'notes.txt'), 'not a database, just text that is long enough to read a header from.'.repeat(20));
    const r = await cli('migrate', '--from', `sqlite:///${join(d, 'notes.txt')}`, '--to', to, '--move');
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(2);
    expect(readdirSync(d)).toEqual(['notes.txt']);
  });

  it('a bad --after is refused before either store is opened', async () => {
    const { dir: d, to } = emptyDir();
    const from = sqliteUrl();
    await seeded(from);
    const r = await cli('migrate', '--from', from, '--to', to, '--move', '--after', 'somewhere');
    expect(r.stderr).toBe('error: "somewhere" is not a cursor migrate printed; pass the one an interrupted run reported, or none to start over\n');
    expect(r.code).toBe(2);
    expect(readdirSync(d)).toEqual([]);
    expect(await jobsIn(from)).toEqual(threeJobs);
  });

  it.skipIf(skipPg)('--migrate does not create the target schema when the source cannot be reached', async () => {
    const schema = uniqueSchema('untouched');
    try {
      const r = await cli('--migrate', 'migrate', '--from', 'redis://127.0.0.1:1/0', '--to', schemaUrl(pgService!.url, schema));
      expect(r.code).toBe(1);
      expect(await sql(pgService!.url, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).toEqual([]);
    } finally {
      await dropSchema(pgService!.url, schema);
    }
  });
});
