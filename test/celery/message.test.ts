import { describe, it, expect } from 'vitest';
import { resolveTaskCall, signature, type TaskOptions } from '../../src/job/options.js';
import { buildTaskMessage, type MessageContext, type TaskMessage } from '../../src/celery/message.js';
import { DEFAULT_LAYOUT, parseRedisEnvelope, queueListKey, toRedisEnvelope } from '../../src/celery/kombu-redis.js';

/** Golden Celery protocol-2 messages (docs/protocol.md §1.2-§1.9, §2.1, docs/protocol.md §5), read back from the Redis envelope. */

const NOW = new Date('2031-03-04T05:06:07.089Z');
const NOW_S = NOW.getTime() / 1000;
const ORIGIN = 'gen4242@test-host';
const ID = '5619a2b0-0c7e-4f0c-9a53-1d2e3f405162';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CELERY_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/;
const NO_EMBED = { callbacks: null, errbacks: null, chain: null, chord: null };

interface Sent {
  message: TaskMessage;
  raw: string;
  envelope: ReturnType<typeof parseRedisEnvelope>;
}

/** Resolves a task call as the public API does, builds its message and wraps it as the Redis broker does. */
function send(task: string, args: unknown, kwargs: unknown, options: TaskOptions = {}, ctx: Partial<MessageContext> = {}): Sent {
  const { job, dueAt } = resolveTaskCall(task, args, kwargs, { taskId: ID, ...options }, NOW);
  const message = buildTaskMessage(job, { now: NOW, origin: ORIGIN, defaultQueue: 'celery', ...(dueAt !== undefined && { dueAt }), ...ctx });
  const raw = toRedisEnvelope(message, { exchange: message.routing.exchange, routingKey: message.routing.routingKey });
  return { message, raw, envelope: parseRedisEnvelope(raw) };
}

/** The header set a Python 5.x producer writes for a plain call, with `overrides` on top. */
function headers(task: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    lang: 'py',
    task,
    id: ID,
    shadow: null,
    eta: null,
    expires: null,
    group: null,
    group_index: null,
    retries: 0,
    timelimit: [null, null],
    root_id: ID,
    parent_id: null,
    argsrepr: '()',
    kwargsrepr: '{}',
    origin: ORIGIN,
    ignore_result: false,
    replaced_task_nesting: 0,
    stamped_headers: null,
    stamps: {},
    ...overrides,
  };
}

function properties(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    correlation_id: ID,
    reply_to: '',
    delivery_mode: 2,
    priority: 0,
    delivery_info: { exchange: '', routing_key: 'celery' },
    body_encoding: 'base64',
    delivery_tag: expect.stringMatching(UUID),
    ...overrides,
  };
}

describe('golden messages', () => {
  it('a minimal call', () => {
    const { raw, envelope } = send('bench.add', [], {});
    const outer = JSON.parse(raw) as Record<string, unknown>;
    expect(Object.keys(outer).sort()).toEqual(['body', 'content-encoding', 'content-type', 'headers', 'properties']);
    expect(outer.body).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(envelope).toEqual({
      headers: {
        lang: 'py',
        task: 'bench.add',
        id: ID,
        shadow: null,
        eta: null,
        expires: null,
        group: null,
        group_index: null,
        retries: 0,
        timelimit: [null, null],
        root_id: ID,
        parent_id: null,
        argsrepr: '()',
        kwargsrepr: '{}',
        origin: ORIGIN,
        ignore_result: false,
        replaced_task_nesting: 0,
        stamped_headers: null,
        stamps: {},
      },
      properties: {
        correlation_id: ID,
        reply_to: '',
        delivery_mode: 2,
        priority: 0,
        delivery_info: { exchange: '', routing_key: 'celery' },
        body_encoding: 'base64',
        delivery_tag: expect.stringMatching(UUID),
      },
      body: [[], {}, { callbacks: null, errbacks: null, chain: null, chord: null }],
      contentType: 'application/json',
      contentEncoding: 'utf-8',
    });
  });

  it('the docs/protocol.md §1.9 full example: eta, expires, priority, link, time limits, custom header, shadow, queue, ignore_result', () => {
    const { message, envelope } = send(
      'tasks.add',
      [2, 3],
      {},
      {
        countdown: 3600,
        expires: 7200,
        priority: 7,
        link: signature('tasks.echo', ['cb']),
        timeLimit: 10,
        softTimeLimit: 5,
        headers: { 'x-custom': 'v' },
        shadow: 'shadowname',
        queue: 'hi',
        ignoreResult: true,
      },
    );
    expect(envelope).toEqual({
      headers: {
        lang: 'py',
        task: 'tasks.add',
        id: ID,
        shadow: 'shadowname',
        eta: '2031-03-04T06:06:07.089000+00:00',
        expires: '2031-03-04T07:06:07.089000+00:00',
        group: null,
        group_index: null,
        retries: 0,
        timelimit: [10, 5],
        root_id: ID,
        parent_id: null,
        argsrepr: '(2, 3)',
        kwargsrepr: '{}',
        origin: ORIGIN,
        ignore_result: true,
        replaced_task_nesting: 0,
        stamped_headers: null,
        stamps: {},
        'x-custom': 'v',
      },
      properties: {
        correlation_id: ID,
        reply_to: '',
        delivery_mode: 2,
        priority: 7,
        expiration: '7200000',
        delivery_info: { exchange: '', routing_key: 'hi' },
        body_encoding: 'base64',
        delivery_tag: expect.stringMatching(UUID),
      },
      body: [
        [2, 3],
        {},
        {
          callbacks: [{ task: 'tasks.echo', args: ['cb'], kwargs: {}, options: {}, subtask_type: null, immutable: false }],
          errbacks: null,
          chain: null,
          chord: null,
        },
      ],
      contentType: 'application/json',
      contentEncoding: 'utf-8',
    });
    expect(queueListKey(message.routing.queue, message.properties.priority)).toBe('hi\x06\x166');
  });

  it('args and kwargs, with Python reprs', () => {
    const { envelope } = send('bench.add', [1], { y: 2 });
    expect(envelope.headers).toEqual(headers('bench.add', { argsrepr: '(1,)', kwargsrepr: "{'y': 2}" }));
    expect(envelope.body).toEqual([[1], { y: 2 }, NO_EMBED]);
    expect(envelope.properties).toEqual(properties());
  });

  it('argsrepr and kwargsrepr follow Python repr for tuples, strings, None and booleans', () => {
    expect(send('t', [2, 3], {}).envelope.headers.argsrepr).toBe('(2, 3)');
    expect(send('t', [1], {}).envelope.headers.argsrepr).toBe('(1,)');
    expect(send('t', [], {}).envelope.headers.argsrepr).toBe('()');
    const { headers: h } = send('t', ["it's", null, true, [1.5]], { y: 2, s: 'a', n: null, b: false }).envelope;
    expect(h.argsrepr).toBe(`("it's", None, True, [1.5])`);
    expect(h.kwargsrepr).toBe("{'y': 2, 's': 'a', 'n': None, 'b': False}");
  });

  it('queue and priority choose the Redis list and the routing key', () => {
    const { message, envelope } = send('bench.add', [3, 4], {}, { queue: 'reports', priority: 7 });
    expect(envelope.properties).toEqual(properties({ priority: 7, delivery_info: { exchange: '', routing_key: 'reports' } }));
    expect(message.routing).toEqual({ exchange: '', routingKey: 'reports', queue: 'reports' });
    expect(queueListKey(message.routing.queue, message.properties.priority)).toBe('reports\x06\x166');
  });

  it.each<[number, string]>([
    [0, 'q'],
    [1, 'q'],
    [2, 'q'],
    [3, 'q\x06\x163'],
    [4, 'q\x06\x163'],
    [5, 'q\x06\x163'],
    [7, 'q\x06\x166'],
    [9, 'q\x06\x169'],
    [10, 'q\x06\x169'],
    [255, 'q\x06\x169'],
  ])('priority %i goes to list %j', (priority, key) => {
    const { message, envelope } = send('bench.add', [], {}, { queue: 'q', priority });
    expect(envelope.properties.priority).toBe(priority);
    expect(queueListKey(message.routing.queue, message.properties.priority)).toBe(key);
  });

  it('a global key prefix goes in front of the list key', () => {
    const { message } = send('bench.add', [], {}, { queue: 'q', priority: 7 });
    expect(queueListKey(message.routing.queue, message.properties.priority, { ...DEFAULT_LAYOUT, keyPrefix: 'pfx:' })).toBe('pfx:q\x06\x166');
  });

  it('expires in seconds counts from now and sets expiration in ms', () => {
    const { envelope } = send('bench.add', [], {}, { expires: 90.5 });
    expect(envelope.headers).toEqual(headers('bench.add', { expires: '2031-03-04T05:07:37.589000+00:00' }));
    expect(envelope.properties).toEqual(properties({ expiration: '90500' }));
  });

  it('expires given as an ISO string with offset is absolute', () => {
    const { envelope } = send('bench.add', [], {}, { expires: '2031-03-04T08:06:07.089+02:00' });
    expect(envelope.headers.expires).toBe('2031-03-04T06:06:07.089000+00:00');
    expect(envelope.properties.expiration).toBe('3600000');
  });

  it('expires given as a Date is absolute', () => {
    const { envelope } = send('bench.add', [], {}, { expires: new Date(NOW.getTime() + 1234) });
    expect(envelope.headers.expires).toBe('2031-03-04T05:06:08.323000+00:00');
    expect(envelope.properties.expiration).toBe('1234');
  });

  it('an expires already in the past clamps expiration at 0 but keeps the header', () => {
    const { envelope } = send('bench.add', [], {}, { expires: '2031-03-04T04:06:07Z' });
    expect(envelope.headers.expires).toBe('2031-03-04T04:06:07.000000+00:00');
    expect(envelope.properties.expiration).toBe('0');
  });

  it('no expires means no expiration property', () => {
    const { envelope } = send('bench.add', [], {});
    expect(envelope.headers.expires).toBeNull();
    expect('expiration' in envelope.properties).toBe(false);
  });

  it('link and linkError become callbacks and errbacks lists of docs/protocol.md §1.4 signatures', () => {
    const { envelope } = send(
      'bench.add',
      [7, 8],
      {},
      {
        link: [signature('tasks.notify', ['done'], { k: 1 }), signature('tasks.log', [], {}, { immutable: true, options: { queue: 'logs' } })],
        linkError: signature('tasks.alert'),
      },
    );
    const [, , embed] = envelope.body;
    expect(embed).toEqual({
      callbacks: [
        { task: 'tasks.notify', args: ['done'], kwargs: { k: 1 }, options: {}, subtask_type: null, immutable: false },
        { task: 'tasks.log', args: [], kwargs: {}, options: { queue: 'logs' }, subtask_type: null, immutable: true },
      ],
      errbacks: [{ task: 'tasks.alert', args: [], kwargs: {}, options: {}, subtask_type: null, immutable: false }],
      chain: null,
      chord: null,
    });
    const { callbacks, errbacks } = embed as { callbacks: object[]; errbacks: object[] };
    for (const sig of [...callbacks, ...errbacks]) {
      expect(Object.keys(sig).sort()).toEqual(['args', 'immutable', 'kwargs', 'options', 'subtask_type', 'task']);
    }
  });

  it('timeLimit and softTimeLimit become timelimit [hard, soft]', () => {
    expect(send('t', [], {}, { timeLimit: 30, softTimeLimit: 20 }).envelope.headers.timelimit).toEqual([30, 20]);
    expect(send('t', [], {}, { timeLimit: 30 }).envelope.headers.timelimit).toEqual([30, null]);
    expect(send('t', [], {}, { softTimeLimit: 20 }).envelope.headers.timelimit).toEqual([null, 20]);
  });

  it('shadow sets the shadow header', () => {
    expect(send('bench.add', [], {}, { shadow: 'add-shadow' }).envelope.headers).toEqual(headers('bench.add', { shadow: 'add-shadow' }));
  });

  it('ignoreResult sets ignore_result either way', () => {
    expect(send('t', [], {}, { ignoreResult: true }).envelope.headers.ignore_result).toBe(true);
    expect(send('t', [], {}, { ignoreResult: false }).envelope.headers.ignore_result).toBe(false);
  });

  it('custom headers are merged on top and may override Celery headers', () => {
    const { envelope } = send('bench.add', [], {}, { headers: { 'x-tenant': 'acme', retries: 3, origin: 'custom-origin' } });
    expect(envelope.headers).toEqual(headers('bench.add', { 'x-tenant': 'acme', retries: 3, origin: 'custom-origin' }));
  });

  it('reply_to comes from the context', () => {
    expect(send('t', [], {}, {}, { replyTo: 'rpc-queue' }).envelope.properties.reply_to).toBe('rpc-queue');
  });

  it('origin defaults to gen<pid>@<host>', () => {
    const { job } = resolveTaskCall('t', [], {}, {}, NOW);
    const message = buildTaskMessage(job, { now: NOW, defaultQueue: 'celery' });
    expect(message.headers.origin).toMatch(new RegExp(`^gen${process.pid}@.+$`));
  });
});

describe('eta header', () => {
  it('is null when the job has no due time', () => {
    expect(send('t', [], {}).envelope.headers.eta).toBeNull();
  });

  it('is null when the due time has passed', () => {
    expect(send('t', [], {}, {}, { dueAt: NOW_S - 60 }).envelope.headers.eta).toBeNull();
  });

  it('is null when the due time is exactly now', () => {
    expect(send('t', [], {}, { countdown: 0 }).envelope.headers.eta).toBeNull();
  });

  it('is the …ffffff+00:00 form when the due time is in the future', () => {
    expect(send('t', [], {}, { countdown: 0.5 }).envelope.headers.eta).toBe('2031-03-04T05:06:07.589000+00:00');
    expect(send('t', [], {}, { eta: '2031-03-05T01:00:00+01:00' }).envelope.headers.eta).toBe('2031-03-05T00:00:00.000000+00:00');
  });
});

describe('invariants of every message', () => {
  const variants: Array<[string, unknown[], Record<string, unknown>, TaskOptions, Partial<MessageContext>]> = [
    ['minimal', [], {}, {}, {}],
    ['args', [1, 'two', [3]], { k: { n: null } }, {}, {}],
    ['future eta and relative expires', [], {}, { countdown: 12.345, expires: 1.0005 }, {}],
    ['absolute expires', [], {}, { expires: '2031-03-04T05:06:07.999999+05:30' }, {}],
    ['past due and past expires', [], {}, { expires: new Date(0) }, { dueAt: 0 }],
    [
      'everything',
      [1],
      { y: 2 },
      {
        queue: 'q',
        priority: 9,
        link: signature('cb'),
        linkError: signature('eb'),
        timeLimit: 1,
        softTimeLimit: 1,
        shadow: 's',
        ignoreResult: true,
        headers: { h: 1 },
        eta: new Date('2099-12-31T23:59:59.999Z'),
      },
      {},
    ],
  ];

  it.each(variants)('%s: times match …ffffff+00:00, body has 3 elements, id and delivery_tag are set', (_label, args, kwargs, options, ctx) => {
    const { envelope } = send('bench.add', args, kwargs, options, ctx);
    for (const name of ['eta', 'expires'] as const) {
      const value = envelope.headers[name];
      if (value !== null) expect(value).toMatch(CELERY_TIME);
    }
    expect(envelope.body).toHaveLength(3);
    expect(envelope.headers.id).toBe(ID);
    expect(envelope.properties.correlation_id).toBe(ID);
    expect(envelope.properties.delivery_tag).toEqual(expect.stringMatching(UUID));
    expect(envelope.properties.body_encoding).toBe('base64');
    if ('expiration' in envelope.properties) expect(envelope.properties.expiration).toMatch(/^\d+$/);
  });

  it('the expiration of a fractional relative expires is a whole number of ms', () => {
    expect(send('t', [], {}, { expires: 1.0005 }).envelope.properties.expiration).toBe('1000');
  });

  it('gives each envelope of the same message its own delivery tag', () => {
    const { message } = send('bench.add', [], {});
    const delivery = { exchange: '', routingKey: 'celery' };
    const tags = new Set(Array.from({ length: 5 }, () => parseRedisEnvelope(toRedisEnvelope(message, delivery)).properties.delivery_tag));
    expect(tags.size).toBe(5);
  });

  it('carries unicode args and kwargs through the base64 body unchanged', () => {
    const args = ['Zoë', { tags: ['ä', '✓'] }, '😀 \u2028 \\ "q"'];
    const kwargs = { ключ: '值', emoji: '👍🏽' };
    const { raw, envelope } = send('bench.add', args, kwargs);
    expect(envelope.body[0]).toEqual(args);
    expect(envelope.body[1]).toEqual(kwargs);
    const outer = JSON.parse(raw) as { body: string };
    expect(outer.body).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(JSON.parse(Buffer.from(outer.body, 'base64').toString('utf8'))).toEqual([args, kwargs, NO_EMBED]);
  });
});

describe('routing', () => {
  it('uses the default exchange with routing key = default queue when no queue is given', () => {
    const { message, envelope } = send('bench.add', [], {});
    expect(message.routing).toEqual({ exchange: '', routingKey: 'celery', queue: 'celery' });
    expect(envelope.properties.delivery_info).toEqual({ exchange: '', routing_key: 'celery' });
  });

  it('uses the configured default queue', () => {
    const { message, envelope } = send('bench.add', [], {}, {}, { defaultQueue: 'jobs' });
    expect(message.routing).toEqual({ exchange: '', routingKey: 'jobs', queue: 'jobs' });
    expect(envelope.properties.delivery_info).toEqual({ exchange: '', routing_key: 'jobs' });
  });

  it('uses the default exchange with routing key = queue when a queue is given', () => {
    const { message, envelope } = send('bench.add', [], {}, { queue: 'reports' });
    expect(message.routing).toEqual({ exchange: '', routingKey: 'reports', queue: 'reports' });
    expect(envelope.properties.delivery_info).toEqual({ exchange: '', routing_key: 'reports' });
  });

  it('keeps the routing key of a named exchange', () => {
    const { message, envelope } = send('bench.add', [9, 10], {}, { exchange: 'billing', routingKey: 'billing.reminders' });
    expect(message.routing).toEqual({ exchange: 'billing', routingKey: 'billing.reminders', queue: 'celery' });
    expect(envelope.properties.delivery_info).toEqual({ exchange: 'billing', routing_key: 'billing.reminders' });
  });

  it('routes a named exchange without routing key by the queue name', () => {
    const { message } = send('bench.add', [], {}, { exchange: 'billing', queue: 'invoices' });
    expect(message.routing).toEqual({ exchange: 'billing', routingKey: 'invoices', queue: 'invoices' });
  });
});
