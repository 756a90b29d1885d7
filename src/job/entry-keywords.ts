/**
 * The keyword half of a stored entry `[[task name], {keywords}]`: every keyword of Python's
 * `Celery.send_task` (celery/app/base.py, 5.x) that the Python package can store, read into a
 * `Job` so that the message we build is the one `send_task` would have published.
 *
 * The rule is "honoured exactly, or a dead letter": a keyword we do not know, or a value we
 * cannot put on the wire as Python would (another serializer, compression, a pickle outside the
 * places listed below, an impossible priority), throws `UnsupportedEntryError`, and the
 * dispatcher makes the job a dead letter with reason `unsupported`. Nothing is dropped silently.
 * A value of the wrong JSON type (a queue that is a number), or a pickle in an allowed place that
 * is not an aware datetime, is `CorruptEntryError`.
 *
 * `None` (JSON null) means "not given" for every keyword, as it does for `send_task`.
 *
 * Pickles (`__python_pickle__` + base64) are accepted in three places only:
 * - `expires`: an aware datetime (what the package stores for `expires=<datetime>`);
 * - `task_type` and `producer`: client-side objects that never reach the wire (ignored unread);
 * - `eta` / `expires` inside a signature's `options` (a chord body carries the chord's `eta`):
 *   an aware datetime, written as the ISO text Python's `isoformat()` gives, which every
 *   Celery 5.x parses. (kombu 5.2's JSON would write `Z` for `+00:00`; we keep `+00:00`, which
 *   Celery 5.3.0-5.3.4 on Python <= 3.10 also parses, where `Z` fails.)
 */
import { CorruptEntryError, UnsupportedEntryError, UnsupportedPickleError } from '../util/errors.js';
import { isPickled, readPickledDatetime } from '../celery/pickle.js';
import { toDate } from '../celery/time.js';
import { isWellFormed } from '../celery/limits.js';
import type { Expiry, Job, Signature } from './types.js';

/** How one `send_task` keyword is treated. */
export type KeywordTreatment = 'message' | 'client-side' | 'default-only';

/**
 * Every keyword we accept, and what becomes of it. `message`: it changes the message as in
 * `send_task`; `client-side`: it only steers the Python producer (never on the wire) and is
 * ignored; `default-only`: accepted only at its default (null, or the value named in the README),
 * anything else is unsupported. The README's keyword table is this table.
 */
export const SEND_TASK_KEYWORDS: Readonly<Record<string, KeywordTreatment>> = {
  args: 'message',
  kwargs: 'message',
  task_id: 'message',
  queue: 'message',
  routing_key: 'message',
  exchange: 'message',
  exchange_type: 'default-only',
  priority: 'message',
  expires: 'message',
  headers: 'message',
  link: 'message',
  link_error: 'message',
  shadow: 'message',
  time_limit: 'message',
  soft_time_limit: 'message',
  ignore_result: 'message',
  chain: 'message',
  chord: 'message',
  group_id: 'message',
  group_index: 'message',
  retries: 'message',
  root_id: 'message',
  parent_id: 'message',
  reply_to: 'message',
  delivery_mode: 'message',
  argsrepr: 'message',
  kwargsrepr: 'message',
  serializer: 'default-only',
  compression: 'default-only',
  immediate: 'default-only',
  mandatory: 'default-only',
  countdown: 'default-only',
  eta: 'default-only',
  expiration: 'default-only',
  producer: 'client-side',
  publisher: 'client-side',
  connection: 'client-side',
  router: 'client-side',
  route_name: 'client-side',
  result_cls: 'client-side',
  add_to_parent: 'client-side',
  task_type: 'client-side',
  retry: 'client-side',
  retry_policy: 'client-side',
  declare: 'client-side',
  timeout: 'client-side',
  confirm_timeout: 'client-side',
};

/**
 * Reads every keyword of `kw` into `job` (whose id, task, args and kwargs are already set).
 * `mayHoldPickles` false (the raw entry has no pickle marker anywhere, the common case for our
 * entries) skips the walks that look for pickles in arguments and signatures.
 */
export function applyKeywords(job: Job, id: string, kw: Record<string, unknown>, mayHoldPickles = true): void {
  for (const [key, value] of Object.entries(kw)) {
    const treatment = SEND_TASK_KEYWORDS[key];
    if (treatment === undefined) {
      throw new UnsupportedEntryError(
        id,
        `the keyword ${JSON.stringify(key)} is not one of Celery's send_task keywords we can honour; it would change the message in a way we cannot reproduce`,
      );
    }
    if (treatment === 'client-side' || value === null || value === undefined) continue;
    if (key === 'args' || key === 'kwargs' || key === 'task_id') continue; // read by decodeEntry
    if (isPickled(value) && key !== 'expires') {
      throw new UnsupportedEntryError(id, `${key} holds a Python pickle; only expires (and eta/expires in a signature's options) may be a pickled datetime`);
    }
    applyKeyword(job, id, key, value, mayHoldPickles);
  }
  if (!mayHoldPickles) return;
  for (const [name, list] of [
    ['args', job.args],
    ['kwargs', job.kwargs],
    ['headers', job.headers],
  ] as const) {
    const where = list === undefined ? undefined : findPickle(list, name);
    if (where)
      throw new UnsupportedEntryError(
        id,
        `${where} holds a Python pickle, which Python's dispatcher would unpickle into an object we cannot reproduce; only expires may be pickled`,
      );
  }
}

function applyKeyword(job: Job, id: string, key: string, value: unknown, pickles: boolean): void {
  const str = (): string => {
    if (typeof value !== 'string') throw new CorruptEntryError(id, `${key} is not a string`);
    if (!isWellFormed(value)) throw new CorruptEntryError(id, `${key} is not well-formed Unicode (a lone surrogate)`);
    return value;
  };
  const num = (): number => {
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new CorruptEntryError(id, `${key} is not a number`);
    return value;
  };
  const count = (): number => {
    const n = num();
    if (!Number.isInteger(n) || n < 0) throw new UnsupportedEntryError(id, `${key} ${n} is not a whole number >= 0`);
    return n;
  };
  const bool = (): boolean => {
    if (typeof value !== 'boolean') throw new CorruptEntryError(id, `${key} is not true or false`);
    return value;
  };
  const defaultOnly = (allowed: readonly unknown[], why: string): void => {
    if (!allowed.includes(value)) throw new UnsupportedEntryError(id, `${key} ${JSON.stringify(value)} cannot be honoured: ${why}`);
  };
  switch (key) {
    case 'queue':
      job.queue = str();
      return;
    case 'routing_key':
      job.routingKey = str();
      return;
    case 'exchange':
      job.exchange = str();
      return;
    case 'shadow':
      job.shadow = str();
      return;
    case 'priority': {
      const p = num();
      if (!Number.isInteger(p) || p < 0 || p > 255)
        throw new UnsupportedEntryError(id, `priority ${p} is impossible: a priority is a whole number from 0 to 255`);
      job.priority = p;
      return;
    }
    case 'time_limit':
      job.timeLimit = num();
      return;
    case 'soft_time_limit':
      job.softTimeLimit = num();
      return;
    case 'ignore_result':
      job.ignoreResult = bool();
      return;
    case 'headers':
      if (!isPlainObject(value)) throw new CorruptEntryError(id, 'headers is not an object');
      job.headers = value;
      return;
    case 'link':
      job.link = storedSignatures(id, key, value, pickles);
      return;
    case 'link_error':
      job.linkError = storedSignatures(id, key, value, pickles);
      return;
    case 'chain':
      if (!Array.isArray(value)) throw new CorruptEntryError(id, 'chain is not a list of signatures');
      job.chain = storedSignatures(id, key, value, pickles);
      return;
    case 'chord': {
      if (Array.isArray(value)) throw new CorruptEntryError(id, 'chord is not one signature (the chord body)');
      const [body] = storedSignatures(id, key, value, pickles);
      if (body) job.chord = body;
      return;
    }
    case 'expires':
      job.expires = storedExpiry(id, value);
      return;
    case 'group_id':
      job.groupId = str();
      return;
    case 'group_index':
      job.groupIndex = count();
      return;
    case 'retries':
      job.retries = count();
      return;
    case 'root_id':
      job.rootId = str();
      return;
    case 'parent_id':
      job.parentId = str();
      return;
    case 'reply_to':
      job.replyTo = str();
      return;
    case 'argsrepr':
      job.argsrepr = str();
      return;
    case 'kwargsrepr':
      job.kwargsrepr = str();
      return;
    case 'delivery_mode':
      // kombu takes the numbers and these names (kombu/entity.py DELIVERY_MODES)
      if (value === 1 || value === 'transient') job.deliveryMode = 1;
      else if (value === 2 || value === 'persistent') job.deliveryMode = 2;
      else throw new UnsupportedEntryError(id, `delivery_mode ${JSON.stringify(value)} is impossible: it is 1 (transient) or 2 (persistent)`);
      return;
    case 'serializer':
      defaultOnly(['json'], 'this dispatcher writes JSON messages only');
      return;
    case 'compression':
      defaultOnly([], 'this dispatcher does not compress messages');
      return;
    case 'exchange_type':
      defaultOnly(['direct'], 'only direct exchanges route as Celery would here (a named exchange is used through its bindings)');
      return;
    case 'immediate':
    case 'mandatory':
      defaultOnly([false], 'the AMQP publish flags are not set by this dispatcher');
      return;
    case 'countdown':
    case 'eta':
      defaultOnly([], "the due time is the store's, and the Python package never stores this keyword");
      return;
    case 'expiration':
      defaultOnly([], 'the AMQP expiration follows expires; give expires instead');
      return;
    default:
      throw new UnsupportedEntryError(id, `the keyword ${JSON.stringify(key)} is not handled`);
  }
}

function storedExpiry(id: string, value: unknown): Expiry {
  if (typeof value === 'number' && Number.isFinite(value)) {
    if (value < 0) throw new UnsupportedEntryError(id, `expires ${value} is negative; Celery refuses negative seconds`);
    return { kind: 'relative', seconds: value };
  }
  if (isPickled(value)) {
    try {
      const { at, isoformat } = readPickledDatetime(value);
      return { kind: 'absolute', at, text: isoformat };
    } catch (err) {
      // in its place, but not an aware datetime: a broken value, so corrupt
      const reason = err instanceof UnsupportedPickleError ? err.message : 'undecodable pickle';
      throw new CorruptEntryError(id, `expires: ${reason}`, err);
    }
  }
  if (typeof value === 'string') {
    try {
      return { kind: 'absolute', at: toDate(value, 'expires') };
    } catch {
      // Python's own dispatcher reads a naive string as UTC (docs/protocol.md §1.6); do the same.
      const asUtc = new Date(`${value}Z`);
      if (!Number.isNaN(asUtc.getTime())) return { kind: 'absolute', at: asUtc };
      throw new CorruptEntryError(id, `expires ${JSON.stringify(value)} is not an ISO-8601 date-time`);
    }
  }
  throw new CorruptEntryError(id, 'expires is neither seconds nor a date-time');
}

/**
 * One signature or a list, as stored. Each goes into the message as stored (Python passes the
 * dict through), except that a pickled datetime under `eta` or `expires` in an `options` object,
 * at any depth, becomes its ISO text; any other pickle is unsupported.
 */
function storedSignatures(id: string, key: string, value: unknown, pickles: boolean): Signature[] {
  const list = Array.isArray(value) ? value : [value];
  return list.map((sig, i) => {
    const where = Array.isArray(value) ? `${key}[${i}]` : key;
    if (!isPlainObject(sig) || typeof sig.task !== 'string' || sig.task === '')
      throw new CorruptEntryError(id, `${where} is not a signature (an object with a task name)`);
    for (const [field, check] of [
      ['args', Array.isArray],
      ['kwargs', isPlainObject],
      ['options', isPlainObject],
    ] as const) {
      if (sig[field] !== undefined && sig[field] !== null && !check(sig[field])) throw new CorruptEntryError(id, `${where}.${field} has the wrong type`);
    }
    return (pickles ? resolveSignaturePickles(id, sig, where) : sig) as unknown as Signature;
  });
}

/** A copy of `value` with the allowed pickled datetimes written as ISO text (the original is untouched). */
function resolveSignaturePickles(id: string, value: unknown, path: string, inOptions = false, key = ''): unknown {
  if (isPickled(value)) {
    if (!inOptions || (key !== 'eta' && key !== 'expires')) {
      throw new UnsupportedEntryError(id, `${path} holds a Python pickle; in a signature only options.eta and options.expires may be a pickled datetime`);
    }
    try {
      return readPickledDatetime(value).isoformat;
    } catch (err) {
      throw new CorruptEntryError(id, `${path}: ${err instanceof UnsupportedPickleError ? err.message : 'undecodable pickle'}`, err);
    }
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const resolved = resolveSignaturePickles(id, item, `${path}[${i}]`);
      if (resolved !== item) (copy ??= [...value])[i] = resolved;
    });
    return copy ?? value;
  }
  if (isPlainObject(value)) {
    let copy: Record<string, unknown> | undefined;
    for (const [k, item] of Object.entries(value)) {
      // `inOptions` for the members of an `options` object: a signature's own, or one nested in it
      const resolved = resolveSignaturePickles(id, item, `${path}.${k}`, key === 'options', k);
      if (resolved !== item) (copy ??= { ...value })[k] = resolved;
    }
    return copy ?? value;
  }
  return value;
}

/** The path of the first pickle-marked string in a JSON value, or undefined. */
function findPickle(value: unknown, path: string): string | undefined {
  if (isPickled(value)) return path;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = findPickle(item, `${path}[${i}]`);
      if (found) return found;
    }
  } else if (isPlainObject(value)) {
    for (const [k, item] of Object.entries(value)) {
      const found = findPickle(item, `${path}.${k}`);
      if (found) return found;
    }
  }
  return undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
