/**
 * What `resolveTaskCall` (so `applyAsync`, `sendTask`, `sendTasks` and the CLI) refuses at the
 * edges of its input, with one ValidationError naming what is wrong, before anything is stored.
 */
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/util/errors.js';
import { resolveTaskCall, type TaskOptions } from '../../src/job/options.js';
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
    [
      'a countdown past year 9999',
      { countdown: 1e13 },
      /^countdown 10000000000000 s lands after 9999-12-31T23:59:59Z, the latest time Python's datetime \(and so Celery\) can hold; pass at most \d+ seconds$/,
    ],
    ['an eta Date past year 9999', { eta: new Date(MAX_TIME_MS + 1) }, /^eta \(253402300800 unix seconds\) is after the range/],
    ['an eta Date before year 1', { eta: new Date(-62_135_596_800_001) }, /^eta .* is before the range/],
    ['an eta string carried past 9999 by its offset', { eta: '9999-12-31T23:30:00-01:00' }, /^eta .* is after the range/],
    ['an eta string in year 0000', { eta: '0000-06-01T00:00:00Z' }, /^eta "0000-06-01T00:00:00Z" is not a real calendar date-time/],
    ['an absolute expires past 9999', { countdown: 1, expires: new Date(8.64e15) }, /^expires .* is after the range/],
    [
      'a relative expires landing past 9999',
      { countdown: 1, expires: 1e13 },
      /^expires 10000000000000 s, counted from dispatch, lands after 9999-12-31T23:59:59Z.*; pass at most \d+ seconds$/,
    ],
    [
      'a relative expires landing past 9999 from a late due time',
      { eta: '9999-12-31T00:00:00Z', expires: 2 * 86_400 },
      /^expires 172800 s, counted from dispatch, lands after 9999/,
    ],
    [
      'a negative expires',
      { countdown: 1, expires: -5 },
      /^expires -5 is negative; pass seconds >= 0 counted from dispatch, or a Date or ISO-8601 time with offset$/,
    ],
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

describe('well-formed Unicode, nesting depth and AMQP short strings', () => {
  const LONE = 'id-\uD800-x';

  it.each<[string, TaskOptions, unknown, unknown, RegExp]>([
    [
      'a task id with a lone surrogate',
      { countdown: 1, taskId: LONE },
      [],
      {},
      /^taskId "id-\\ud800-x" is not well-formed Unicode \(it holds a lone UTF-16 surrogate/,
    ],
    ['a job key with a lone surrogate', { countdown: 1, jobKey: '\uDFFF' }, [], {}, /^jobKey "\\udfff" is not well-formed Unicode/],
    ['a queue with a lone surrogate', { countdown: 1, queue: 'q\uD800' }, [], {}, /^queue "q\\ud800" is not well-formed Unicode/],
    ['an exchange with a lone surrogate', { countdown: 1, exchange: '\uD800' }, [], {}, /^exchange "\\ud800" is not well-formed Unicode/],
    ['a routing key with a lone surrogate', { countdown: 1, routingKey: '\uD800rk' }, [], {}, /^routingKey "\\ud800rk" is not well-formed Unicode/],
    ['a shadow name with a lone surrogate', { countdown: 1, shadow: '\uD800' }, [], {}, /^shadow "\\ud800" is not well-formed Unicode/],
    ['a string deep in args, naming its path', { countdown: 1 }, ['a', 'b', ['ok', LONE]], {}, /^args\[2\]\[1\] is not well-formed Unicode/],
    [
      'a kwargs key',
      { countdown: 1 },
      [],
      { '\uDC00': 1 },
      /^kwargs has the key "\\udc00", which is not well-formed Unicode \(a lone UTF-16 surrogate\); rename it$/,
    ],
    ['a header value', { countdown: 1, headers: { h: { deep: [LONE] } } }, [], {}, /^headers\.h\.deep\[0\] is not well-formed Unicode/],
    [
      'a link signature argument',
      { countdown: 1, link: { task: 'cb', args: [LONE], kwargs: {}, options: {}, subtask_type: null, immutable: false } },
      [],
      {},
      /^link\.args\[0\] is not well-formed Unicode/,
    ],
    [
      'a link signature queue option',
      { countdown: 1, linkError: [{ task: 'cb', args: [], kwargs: {}, options: { queue: LONE }, subtask_type: null, immutable: false }] },
      [],
      {},
      /^linkError\[0\]\.options\.queue is not well-formed Unicode/,
    ],
    [
      'a task id over 255 UTF-8 bytes',
      { countdown: 1, taskId: 'é'.repeat(128) },
      [],
      {},
      /^taskId is 256 bytes in UTF-8; RabbitMQ carries it as an AMQP short string, which holds at most 255 bytes, so it cannot carry this job; use a shorter one$/,
    ],
    [
      'a queue name over 255 bytes',
      { countdown: 1, queue: 'q'.repeat(256) },
      [],
      {},
      /^queue is 256 bytes in UTF-8; RabbitMQ carries it as an AMQP short string/,
    ],
    ['an exchange name over 255 bytes', { countdown: 1, exchange: 'x'.repeat(300) }, [], {}, /^exchange is 300 bytes/],
    ['a routing key over 255 bytes', { countdown: 1, routingKey: '€'.repeat(86) }, [], {}, /^routingKey is 258 bytes/],
    [
      'a header name over 255 bytes',
      { countdown: 1, headers: { ['h'.repeat(256)]: 1 } },
      [],
      {},
      /^headers has a name of 256 bytes in UTF-8; AMQP header names hold at most 255 bytes/,
    ],
  ])('refuses %s', (_label, options, args, kwargs, message) => {
    expect(problems(options, args, kwargs)).toMatch(message);
  });

  it('the task name too', () => {
    expect(() => resolveTaskCall('proj.\uD800', [], {}, { countdown: 1 }, NOW)).toThrow(/^task name "proj\.\\ud800" is not well-formed Unicode/);
  });

  it('accepts 255 bytes exactly, and paired surrogates (emoji)', () => {
    const { job } = resolveTaskCall('t', ['😀', { '😀': '👍🏽' }], {}, { countdown: 1, taskId: 'é'.repeat(127) + 'x', queue: 'q'.repeat(255) }, NOW);
    expect(job.id).toHaveLength(128);
  });

  const nested = (levels: number): unknown => {
    let v: unknown = 1;
    for (let i = 0; i < levels; i++) v = [v];
    return v;
  };

  it('a value nested 100,000 deep is one problem, not a stack overflow', () => {
    const message = problems({ countdown: 1 }, nested(100_000));
    expect(message).toBe(
      "args is nested more than 256 levels deep, counted from the stored job's root (Python's JSON decoder recurses once per level); flatten it",
    );
    expect(problems({ countdown: 1 }, [], { k: nested(100_000) })).toMatch(/^kwargs is nested more than 256 levels/);
    expect(problems({ countdown: 1, headers: { h: nested(100_000) } })).toMatch(/^headers is nested more than 256 levels/);
    expect(
      problems({ countdown: 1, link: { task: 'cb', args: nested(100_000) as unknown[], kwargs: {}, options: {}, subtask_type: null, immutable: false } }),
    ).toMatch(/^link is nested more than 256 levels/);
  });

  it('the limit is the stored entry: args may nest 254 levels (the entry wraps them in 2), not 255', async () => {
    const { encodeEntry } = await import('../../src/job/entry.js');
    const { nestedDeeperThan } = await import('../../src/celery/limits.js');
    const ok = resolveTaskCall('t', nested(254) as unknown[], {}, { countdown: 1 }, NOW);
    const entry = JSON.parse(encodeEntry(ok.job)) as unknown;
    expect(nestedDeeperThan(entry, 256)).toBe(false);
    expect(nestedDeeperThan(entry, 255)).toBe(true);
    expect(problems({ countdown: 1 }, nested(255))).toMatch(/nested more than 256 levels/);
    const sig = (args: unknown) => ({ task: 'cb', args: args as unknown[], kwargs: {}, options: {}, subtask_type: null, immutable: false });
    // a signature's args sit one level below it; a list of several, one more
    expect(nestedDeeperThan(JSON.parse(encodeEntry(resolveTaskCall('t', [], {}, { countdown: 1, link: sig(nested(253)) }, NOW).job)), 256)).toBe(false);
    expect(problems({ countdown: 1, link: sig(nested(254)) })).toMatch(/nested more than 256/);
    expect(nestedDeeperThan(JSON.parse(encodeEntry(resolveTaskCall('t', [], {}, { countdown: 1, link: [sig([]), sig(nested(252))] }, NOW).job)), 256)).toBe(
      false,
    );
    expect(problems({ countdown: 1, link: [sig([]), sig(nested(253))] })).toMatch(/nested more than 256/);
  });

  it('a cycle is still reported as a cycle, not as depth', () => {
    const a: unknown[] = [];
    a.push(a);
    expect(problems({ countdown: 1 }, [a])).toMatch(/^args\[0\]\[0\] refers back to itself \(a cycle\)/);
  });

  it('a million bad strings make a message of 20 problems and a count, not a million', () => {
    const message = problems(
      { countdown: 1 },
      Array.from({ length: 1_000_000 }, () => '\uD800'),
    );
    expect(message.match(/is not well-formed Unicode/g)).toHaveLength(20);
    expect(message).toMatch(/; and 999980 more problems like these in args$/);
  });
});

describe('sendTasks', () => {
  it('refuses the whole batch, naming the call, and stores nothing', async () => {
    const { Celery } = await import('../../src/client/celery.js');
    const app = new Celery({ longtermSchedulerBackend: 'sqlite://:memory:' });
    try {
      await expect(
        app.sendTasks([
          { name: 't', args: [1], options: { countdown: 1 } },
          { name: 't', args: ['\uD800'], options: { countdown: 1, taskId: 'x'.repeat(256) } },
        ]),
      ).rejects.toThrow(/^calls\[1\]: args\[0\] is not well-formed Unicode.*; calls\[1\]: taskId is 256 bytes/);
      expect(await app.store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    } finally {
      await app.close();
    }
  });
});
