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

  it.each<[string, string[], RegExp]>([
    [
      'an empty job key',
      ['--job-key', ''],
      /^error: jobKey must be a non-empty string that is not only whitespace, got ""; pass a key naming what must be scheduled once, e.g. "user:7:reminder"\n$/,
    ],
    ['a job key of spaces', ['--job-key', '   '], /^error: jobKey must be a non-empty string that is not only whitespace, got "   "; pass a key/],
    ['a job key of a tab', ['--job-key', '\t'], /jobKey must be a non-empty string that is not only whitespace/],
    [
      'args nested 100,000 deep',
      ['--args', `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
      /^error: args is nested more than 256 levels deep, counted from the stored job's root \(Python's JSON decoder recurses once per level\); flatten it\n$/,
    ],
    ['kwargs nested 100,000 deep', ['--kwargs', `{"k": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`], /^error: kwargs is nested more than 256 levels deep/],
    ['a lone surrogate in args[2]', ['--args', '["a", "b", "x\\ud800"]'], /^error: args\[2\] is not well-formed Unicode \(it holds a lone UTF-16 surrogate/],
    ['a lone surrogate as a kwargs key', ['--kwargs', '{"\\udc00": 1}'], /^error: kwargs has the key "\\udc00", which is not well-formed Unicode/],
    [
      'a task id of 256 UTF-8 bytes',
      ['--id', 'é'.repeat(128)],
      /^error: taskId is 256 bytes in UTF-8; RabbitMQ carries it as an AMQP short string, which holds at most 255 bytes/,
    ],
    ['a queue of 256 bytes', ['--queue', 'q'.repeat(256)], /^error: queue is 256 bytes in UTF-8/],
    ['an exchange of 256 bytes', ['--exchange', 'x'.repeat(256), '--routing-key', 'r'], /^error: exchange is 256 bytes in UTF-8/],
  ])('%s: exit 2, one line', async (_label, flags, message) => {
    const r = await cli('schedule', 't.input', '--countdown', '60', ...flags);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
    expect(await stored()).toBe(0);
  });

  it('the library refuses a task id with a lone surrogate before SQLite stores a row it could never match again', async () => {
    const { Celery, ValidationError } = await import('../../src/index.js');
    const app = new Celery({ longtermSchedulerBackend: g[1] });
    try {
      await expect(app.task('t.input').applyAsync([], {}, { countdown: 0, taskId: 'id-\uD800-x' })).rejects.toThrow(ValidationError);
      expect(await app.store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    } finally {
      await app.close();
    }
  });
});
