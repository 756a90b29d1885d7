/** URL and option checking, and connection failures: no database needed except where noted. */
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError, ValidationError } from '../../../src/util/errors.js';
import { parsePostgresUrl } from '../../../src/stores/postgres/connection.js';
import { migrateSchema, schemaStatus } from '../../../src/stores/postgres/migrations.js';
import { PostgresStore } from '../../../src/stores/postgres/postgres-store.js';
import { freePort } from '../../helpers/services.js';

function problems(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).problems;
  }
  throw new Error('expected a ValidationError');
}

describe('PostgreSQL URL and options', () => {
  it('accepts postgres:// and postgresql://, with the default schema', () => {
    for (const url of ['postgres://u@h:5432/db', 'postgresql://u@h/db', 'POSTGRES://h/db']) {
      const t = parsePostgresUrl(url);
      expect(t.schema).toBe('celery_longterm_scheduler');
      expect(t.url).toBe(url);
    }
  });

  it('takes ?schema= out of the URL, keeping the other parameters', () => {
    const t = parsePostgresUrl('postgres://u:pw@h/db?sslmode=disable&schema=jobs_a&application_name=x');
    expect(t.schema).toBe('jobs_a');
    expect(t.url).toBe('postgres://u:pw@h/db?sslmode=disable&application_name=x');
    expect(t.description).toBe('postgres://u:***@h/db?sslmode=disable&schema=jobs_a&application_name=x');
    expect(parsePostgresUrl('postgres://h/db?schema=only').url).toBe('postgres://h/db');
  });

  it('the schema option works alone, and agrees with the URL or is refused', () => {
    expect(parsePostgresUrl('postgres://h/db', { schema: 'mine' }).schema).toBe('mine');
    expect(parsePostgresUrl('postgres://h/db?schema=mine', { schema: 'mine' }).schema).toBe('mine');
    expect(problems(() => parsePostgresUrl('postgres://h/db?schema=a', { schema: 'b' }))[0]).toMatch(/give it once/);
  });

  it('rejects other schemes and unusable schema names with ValidationError', () => {
    expect(problems(() => new PostgresStore('mysql://u:secret@h/db'))[0]).toMatch(/not a PostgreSQL URL.*postgres:\/\//);
    expect(problems(() => new PostgresStore('mysql://u:secret@h/db')).join()).not.toContain('secret');
    for (const schema of ['Upper', '1abc', 'a-b', 'a"b', 'pg_catalog', '', 'x'.repeat(57)]) {
      expect(problems(() => new PostgresStore('postgres://h/db', { schema }))[0]).toMatch(/lowercase letters/);
    }
    expect(new PostgresStore('postgres://h/db', { schema: 'x'.repeat(56) }).schema).toHaveLength(56);
  });

  it('rejects bad pool and timeout options, listing every problem', () => {
    expect(problems(() => new PostgresStore('postgres://h/db', { maxConnections: 0 }))[0]).toMatch(/maxConnections/);
    const all = problems(() => new PostgresStore('redis://h', { schema: 'A', connectTimeoutMs: -1 }));
    expect(all).toHaveLength(3);
  });

  it('describes itself by its redacted URL', async () => {
    const store = new PostgresStore('postgresql://me:hunter2@db.example:5432/app?schema=s1');
    expect(store.description).toBe('postgresql://me:***@db.example:5432/app?schema=s1');
    expect(store.schema).toBe('s1');
    await store.close();
  });
});

describe('PostgreSQL connection failures', () => {
  let silent: Server;
  let silentPort: number;
  beforeAll(async () => {
    // accepts connections and never answers: a hung server (it reads, so it sees clients hang up)
    silent = createServer((socket) => socket.resume());
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentPort = (silent.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => silent.close(() => r())));

  it('connection refused: ConnectionError with the password redacted', async () => {
    const port = await freePort();
    const store = new PostgresStore(`postgres://u:secret@127.0.0.1:${port}/x`);
    try {
      const err = await store.count().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      const ce = err as ConnectionError;
      expect(ce.url).toBe(`postgres://u:***@127.0.0.1:${port}/x`);
      expect(ce.message).toMatch(/PostgreSQL/);
      expect(ce.message).toMatch(/ECONNREFUSED/);
      expect(ce.message).not.toContain('secret');
      // the same for the migration tools and the listener
      await expect(migrateSchema(`postgres://u:secret@127.0.0.1:${port}/x`)).rejects.toBeInstanceOf(ConnectionError);
      await expect(schemaStatus(`postgres://u:secret@127.0.0.1:${port}/x`)).rejects.toBeInstanceOf(ConnectionError);
      await expect(store.watch(() => {})).rejects.toBeInstanceOf(ConnectionError);
    } finally {
      await store.close();
    }
  });

  it('a server that never answers: ConnectionError after connectTimeoutMs, connection dropped', async () => {
    const store = new PostgresStore(`postgres://u:secret@127.0.0.1:${silentPort}/x`, { connectTimeoutMs: 300 });
    const started = Date.now();
    try {
      const err = await store.nextDueAt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as Error).message).not.toContain('secret');
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await store.close();
    }
    await new Promise((r) => setTimeout(r, 100));
    const open = await new Promise<number>((r, j) => silent.getConnections((e, n) => (e ? j(e) : r(n))));
    expect(open).toBe(0);
  });

  it('a closed store rejects calls, and closing twice is fine', async () => {
    const store = new PostgresStore('postgres://h/db');
    await store.close();
    await store.close();
    await expect(store.get('x')).rejects.toThrow(/the store .* is closed/);
    await expect(store.watch(() => {})).rejects.toThrow(/the store .* is closed/);
  });
});
