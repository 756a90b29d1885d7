import { describe, it, expect } from 'vitest';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { UnsupportedPickleError } from '../../src/util/errors.js';
import { PICKLE_MARKER, decodePickledDatetime, isPickled } from '../../src/celery/pickle.js';
import { fixture, type FixtureEntry } from '../helpers/fixture.js';

function optionsOf(entry: FixtureEntry): Record<string, unknown> {
  const [, options] = JSON.parse(entry.value) as [unknown, Record<string, unknown>];
  return options;
}

function entryStartingWith(prefix: string): FixtureEntry {
  const entry = fixture.entries.find((e) => e.description.startsWith(prefix));
  if (!entry) throw new Error(`no fixture entry starting with ${prefix}`);
  return entry;
}

function rejection(value: string): UnsupportedPickleError {
  try {
    decodePickledDatetime(value);
  } catch (error) {
    expect(error).toBeInstanceOf(UnsupportedPickleError);
    return error as UnsupportedPickleError;
  }
  throw new Error('expected decodePickledDatetime to throw');
}

function toBase64(bytes: number[] | Uint8Array): string {
  return Buffer.from(Uint8Array.from(bytes)).toString('base64');
}

/** A protocol-2 pickle of `module.name(arg)`, built by hand (what a hostile writer would send). */
function protocol2Call(module: string, name: string, arg: string): string {
  const text = Buffer.from(arg, 'utf8');
  const length = [text.length & 0xff, (text.length >> 8) & 0xff, 0, 0];
  const global = Buffer.from(`c${module}\n${name}\n`, 'latin1');
  return toBase64([0x80, 0x02, ...global, 0x58, ...length, ...text, 0x85, 0x52, 0x2e]);
}

describe('isPickled', () => {
  it('recognises the marker only at the start of a string', () => {
    expect(isPickled(`${PICKLE_MARKER}gAQu`)).toBe(true);
    expect(isPickled('gAQu')).toBe(false);
    expect(isPickled(`x${PICKLE_MARKER}`)).toBe(false);
    expect(isPickled(3600)).toBe(false);
    expect(isPickled(null)).toBe(false);
  });
});

describe('decodePickledDatetime on the celery_longterm_scheduler 1.x fixture', () => {
  const expected: Array<[string, string]> = [
    ['expires as a pendulum datetime in UTC', '2031-03-05T00:00:00.000Z'],
    // The description gives no instant; the pickled state is 2031-03-05 06:07:08.123456 UTC.
    ['expires as a standard-library datetime with timezone.utc', '2031-03-05T06:07:08.123Z'],
    ['expires as a datetime in Europe/Berlin', '2031-03-05T05:00:00.000Z'],
    ['expires as a standard-library datetime with a fixed +02:00 offset', '2031-03-05T10:00:00.000Z'],
  ];

  it.each(expected)('%s -> %s', (prefix, instant) => {
    const expires = optionsOf(entryStartingWith(prefix)).expires;
    expect(isPickled(expires)).toBe(true);
    expect(decodePickledDatetime(expires as string).toISOString()).toBe(instant);
  });

  it('covers every "expires as" entry: four pickled datetimes and one plain number', () => {
    const entries = fixture.entries.filter((e) => e.description.startsWith('expires as'));
    expect(entries).toHaveLength(5);
    const pickled = entries.filter((e) => isPickled(optionsOf(e).expires));
    expect(pickled.map((e) => expected.some(([prefix]) => e.description.startsWith(prefix)))).toEqual([true, true, true, true]);
    expect(optionsOf(entryStartingWith('expires as a number of seconds')).expires).toBe(3600);
  });

  it('rejects every task_type pickle (a celery task object), naming its global', () => {
    const values = fixture.entries.map((e) => optionsOf(e).task_type);
    expect(values.length).toBeGreaterThan(0);
    for (const value of values) {
      expect(isPickled(value)).toBe(true);
      const error = rejection(value as string);
      expect(error.message).toContain('celery.app.registry._unpickle_task_v2');
      expect(error.message).toContain('is not an allowed date/time type');
    }
  });

  it('accepts the bare base64 without the marker', () => {
    const expires = optionsOf(entryStartingWith('expires as a pendulum datetime in UTC')).expires as string;
    expect(decodePickledDatetime(expires.slice(PICKLE_MARKER.length)).toISOString()).toBe('2031-03-05T00:00:00.000Z');
  });
});

describe('decodePickledDatetime on python3-generated pickles', () => {
  // Generated with: python3 -c "import pickle, base64; from datetime import *; from zoneinfo import ZoneInfo as Z;
  //   print(base64.b64encode(pickle.dumps(EXPR, protocol=P)).decode())"   with EXPR and P as given per case.
  // The pytz and pendulum 3 cases used small stand-in modules (pytz/pendulum cannot be installed here) that
  // reproduce those libraries' module names and __reduce__ shapes: pytz._UTC(), pytz._p(zone, utcoffset,
  // dst, tzname), pytz._p(zone), pytz.FixedOffset(minutes); pendulum 3 Timezone is a zoneinfo.ZoneInfo subclass.
  const cases: Array<[string, string, string]> = [
    [
      "datetime(2031, 3, 5, 6, 0, 0, 123456, tzinfo=Z('Europe/Berlin')), protocol 5",
      'gAWVfwAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfvAwUGAAAB4kCUjAhidWlsdGluc5SMB2dldGF0dHKUk5SMCHpvbmVpbmZvlIwIWm9uZUluZm+Uk5SMCV91bnBpY2tsZZSGlFKUjA1FdXJvcGUvQmVybGlulEsBhpRSlIaUUpQu',
      '2031-03-05T05:00:00.123Z',
    ],
    [
      "datetime(2030, 7, 1, 12, 0, tzinfo=Z('America/New_York')), protocol 2 (_codecs.encode + __builtin__.getattr)",
      'gAJjZGF0ZXRpbWUKZGF0ZXRpbWUKcQBjX2NvZGVjcwplbmNvZGUKcQFYCwAAAAfDrgcBDAAAAAAAcQJYBgAAAGxhdGluMXEDhnEEUnEFY19fYnVpbHRpbl9fCmdldGF0dHIKcQZjem9uZWluZm8KWm9uZUluZm8KcQdYCQAAAF91bnBpY2tsZXEIhnEJUnEKWBAAAABBbWVyaWNhL05ld19Zb3JrcQtLAYZxDFJxDYZxDlJxDy4=',
      '2030-07-01T16:00:00.000Z',
    ],
    [
      "datetime(2031, 3, 5, 6, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5, minutes=-30), 'X')), protocol 2",
      'gAJjZGF0ZXRpbWUKZGF0ZXRpbWUKcQBjX2NvZGVjcwplbmNvZGUKcQFYDAAAAAfDrwMFBgAAAcOiQHECWAYAAABsYXRpbjFxA4ZxBFJxBWNkYXRldGltZQp0aW1lem9uZQpxBmNkYXRldGltZQp0aW1lZGVsdGEKcQdK/////0ooBAEASwCHcQhScQlYAQAAAFhxCoZxC1JxDIZxDVJxDi4=',
      '2031-03-05T11:30:00.123Z',
    ],
    [
      'datetime(2031, 3, 5, 6, 7, 8, 999, tzinfo=timezone.utc), protocol 5',
      'gAWVVwAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfvAwUGBwgAA+eUaACMCHRpbWV6b25llJOUaACMCXRpbWVkZWx0YZSTlEsASwBLAIeUUpSFlFKUhpRSlC4=',
      '2031-03-05T06:07:08.001Z',
    ],
    [
      'datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc), protocol 2',
      'gAJjZGF0ZXRpbWUKZGF0ZXRpbWUKcQBjX2NvZGVjcwplbmNvZGUKcQFYCwAAAAfDjwwfFzs7AAAAcQJYBgAAAGxhdGluMXEDhnEEUnEFY2RhdGV0aW1lCnRpbWV6b25lCnEGY2RhdGV0aW1lCnRpbWVkZWx0YQpxB0sASwBLAIdxCFJxCYVxClJxC4ZxDFJxDS4=',
      '1999-12-31T23:59:59.000Z',
    ],
    [
      "datetime(2030, 10, 27, 2, 30, tzinfo=Z('Europe/Berlin')), protocol 4 (repeated hour, fold=0: first, CEST)",
      'gASVfwAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfuChsCHgAAAACUjAhidWlsdGluc5SMB2dldGF0dHKUk5SMCHpvbmVpbmZvlIwIWm9uZUluZm+Uk5SMCV91bnBpY2tsZZSGlFKUjA1FdXJvcGUvQmVybGlulEsBhpRSlIaUUpQu',
      '2030-10-27T00:30:00.000Z',
    ],
    [
      "datetime(2030, 10, 27, 2, 30, fold=1, tzinfo=Z('Europe/Berlin')), protocol 4 (repeated hour, fold=1: second, CET)",
      'gASVfwAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfuihsCHgAAAACUjAhidWlsdGluc5SMB2dldGF0dHKUk5SMCHpvbmVpbmZvlIwIWm9uZUluZm+Uk5SMCV91bnBpY2tsZZSGlFKUjA1FdXJvcGUvQmVybGlulEsBhpRSlIaUUpQu',
      '2030-10-27T01:30:00.000Z',
    ],
    [
      "datetime(2030, 3, 31, 2, 30, tzinfo=Z('Europe/Berlin')), protocol 4 (skipped hour: Python gives 01:30Z)",
      'gASVfwAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfuAx8CHgAAAACUjAhidWlsdGluc5SMB2dldGF0dHKUk5SMCHpvbmVpbmZvlIwIWm9uZUluZm+Uk5SMCV91bnBpY2tsZZSGlFKUjA1FdXJvcGUvQmVybGlulEsBhpRSlIaUUpQu',
      '2030-03-31T01:30:00.000Z',
    ],
    [
      'datetime(1, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=3))), protocol 4',
      'gASVWAAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgABAQEMAAAAAACUaACMCHRpbWV6b25llJOUaACMCXRpbWVkZWx0YZSTlEsATTAqSwCHlFKUhZRSlIaUUpQu',
      '0001-01-01T09:00:00.000Z',
    ],
    [
      'datetime(2031, 3, 5, 6, 0, tzinfo=pytz.utc), protocol 2',
      'gAJjZGF0ZXRpbWUKZGF0ZXRpbWUKcQBjX2NvZGVjcwplbmNvZGUKcQFYCwAAAAfDrwMFBgAAAAAAcQJYBgAAAGxhdGluMXEDhnEEUnEFY3B5dHoKX1VUQwpxBilScQeGcQhScQku',
      '2031-03-05T06:00:00.000Z',
    ],
    [
      'datetime(2031, 3, 5, 6, 0, tzinfo=<pytz America/New_York EST-1 day, 19:00:00 STD>), protocol 4',
      'gASVXQAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfvAwUGAAAAAACUjARweXR6lIwCX3CUk5QojBBBbWVyaWNhL05ld19Zb3JrlEqwuf//SwCMA0VTVJR0lFKUhpRSlC4=',
      '2031-03-05T11:00:00.000Z',
    ],
    [
      "datetime(2031, 3, 5, 6, 0, tzinfo=<pytz StaticTzInfo 'Etc/GMT+5'>), protocol 4",
      'gASVSAAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfvAwUGAAAAAACUjARweXR6lIwCX3CUk5SMCUV0Yy9HTVQrNZSFlFKUhpRSlC4=',
      '2031-03-05T11:00:00.000Z',
    ],
    [
      'datetime(2031, 3, 5, 6, 0, tzinfo=pytz.FixedOffset(330)), protocol 2',
      'gAJjZGF0ZXRpbWUKZGF0ZXRpbWUKcQBjX2NvZGVjcwplbmNvZGUKcQFYCwAAAAfDrwMFBgAAAAAAcQJYBgAAAGxhdGluMXEDhnEEUnEFY3B5dHoKRml4ZWRPZmZzZXQKcQZNSgGFcQdScQiGcQlScQou',
      '2031-03-05T00:30:00.000Z',
    ],
    [
      "pendulum 3: DateTime(2031, 3, 5, 6, 0, 0, 500, tzinfo=Timezone('Europe/Berlin')), protocol 4 (500us rounds up)",
      'gASVmAAAAAAAAACMEXBlbmR1bHVtLmRhdGV0aW1llIwIRGF0ZVRpbWWUk5QoTe8HSwNLBUsGSwBLAE30AYwIYnVpbHRpbnOUjAdnZXRhdHRylJOUjBRwZW5kdWx1bS50ei50aW1lem9uZZSMCFRpbWV6b25llJOUjAlfdW5waWNrbGWUhpRSlIwNRXVyb3BlL0JlcmxpbpRLAYaUUpR0lFKULg==',
      '2031-03-05T05:00:00.001Z',
    ],
  ];

  it.each(cases)('%s', (_label, base64, instant) => {
    expect(decodePickledDatetime(`${PICKLE_MARKER}${base64}`).toISOString()).toBe(instant);
  });

  it('rejects a naive datetime', () => {
    // datetime(2031, 3, 5, 6, 0), protocol 4
    const error = rejection('gASVKgAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfvAwUGAAAAAACUhZRSlC4=');
    expect(error.message).toMatch(/^unsupported pickled value: naive datetime: 2031-03-05T06:00:00 .*pass an aware datetime$/);
  });

  it('rejects a value that is not a datetime', () => {
    // timedelta(hours=1), protocol 4
    expect(rejection('gASVJQAAAAAAAACMCGRhdGV0aW1llIwJdGltZWRlbHRhlJOUSwBNEA5LAIeUUpQu').message).toContain('holds a timedelta, not an aware datetime');
    // l = []; l.append(l) (self-referencing), protocol 4
    expect(rejection('gASVBgAAAAAAAABdlGgAYS4=').message).toContain('holds a list, not an aware datetime');
  });

  it('rejects a zone unknown to Node', () => {
    // the protocol 5 Europe/Berlin pickle above with the key bytes replaced by 'Europe/Nowher'
    const error = rejection(
      'gAWVfwAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfvAwUGAAAB4kCUjAhidWlsdGluc5SMB2dldGF0dHKUk5SMCHpvbmVpbmZvlIwIWm9uZUluZm+Uk5SMCV91bnBpY2tsZZSGlFKUjA1FdXJvcGUvTm93aGVylEsBhpRSlIaUUpQu',
    );
    expect(error.message).toContain('unknown time zone "Europe/Nowher"');
  });

  it('rejects protocol 0', () => {
    // datetime(2031, 3, 5, tzinfo=timezone.utc), protocol 0
    const error = rejection(
      'Y2RhdGV0aW1lCmRhdGV0aW1lCnAwCihjX2NvZGVjcwplbmNvZGUKcDEKKFYH7wMFXHUwMDAwXHUwMDAwXHUwMDAwXHUwMDAwXHUwMDAwXHUwMDAwCnAyClZsYXRpbjEKcDMKdHA0ClJwNQpjZGF0ZXRpbWUKdGltZXpvbmUKcDYKKGNkYXRldGltZQp0aW1lZGVsdGEKcDcKKEkwCkkwCkkwCnRwOApScDkKdHAxMApScDExCnRwMTIKUnAxMwou',
    );
    expect(error.message).toContain('protocol 0 or 1 is not supported');
  });
});

describe('decodePickledDatetime against hostile pickles', () => {
  it('rejects os.system without running it', () => {
    const marker = join(tmpdir(), `pickle-test-${randomUUID()}`);
    const error = rejection(protocol2Call('os', 'system', `touch ${marker}`));
    expect(error.message).toBe('unsupported pickled value: global os.system is not an allowed date/time type');
    expect(existsSync(marker)).toBe(false);
  });

  it.each([
    // class Evil: __reduce__ = lambda self: (os.system, ('touch /tmp/pwned',)); pickle.dumps(Evil(), protocol=2)
    ['posix.system', 'gAJjcG9zaXgKc3lzdGVtCnEAWBAAAAB0b3VjaCAvdG1wL3B3bmVkcQGFcQJScQMu'],
    // the same with the module renamed to 'os' (as written by hand)
    ['os.system', 'gAJjb3MKc3lzdGVtCnEAWBAAAAB0b3VjaCAvdG1wL3B3bmVkcQGFcQJScQMu'],
    // __reduce__ = lambda self: (builtins.eval, ('print(1)',)), protocol 4
    ['builtins.eval', 'gASVJAAAAAAAAACMCGJ1aWx0aW5zlIwEZXZhbJSTlIwIcHJpbnQoMSmUhZRSlC4='],
    // __reduce__ = lambda self: (subprocess.Popen, (['touch', '/tmp/pwned'],)), protocol 5
    ['subprocess.Popen', 'gAWVNQAAAAAAAACMCnN1YnByb2Nlc3OUjAVQb3BlbpSTlF2UKIwFdG91Y2iUjAovdG1wL3B3bmVklGWFlFKULg=='],
  ])('rejects %s by name', (name, base64) => {
    expect(rejection(`${PICKLE_MARKER}${base64}`).message).toBe(`unsupported pickled value: global ${name} is not an allowed date/time type`);
  });

  it('allows getattr only for allowlisted attributes', () => {
    // the protocol 5 Europe/Berlin pickle with '_unpickle' replaced by 'from_file'
    const error = rejection(
      'gAWVfwAAAAAAAACMCGRhdGV0aW1llIwIZGF0ZXRpbWWUk5RDCgfvAwUGAAAB4kCUjAhidWlsdGluc5SMB2dldGF0dHKUk5SMCHpvbmVpbmZvlIwIWm9uZUluZm+Uk5SMCWZyb21fZmlsZZSGlFKUjA1FdXJvcGUvQmVybGlulEsBhpRSlIaUUpQu',
    );
    expect(error.message).toContain('getattr(zoneinfo.ZoneInfo, "from_file") is not an allowed date/time type');
  });

  it("allows _codecs.encode only with 'latin1'", () => {
    // the protocol 2 timezone.utc pickle above with 'latin1' replaced by 'cp1252'
    const error = rejection(
      'gAJjZGF0ZXRpbWUKZGF0ZXRpbWUKcQBjX2NvZGVjcwplbmNvZGUKcQFYCwAAAAfDjwwfFzs7AAAAcQJYBgAAAGNwMTI1MnEDhnEEUnEFY2RhdGV0aW1lCnRpbWV6b25lCnEGY2RhdGV0aW1lCnRpbWVkZWx0YQpxB0sASwBLAIdxCFJxCYVxClJxC4ZxDFJxDS4=',
    );
    expect(error.message).toContain("_codecs.encode is only allowed with 'latin1'");
    expect(rejection(protocol2Call('_codecs', 'encode', 'x')).message).toContain('_codecs.encode takes 2 arguments');
  });

  it('rejects an allowlisted class that may not be called', () => {
    expect(rejection(protocol2Call('zoneinfo', 'ZoneInfo', 'Europe/Berlin')).message).toContain('the global zoneinfo.ZoneInfo may not be called');
  });

  it('names unsupported and unknown opcodes', () => {
    expect(rejection(toBase64([0x80, 0x04, 0x69, 0x2e])).message).toContain('opcode INST (0x69) at offset 2 is not supported');
    expect(rejection(toBase64([0x80, 0x04, 0x82, 0x01, 0x2e])).message).toContain('opcode EXT1 (0x82)');
    expect(rejection(toBase64([0x80, 0x04, 0xff, 0x2e])).message).toContain('unknown opcode 0xff at offset 2');
    expect(rejection(toBase64([0x80, 0x06, 0x4e, 0x2e])).message).toContain('pickle protocol 6 is not supported');
  });

  it('rejects truncated pickles', () => {
    const expires = optionsOf(entryStartingWith('expires as a standard-library datetime with timezone.utc')).expires as string;
    const bytes = Buffer.from(expires.slice(PICKLE_MARKER.length), 'base64');
    for (const length of [0, 1, 2, 12, 40, bytes.length - 1]) {
      const error = rejection(toBase64(bytes.subarray(0, length)));
      expect(error.message).toMatch(/truncated|not valid base64|stack underflow/);
    }
  });

  it('rejects garbage and truncated base64', () => {
    expect(rejection(`${PICKLE_MARKER}!!not base64!!`).message).toContain('not valid base64');
    expect(rejection(`${PICKLE_MARKER}gASVVwAAAAAAAACMCGRhdGV0aW1l`.slice(0, -1)).message).toContain('not valid base64');
    expect(rejection(PICKLE_MARKER).message).toContain('not valid base64');
    expect(rejection(`${PICKLE_MARKER}aGVsbG8gd29ybGQ=`).message).toContain('protocol 0 or 1 is not supported');
  });

  it('enforces the size, stack and nesting limits', () => {
    expect(rejection('A'.repeat(1_400_000)).message).toContain('larger than 1 MiB');
    expect(rejection(toBase64([0x80, 0x04, ...new Array<number>(70_000).fill(0x4e), 0x2e])).message).toContain('stack too deep');
    expect(rejection(toBase64([0x80, 0x04, ...new Array<number>(300).fill(0x28), 0x2e])).message).toContain('MARK nesting too deep');
    const hugeLong = [0x80, 0x04, 0x8b, 0x00, 0x00, 0x01, 0x00, ...new Array<number>(65_536).fill(1), 0x2e];
    expect(rejection(toBase64(hugeLong)).message).toContain('too large');
  });

  it('rejects trailing data and leftovers on the stack', () => {
    expect(rejection(toBase64([0x80, 0x04, 0x4e, 0x2e, 0x4e])).message).toContain('unexpected data after STOP');
    expect(rejection(toBase64([0x80, 0x04, 0x4e, 0x4e, 0x2e])).message).toContain('stack not empty at STOP');
  });

  it('rejects values of the wrong type passed from JavaScript', () => {
    expect(rejection(3600 as unknown as string).message).toContain('expected a string');
  });
});
