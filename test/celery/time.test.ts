import { describe, it, expect } from 'vitest';
import { ValidationError } from '../../src/util/errors.js';
import {
  MAX_TIME_MS,
  MIN_TIME_MS,
  checkRepresentable,
  formatCeleryTime,
  formatUnixSeconds,
  isRepresentableMs,
  isoOrUndefined,
  parseIsoWithOffset,
  toDate,
} from '../../src/celery/time.js';

const CELERY_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/;

function validationProblem(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).message;
  }
  throw new Error('expected a ValidationError');
}

describe('formatCeleryTime', () => {
  it('writes UTC with six fraction digits and an explicit +00:00 offset', () => {
    expect(formatCeleryTime(new Date('2031-03-04T05:06:07.089Z'))).toBe('2031-03-04T05:06:07.089000+00:00');
  });

  it('writes whole seconds as .000000', () => {
    expect(formatCeleryTime(new Date(0))).toBe('1970-01-01T00:00:00.000000+00:00');
  });

  it('converts an instant created with a non-UTC offset to UTC', () => {
    expect(formatCeleryTime(new Date('2031-03-04T07:06:07.500+02:00'))).toBe('2031-03-04T05:06:07.500000+00:00');
  });

  it('always matches the form every Celery 5.x parses', () => {
    for (const ms of [0, 1, 999, 1_930_367_167_123, 4_102_444_799_999]) {
      expect(formatCeleryTime(new Date(ms))).toMatch(CELERY_TIME);
    }
  });
});

describe('formatUnixSeconds', () => {
  it('keeps the millisecond part of fractional unix seconds', () => {
    expect(formatUnixSeconds(1_930_367_167.25)).toBe('2031-03-04T05:06:07.250000+00:00');
  });

  it('rounds sub-millisecond fractions to the nearest millisecond', () => {
    expect(formatUnixSeconds(1_930_367_167.0006)).toBe('2031-03-04T05:06:07.001000+00:00');
  });
});

describe('parseIsoWithOffset', () => {
  it.each([
    ['Z', '2031-03-04T05:06:07Z', '2031-03-04T05:06:07.000Z'],
    ['lower-case z', '2031-03-04T05:06:07z', '2031-03-04T05:06:07.000Z'],
    ['+02:00', '2031-03-04T07:06:07+02:00', '2031-03-04T05:06:07.000Z'],
    ['-0530', '2031-03-03T23:36:07-0530', '2031-03-04T05:06:07.000Z'],
    ['+05', '2031-03-04T10:06:07+05', '2031-03-04T05:06:07.000Z'],
    ['+00:00', '2031-03-04T05:06:07.089000+00:00', '2031-03-04T05:06:07.089Z'],
    ['a space instead of T', '2031-03-04 05:06:07Z', '2031-03-04T05:06:07.000Z'],
    ['no seconds', '2031-03-04T05:06Z', '2031-03-04T05:06:00.000Z'],
    ['an offset that crosses midnight', '2031-03-04T01:00:00+02:00', '2031-03-03T23:00:00.000Z'],
  ])('reads an offset given as %s', (_label, input, expected) => {
    expect(parseIsoWithOffset(input, 'eta').toISOString()).toBe(expected);
  });

  it.each([
    ['.1', '100'],
    ['.12', '120'],
    ['.123', '123'],
    ['.1234', '123'],
    ['.12345', '123'],
    ['.123456', '123'],
    ['.1234567', '123'],
    ['.12345678', '123'],
    ['.123456789', '123'],
    [',5', '500'],
  ])('reads the fraction %s as %s ms (digits beyond milliseconds are dropped)', (fraction, ms) => {
    expect(parseIsoWithOffset(`2031-03-04T05:06:07${fraction}Z`, 'eta').toISOString()).toBe(`2031-03-04T05:06:07.${ms}Z`);
  });

  it('ignores surrounding white space', () => {
    expect(parseIsoWithOffset('  2031-03-04T05:06:07Z\n', 'eta').toISOString()).toBe('2031-03-04T05:06:07.000Z');
  });

  it('refuses a string without an offset and suggests adding one', () => {
    const message = validationProblem(() => parseIsoWithOffset('2031-03-04T05:06:07', 'eta'));
    expect(message).toContain('eta "2031-03-04T05:06:07" has no UTC offset');
    expect(message).toContain('add one');
    expect(message).toContain('"2031-03-04T05:06:07Z"');
  });

  it.each(['tomorrow', '2031-03-04', '2031/03/04T05:06:07Z', '2031-03-04T05:06:07.Z', '2031-03-04T05:06:07.1234567890Z', ''])(
    'refuses %j as not an ISO-8601 date-time',
    (input) => {
      expect(validationProblem(() => parseIsoWithOffset(input, 'expires'))).toContain('is not an ISO-8601 date-time');
    },
  );

  it.each(['2031-02-30T00:00:00Z', '2031-13-01T00:00:00Z', '2031-02-29T00:00:00Z', '2031-03-04T24:00:00Z', '2031-03-04T05:60:00Z', '2031-03-04T05:06:60Z'])(
    'refuses the impossible date-time %s',
    (input) => {
      expect(validationProblem(() => parseIsoWithOffset(input, 'eta'))).toContain('is not a real calendar date-time');
    },
  );

  it.each(['2031-03-04T05:06:07+24:00', '2031-03-04T05:06:07+25', '2031-03-04T05:06:07-0560', '2031-03-04T05:06:07+05:99'])(
    'refuses the out-of-range offset in %s instead of shifting the instant',
    (input) => {
      expect(validationProblem(() => parseIsoWithOffset(input, 'eta'))).toContain('is not a real calendar date-time');
    },
  );

  it('accepts the largest valid offsets', () => {
    expect(parseIsoWithOffset('2031-03-04T23:59:00+23:59', 'eta').toISOString()).toBe('2031-03-04T00:00:00.000Z');
    expect(parseIsoWithOffset('2031-03-04T00:00:00-23:59', 'eta').toISOString()).toBe('2031-03-04T23:59:00.000Z');
  });

  it('accepts 29 February in a leap year', () => {
    expect(parseIsoWithOffset('2032-02-29T12:00:00Z', 'eta').toISOString()).toBe('2032-02-29T12:00:00.000Z');
  });

  it('names the option in the error message', () => {
    expect(validationProblem(() => parseIsoWithOffset('nope', 'expires'))).toMatch(/^expires "nope"/);
  });
});

describe('toDate', () => {
  it('returns a valid Date unchanged', () => {
    const date = new Date('2031-03-04T05:06:07Z');
    expect(toDate(date, 'eta')).toBe(date);
  });

  it('parses a string with an offset', () => {
    expect(toDate('2031-03-04T07:06:07+02:00', 'eta').getTime()).toBe(Date.UTC(2031, 2, 4, 5, 6, 7));
  });

  it('refuses an invalid Date', () => {
    expect(validationProblem(() => toDate(new Date('garbage'), 'eta'))).toContain('eta is an invalid Date');
  });

  it('refuses a value that is neither a Date nor a string', () => {
    expect(validationProblem(() => toDate(1_930_367_167 as unknown as string, 'eta'))).toContain('eta must be a Date or an ISO-8601 string');
  });
});

describe('times outside what JavaScript and Python both hold', () => {
  it.each([
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
    ['0050-06-15T12:00:00Z', '0050-06-15T12:00:00.000Z'],
    ['0099-12-31T23:59:59+00:00', '0099-12-31T23:59:59.000Z'],
    ['9999-12-31T23:59:59Z', '9999-12-31T23:59:59.000Z'],
  ])('reads the four-digit year of %s as written (Date.UTC would make 0050 into 1950)', (input, expected) => {
    expect(parseIsoWithOffset(input, 'eta').toISOString()).toBe(expected);
  });

  it('refuses year 0000, which Python does not have', () => {
    expect(validationProblem(() => parseIsoWithOffset('0000-01-01T00:00:00Z', 'eta'))).toMatch(/not a real calendar date-time/);
  });

  it('checkRepresentable passes years 1-9999 UTC and names the range otherwise', () => {
    expect(checkRepresentable(new Date(MIN_TIME_MS), 'eta').getTime()).toBe(MIN_TIME_MS);
    expect(checkRepresentable(new Date(MAX_TIME_MS), 'eta').getTime()).toBe(MAX_TIME_MS);
    expect(new Date(MIN_TIME_MS).toISOString()).toBe('0001-01-01T00:00:00.000Z');
    expect(new Date(MAX_TIME_MS).toISOString()).toBe('9999-12-31T23:59:59.999Z');
    expect(validationProblem(() => checkRepresentable(new Date(MAX_TIME_MS + 1), 'eta'))).toMatch(
      /^eta \(253402300800 unix seconds\) is after the range; pass a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z/,
    );
    expect(validationProblem(() => checkRepresentable(new Date(MIN_TIME_MS - 1), 'eta'))).toMatch(/is before the range/);
    // an offset can carry a written year across the edge
    expect(validationProblem(() => checkRepresentable(parseIsoWithOffset('0001-01-01T00:30:00+01:00', 'eta'), 'eta'))).toMatch(/before the range/);
    expect(validationProblem(() => checkRepresentable(parseIsoWithOffset('9999-12-31T23:30:00-01:00', 'eta'), 'eta'))).toMatch(/after the range/);
  });

  it('isoOrUndefined never throws, whatever number it is given', () => {
    expect(isoOrUndefined(0)).toBe('1970-01-01T00:00:00.000Z');
    for (const n of [1e20, -1e20, Infinity, -Infinity, NaN, 1e13]) expect(isoOrUndefined(n)).toBeUndefined();
    expect(isRepresentableMs(Number.MAX_VALUE)).toBe(false);
  });
});
