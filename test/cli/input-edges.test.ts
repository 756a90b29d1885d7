/**
 * Hostile input to `schedule`, through the CLI in-process on a SQLite file: each is a usage
 * error (exit 2) with one line naming what is wrong, and nothing is stored.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli as runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-input-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('schedule refuses hostile input, storing nothing', () => {
  let g: string[];
  const cli = (...argv: string[]) => runCli([...g, ...argv]);
  const stored = async () => Number(/scheduled\s+(\d+)/.exec((await cli('stats')).stdout)?.[1]);
  beforeAll(() => {
    g = ['--backend', `sqlite:///${join(dir, 'input.db')}`];
  });

  it.each([
    [['--job-key', ''], /^error: jobKey must be a non-empty string that is not only whitespace, got ""; pass a key naming what must be scheduled once, e.g. "user:7:reminder"\n$/],
    [['--job-key', '   '], /^error: jobKey must be a non-empty string that is not only whitespace, got "   "; pass a key/],
    [['--job-key', '\t'], /jobKey must be a non-empty string that is not only whitespace/],
  ])('%j: exit 2, one line', async (flags, message) => {
    const r = await cli('schedule', 't.input', '--countdown', '60', ...flags);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
    expect(await stored()).toBe(0);
  });
});
