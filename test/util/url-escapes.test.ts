/**
 * A malformed %-escape in a store, broker or result-backend URL (`%zz`, or bytes that are not
 * UTF-8) is a one-line ValidationError naming the URL, redacted, and the fix; never the bare
 * "URI malformed" of decodeURIComponent, nor a silently different password.
 */
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/util/errors.js';
import { createStore } from '../../src/stores/registry.js';
import { createBroker } from '../../src/brokers/registry.js';
import { migrateStoreSchema } from '../../src/admin/schema.js';
import { RedisStore } from '../../src/stores/redis/redis-store.js';
import { RedisResultBackend } from '../../src/results/redis-backend.js';
import { ioredisTarget } from '../../src/redis/connection.js';
import { cli } from '../helpers/cli.js';

function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as Error).message;
  }
  throw new Error('expected a ValidationError');
}

const ESCAPE = /has a malformed %-escape .*; write a literal % as %25/;

describe('a malformed %-escape in a URL', () => {
  it.each([
    ['a Redis store', () => createStore('redis://u:%zz@127.0.0.1/0'), 'redis://u:***@127.0.0.1/0'],
    ['a Redis store, bytes that are not UTF-8', () => createStore('redis://u:%E0%A4@127.0.0.1/0'), 'redis://u:***@127.0.0.1/0'],
    ['a Redis store built directly', () => new RedisStore('redis://:%zz@127.0.0.1/0'), 'redis://:***@127.0.0.1/0'],
    ['a Redis broker', () => createBroker('redis://%@127.0.0.1/0'), 'redis://***@127.0.0.1/0'],
    ['a Redis result backend', () => new RedisResultBackend('redis://u:%z@127.0.0.1/1'), 'redis://u:***@127.0.0.1/1'],
    [
      'a Sentinel list, in its second URL',
      () => ioredisTarget('sentinel://h1:26379;sentinel://:%zz@h2:26379', 'store', 'm'),
      'sentinel://h1:26379;sentinel://:***@h2:26379',
    ],
    ['a PostgreSQL store', () => createStore('postgres://u:%zz@127.0.0.1/db'), 'postgres://u:***@127.0.0.1/db'],
    ['a PostgreSQL store, in the database name', () => createStore('postgresql://u@127.0.0.1/d%zzb'), 'postgresql://***@127.0.0.1/d%zzb'],
    ['an AMQP broker', () => createBroker('amqp://guest:%zz@127.0.0.1:5672//'), 'amqp://guest:***@127.0.0.1:5672//'],
  ])('%s: one line naming the redacted URL and the fix', (_label, fn, shown) => {
    const message = problem(fn);
    expect(message).toMatch(ESCAPE);
    expect(message).toContain(JSON.stringify(shown));
    expect(message).not.toContain('URI malformed');
    expect(message).not.toContain('\n');
  });

  it('a PostgreSQL store built directly (the library, not through createStore)', () => {
    expect(problem(() => new PostgresStore('postgres://u:%zz@127.0.0.1/db'))).toMatch(ESCAPE);
  });

  it('migrate-schema on such a PostgreSQL URL', async () => {
    await expect(migrateStoreSchema('postgres://u:%zz@127.0.0.1/db')).rejects.toThrow(ESCAPE);
  });

  it('a Sentinel list with a second URL that does not parse: a ValidationError, not a TypeError', () => {
    expect(problem(() => ioredisTarget('sentinel://h1:26379;sentinel://[nope', 'store', 'm'))).toMatch(/is not a valid Redis URL/);
  });

  it.each([
    [['--backend', 'redis://u:%zz@127.0.0.1/0', 'list']],
    [['--backend', 'postgres://u:%zz@127.0.0.1/db', 'list']],
    [['--backend', 'sqlite://:memory:', '--broker', 'amqp://guest:%zz@127.0.0.1:5672//', 'dispatch']],
    [['migrate', '--from', 'redis://u:%zz@127.0.0.1/0', '--to', 'sqlite://:memory:']],
  ])('the CLI: %j exits 2 with one line', async (argv) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: .*has a malformed %-escape/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toContain('%zz@');
  });
});
