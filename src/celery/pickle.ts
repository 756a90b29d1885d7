/**
 * A tiny, safe reader for the one kind of Python pickle this package meets: a timezone-aware
 * datetime that the Python package `celery_longterm_scheduler` stored (as the `expires` option)
 * in the form `__python_pickle__` + base64(pickle).
 *
 * Design
 * - This is NOT a general unpickler. Pickles are programs for a stack machine whose GLOBAL and
 *   STACK_GLOBAL opcodes import arbitrary Python callables and whose REDUCE opcode calls them.
 *   We implement only the opcodes a date/time pickle uses (protocols 2-5) and resolve a global only
 *   if it is in ALLOWED_GLOBALS. Resolution fails at GLOBAL time, so `os.system` and friends are
 *   rejected before anything could be "called"; nothing here imports, evaluates or runs code.
 * - Every allowlisted global maps to a small, pure TypeScript function that validates its
 *   arguments and builds a plain value (a timedelta, a fixed offset, a named zone, a datetime).
 *   Classes that only appear inside pendulum 2's pickled zone data (Transition, TransitionType)
 *   are "inert": NEWOBJ/BUILD turn them into data holders we never look at.
 * - Named zones (zoneinfo, pendulum, pytz) are converted with Node's own time zone data through
 *   `Intl.DateTimeFormat`, never with data taken from the pickle; `fold` follows PEP 495.
 * - Hard limits (input size, stack, memo and MARK depth, integer size) bound time and memory.
 *   Nothing recurses over pickled values, so self-referencing pickles are harmless.
 * Every failure is an `UnsupportedPickleError` whose message names the offending opcode or global.
 */
import { UnsupportedPickleError } from '../util/errors.js';

export const PICKLE_MARKER = '__python_pickle__';

const MAX_PICKLE_BYTES = 1024 * 1024;
const MAX_STACK_ITEMS = 65_536;
const MAX_MEMO_ENTRIES = 65_536;
const MAX_MARK_DEPTH = 256;
const MAX_LONG_BYTES = 32;
const MICROS_PER_DAY = 86_400_000_000;
const MS_PER_DAY = 86_400_000;

/** Also exported for the `task_type` value: true when `value` starts with PICKLE_MARKER. */
export function isPickled(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(PICKLE_MARKER);
}

/** Decodes `__python_pickle__<base64>` (or the bare base64) holding an aware datetime, to the instant it denotes. */
export function decodePickledDatetime(value: string): Date {
  return readPickledDatetime(value).at;
}

/** An aware datetime read from a pickle: its instant, and the text Python's `isoformat()` gives for it. */
export interface PickledDatetime {
  at: Date;
  /**
   * `datetime.isoformat()` of the pickled value: its own wall clock and UTC offset, e.g.
   * `2031-03-05T05:06:07+01:00` for a Europe/Berlin time. This is what Celery's `as_task_v2` puts
   * in the `expires` header, and what kombu's JSON writes for a datetime inside a signature.
   */
  isoformat: string;
}

/** Like `decodePickledDatetime`, keeping the wall clock and offset the value was pickled with. */
export function readPickledDatetime(value: string): PickledDatetime {
  if (typeof value !== 'string') throw fail(`expected a string, got ${typeof value}`);
  const encoded = isPickled(value) ? value.slice(PICKLE_MARKER.length) : value;
  const result = new SafeUnpickler(decodeBase64(encoded)).load();
  if (!(result instanceof PyDateTime)) {
    throw fail(`the pickle holds ${describe(result)}, not an aware datetime`);
  }
  const { at, offsetMicros } = toInstant(result);
  return { at, isoformat: `${formatWall(result.wall)}${formatOffset(offsetMicros)}` };
}

/**
 * The one pickle this package writes: `__python_pickle__` + base64 of the protocol-3 pickle of
 * `datetime.datetime(<at, in UTC>, tzinfo=datetime.timezone.utc)`, byte for byte what Python's
 * `pickle.dumps(value, protocol=3)` writes. Celery 5.0-5.2's `send_task` takes an absolute
 * `expires` only as a datetime (a string fails with a TypeError, a number means "seconds from
 * now"), and the Python package's dispatcher turns this value back into one. It holds two stdlib
 * globals and no code; our own reader (above) accepts it.
 */
export function pickleUtcDatetime(at: Date): string {
  const ms = at.getTime();
  if (!Number.isFinite(ms)) throw fail('an invalid Date cannot be pickled');
  const year = at.getUTCFullYear();
  if (year < 1 || year > 9999) throw fail(`year ${year} is outside Python's datetime range (1-9999)`);
  const micros = at.getUTCMilliseconds() * 1000;
  const state = [
    year >> 8,
    year & 0xff,
    at.getUTCMonth() + 1,
    at.getUTCDate(),
    at.getUTCHours(),
    at.getUTCMinutes(),
    at.getUTCSeconds(),
    (micros >> 16) & 0xff,
    (micros >> 8) & 0xff,
    micros & 0xff,
  ];
  const ascii = (text: string): number[] => [...text].map((c) => c.charCodeAt(0));
  const put = (index: number): number[] => [0x71, index]; // BINPUT: memoize, as Python does
  const bytes = [
    0x80,
    0x03, // PROTO 3
    ...ascii('cdatetime\ndatetime\n'),
    ...put(0), // GLOBAL datetime.datetime
    0x43,
    10,
    ...state,
    ...put(1), // SHORT_BINBYTES: the 10-byte state
    ...ascii('cdatetime\ntimezone\n'),
    ...put(2),
    ...ascii('cdatetime\ntimedelta\n'),
    ...put(3),
    0x4b,
    0,
    0x4b,
    0,
    0x4b,
    0,
    0x87,
    ...put(4),
    0x52,
    ...put(5), // timedelta(0, 0, 0)
    0x85,
    ...put(6),
    0x52,
    ...put(7), // timezone(timedelta(0)), i.e. timezone.utc
    0x86,
    ...put(8),
    0x52,
    ...put(9), // datetime(state, tz)
    0x2e, // STOP
  ];
  return PICKLE_MARKER + Buffer.from(bytes).toString('base64');
}

function fail(reason: string): UnsupportedPickleError {
  return new UnsupportedPickleError(reason);
}

// ---------------------------------------------------------------------------------------------
// Values living on the machine's stack
// ---------------------------------------------------------------------------------------------

class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

class PyList {
  readonly items: PyValue[] = [];
}

class PyDict {
  readonly entries: Array<readonly [PyValue, PyValue]> = [];
}

/** A reference to an allowlisted Python global; `spec` says what it may be used for. */
class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly spec: AllowedGlobal,
  ) {}
  get dotted(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of an inert allowlisted class: it only holds the data it was built with. */
class PyInert {
  state: PyValue = null;
  constructor(
    readonly type: PyGlobal,
    readonly args: readonly PyValue[],
  ) {}
}

class PyTimedelta {
  constructor(readonly micros: number) {}
}

/** A tzinfo with a constant offset (datetime.timezone, pendulum FixedTimezone, pytz UTC/FixedOffset). */
class FixedOffsetZone {
  state: PyValue = null;
  constructor(readonly offsetMicros: number) {}
}

/** A tzinfo naming an IANA zone; offsets come from Node's time zone data. */
class NamedZone {
  state: PyValue = null;
  constructor(readonly key: string) {}
}

type PyTzinfo = FixedOffsetZone | NamedZone;

interface WallClock {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly microsecond: number;
  readonly fold: number;
}

class PyDateTime {
  constructor(
    readonly wall: WallClock,
    readonly tz: PyTzinfo | null,
  ) {}
}

type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyTuple
  | PyList
  | PyDict
  | PyGlobal
  | PyInert
  | PyTimedelta
  | FixedOffsetZone
  | NamedZone
  | PyDateTime;

function describe(value: PyValue): string {
  if (value === null) return 'None';
  if (typeof value === 'boolean') return 'a bool';
  if (typeof value === 'number' || typeof value === 'bigint') return 'an int';
  if (typeof value === 'string') return 'a str';
  if (value instanceof Uint8Array) return 'bytes';
  if (value instanceof PyTuple) return 'a tuple';
  if (value instanceof PyList) return 'a list';
  if (value instanceof PyDict) return 'a dict';
  if (value instanceof PyGlobal) return `the global ${value.dotted}`;
  if (value instanceof PyInert) return `a ${value.type.dotted} object`;
  if (value instanceof PyTimedelta) return 'a timedelta';
  if (value instanceof PyDateTime) return 'a datetime';
  return 'a tzinfo';
}

// ---------------------------------------------------------------------------------------------
// The allowlist
// ---------------------------------------------------------------------------------------------

interface AllowedGlobal {
  /** What REDUCE (calling the global with positional args) produces; absent: it may not be called. */
  readonly call?: (args: readonly PyValue[], self: PyGlobal) => PyValue;
  /** NEWOBJ may create an inert instance of it. */
  readonly inert?: boolean;
}

const ALLOWED_GLOBALS: ReadonlyMap<string, AllowedGlobal> = new Map<string, AllowedGlobal>([
  ['datetime:datetime', { call: stdlibDatetime }],
  ['datetime:timedelta', { call: timedelta }],
  ['datetime:timezone', { call: stdlibTimezone }],
  ['_codecs:encode', { call: latin1Encode }],
  ['builtins:getattr', { call: allowlistedAttribute }],
  ['zoneinfo:ZoneInfo', {}],
  ['zoneinfo:ZoneInfo._unpickle', { call: zoneinfoUnpickle }],
  ['pendulum.datetime:DateTime', { call: pendulumDateTime }],
  ['pendulum.tz.timezone:FixedTimezone', { call: pendulumFixedTimezone }],
  ['pendulum.tz.timezone:Timezone', { call: pendulumTimezone }],
  ['pendulum.tz.timezone:Timezone._unpickle', { call: zoneinfoUnpickle }],
  ['pendulum.tz.zoneinfo.transition:Transition', { inert: true }],
  ['pendulum.tz.zoneinfo.transition_type:TransitionType', { inert: true }],
  ['pytz:_UTC', { call: pytzUtc }],
  ['pytz:_p', { call: pytzUnpickler }],
  ['pytz:FixedOffset', { call: pytzFixedOffset }],
  ['pytz:timezone', { call: pytzTimezone }],
]);

/** Python 2 module names that protocol-2 pickles use and Python 3 maps on load. */
const MODULE_ALIASES: ReadonlyMap<string, string> = new Map([['__builtin__', 'builtins']]);

function resolveGlobal(module: string, name: string): PyGlobal {
  const canonical = MODULE_ALIASES.get(module) ?? module;
  const spec = ALLOWED_GLOBALS.get(`${canonical}:${name}`);
  if (!spec) throw fail(`global ${module}.${name} is not an allowed date/time type`);
  return new PyGlobal(canonical, name, spec);
}

function checkArgCount(what: string, args: readonly PyValue[], min: number, max: number): void {
  if (args.length < min || args.length > max) {
    const expected = min === max ? `${min}` : `${min} to ${max}`;
    throw fail(`${what} takes ${expected} arguments, got ${args.length}`);
  }
}

function intArg(what: string, value: PyValue | undefined, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  throw fail(`${what} must be a small int, got ${describe(value ?? null)}`);
}

function stringArg(what: string, value: PyValue | undefined): string {
  if (typeof value === 'string') return value;
  throw fail(`${what} must be a str, got ${describe(value ?? null)}`);
}

function tzinfoArg(what: string, value: PyValue | undefined): PyTzinfo | null {
  if (value === undefined || value === null) return null;
  if (value instanceof FixedOffsetZone || value instanceof NamedZone) return value;
  throw fail(`${what} tzinfo must be a supported time zone, got ${describe(value)}`);
}

function timedelta(args: readonly PyValue[]): PyTimedelta {
  checkArgCount('datetime.timedelta', args, 0, 3);
  const days = intArg('timedelta days', args[0], 0);
  const seconds = intArg('timedelta seconds', args[1], 0);
  const micros = intArg('timedelta microseconds', args[2], 0);
  if (Math.abs(days) > 999_999_999) throw fail('timedelta out of range');
  return new PyTimedelta(days * MICROS_PER_DAY + seconds * 1_000_000 + micros);
}

function fixedOffset(what: string, offsetMicros: number): FixedOffsetZone {
  if (!(Math.abs(offsetMicros) < MICROS_PER_DAY)) {
    throw fail(`${what} offset must be strictly between -24h and +24h`);
  }
  return new FixedOffsetZone(offsetMicros);
}

function stdlibTimezone(args: readonly PyValue[]): FixedOffsetZone {
  checkArgCount('datetime.timezone', args, 1, 2);
  const offset = args[0];
  if (!(offset instanceof PyTimedelta)) {
    throw fail(`datetime.timezone offset must be a timedelta, got ${describe(offset ?? null)}`);
  }
  if (args.length === 2) stringArg('datetime.timezone name', args[1]);
  return fixedOffset('datetime.timezone', offset.micros);
}

/** `_codecs.encode(str, 'latin1')`: how protocol 2 spells the 10-byte datetime state. Nothing else. */
function latin1Encode(args: readonly PyValue[]): Uint8Array {
  checkArgCount('_codecs.encode', args, 2, 2);
  const text = stringArg('_codecs.encode text', args[0]);
  if (args[1] !== 'latin1') throw fail(`_codecs.encode is only allowed with 'latin1', got ${JSON.stringify(args[1])}`);
  if (text.length !== 10) throw fail('_codecs.encode is only allowed for the 10-byte datetime state');
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw fail('_codecs.encode text is not latin-1');
    bytes[i] = code;
  }
  return bytes;
}

/** `getattr(cls, name)` only where `cls.name` is itself allowlisted (e.g. `zoneinfo.ZoneInfo._unpickle`). */
function allowlistedAttribute(args: readonly PyValue[]): PyGlobal {
  checkArgCount('builtins.getattr', args, 2, 2);
  const [target, attribute] = args;
  if (!(target instanceof PyGlobal) || typeof attribute !== 'string') {
    throw fail('builtins.getattr is only allowed on an allowlisted class with an attribute name');
  }
  const name = `${target.name}.${attribute}`;
  const spec = ALLOWED_GLOBALS.get(`${target.module}:${name}`);
  if (!spec) throw fail(`getattr(${target.dotted}, ${JSON.stringify(attribute)}) is not an allowed date/time type`);
  return new PyGlobal(target.module, name, spec);
}

/** `ZoneInfo._unpickle(key, from_cache)`, also inherited by pendulum 3's Timezone. */
function zoneinfoUnpickle(args: readonly PyValue[], self: PyGlobal): NamedZone {
  checkArgCount(self.dotted, args, 2, 2);
  intArg(`${self.dotted} flags`, args[1]);
  return namedZone(stringArg(`${self.dotted} key`, args[0]));
}

function pendulumTimezone(args: readonly PyValue[]): NamedZone {
  checkArgCount('pendulum.tz.timezone.Timezone', args, 1, 2);
  return namedZone(stringArg('pendulum Timezone name', args[0]));
}

function pendulumFixedTimezone(args: readonly PyValue[]): FixedOffsetZone {
  checkArgCount('pendulum.tz.timezone.FixedTimezone', args, 1, 2);
  const seconds = intArg('pendulum FixedTimezone offset', args[0]);
  if (args[1] !== undefined && args[1] !== null) stringArg('pendulum FixedTimezone name', args[1]);
  return fixedOffset('pendulum FixedTimezone', seconds * 1_000_000);
}

function pytzUtc(args: readonly PyValue[]): FixedOffsetZone {
  checkArgCount('pytz._UTC', args, 0, 0);
  return new FixedOffsetZone(0);
}

/** `pytz._p(zone[, utcoffset, dstoffset, tzname])`: with an offset, pytz restores exactly that offset. */
function pytzUnpickler(args: readonly PyValue[]): PyTzinfo {
  checkArgCount('pytz._p', args, 1, 4);
  const zone = namedZone(stringArg('pytz zone', args[0]));
  if (args[1] === undefined || args[1] === null) return zone;
  return fixedOffset('pytz', intArg('pytz utcoffset', args[1]) * 1_000_000);
}

function pytzFixedOffset(args: readonly PyValue[]): FixedOffsetZone {
  checkArgCount('pytz.FixedOffset', args, 1, 1);
  return fixedOffset('pytz.FixedOffset', intArg('pytz.FixedOffset minutes', args[0]) * 60_000_000);
}

function pytzTimezone(args: readonly PyValue[]): NamedZone {
  checkArgCount('pytz.timezone', args, 1, 1);
  return namedZone(stringArg('pytz.timezone zone', args[0]));
}

/** `datetime.datetime(state_bytes[, tzinfo])`: the 10-byte state written by datetime's __reduce__. */
function stdlibDatetime(args: readonly PyValue[]): PyDateTime {
  checkArgCount('datetime.datetime', args, 1, 2);
  const state = args[0];
  if (!(state instanceof Uint8Array) || state.length !== 10) {
    throw fail('datetime.datetime is only allowed with its 10-byte pickled state');
  }
  const [yearHi = 0, yearLo = 0, monthByte = 0, day = 0, hour = 0, minute = 0, second = 0] = state;
  const [us1 = 0, us2 = 0, us3 = 0] = state.subarray(7);
  const wall: WallClock = {
    year: yearHi * 256 + yearLo,
    month: monthByte & 0x7f,
    day,
    hour,
    minute,
    second,
    microsecond: (us1 << 16) | (us2 << 8) | us3,
    fold: monthByte >> 7,
  };
  return new PyDateTime(checkWallClock(wall), tzinfoArg('datetime.datetime', args[1]));
}

/** `pendulum.datetime.DateTime(year, month, day[, hour, minute, second, microsecond, tzinfo])`. */
function pendulumDateTime(args: readonly PyValue[]): PyDateTime {
  checkArgCount('pendulum.datetime.DateTime', args, 3, 8);
  const field = (index: number, name: string): number => intArg(`DateTime ${name}`, args[index], 0);
  const wall: WallClock = {
    year: field(0, 'year'),
    month: field(1, 'month'),
    day: field(2, 'day'),
    hour: field(3, 'hour'),
    minute: field(4, 'minute'),
    second: field(5, 'second'),
    microsecond: field(6, 'microsecond'),
    fold: 0,
  };
  return new PyDateTime(checkWallClock(wall), tzinfoArg('pendulum DateTime', args[7]));
}

function checkWallClock(wall: WallClock): WallClock {
  const ok =
    wall.year >= 1 &&
    wall.year <= 9999 &&
    wall.month >= 1 &&
    wall.month <= 12 &&
    wall.day >= 1 &&
    wall.day <= daysInMonth(wall.year, wall.month) &&
    inRange(wall.hour, 24) &&
    inRange(wall.minute, 60) &&
    inRange(wall.second, 60) &&
    inRange(wall.microsecond, 1_000_000);
  if (!ok) throw fail(`invalid datetime fields ${JSON.stringify(wall)}`);
  return wall;
}

function inRange(value: number, limit: number): boolean {
  return value >= 0 && value < limit;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

// ---------------------------------------------------------------------------------------------
// Instants and time zones
// ---------------------------------------------------------------------------------------------

function toInstant(dt: PyDateTime): { at: Date; offsetMicros: number } {
  const { wall, tz } = dt;
  if (!tz) {
    throw fail(`naive datetime: ${formatWall(wall)} has no time zone, so the instant is ambiguous; pass an aware datetime`);
  }
  const wallMs = utcMillis(wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second);
  const offsetMicros = tz instanceof FixedOffsetZone ? tz.offsetMicros : zoneOffsetMs(tz.key, wallMs, wall.fold) * 1000;
  const instant = new Date(wallMs + Math.round((wall.microsecond - offsetMicros) / 1000));
  if (Number.isNaN(instant.getTime())) throw fail(`${formatWall(wall)} is out of range`);
  return { at: instant, offsetMicros };
}

/** A UTC offset as `datetime.isoformat()` writes it: `+HH:MM`, then `:SS` and `.ffffff` only when not zero. */
function formatOffset(offsetMicros: number): string {
  const sign = offsetMicros < 0 ? '-' : '+';
  let rest = Math.abs(offsetMicros);
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  const hours = Math.floor(rest / 3_600_000_000);
  rest -= hours * 3_600_000_000;
  const minutes = Math.floor(rest / 60_000_000);
  rest -= minutes * 60_000_000;
  const seconds = Math.floor(rest / 1_000_000);
  const micros = rest - seconds * 1_000_000;
  let text = `${sign}${pad(hours)}:${pad(minutes)}`;
  if (seconds || micros) text += `:${pad(seconds)}`;
  if (micros) text += `.${pad(micros, 6)}`;
  return text;
}

function formatWall(wall: WallClock): string {
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  const micros = wall.microsecond ? `.${pad(wall.microsecond, 6)}` : '';
  const date = `${pad(wall.year, 4)}-${pad(wall.month)}-${pad(wall.day)}`;
  return `${date}T${pad(wall.hour)}:${pad(wall.minute)}:${pad(wall.second)}${micros}`;
}

/** Milliseconds since the epoch of a UTC wall time; unlike Date.UTC, years 1-99 are taken literally. */
function utcMillis(year: number, month: number, day: number, hour: number, minute: number, second: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  return date.getTime();
}

const zoneFormatters = new Map<string, Intl.DateTimeFormat>();

function namedZone(key: string): NamedZone {
  zoneFormatter(key);
  return new NamedZone(key);
}

function zoneFormatter(key: string): Intl.DateTimeFormat {
  const cached = zoneFormatters.get(key);
  if (cached) return cached;
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/.test(key)) throw fail(`invalid time zone name ${JSON.stringify(key)}`);
  let formatter: Intl.DateTimeFormat;
  try {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: key,
      hourCycle: 'h23',
      era: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  } catch {
    throw fail(`unknown time zone ${JSON.stringify(key)}: Node's time zone data does not know it`);
  }
  zoneFormatters.set(key, formatter);
  return formatter;
}

/** UTC offset (ms) of zone `key` at `epochMs`, from Node's time zone data. */
function offsetAt(key: string, epochMs: number): number {
  const whole = Math.floor(epochMs / 1000) * 1000;
  const fields = new Map<string, string>();
  for (const part of zoneFormatter(key).formatToParts(whole)) fields.set(part.type, part.value);
  const num = (type: string): number => Number(fields.get(type));
  const year = fields.get('era') === 'BC' ? 1 - num('year') : num('year');
  return utcMillis(year, num('month'), num('day'), num('hour'), num('minute'), num('second')) - whole;
}

/**
 * Offset (ms) that zone `key` gives the wall time `wallMs` (expressed as if it were UTC).
 * Ambiguous (repeated) times: fold 0 is the first occurrence. Skipped times: fold 0 uses the
 * offset from before the transition, fold 1 the one after (PEP 495, as Python's zoneinfo does).
 */
function zoneOffsetMs(key: string, wallMs: number, fold: number): number {
  const before = offsetAt(key, wallMs - MS_PER_DAY);
  const after = offsetAt(key, wallMs + MS_PER_DAY);
  const valid = [...new Set([before, after])].filter((offset) => offsetAt(key, wallMs - offset) === offset);
  if (valid.length === 0) return fold ? after : before;
  if (valid.length === 1) return valid[0] ?? before;
  return fold ? Math.min(...valid) : Math.max(...valid);
}

// ---------------------------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------------------------

function decodeBase64(encoded: string): Uint8Array {
  if (encoded.length > Math.ceil(MAX_PICKLE_BYTES / 3) * 4) throw fail('pickle is larger than 1 MiB');
  if (encoded.length === 0 || encoded.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) {
    throw fail('the value is not valid base64');
  }
  const bytes = Buffer.from(encoded, 'base64');
  if (bytes.length > MAX_PICKLE_BYTES) throw fail('pickle is larger than 1 MiB');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

class ByteReader {
  private pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  get offset(): number {
    return this.pos;
  }

  get atEnd(): boolean {
    return this.pos >= this.bytes.length;
  }

  take(count: number): Uint8Array {
    if (count < 0 || this.pos + count > this.bytes.length) {
      throw fail(`truncated pickle: needed ${count} bytes at offset ${this.pos}`);
    }
    const slice = this.bytes.subarray(this.pos, this.pos + count);
    this.pos += count;
    return slice;
  }

  u8(): number {
    return this.take(1)[0] ?? 0;
  }

  u16(): number {
    const b = this.take(2);
    return (b[0] ?? 0) | ((b[1] ?? 0) << 8);
  }

  u32(): number {
    return this.i32() >>> 0;
  }

  i32(): number {
    const b = this.take(4);
    return (b[0] ?? 0) | ((b[1] ?? 0) << 8) | ((b[2] ?? 0) << 16) | ((b[3] ?? 0) << 24);
  }

  /** An 8-byte length; anything beyond the input size is reported as truncation later. */
  u64(): number {
    const low = this.u32();
    const high = this.u32();
    return high === 0 ? low : Number.MAX_SAFE_INTEGER;
  }

  /** A newline-terminated ASCII line, as GLOBAL uses. */
  line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end === -1 || end - this.pos > 256) throw fail(`truncated or oversized GLOBAL name at offset ${this.pos}`);
    const text = this.text(end - this.pos);
    this.pos += 1;
    return text;
  }

  text(count: number): string {
    try {
      return utf8.decode(this.take(count));
    } catch (error) {
      if (error instanceof UnsupportedPickleError) throw error;
      throw fail(`invalid UTF-8 text at offset ${this.pos}`);
    }
  }
}

/** Two's-complement little-endian integer, as LONG1/LONG4 store it. */
function decodeLong(bytes: Uint8Array): number | bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i -= 1) value = (value << 8n) | BigInt(bytes[i] ?? 0);
  const last = bytes[bytes.length - 1];
  if (last !== undefined && last >= 0x80) value -= 1n << BigInt(8 * bytes.length);
  const asNumber = Number(value);
  return Number.isSafeInteger(asNumber) ? asNumber : value;
}

// ---------------------------------------------------------------------------------------------
// The stack machine
// ---------------------------------------------------------------------------------------------

/** Every pickle opcode by byte, so that even unsupported ones are named in errors. */
const OPCODE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries({
    '(': 'MARK',
    '.': 'STOP',
    '0': 'POP',
    '1': 'POP_MARK',
    '2': 'DUP',
    F: 'FLOAT',
    I: 'INT',
    J: 'BININT',
    K: 'BININT1',
    L: 'LONG',
    M: 'BININT2',
    N: 'NONE',
    P: 'PERSID',
    Q: 'BINPERSID',
    R: 'REDUCE',
    S: 'STRING',
    T: 'BINSTRING',
    U: 'SHORT_BINSTRING',
    V: 'UNICODE',
    X: 'BINUNICODE',
    a: 'APPEND',
    b: 'BUILD',
    c: 'GLOBAL',
    d: 'DICT',
    '}': 'EMPTY_DICT',
    e: 'APPENDS',
    g: 'GET',
    h: 'BINGET',
    i: 'INST',
    j: 'LONG_BINGET',
    l: 'LIST',
    ']': 'EMPTY_LIST',
    o: 'OBJ',
    p: 'PUT',
    q: 'BINPUT',
    r: 'LONG_BINPUT',
    s: 'SETITEM',
    t: 'TUPLE',
    ')': 'EMPTY_TUPLE',
    u: 'SETITEMS',
    G: 'BINFLOAT',
    B: 'BINBYTES',
    C: 'SHORT_BINBYTES',
    '\x80': 'PROTO',
    '\x81': 'NEWOBJ',
    '\x82': 'EXT1',
    '\x83': 'EXT2',
    '\x84': 'EXT4',
    '\x85': 'TUPLE1',
    '\x86': 'TUPLE2',
    '\x87': 'TUPLE3',
    '\x88': 'NEWTRUE',
    '\x89': 'NEWFALSE',
    '\x8a': 'LONG1',
    '\x8b': 'LONG4',
    '\x8c': 'SHORT_BINUNICODE',
    '\x8d': 'BINUNICODE8',
    '\x8e': 'BINBYTES8',
    '\x8f': 'EMPTY_SET',
    '\x90': 'ADDITEMS',
    '\x91': 'FROZENSET',
    '\x92': 'NEWOBJ_EX',
    '\x93': 'STACK_GLOBAL',
    '\x94': 'MEMOIZE',
    '\x95': 'FRAME',
    '\x96': 'BYTEARRAY8',
    '\x97': 'NEXT_BUFFER',
    '\x98': 'READONLY_BUFFER',
  }).map(([char, name]) => [char.charCodeAt(0), name]),
);

const STOP = Symbol('stop');

class SafeUnpickler {
  private readonly reader: ByteReader;
  private readonly stack: PyValue[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PyValue>();
  private result: PyValue = null;

  constructor(bytes: Uint8Array) {
    this.reader = new ByteReader(bytes);
  }

  load(): PyValue {
    this.readProtocol();
    while (!this.reader.atEnd) {
      const offset = this.reader.offset;
      const opcode = this.reader.u8();
      if (this.step(opcode, offset) === STOP) {
        if (!this.reader.atEnd) throw fail(`unexpected data after STOP at offset ${this.reader.offset}`);
        if (this.stack.length !== 0 || this.marks.length !== 0) throw fail('stack not empty at STOP');
        return this.result;
      }
    }
    throw fail('truncated pickle: no STOP opcode');
  }

  private readProtocol(): void {
    const opcode = this.reader.u8();
    if (opcode !== 0x80) throw fail('pickle protocol 0 or 1 is not supported; expected protocol 2 to 5');
    const version = this.reader.u8();
    if (version < 2 || version > 5) throw fail(`pickle protocol ${version} is not supported; expected 2 to 5`);
  }

  private step(opcode: number, offset: number): typeof STOP | undefined {
    const r = this.reader;
    switch (opcode) {
      case 0x2e: // STOP
        this.result = this.pop();
        return STOP;
      case 0x95: // FRAME: framing is only a buffering hint
        r.u64();
        return undefined;
      case 0x28: // MARK
        if (this.marks.length >= MAX_MARK_DEPTH) throw fail('MARK nesting too deep');
        this.marks.push(this.stack.length);
        return undefined;
      case 0x30: // POP
        this.pop();
        return undefined;
      case 0x31: // POP_MARK
        this.popMark();
        return undefined;
      case 0x32: // DUP
        this.push(this.top());
        return undefined;
      case 0x4e: // NONE
        this.push(null);
        return undefined;
      case 0x88: // NEWTRUE
        this.push(true);
        return undefined;
      case 0x89: // NEWFALSE
        this.push(false);
        return undefined;
      case 0x4a: // BININT
        this.push(r.i32());
        return undefined;
      case 0x4b: // BININT1
        this.push(r.u8());
        return undefined;
      case 0x4d: // BININT2
        this.push(r.u16());
        return undefined;
      case 0x8a: // LONG1
        this.push(this.readLong(r.u8()));
        return undefined;
      case 0x8b: // LONG4
        this.push(this.readLong(r.i32()));
        return undefined;
      case 0x47: // BINFLOAT (big-endian double)
        this.push(new DataView(r.take(8).slice().buffer).getFloat64(0, false));
        return undefined;
      case 0x8c: // SHORT_BINUNICODE
        this.push(r.text(r.u8()));
        return undefined;
      case 0x58: // BINUNICODE
        this.push(r.text(r.u32()));
        return undefined;
      case 0x8d: // BINUNICODE8
        this.push(r.text(r.u64()));
        return undefined;
      case 0x43: // SHORT_BINBYTES
        this.push(r.take(r.u8()).slice());
        return undefined;
      case 0x42: // BINBYTES
        this.push(r.take(r.u32()).slice());
        return undefined;
      case 0x8e: // BINBYTES8
        this.push(r.take(r.u64()).slice());
        return undefined;
      case 0x29: // EMPTY_TUPLE
        this.push(new PyTuple([]));
        return undefined;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: // TUPLE3
        this.push(new PyTuple(this.popMany(opcode - 0x84)));
        return undefined;
      case 0x74: // TUPLE
        this.push(new PyTuple(this.popMark()));
        return undefined;
      case 0x5d: // EMPTY_LIST
        this.push(new PyList());
        return undefined;
      case 0x61: // APPEND
        this.appendItems(this.popMany(1));
        return undefined;
      case 0x65: // APPENDS
        this.appendItems(this.popMark());
        return undefined;
      case 0x7d: // EMPTY_DICT
        this.push(new PyDict());
        return undefined;
      case 0x73: // SETITEM
        this.setItems(this.popMany(2));
        return undefined;
      case 0x75: // SETITEMS
        this.setItems(this.popMark());
        return undefined;
      case 0x63: // GLOBAL
        this.push(resolveGlobal(r.line(), r.line()));
        return undefined;
      case 0x93: // STACK_GLOBAL
        this.stackGlobal();
        return undefined;
      case 0x52: // REDUCE
        this.reduce();
        return undefined;
      case 0x81: // NEWOBJ
        this.newObject(false);
        return undefined;
      case 0x92: // NEWOBJ_EX
        this.newObject(true);
        return undefined;
      case 0x62: // BUILD
        this.build();
        return undefined;
      case 0x94: // MEMOIZE
        this.remember(this.memo.size);
        return undefined;
      case 0x71: // BINPUT
        this.remember(r.u8());
        return undefined;
      case 0x72: // LONG_BINPUT
        this.remember(r.u32());
        return undefined;
      case 0x68: // BINGET
        this.recall(r.u8());
        return undefined;
      case 0x6a: // LONG_BINGET
        this.recall(r.u32());
        return undefined;
      default: {
        const name = OPCODE_NAMES.get(opcode);
        const hex = `0x${opcode.toString(16).padStart(2, '0')}`;
        throw fail(name ? `opcode ${name} (${hex}) at offset ${offset} is not supported in a date/time pickle` : `unknown opcode ${hex} at offset ${offset}`);
      }
    }
  }

  // -- stack primitives (a MARK fences off the items below it, as in CPython) --

  private push(value: PyValue): void {
    if (this.stack.length >= MAX_STACK_ITEMS) throw fail('pickle stack too deep');
    this.stack.push(value);
  }

  private floor(): number {
    return this.marks[this.marks.length - 1] ?? 0;
  }

  private top(): PyValue {
    if (this.stack.length <= this.floor()) throw fail('pickle stack underflow');
    return this.stack[this.stack.length - 1] ?? null;
  }

  private pop(): PyValue {
    const value = this.top();
    this.stack.length -= 1;
    return value;
  }

  private popMany(count: number): PyValue[] {
    if (this.stack.length - count < this.floor()) throw fail('pickle stack underflow');
    return this.stack.splice(this.stack.length - count, count);
  }

  private popMark(): PyValue[] {
    const start = this.marks.pop();
    if (start === undefined) throw fail('pickle has no MARK to pop to');
    return this.stack.splice(start);
  }

  // -- opcodes with some logic --

  private readLong(length: number): number | bigint {
    if (length < 0 || length > MAX_LONG_BYTES) throw fail(`integer of ${length} bytes is too large`);
    return decodeLong(this.reader.take(length));
  }

  private appendItems(items: PyValue[]): void {
    const list = this.top();
    if (!(list instanceof PyList)) throw fail(`cannot append to ${describe(list)}`);
    list.items.push(...items);
  }

  private setItems(items: PyValue[]): void {
    const dict = this.top();
    if (!(dict instanceof PyDict)) throw fail(`cannot set items on ${describe(dict)}`);
    if (items.length % 2 !== 0) throw fail('SETITEMS needs key/value pairs');
    for (let i = 0; i < items.length; i += 2) dict.entries.push([items[i] ?? null, items[i + 1] ?? null]);
  }

  private stackGlobal(): void {
    const [module, name] = this.popMany(2);
    if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL needs two strings');
    this.push(resolveGlobal(module, name));
  }

  private reduce(): void {
    const [callable, args] = this.popMany(2);
    if (!(args instanceof PyTuple)) throw fail(`REDUCE arguments must be a tuple, got ${describe(args ?? null)}`);
    if (!(callable instanceof PyGlobal) || !callable.spec.call) {
      throw fail(`${describe(callable ?? null)} may not be called`);
    }
    this.push(callable.spec.call(args.items, callable));
  }

  private newObject(withKeywords: boolean): void {
    if (withKeywords) {
      const kwargs = this.pop();
      if (!(kwargs instanceof PyDict) || kwargs.entries.length !== 0) {
        throw fail('NEWOBJ_EX keyword arguments are not supported');
      }
    }
    const [cls, args] = this.popMany(2);
    if (!(args instanceof PyTuple)) throw fail(`NEWOBJ arguments must be a tuple, got ${describe(args ?? null)}`);
    if (!(cls instanceof PyGlobal) || !cls.spec.inert) throw fail(`${describe(cls ?? null)} may not be instantiated`);
    this.push(new PyInert(cls, args.items));
  }

  /** BUILD only stores state on inert objects and pendulum's time zones; it never runs __setstate__. */
  private build(): void {
    const state = this.pop();
    const target = this.top();
    if (target instanceof PyInert || target instanceof FixedOffsetZone || target instanceof NamedZone) {
      target.state = state;
      return;
    }
    throw fail(`BUILD is not supported on ${describe(target)}`);
  }

  private remember(index: number): void {
    if (!this.memo.has(index) && this.memo.size >= MAX_MEMO_ENTRIES) throw fail('pickle memo too large');
    this.memo.set(index, this.top());
  }

  private recall(index: number): void {
    if (!this.memo.has(index)) throw fail(`memo entry ${index} is missing`);
    this.push(this.memo.get(index) ?? null);
  }
}
