/**
 * What `resolveTaskCall` (so `applyAsync`, `sendTask`, `sendTasks` and the CLI) refuses at the
 * edges of its input, with one ValidationError naming what is wrong, before anything is stored.
 */
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { resolveTaskCall, type TaskOptions } from '../../src/job.js';
import { MAX_TIME_MS } from '../../src/celery/time.js';

const NOW = new Date('2030-01-01T00:00:00Z');

function problems(options: TaskOptions, args: unknown = [], kwargs: unknown = {}): string {
  try {
    resolveTaskCall('t.edge', args, kwargs, options, NOW);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a ValidationError');
}

describe('times outside years 1-9999 UTC', () => {
  it.each<[string, TaskOptions, RegExp]>([
    ['a countdown past year 9999', { countdown: 1e13 }, /^countdown 10000000000000 s lands after 9999-12-31T23:59:59Z, the latest time Python's datetime \(and so Celery\) can hold; pass at most \d+ seconds$/],
    ['an eta Date past year 9999', { eta: new Date(MAX_TIME_MS + 1) }, /^eta \(253402300800 unix seconds\) is after the range/],
    ['an eta Date before year 1', { eta: new Date(-62_135_596_800_001) }, /^eta .* is before the range/],
    ['an eta string carried past 9999 by its offset', { eta: '9999-12-31T23:30:00-01:00' }, /^eta .* is after the range/],
    ['an eta string in year 0000', { eta: '0000-06-01T00:00:00Z' }, /^eta "0000-06-01T00:00:00Z" is not a real calendar date-time/],
    ['an absolute expires past 9999', { countdown: 1, expires: new Date(8.64e15) }, /^expires .* is after the range/],
    ['a relative expires landing past 9999', { countdown: 1, expires: 1e13 }, /^expires 10000000000000 s, counted from dispatch, lands after 9999-12-31T23:59:59Z.*; pass at most \d+ seconds$/],
    ['a relative expires landing past 9999 from a late due time', { eta: '9999-12-31T00:00:00Z', expires: 2 * 86_400 }, /^expires 172800 s, counted from dispatch, lands after 9999/],
    ['a negative expires', { countdown: 1, expires: -5 }, /^expires -5 is negative; pass seconds >= 0 counted from dispatch, or a Date or ISO-8601 time with offset$/],
  ])('refuses %s', (_label, options, message) => {
    expect(problems(options)).toMatch(message);
  });

  it('accepts the edges themselves, and years 1-99 as written', () => {
    expect(resolveTaskCall('t', [], {}, { eta: '9999-12-31T23:59:59Z' }, NOW).dueAt).toBe(253_402_300_799);
    expect(resolveTaskCall('t', [], {}, { eta: '0001-01-01T00:00:00Z' }, NOW).dueAt).toBe(-62_135_596_800);
    expect(new Date((resolveTaskCall('t', [], {}, { eta: '0050-01-01T00:00:00Z' }, NOW).dueAt ?? 0) * 1000).toISOString()).toBe('0050-01-01T00:00:00.000Z');
    const left = Math.floor((MAX_TIME_MS - NOW.getTime()) / 1000);
    expect(resolveTaskCall('t', [], {}, { countdown: left }, NOW).dueAt).toBeLessThanOrEqual(MAX_TIME_MS / 1000);
    expect(resolveTaskCall('t', [], {}, { countdown: 1, expires: left - 1 }, NOW).job.expires).toEqual({ kind: 'relative', seconds: left - 1 });
  });
});

describe('job keys', () => {
  it.each<[string, unknown]>([
    ['empty', ''],
    ['only spaces', '   '],
    ['only whitespace of other kinds', '\t\n\u00a0\u2003'],
    ['not a string', 5],
  ])('refuses a key that is %s', (_label, jobKey) => {
    expect(problems({ countdown: 60, jobKey: jobKey as string })).toMatch(/^jobKey must be a non-empty string that is not only whitespace, got /);
  });

  it('keeps a key with spaces around other characters as given', () => {
    expect(resolveTaskCall('t', [], {}, { countdown: 60, jobKey: ' user 7 ' }, NOW).key).toEqual({ key: ' user 7 ', mode: 'reject' });
  });
});
