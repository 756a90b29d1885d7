/**
 * A SQLite store that cannot be opened says what is wrong with the file and what to do, not the
 * network template "check that it is running": a missing directory, a path below a file, a
 * directory nobody may write to.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConnectionError } from '../../../src/util/errors.js';
import { SqliteStore } from '../../../src/stores/sqlite/sqlite-store.js';
import { cli } from '../../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-sqlite-open-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a SQLite file that cannot be opened', () => {
  it('a missing directory: the CLI names it and says to create it (exit 1, one line)', async () => {
    const r = await cli(['--backend', `sqlite:///${join(dir, 'nope', 'a.db')}`, 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: cannot open the long-term scheduler store (SQLite) at sqlite:///${join(dir, 'nope', 'a.db')}: the directory ${join(dir, 'nope')} does not exist; create it, or point the store URL at a directory that exists\n`,
    );
  });

  it('a path below a file', async () => {
    writeFileSync(join(dir, 'plain'), 'x');
    const err = await new SqliteStore(`sqlite:///${join(dir, 'plain', 'a.db')}`).count().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(/^cannot open the .* (is not a directory|does not exist); .*point the store URL at a directory that exists$/);
    expect((err as Error).message).not.toMatch(/check that it is running/);
  });

  it('a directory this user may not write to', async () => {
    const err = await new SqliteStore('sqlite:////sys/cls-test.db').count().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(
      /^cannot open the long-term scheduler store \(SQLite\) at sqlite:\/\/\/\/sys\/cls-test\.db: .*; check that this user may create and write files in \/sys$/,
    );
  });
});

describe('ConnectionError', () => {
  it('keeps the network template by default, and carries another action and hint when given', () => {
    expect(new ConnectionError('broker', 'redis://h', new Error('down')).message).toBe(
      'cannot reach the broker at redis://h: down; check that it is running and that the URL is right',
    );
    expect(new ConnectionError('store', 'sqlite:///x.db', new Error('gone'), { action: 'open', hint: 'create it' }).message).toBe(
      'cannot open the store at sqlite:///x.db: gone; create it',
    );
  });
});
