/**
 * The Python entry codec: a job's stored form is the original package's JSON
 * `[[task name], {send_task keywords}]` (docs/original-package.md).
 *
 * Entries we write omit unset options (so a small job stays small) and use only keyword names
 * that Celery's `send_task` accepts, so the Python package's own dispatcher can send them too.
 * They hold JSON only, with one exception: an absolute `expires` is a pickled aware UTC datetime
 * (`pickleUtcDatetime`), the one form Celery 5.0-5.2's `send_task` takes. Reading an entry, ours or
 * the Python package's, is `decodeEntry`, with every keyword handled in `entry-keywords.ts`.
 */
import { CorruptEntryError } from '../util/errors.js';
import { PICKLE_MARKER, pickleUtcDatetime } from '../celery/pickle.js';
import { MAX_JSON_DEPTH, isWellFormed, nestedDeeperThan } from '../celery/limits.js';
import { applyKeywords } from './entry-keywords.js';
import type { Job, Signature } from './types.js';

/** The stored keyword arguments: a subset of Python's `send_task` keywords, unset ones omitted. */
export interface StoredOptions {
  args?: unknown[];
  kwargs?: Record<string, unknown> | null;
  task_id: string;
  queue?: string | null;
  routing_key?: string | null;
  exchange?: string | null;
  priority?: number | null;
  expires?: number | string | null;
  headers?: Record<string, unknown> | null;
  link?: Signature | Signature[] | null;
  link_error?: Signature | Signature[] | null;
  shadow?: string | null;
  time_limit?: number | null;
  soft_time_limit?: number | null;
  ignore_result?: boolean | null;
  [other: string]: unknown;
}

/** The stored entry for a job (JSON string). Only set options are written. */
export function encodeEntry(job: Job): string {
  const kw: StoredOptions = { args: job.args, task_id: job.id };
  if (Object.keys(job.kwargs).length > 0) kw.kwargs = job.kwargs;
  if (job.queue !== undefined) kw.queue = job.queue;
  if (job.routingKey !== undefined) kw.routing_key = job.routingKey;
  if (job.exchange !== undefined) kw.exchange = job.exchange;
  if (job.priority !== undefined) kw.priority = job.priority;
  // absolute: a pickled datetime, the one form every Celery 5.x send_task takes (a string fails
  // on 5.0-5.2, a number means seconds); see pickleUtcDatetime
  if (job.expires !== undefined) kw.expires = job.expires.kind === 'relative' ? job.expires.seconds : pickleUtcDatetime(job.expires.at);
  if (job.headers !== undefined) kw.headers = job.headers;
  if (job.link.length > 0) kw.link = job.link.length === 1 ? job.link[0] : job.link;
  if (job.linkError.length > 0) kw.link_error = job.linkError.length === 1 ? job.linkError[0] : job.linkError;
  if (job.shadow !== undefined) kw.shadow = job.shadow;
  if (job.timeLimit !== undefined) kw.time_limit = job.timeLimit;
  if (job.softTimeLimit !== undefined) kw.soft_time_limit = job.softTimeLimit;
  if (job.ignoreResult !== undefined) kw.ignore_result = job.ignoreResult;
  if (job.chain !== undefined) kw.chain = job.chain;
  if (job.chord !== undefined) kw.chord = job.chord;
  if (job.groupId !== undefined) kw.group_id = job.groupId;
  if (job.groupIndex !== undefined) kw.group_index = job.groupIndex;
  if (job.retries !== undefined) kw.retries = job.retries;
  if (job.rootId !== undefined) kw.root_id = job.rootId;
  if (job.parentId !== undefined) kw.parent_id = job.parentId;
  if (job.replyTo !== undefined) kw.reply_to = job.replyTo;
  if (job.deliveryMode !== undefined) kw.delivery_mode = job.deliveryMode;
  if (job.argsrepr !== undefined) kw.argsrepr = job.argsrepr;
  if (job.kwargsrepr !== undefined) kw.kwargsrepr = job.kwargsrepr;
  return JSON.stringify([[job.task], kw]);
}

/**
 * Reads a stored entry, ours or the Python package's. Throws `CorruptEntryError` when it is not
 * JSON, has the wrong shape or a keyword of the wrong type, and `UnsupportedEntryError` (a
 * subclass) when it asks for what we cannot send exactly as Python's `send_task` would; see
 * `entry-keywords.ts` for every keyword.
 */
export function decodeEntry(id: string, raw: string | null): Job {
  if (raw === null) throw new CorruptEntryError(id, 'its key is missing (the index names a job that has no entry)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new CorruptEntryError(id, 'not JSON', err);
  }
  if (nestedDeeperThan(parsed, MAX_JSON_DEPTH)) {
    throw new CorruptEntryError(id, `nested more than ${MAX_JSON_DEPTH} levels deep, which a Python worker cannot decode`);
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || !Array.isArray(parsed[0]) || !isPlainObject(parsed[1])) {
    throw new CorruptEntryError(id, 'expected [[task name], {options}]');
  }
  const [positional, kw] = parsed as [unknown[], Record<string, unknown>];
  const task = positional[0];
  if (typeof task !== 'string' || task === '') throw new CorruptEntryError(id, 'the task name is missing');
  if (positional.length > 1) throw new CorruptEntryError(id, 'extra positional send_task arguments are not supported');

  const taskId = kw.task_id ?? id;
  if (typeof taskId !== 'string' || taskId === '') throw new CorruptEntryError(id, 'task_id is not a non-empty string');
  if (!isWellFormed(taskId)) throw new CorruptEntryError(id, 'task_id is not well-formed Unicode (a lone surrogate)');
  const args = kw.args ?? [];
  if (!Array.isArray(args)) throw new CorruptEntryError(id, 'args is not a list');
  const kwargs = kw.kwargs ?? {};
  if (!isPlainObject(kwargs)) throw new CorruptEntryError(id, 'kwargs is not an object');

  const job: Job = { id: taskId, task, args, kwargs, link: [], linkError: [] };
  // the pickle walks are skipped only when no marker can be in the entry, escaped ones included
  applyKeywords(job, id, kw, raw.includes(PICKLE_MARKER) || raw.includes('\\u'));
  return job;
}

/** The task name of an entry without decoding the rest; '?' when it has none. */
export function taskNameOf(entry: string | null): string {
  if (entry === null) return '?';
  try {
    const parsed = JSON.parse(entry) as unknown;
    const name = Array.isArray(parsed) && Array.isArray(parsed[0]) ? (parsed[0] as unknown[])[0] : undefined;
    return typeof name === 'string' ? name : '?';
  } catch {
    return '?';
  }
}

/**
 * What a store indexes of an entry, read the way `decodeEntry` reads it but without the rest:
 * `task`, its task name (null when it has none: not an entry, or a name that is not a string);
 * `queue`, the queue it names (null when it names none, or one that is not a string: it then
 * goes to the app's default queue, or nowhere for a corrupt entry). Every store answers a task
 * or queue filter with these, so an index and a read of the entry always agree.
 */
export function indexFieldsOf(entry: string): { task: string | null; queue: string | null } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(entry);
  } catch {
    return { task: null, queue: null };
  }
  if (!Array.isArray(parsed)) return { task: null, queue: null };
  const head: unknown = parsed[0];
  const name: unknown = Array.isArray(head) ? head[0] : undefined;
  const kw: unknown = parsed[1];
  const queue: unknown = isPlainObject(kw) ? kw.queue : undefined;
  return { task: typeof name === 'string' ? name : null, queue: typeof queue === 'string' ? queue : null };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
