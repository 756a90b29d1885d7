/**
 * Every send_task keyword the Python package stores, read into the message `send_task` would
 * publish; and everything we cannot honour refused as `UnsupportedEntryError` (a dead letter with
 * reason `unsupported`), never dropped.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildTaskMessage } from '../../src/celery/message.js';
import { pickleUtcDatetime, readPickledDatetime } from '../../src/celery/pickle.js';
import { CorruptEntryError, UnsupportedEntryError } from '../../src/util/errors.js';
import { SEND_TASK_KEYWORDS } from '../../src/job/entry-keywords.js';
import { decodeEntry, encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { canvasFixture, fixture, type FixtureEntry } from '../helpers/fixture.js';

const NOW = new Date('2031-03-04T05:06:08Z');

function entriesOf(prefix: string): FixtureEntry[] {
  const found = canvasFixture.entries.filter((e) => e.description.startsWith(prefix));
  expect(found.length).toBeGreaterThan(0);
  return found;
}

function messageOf(entry: FixtureEntry) {
  return buildTaskMessage(decodeEntry(entry.key, entry.value), { now: NOW, dueAt: entry.score, defaultQueue: 'celery' });
}

function kwOf(entry: FixtureEntry): Record<string, unknown> {
  return (JSON.parse(entry.value) as [unknown, Record<string, unknown>])[1];
}

function unsupported(kw: Record<string, unknown>): string {
  try {
    decodeEntry('job-1', JSON.stringify([['bench.add'], { args: [], ...kw }]));
  } catch (err) {
    expect(err).toBeInstanceOf(UnsupportedEntryError);
    expect((err as UnsupportedEntryError).code).toBe('UNSUPPORTED_ENTRY');
    expect((err as Error).message).not.toContain('\n');
    return (err as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(kw)} to be unsupported`);
}

describe('the canvas entries the Python package wrote become the message send_task would publish', () => {
  it('covers every captured entry, and every keyword in them is in the keyword table', () => {
    const described = [
      'chain of three',
      'group of two',
      'chord:',
      'link as a list',
      'signature with its own options',
      'retries and a parent',
      'expires as a zone-named',
    ];
    for (const entry of canvasFixture.entries) {
      expect(described.filter((d) => entry.description.startsWith(d))).toHaveLength(1);
      for (const key of Object.keys(kwOf(entry))) expect(SEND_TASK_KEYWORDS[key], key).toBeDefined();
      expect(() => decodeEntry(entry.key, entry.value)).not.toThrow();
    }
  });

  it('a chain keeps the rest of its steps, reversed as stored, with their frozen ids', () => {
    const [entry] = entriesOf('chain of three');
    const msg = messageOf(entry as FixtureEntry);
    const stored = kwOf(entry as FixtureEntry);
    expect(msg.body[0]).toEqual([1, 2]);
    expect(msg.body[2].chain).toEqual(stored.chain);
    expect(msg.body[2].chain?.map((s) => s.task)).toEqual(['bench.note', 'bench.add']); // the last runs next
    expect(msg.body[2].chain?.[0]).toMatchObject({ args: ['done'], immutable: true });
    expect(msg.properties.reply_to).toBe(stored.reply_to);
    expect(msg.headers.group).toBeNull();
  });

  it('each member of a group carries the group id', () => {
    const members = entriesOf('group of two');
    expect(members).toHaveLength(2);
    for (const m of members) {
      const msg = messageOf(m);
      expect(msg.headers.group).toBe('ceccfd2a-cf0c-47bf-bad6-d8f37802f2d4');
      expect(msg.headers.group_index).toBeNull(); // a plain group stores none
      expect(msg.body[2].chord).toBeNull();
    }
  });

  it('each chord header task carries the body, its group id and index; the pickled eta in the body becomes ISO text', () => {
    const members = entriesOf('chord:');
    const indexes = members.map((m) => messageOf(m).headers.group_index).sort();
    expect(indexes).toEqual([0, 1]);
    for (const m of members) {
      const msg = messageOf(m);
      expect(msg.headers.group).toBe('2c7e2e11-ba91-4747-9e33-629fbc0d24a0');
      const body = msg.body[2].chord;
      expect(body).toMatchObject({ task: 'bench.tsum', args: [], immutable: false });
      expect(body?.options).toEqual({
        eta: '2031-03-04T05:06:07+00:00', // Python's isoformat() of the pickled pendulum DateTime
        task_id: '51d41011-4772-41ef-a6d2-6b9a72d0a734',
        reply_to: '6e56d537-e79d-3089-8ba5-a35ceb5ccb3f',
      });
      // the stored entry is not changed by reading it
      expect((kwOf(m).chord as { options: { eta: string } }).options.eta).toMatch(/^__python_pickle__/);
    }
  });

  it('links as a list and link_error as one signature become lists of callbacks and errbacks', () => {
    const [entry] = entriesOf('link as a list');
    const msg = messageOf(entry as FixtureEntry);
    expect(msg.body[2].callbacks?.map((s) => s.args)).toEqual([['a'], ['b']]);
    expect(msg.body[2].errbacks).toEqual([kwOf(entry as FixtureEntry).link_error]);
  });

  it('a link keeps its own options (queue, priority)', () => {
    const [entry] = entriesOf('signature with its own options');
    expect(messageOf(entry as FixtureEntry).body[2].callbacks?.[0]?.options).toEqual({ queue: 'reports', priority: 3 });
  });

  it('retries, root and parent ids go to the headers', () => {
    const [entry] = entriesOf('retries and a parent');
    expect(messageOf(entry as FixtureEntry).headers).toMatchObject({ retries: 2, root_id: 'root-1', parent_id: 'parent-1' });
  });

  it('a zone-named expires keeps its offset in the header, as isoformat() writes it', () => {
    const [entry] = entriesOf('expires as a zone-named');
    const msg = messageOf(entry as FixtureEntry);
    expect(msg.headers.expires).toBe('2031-03-05T05:06:07+01:00');
    // 2031-03-05T04:06:07Z is 82,799 s after NOW
    expect(msg.properties.expiration).toBe('82799000');
  });

  it('without these keywords the message is as before: retries 0, root id = own id, no group', () => {
    const [plain] = fixture.entries;
    const msg = buildTaskMessage(decodeEntry((plain as FixtureEntry).key, (plain as FixtureEntry).value), { now: NOW, defaultQueue: 'celery' });
    expect(msg.headers).toMatchObject({ retries: 0, root_id: (plain as FixtureEntry).key, parent_id: null, group: null, group_index: null });
    expect(msg.body[2]).toMatchObject({ chain: null, chord: null });
    expect(msg.properties.delivery_mode).toBe(2);
  });

  it('reads delivery_mode, argsrepr and kwargsrepr', () => {
    const job = decodeEntry('j', JSON.stringify([['bench.add'], { args: [1], delivery_mode: 'transient', argsrepr: '(…)', kwargsrepr: '{…}' }]));
    const msg = buildTaskMessage(job, { now: NOW, defaultQueue: 'celery' });
    expect(msg.properties.delivery_mode).toBe(1);
    expect(msg.headers).toMatchObject({ argsrepr: '(…)', kwargsrepr: '{…}' });
  });
});

describe('what cannot be honoured is unsupported (a dead letter), never dropped', () => {
  it('an unknown keyword', () => {
    expect(unsupported({ stamped_headers: ['a'] })).toContain('"stamped_headers" is not one of');
    expect(unsupported({ frobnicate: 1 })).toContain('"frobnicate"');
  });

  it('a null unknown keyword too: we do not know that null means "not given" for it', () => {
    expect(unsupported({ frobnicate: null })).toContain('"frobnicate"');
  });

  it('another serializer, compression, AMQP flags, a stored eta or countdown', () => {
    expect(unsupported({ serializer: 'pickle' })).toContain('serializer "pickle" cannot be honoured');
    expect(unsupported({ compression: 'zlib' })).toContain('does not compress');
    expect(unsupported({ mandatory: true })).toContain('mandatory');
    expect(unsupported({ immediate: true })).toContain('immediate');
    expect(unsupported({ exchange_type: 'topic' })).toContain('exchange_type');
    expect(unsupported({ countdown: 5 })).toContain('countdown');
    expect(unsupported({ eta: '2031-01-01T00:00:00+00:00' })).toContain('eta');
    expect(unsupported({ expiration: 10 })).toContain('expiration');
  });

  it('an impossible priority, delivery mode, retry count, group index or negative expires', () => {
    for (const p of [-1, 256, 1.5, 1e300]) expect(unsupported({ priority: p })).toContain('priority');
    expect(unsupported({ delivery_mode: 3 })).toContain('delivery_mode 3 is impossible');
    expect(unsupported({ retries: -1 })).toContain('retries -1');
    expect(unsupported({ group_index: 0.5 })).toContain('group_index');
    expect(unsupported({ expires: -5 })).toContain('negative');
  });

  it('a pickle in args, kwargs, headers or a signature outside options.eta/expires', () => {
    const p = pickleUtcDatetime(new Date('2031-01-01T00:00:00Z'));
    expect(unsupported({ args: [1, p] })).toContain('args[1] holds a Python pickle');
    expect(unsupported({ kwargs: { when: p } })).toContain('kwargs.when holds a Python pickle');
    expect(unsupported({ headers: { h: [p] } })).toContain('headers.h[0] holds a Python pickle');
    const sig = { task: 't', args: [p], kwargs: {}, options: {}, subtask_type: null, immutable: false };
    expect(unsupported({ link: sig })).toContain('link.args[0] holds a Python pickle');
    expect(unsupported({ chain: [{ ...sig, args: [], options: { queue: p } }] })).toContain('chain[0].options.queue');
    expect(unsupported({ shadow: p })).toContain('shadow holds a Python pickle');
  });

  it('a pickle marker written with JSON escapes is found too', () => {
    const raw = '[["bench.add"],{"args":[],"kwargs":{"x":"\\u005f_python_pickle__gAN9lC4="}}]';
    expect(JSON.parse(raw)[1].kwargs.x).toBe('__python_pickle__gAN9lC4=');
    expect(() => decodeEntry('j', raw)).toThrow(UnsupportedEntryError);
  });

  it('a pickled eta in a signature that is not an aware datetime is corrupt', () => {
    const taskType = kwOf(canvasFixture.entries[0] as FixtureEntry).task_type as string;
    const sig = { task: 't', args: [], kwargs: {}, options: { eta: taskType }, subtask_type: null, immutable: false };
    const raw = JSON.stringify([['bench.add'], { chord: sig, group_id: 'g' }]);
    expect(() => decodeEntry('j', raw)).toThrow(/chord\.options\.eta: .*celery\.app\.registry/);
    try {
      decodeEntry('j', raw);
    } catch (err) {
      expect((err as CorruptEntryError).code).toBe('CORRUPT_ENTRY');
    }
  });

  it('a nested chain inside a chord body keeps its own options.eta pickle resolved', () => {
    const p = pickleUtcDatetime(new Date('2031-01-01T00:00:00Z'));
    const inner = { task: 'a', args: [], kwargs: {}, options: { eta: p }, subtask_type: null, immutable: false };
    const body = { task: 'b', args: [], kwargs: {}, options: { link: inner }, subtask_type: null, immutable: false };
    const job = decodeEntry('j', JSON.stringify([['bench.add'], { chord: body, group_id: 'g', group_index: 0 }]));
    expect((job.chord?.options.link as { options: { eta: string } }).options.eta).toBe('2031-01-01T00:00:00+00:00');
  });

  it('a keyword of the wrong JSON type is corrupt', () => {
    for (const kw of [
      { chain: { task: 'x' } },
      { chord: [] },
      { group_id: 5 },
      { reply_to: [] },
      { ignore_result: 'yes' },
      { link: { task: 't', args: 'x' } },
      { root_id: '\ud800' },
      { chain: [{ args: [] }] },
    ]) {
      expect(() => decodeEntry('j', JSON.stringify([['bench.add'], kw]))).toThrow(CorruptEntryError);
    }
  });
});

describe('an absolute expires is written as a pickled aware UTC datetime', () => {
  it('reads back to the same instant, millisecond for millisecond, across the whole range', () => {
    for (const iso of ['0001-01-01T00:00:00.000Z', '1970-01-01T00:00:00.001Z', '2031-03-05T06:07:08.999Z', '9999-12-31T23:59:59.999Z']) {
      const at = new Date(iso);
      expect(readPickledDatetime(pickleUtcDatetime(at)).at.toISOString()).toBe(at.toISOString());
    }
    expect(() => pickleUtcDatetime(new Date(Number.NaN))).toThrow('invalid Date');
  });

  it.skipIf(spawnSync('/usr/bin/python3', ['-c', 'import pickle'], { stdio: 'ignore' }).status !== 0)(
    'is byte for byte what Python pickle.dumps(protocol=3) writes, and Python reads it as that datetime',
    () => {
      const at = new Date('2031-03-05T06:07:08.123Z');
      const ours = pickleUtcDatetime(at).slice('__python_pickle__'.length);
      const script = [
        'import base64, datetime, pickle, sys',
        'v = datetime.datetime(2031, 3, 5, 6, 7, 8, 123000, tzinfo=datetime.timezone.utc)',
        'ours = pickle.loads(base64.b64decode(sys.argv[1]))',
        'print(base64.b64encode(pickle.dumps(v, protocol=3)).decode() == sys.argv[1], ours == v, ours.tzinfo is datetime.timezone.utc)',
      ].join('\n');
      const r = spawnSync('/usr/bin/python3', ['-c', script, ours], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('True True True');
    },
  );

  it('our entry with an absolute expires decodes, and its message has the expiry Python would write', () => {
    const { job } = resolveTaskCall('bench.add', [1], {}, { taskId: 't', eta: NOW, expires: new Date('2031-03-05T00:00:00Z') }, NOW);
    const msg = buildTaskMessage(decodeEntry('t', encodeEntry(job)), { now: NOW, defaultQueue: 'celery' });
    expect(msg.headers.expires).toBe('2031-03-05T00:00:00+00:00');
  });

  it('a string that looks like a pickle is refused at schedule time (the Python dispatcher would unpickle it)', () => {
    expect(() => resolveTaskCall('bench.add', [], { x: '__python_pickle__gAN9lC4=' }, { eta: NOW }, NOW)).toThrow(/kwargs\.x starts with "__python_pickle__"/);
  });
});
