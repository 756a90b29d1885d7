import { describe, it, expect } from 'vitest';
import { CorruptEntryError, UnsupportedEntryError, ValidationError } from '../../src/util/errors.js';
import { readPickledDatetime } from '../../src/celery/pickle.js';
import { decodeEntry, encodeEntry } from '../../src/job/entry.js';
import { type Job, type Signature } from '../../src/job/types.js';
import { isScheduled, resolveTaskCall, signature, type TaskOptions } from '../../src/job/options.js';
import { fixture, type FixtureEntry } from '../helpers/fixture.js';

const NOW = new Date('2031-03-04T05:06:07.089Z');
const NOW_S = NOW.getTime() / 1000;

function fixtureEntry(prefix: string): FixtureEntry {
  const entry = fixture.entries.find((e) => e.description.startsWith(prefix));
  if (!entry) throw new Error(`no fixture entry starting with ${JSON.stringify(prefix)}`);
  return entry;
}

/** The problems of the ValidationError that `fn` throws. */
function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    const error = err as ValidationError;
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toBe(error.problems.join('; '));
    return error.problems;
  }
  throw new Error('expected a ValidationError');
}

/** The single problem reported for a call with these arguments. */
function problemOf(args: unknown, kwargs: unknown, options: TaskOptions = {}, task = 'bench.add'): string {
  const problems = problemsOf(() => resolveTaskCall(task, args, kwargs, options, NOW));
  expect(problems).toHaveLength(1);
  return problems[0] ?? '';
}

/** The UnsupportedEntryError (a CorruptEntryError with its own code) that decoding `raw` throws. */
function unsupported(raw: string, id = 'job-1'): UnsupportedEntryError {
  try {
    decodeEntry(id, raw);
  } catch (err) {
    expect(err).toBeInstanceOf(UnsupportedEntryError);
    const error = err as UnsupportedEntryError;
    expect(error.code).toBe('UNSUPPORTED_ENTRY');
    expect(error.taskId).toBe(id);
    expect(error.message).toContain("cannot be sent as Python's send_task would send it");
    return error;
  }
  throw new Error('expected an UnsupportedEntryError');
}

function corruption(raw: string | null, id = 'job-1'): CorruptEntryError {
  try {
    decodeEntry(id, raw);
  } catch (err) {
    expect(err).toBeInstanceOf(CorruptEntryError);
    const error = err as CorruptEntryError;
    expect(error.code).toBe('CORRUPT_ENTRY');
    expect(error.taskId).toBe(id);
    return error;
  }
  throw new Error('expected a CorruptEntryError');
}

describe('resolveTaskCall rejects bad input with a ValidationError that says what is wrong', () => {
  it('an eta string without an offset, suggesting to add one', () => {
    const problem = problemOf([], {}, { eta: '2031-03-04T05:06:07' });
    expect(problem).toContain('has no UTC offset');
    expect(problem).toContain('add one');
  });

  it('an eta string that does not parse', () => {
    expect(problemOf([], {}, { eta: 'next tuesday' })).toContain('eta "next tuesday" is not an ISO-8601 date-time');
  });

  it('an impossible calendar date', () => {
    expect(problemOf([], {}, { eta: '2031-02-30T00:00:00Z' })).toContain('is not a real calendar date-time');
  });

  it('an invalid Date as eta', () => {
    expect(problemOf([], {}, { eta: new Date('garbage') })).toContain('eta is an invalid Date');
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('countdown %s', (countdown) => {
    expect(problemOf([], {}, { countdown })).toContain('countdown must be a finite number of seconds >= 0');
  });

  it('both eta and countdown', () => {
    expect(problemOf([], {}, { eta: new Date('2031-03-05T00:00:00Z'), countdown: 10 })).toContain('either eta or countdown, not both');
  });

  it.each<[string, unknown, string]>([
    ['a string', 'abc', 'args must be an array, got "abc"'],
    ['an object', { x: 1 }, 'args must be an array, got object'],
    ['a number', 5, 'args must be an array, got 5'],
  ])('args given as %s', (_label, args, fragment) => {
    const problem = problemOf(args, {});
    expect(problem).toContain(fragment);
    expect(problem).toContain('wrap a single argument as [value]');
  });

  it.each<[string, unknown, string]>([
    ['an array', [1, 2], 'kwargs must be an object, got an array'],
    ['a string', 'y=2', 'kwargs must be an object, got "y=2"'],
  ])('kwargs given as %s', (_label, kwargs, fragment) => {
    expect(problemOf([], kwargs)).toContain(fragment);
  });

  it('a BigInt, naming where it is', () => {
    expect(problemOf([1, { n: 10n }], {})).toBe('args[1].n is a BigInt, which JSON cannot hold; convert it to a number or a string');
  });

  it('a cycle', () => {
    const node: Record<string, unknown> = { name: 'a' };
    node.self = node;
    expect(problemOf([], { node })).toContain('kwargs.node.self refers back to itself (a cycle)');
  });

  it('a function', () => {
    expect(problemOf([() => 1], {})).toContain('args[0] is a function');
  });

  it('undefined inside an array', () => {
    expect(problemOf([1, undefined], {})).toContain('args[1] is undefined, which JSON cannot hold; use null');
  });

  it('NaN and Infinity in args', () => {
    expect(problemOf([Number.NaN], {})).toContain('args[0] is NaN');
    expect(problemOf([[Number.NEGATIVE_INFINITY]], {})).toContain('args[0][0] is -Infinity');
  });

  it("an object shaped like kombu's tagged value", () => {
    expect(problemOf([{ __type__: 'datetime', __value__: '2031-03-04' }], {})).toContain('has exactly the keys __type__ and __value__');
  });

  it('an empty task name', () => {
    expect(problemOf([], {}, {}, '')).toContain('task name is empty');
    expect(problemOf([], {}, {}, '   ')).toContain('task name is empty');
  });

  it.each([-1, 256, 1.5])('priority %s', (priority) => {
    expect(problemOf([], {}, { priority })).toContain(`priority must be an integer from 0 to 255 (Redis uses 0-9, 0 first), got ${priority}`);
  });

  it('an unknown option name, listing the valid ones', () => {
    const problem = problemOf([], {}, { eta_at: '2031-03-04T05:06:07Z' } as unknown as TaskOptions);
    expect(problem).toContain('unknown option "eta_at"');
    expect(problem).toContain('valid options are eta, countdown, taskId');
  });

  it('a link that is not a signature', () => {
    expect(problemOf([], {}, { link: [signature('tasks.ok'), { task: '' } as Signature] })).toContain('link[1] must be a signature');
  });

  it('several problems at once, all listed', () => {
    const problems = problemsOf(() => resolveTaskCall('', 'abc', [1], { countdown: -5, priority: 300, bogus: 1 } as unknown as TaskOptions, NOW));
    expect(problems).toHaveLength(6);
    expect(problems.some((p) => p.includes('task name is empty'))).toBe(true);
    expect(problems.some((p) => p.includes('unknown option "bogus"'))).toBe(true);
    expect(problems.some((p) => p.includes('args must be an array'))).toBe(true);
    expect(problems.some((p) => p.includes('kwargs must be an object'))).toBe(true);
    expect(problems.some((p) => p.includes('countdown must be a finite number'))).toBe(true);
    expect(problems.some((p) => p.includes('priority must be an integer'))).toBe(true);
  });

  it('every problem of a nested value, not just the first', () => {
    const problems = problemsOf(() => resolveTaskCall('bench.add', [10n, Number.NaN], { f: () => 0 }, {}, NOW));
    expect(problems).toEqual([
      'args[0] is a BigInt, which JSON cannot hold; convert it to a number or a string',
      'args[1] is NaN, which JSON cannot hold; use null or a finite number',
      'kwargs.f is a function, which JSON cannot hold; pass data only',
    ]);
  });
});

describe('resolveTaskCall accepts valid calls', () => {
  it('an eta Date gives its instant as dueAt in unix seconds', () => {
    const { dueAt } = resolveTaskCall('bench.add', [], {}, { eta: new Date('2031-03-04T05:06:07.250Z') }, NOW);
    expect(dueAt).toBe(1_930_367_167.25);
  });

  it('an eta ISO string with +02:00 gives the right UTC instant', () => {
    const { dueAt } = resolveTaskCall('bench.add', [], {}, { eta: '2031-03-04T07:06:07+02:00' }, NOW);
    expect(dueAt).toBe(Date.UTC(2031, 2, 4, 5, 6, 7) / 1000);
  });

  it('countdown 0 is due now', () => {
    expect(resolveTaskCall('bench.add', [], {}, { countdown: 0 }, NOW).dueAt).toBe(NOW_S);
  });

  it('countdown 3.5 is due 3.5 s after the injected now', () => {
    expect(resolveTaskCall('bench.add', [], {}, { countdown: 3.5 }, NOW).dueAt).toBe(NOW_S + 3.5);
  });

  it('eta null means publish now: no dueAt', () => {
    const { dueAt } = resolveTaskCall('bench.add', [1], {}, { eta: null }, NOW);
    expect(dueAt).toBeUndefined();
    expect(isScheduled({ eta: null })).toBe(false);
    expect(isScheduled({ countdown: 0 })).toBe(true);
  });

  it('missing args and kwargs become [] and {}', () => {
    const { job } = resolveTaskCall('bench.add', undefined, null, {}, NOW);
    expect(job.args).toEqual([]);
    expect(job.kwargs).toEqual({});
  });

  it('a random UUID task id unless one is given', () => {
    const a = resolveTaskCall('bench.add', [], {}, {}, NOW).job.id;
    const b = resolveTaskCall('bench.add', [], {}, {}, NOW).job.id;
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
    expect(resolveTaskCall('bench.add', [], {}, { taskId: 'invoice-42' }, NOW).job.id).toBe('invoice-42');
  });

  it('shared (acyclic) references and Dates inside args are fine', () => {
    const shared = { k: 1 };
    const { job } = resolveTaskCall('bench.add', [shared, shared, new Date(0)], {}, {}, NOW);
    expect(job.args).toHaveLength(3);
  });

  it('fills in the missing keys of a partial signature', () => {
    const { job } = resolveTaskCall('bench.add', [], {}, { link: { task: 'tasks.cb' } as Signature }, NOW);
    expect(job.link).toEqual([{ task: 'tasks.cb', args: [], kwargs: {}, options: {}, subtask_type: null, immutable: false }]);
  });
});

describe('encodeEntry', () => {
  it('writes the minimal job exactly, with no null keys', () => {
    const { job } = resolveTaskCall('bench.add', [1, 2], {}, { taskId: '7c2677f6-ac2b-49e7-974a-a25d6c14da66' }, NOW);
    expect(encodeEntry(job)).toBe('[["bench.add"],{"args":[1,2],"task_id":"7c2677f6-ac2b-49e7-974a-a25d6c14da66"}]');
  });

  it('maps every option to its Python send_task keyword', () => {
    const cb = signature('tasks.notify', ['done']);
    const eb1 = signature('tasks.alert', [], { level: 'high' });
    const eb2 = signature('tasks.page', [], {}, { immutable: true, options: { queue: 'ops' } });
    const { job } = resolveTaskCall(
      'bench.add',
      [1],
      { y: 2 },
      {
        taskId: 'tid',
        queue: 'reports',
        routingKey: 'reports.daily',
        exchange: 'reports-ex',
        priority: 7,
        expires: 60,
        headers: { 'x-tenant': 'acme' },
        link: cb,
        linkError: [eb1, eb2],
        shadow: 'add-shadow',
        timeLimit: 30,
        softTimeLimit: 20,
        ignoreResult: true,
        countdown: 10,
      },
      NOW,
    );
    expect(JSON.parse(encodeEntry(job))).toEqual([
      ['bench.add'],
      {
        args: [1],
        kwargs: { y: 2 },
        task_id: 'tid',
        queue: 'reports',
        routing_key: 'reports.daily',
        exchange: 'reports-ex',
        priority: 7,
        expires: 60,
        headers: { 'x-tenant': 'acme' },
        link: { task: 'tasks.notify', args: ['done'], kwargs: {}, options: {}, subtask_type: null, immutable: false },
        link_error: [
          { task: 'tasks.alert', args: [], kwargs: { level: 'high' }, options: {}, subtask_type: null, immutable: false },
          { task: 'tasks.page', args: [], kwargs: {}, options: { queue: 'ops' }, subtask_type: null, immutable: true },
        ],
        shadow: 'add-shadow',
        time_limit: 30,
        soft_time_limit: 20,
        ignore_result: true,
      },
    ]);
  });

  it('writes an absolute expires as a pickled UTC datetime, the form Celery 5.0-5.2 send_task takes', () => {
    const { job } = resolveTaskCall('bench.add', [], {}, { taskId: 't', expires: '2031-03-05T02:00:00.5+02:00' }, NOW);
    const [, kw] = JSON.parse(encodeEntry(job)) as [string[], Record<string, unknown>];
    expect(typeof kw.expires).toBe('string');
    expect(kw.expires as string).toMatch(/^__python_pickle__/);
    expect(readPickledDatetime(kw.expires as string)).toEqual({ at: new Date('2031-03-05T00:00:00.500Z'), isoformat: '2031-03-05T00:00:00.500000+00:00' });
  });

  it('writes ignoreResult false (it overrides a task default)', () => {
    const { job } = resolveTaskCall('bench.add', [], {}, { taskId: 't', ignoreResult: false }, NOW);
    expect(encodeEntry(job)).toBe('[["bench.add"],{"args":[],"task_id":"t","ignore_result":false}]');
  });

  it('round-trips through decodeEntry', () => {
    const options: TaskOptions[] = [
      {},
      { expires: 3600 },
      { expires: new Date('2031-03-05T00:00:00.123Z') },
      {
        queue: 'q',
        routingKey: 'rk',
        exchange: 'ex',
        priority: 9,
        headers: { a: [1, { b: null }] },
        link: [signature('tasks.a'), signature('tasks.b', [1])],
        linkError: signature('tasks.err'),
        shadow: 's',
        timeLimit: 1.5,
        softTimeLimit: 1,
        ignoreResult: false,
      },
    ];
    for (const opts of options) {
      const { job } = resolveTaskCall('bench.add', [1, 'Zoë', { n: null }], { k: [true] }, opts, NOW);
      // an absolute expires comes back with the text Python's isoformat() gives the pickled value
      const expected = job.expires?.kind === 'absolute' ? { ...job, expires: { ...job.expires, text: '2031-03-05T00:00:00.123000+00:00' } } : job;
      expect(decodeEntry(job.id, encodeEntry(job))).toEqual(expected);
    }
  });
});

describe('decodeEntry reads the Python package 1.x entries', () => {
  const base = (entry: FixtureEntry): Job => ({
    id: entry.key,
    task: 'bench.add',
    args: [],
    kwargs: {},
    link: [],
    linkError: [],
    ignoreResult: true,
  });

  const expected: Array<[string, Partial<Job>]> = [
    ['positional args only', { args: [1, 2] }],
    ['args and kwargs', { args: [1], kwargs: { y: 2 } }],
    ['queue and priority', { args: [3, 4], queue: 'reports', priority: 7 }],
    [
      'expires as a pendulum datetime in UTC',
      { args: [5, 6], expires: { kind: 'absolute', at: new Date('2031-03-05T00:00:00Z'), text: '2031-03-05T00:00:00+00:00' } },
    ],
    ['expires as a number of seconds', { args: [5, 6], expires: { kind: 'relative', seconds: 3600 } }],
    [
      'link and link_error callbacks',
      {
        args: [7, 8],
        link: [{ task: 'tasks.notify', args: ['done'], kwargs: {}, options: {}, subtask_type: null, immutable: false }],
        linkError: [{ task: 'tasks.alert', args: [], kwargs: {}, options: {}, subtask_type: null, immutable: false }],
      },
    ],
    ['caller-chosen task id', { id: 'invoice-42-reminder', args: [9, 10], routingKey: 'billing.reminders', exchange: 'billing' }],
    [
      'time limits, shadow name and custom headers',
      { args: [11, 12], shadow: 'add-shadow', timeLimit: 30, softTimeLimit: 20, headers: { 'x-tenant': 'acme' } },
    ],
    ['unicode and nested values', { args: [{ name: 'Zoë', tags: ['ä', '✓'] }, [1, [2, [3]]]] }],
    ['eta with a fractional second', { args: [0, 0] }],
    [
      'expires as a standard-library datetime with timezone.utc',
      // the pickled state is 2031-03-05 06:07:08.123456 UTC; Date keeps milliseconds
      { args: [1, 1], expires: { kind: 'absolute', at: new Date('2031-03-05T06:07:08.123Z'), text: '2031-03-05T06:07:08.123456+00:00' } },
    ],
    [
      'expires as a datetime in Europe/Berlin',
      { args: [1, 1], expires: { kind: 'absolute', at: new Date('2031-03-05T05:00:00Z'), text: '2031-03-05T06:00:00+01:00' } },
    ],
    [
      'expires as a standard-library datetime with a fixed +02:00 offset',
      { args: [1, 1], expires: { kind: 'absolute', at: new Date('2031-03-05T10:00:00Z'), text: '2031-03-05T12:00:00+02:00' } },
    ],
  ];

  it('covers every fixture entry', () => {
    expect(fixture.entries).toHaveLength(expected.length);
    for (const entry of fixture.entries) {
      expect(expected.filter(([prefix]) => entry.description.startsWith(prefix))).toHaveLength(1);
    }
  });

  it.each(expected)('%s', (prefix, fields) => {
    const entry = fixtureEntry(prefix);
    const job = decodeEntry(entry.key, entry.value);
    expect(job).toStrictEqual({ ...base(entry), ...fields });
  });

  it('re-encodes a Python entry without nulls, with a pickle only in an absolute expires, keeping its meaning', () => {
    for (const entry of fixture.entries) {
      const job = decodeEntry(entry.key, entry.value);
      const encoded = encodeEntry(job);
      const [, kw] = JSON.parse(encoded) as [string[], Record<string, unknown>];
      expect(Object.values(kw)).not.toContain(null);
      const pickled = Object.entries(kw)
        .filter(([, v]) => typeof v === 'string' && v.startsWith('__python_pickle__'))
        .map(([k]) => k);
      expect(pickled).toEqual(job.expires?.kind === 'absolute' ? ['expires'] : []);
      const again = decodeEntry(entry.key, encoded);
      if (job.expires?.kind === 'absolute') {
        // re-written in UTC: the same instant, the text of a UTC datetime
        expect(again.expires).toMatchObject({ kind: 'absolute', at: job.expires.at });
        expect({ ...again, expires: job.expires }).toStrictEqual(job);
      } else {
        expect(again).toStrictEqual(job);
      }
    }
  });

  it('takes the id from the key when the entry has no task_id', () => {
    expect(decodeEntry('key-id', '[["bench.add"],{"args":[1]}]').id).toBe('key-id');
  });

  it('reads an expires string without offset as UTC, like the Python dispatcher', () => {
    const job = decodeEntry('t', '[["bench.add"],{"expires":"2031-03-05T00:00:00"}]');
    expect(job.expires).toEqual({ kind: 'absolute', at: new Date('2031-03-05T00:00:00Z') });
  });
});

describe('decodeEntry throws CorruptEntryError', () => {
  const taskTypePickle = (JSON.parse(fixtureEntry('positional args only').value) as [unknown, Record<string, unknown>])[1].task_type;

  it('for text that is not JSON', () => {
    expect(corruption('[["bench.add"], {').message).toContain('is corrupt: not JSON');
  });

  it('for a JSON object instead of the [[task], {options}] list', () => {
    expect(corruption('{"task": "bench.add", "args": []}').message).toContain('expected [[task name], {options}]');
    expect(corruption('[["bench.add"]]').message).toContain('expected [[task name], {options}]');
    expect(corruption('[["bench.add"], []]').message).toContain('expected [[task name], {options}]');
  });

  it('for a missing task name', () => {
    expect(corruption('[[], {"args": []}]').message).toContain('the task name is missing');
    expect(corruption('[[""], {"args": []}]').message).toContain('the task name is missing');
  });

  it('for args that are not a list', () => {
    expect(corruption('[["bench.add"], {"args": "12"}]').message).toContain('args is not a list');
  });

  it('for kwargs that are not an object', () => {
    expect(corruption('[["bench.add"], {"kwargs": [1]}]').message).toContain('kwargs is not an object');
  });

  it('(UnsupportedEntryError) for a pickled value in another option than expires or task_type', () => {
    const raw = JSON.stringify([['bench.add'], { args: [], queue: taskTypePickle }]);
    expect(unsupported(raw).message).toContain('queue holds a Python pickle');
  });

  it('for a pickle in expires that is not an aware datetime', () => {
    expect(typeof taskTypePickle).toBe('string');
    const raw = JSON.stringify([['bench.add'], { args: [], expires: taskTypePickle }]);
    const error = corruption(raw);
    expect(error.message).toContain('expires:');
    expect(error.message).toContain('celery.app.registry._unpickle_task_v2');
  });

  it('for an expires string that is not a date-time', () => {
    expect(corruption('[["bench.add"], {"expires": "soon"}]').message).toContain('expires "soon" is not an ISO-8601 date-time');
  });

  it('for options of the wrong type', () => {
    expect(corruption('[["bench.add"], {"queue": 5}]').message).toContain('queue is not a string');
    expect(corruption('[["bench.add"], {"priority": "high"}]').message).toContain('priority is not a number');
    expect(corruption('[["bench.add"], {"link": {"args": []}}]').message).toContain('link is not a signature');
  });

  it('for a missing (null) raw value', () => {
    expect(corruption(null).message).toContain('its key is missing');
  });
});
