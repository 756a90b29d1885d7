/**
 * Moving jobs between stores (`migrate`) and schema management (`migrate-schema`), through the
 * CLI in-process and the library, on real stores: a Redis store in the Python package's bare
 * layout (a private server), SQLite temp files, and a PostgreSQL schema per test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli as runCli } from '../helpers/cli.js';
import { createStore } from '../../src/connect.js';
import { migrateJobs } from '../../src/migrate.js';
import type { ScheduleStore } from '../../src/store.js';
import { fixture } from '../helpers/fixture.js';
import { dropSchema, schemaUrl } from '../helpers/postgres.js';
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
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    const r = await cli('migrate', '--from', sqliteUrl(), '--to', 'postgres://u:secret@127.0.0.1:1/x');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: cannot reach the long-term scheduler store \(PostgreSQL\) at postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/x: /);
    const missingDir = await cli('migrate', '--from', sqliteUrl(), '--to', `sqlite:///${join(dir, 'no-such-dir', 'x.db')}`);
    expect(missingDir.code).toBe(1);
    expect(missingDir.stderr.split('\n')).toHaveLength(2);
  });

  it('a bad URL fails with one line, exit 2, and touches nothing', async () => {
    const r = await cli('migrate', '--from', 'mysql://u:secret@h/db', '--to', sqliteUrl());
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: store URL scheme "mysql:" is not supported; use sqlite://, postgres://, redis://, rediss:// or sentinel://\n');
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
    expect(before.stderr).toMatch(/^error: the store .* has no scheduler schema yet, this code needs version \d+; run `celery-longterm-scheduler migrate-schema --backend <url>`/);
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
