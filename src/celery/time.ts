/**
 * Time handling for the Celery wire format.
 *
 * Every time we write is `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`: UTC, explicit offset, six fraction digits.
 * That is the one form every Celery 5.x parses correctly (docs/protocol.md §1.6): JavaScript's
 * `toISOString()` (`.sssZ`) runs up to 1 s early on 5.0-5.2 and is rejected on 5.3.0-5.3.4.
 */
import { ValidationError } from '../util/errors.js';

/** `Date` → Celery's universal ISO form. */
export function formatCeleryTime(date: Date): string {
  const iso = date.toISOString(); // 2026-11-23T19:18:52.679Z
  return `${iso.slice(0, 23)}000+00:00`;
}

/** Unix seconds (fractions allowed) → Celery's universal ISO form. */
export function formatUnixSeconds(seconds: number): string {
  return formatCeleryTime(new Date(Math.round(seconds * 1000)));
}

/**
 * The instants both JavaScript's `Date` and Python's `datetime` (so Celery) can hold: years 1 to
 * 9999, UTC, in milliseconds. A job, its eta or its expiry outside them cannot be sent, listed or
 * read back by a worker, so they are refused when scheduling.
 */
export const MIN_TIME_MS = -62_135_596_800_000; // 0001-01-01T00:00:00.000Z
export const MAX_TIME_MS = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
export const TIME_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z (UTC), what Python's datetime and so Celery can hold";

/** True when `ms` (unix milliseconds) is a time both JavaScript and Python can hold. */
export function isRepresentableMs(ms: number): boolean {
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= MIN_TIME_MS && ms <= MAX_TIME_MS;
}

/** `date` itself, or a ValidationError naming `what` when it is outside years 1 to 9999 UTC. */
export function checkRepresentable(date: Date, what: string): Date {
  const ms = date.getTime();
  if (isRepresentableMs(ms)) return date;
  const shown = Number.isNaN(ms) ? 'is an invalid Date' : `(${ms / 1000} unix seconds) is ${ms < MIN_TIME_MS ? 'before' : 'after'} the range`;
  throw new ValidationError([`${what} ${shown}; pass a time from ${TIME_RANGE}`]);
}

/** ISO form of unix seconds when representable, else undefined (for output that must not throw). */
export function isoOrUndefined(seconds: number): string | undefined {
  const ms = seconds * 1000;
  return isRepresentableMs(ms) ? new Date(ms).toISOString() : undefined;
}

/** `Date.UTC` for any year: `Date.UTC` itself reads years 0-99 as 1900-1999. */
function utcMs(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number {
  const date = new Date(0);
  date.setUTCFullYear(y, mo, d);
  date.setUTCHours(h, mi, s, ms);
  return date.getTime();
}

// An ISO-8601 date-time that carries an explicit offset (Z or ±HH:MM / ±HHMM / ±HH).
const ISO_WITH_OFFSET = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)$/;

/**
 * Parses an ISO-8601 string that MUST carry a UTC offset. A bare local time is ambiguous across
 * machines, so it is refused rather than guessed. `what` names the option in the error.
 */
export function parseIsoWithOffset(value: string, what: string): Date {
  const m = ISO_WITH_OFFSET.exec(value.trim());
  if (!m) {
    const naive = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(value.trim());
    throw new ValidationError([
      naive
        ? `${what} ${JSON.stringify(value)} has no UTC offset; add one, e.g. ${JSON.stringify(`${value.trim()}Z`)} or "+02:00"`
        : `${what} ${JSON.stringify(value)} is not an ISO-8601 date-time; pass e.g. "2031-03-04T05:06:07Z" or "2031-03-04T07:06:07+02:00"`,
    ]);
  }
  const [, y, mo, d, h, mi, s = '0', frac = '', off = 'Z'] = m;
  const ms = Number((frac + '000').slice(0, 3));
  const offsetMinutes = parseOffset(off);
  const utc = utcMs(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms);
  const date = new Date(utc - offsetMinutes * 60_000);
  const check = new Date(utcMs(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), 0));
  if (
    Number.isNaN(date.getTime()) ||
    Number(y) === 0 || // there is no year 0 (Python: "year 0 is out of range")
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  ) {
    throw new ValidationError([`${what} ${JSON.stringify(value)} is not a real calendar date-time; check the numbers`]);
  }
  return date;
}

function parseOffset(off: string): number {
  if (off === 'Z' || off === 'z') return 0;
  const sign = off.startsWith('-') ? -1 : 1;
  const digits = off.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
  if (hours > 23 || minutes > 59) return Number.NaN; // Python refuses these too; the caller reports it
  return sign * (hours * 60 + minutes);
}

/** Accepts a Date or an ISO string with offset; returns a valid Date or throws a ValidationError. */
export function toDate(value: Date | string, what: string): Date {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new ValidationError([`${what} is an invalid Date; pass a valid Date or ISO-8601 string`]);
    return value;
  }
  if (typeof value === 'string') return parseIsoWithOffset(value, what);
  throw new ValidationError([`${what} must be a Date or an ISO-8601 string with a UTC offset, got ${typeof value}`]);
}
