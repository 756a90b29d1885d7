/**
 * What the caller asks for, and how it is validated: the options of `applyAsync` / `sendTask`
 * (`TaskOptions`, named as in Celery), resolved into a `Job` with every problem reported at once
 * (`ValidationError.problems`), and the JSON checks every argument passes so that a Python worker
 * reads back exactly what was sent.
 *
 * Terminology:
 * - **job**: one scheduled Celery task call, identified by its Celery task id.
 * - **entry**: the job's stored form (`entry.ts`).
 * - **due time**: when the job must be handed to the broker, in unix seconds (fractions allowed).
 */
import { randomUUID } from 'node:crypto';
import { ValidationError } from '../util/errors.js';
import { PICKLE_MARKER } from '../celery/pickle.js';
import { MAX_TIME_MS, checkRepresentable, isRepresentableMs, toDate } from '../celery/time.js';
import { MAX_JSON_DEPTH, MAX_SHORT_STRING_BYTES, isWellFormed, utf8Bytes } from '../celery/limits.js';
import type { Expiry, Job, JobKeyMode, Signature } from './types.js';
import { resolveTags } from './tags.js';

/** Builds a plain task signature, like Python's `app.signature(name, args, kwargs)`. */
export function signature(
  task: string,
  args: unknown[] = [],
  kwargs: Record<string, unknown> = {},
  options: { immutable?: boolean; options?: Record<string, unknown> } = {},
): Signature {
  return { task, args, kwargs, options: options.options ?? {}, subtask_type: null, immutable: options.immutable ?? false };
}

/** The options of `applyAsync` / `sendTask`, named as in Celery (camelCase). */
export interface TaskOptions {
  /** When to run: a Date or an ISO-8601 string with a UTC offset. `null` means "now" (publish at once). */
  eta?: Date | string | null;
  /** Seconds from now; diverts to the long-term store like `eta`. */
  countdown?: number;
  taskId?: string;
  queue?: string;
  routingKey?: string;
  exchange?: string;
  /** 0-255; on Redis 0 is consumed first, on RabbitMQ 255 is. */
  priority?: number;
  /** Absolute (Date or ISO string with offset) or seconds counted from the moment of dispatch. */
  expires?: Date | string | number;
  headers?: Record<string, unknown>;
  link?: Signature | Signature[];
  linkError?: Signature | Signature[];
  shadow?: string;
  /** Hard time limit in seconds. */
  timeLimit?: number;
  /** Soft time limit in seconds. */
  softTimeLimit?: number;
  ignoreResult?: boolean;
  /**
   * A deduplication key: at most one scheduled job holds it (a job being sent or sent no longer
   * does). What a second job with the key does is `jobKeyMode`. Needs an eta or countdown.
   */
  jobKey?: string;
  /**
   * `reject` (the default): throw `JobKeyTakenError`; `replace`: the new job takes the place of
   * the scheduled one (new time, arguments and id), atomically; `keep`: leave the scheduled job
   * alone and return it.
   */
  jobKeyMode?: JobKeyMode;
  /**
   * Labels to find and steer the job by later (`tenant:42`, `invoice`): kept in the store beside
   * the job, never in its entry (the Python package reads it unchanged). Repeats are dropped; at
   * most 32 tags of at most 128 bytes each. Needs an eta or countdown.
   */
  tags?: readonly string[];
}

const OPTION_NAMES = new Set<string>([
  'eta',
  'countdown',
  'taskId',
  'queue',
  'routingKey',
  'exchange',
  'priority',
  'expires',
  'headers',
  'link',
  'linkError',
  'shadow',
  'timeLimit',
  'softTimeLimit',
  'ignoreResult',
  'jobKey',
  'jobKeyMode',
  'tags',
]);
const JOB_KEY_MODES: readonly JobKeyMode[] = ['reject', 'replace', 'keep'];

/** True when the options ask for the long-term store (an eta or countdown is given). */
export function isScheduled(options: TaskOptions): boolean {
  return (options.eta !== undefined && options.eta !== null) || options.countdown !== undefined;
}

/**
 * Validates a task call and resolves its options. Collects every problem before throwing one
 * `ValidationError`, so a caller fixes them all at once. Returns the Job and, if an eta or
 * countdown was given, its due time.
 */
export function resolveTaskCall(
  task: string,
  args: unknown = [],
  kwargs: unknown = {},
  options: TaskOptions = {},
  now: Date = new Date(),
): { job: Job; dueAt: number | undefined; key?: { key: string; mode: JobKeyMode }; tags?: string[] } {
  const problems: string[] = [];
  if (typeof task !== 'string' || task.trim() === '') problems.push('task name is empty; pass the registered Celery task name, e.g. "proj.tasks.add"');
  else checkName(task, 'task name', problems, false);
  if (options === null || typeof options !== 'object') problems.push('options must be an object');
  const opts: TaskOptions = options && typeof options === 'object' ? options : {};

  for (const key of Object.keys(opts)) {
    if (!OPTION_NAMES.has(key)) problems.push(`unknown option ${JSON.stringify(key)}; valid options are ${[...OPTION_NAMES].join(', ')}`);
  }
  const argsList = args === undefined || args === null ? [] : args;
  if (!Array.isArray(argsList)) problems.push(`args must be an array, got ${describe(argsList)}; wrap a single argument as [value]`);
  else checkJsonValue(argsList, 'args', problems, depthBelow(2));
  const kw = kwargs === undefined || kwargs === null ? {} : kwargs;
  if (typeof kw !== 'object' || Array.isArray(kw)) problems.push(`kwargs must be an object, got ${describe(kw)}; pass e.g. {"y": 2}`);
  else checkJsonValue(kw, 'kwargs', problems, depthBelow(2));

  let dueAt: number | undefined;
  if (opts.eta !== undefined && opts.eta !== null && opts.countdown !== undefined) {
    problems.push('pass either eta or countdown, not both');
  } else if (opts.eta !== undefined && opts.eta !== null) {
    dueAt = collect(problems, () => checkRepresentable(toDate(opts.eta as Date | string, 'eta'), 'eta').getTime() / 1000);
  } else if (opts.countdown !== undefined) {
    if (typeof opts.countdown !== 'number' || !Number.isFinite(opts.countdown) || opts.countdown < 0) {
      problems.push(`countdown must be a finite number of seconds >= 0, got ${describe(opts.countdown)}`);
    } else if (!isRepresentableMs(now.getTime() + opts.countdown * 1000)) {
      problems.push(
        `countdown ${opts.countdown} s lands after 9999-12-31T23:59:59Z, the latest time Python's datetime (and so Celery) can hold; pass at most ${secondsLeft(now.getTime())} seconds`,
      );
    } else {
      dueAt = now.getTime() / 1000 + opts.countdown;
    }
  }

  let key: { key: string; mode: JobKeyMode } | undefined;
  if (opts.jobKey !== undefined) {
    const mode = opts.jobKeyMode ?? 'reject';
    if (typeof opts.jobKey !== 'string' || opts.jobKey.trim() === '') {
      problems.push(
        `jobKey must be a non-empty string that is not only whitespace, got ${describe(opts.jobKey)}; pass a key naming what must be scheduled once, e.g. "user:7:reminder"`,
      );
    } else if (!isWellFormed(opts.jobKey)) checkName(opts.jobKey, 'jobKey', problems, false);
    else if (!JOB_KEY_MODES.includes(mode)) problems.push(`jobKeyMode must be 'reject', 'replace' or 'keep', got ${describe(opts.jobKeyMode)}`);
    else if (opts.eta === undefined && opts.countdown === undefined) problems.push('jobKey needs an eta or countdown: only scheduled jobs hold keys');
    else key = { key: opts.jobKey, mode };
  } else if (opts.jobKeyMode !== undefined) {
    problems.push('jobKeyMode needs a jobKey');
  }

  const before = problems.length;
  const tags = resolveTags(opts.tags, problems);
  if (opts.tags !== undefined && problems.length === before && opts.eta === undefined && opts.countdown === undefined)
    problems.push('tags need an eta or countdown: only scheduled jobs hold tags');

  const id = opts.taskId ?? randomUUID();
  if (typeof id !== 'string' || id === '') problems.push('taskId must be a non-empty string; omit it to get a random UUID');
  else checkName(id, 'taskId', problems, true); // the AMQP correlation_id
  for (const name of ['queue', 'routingKey', 'exchange', 'shadow'] as const) {
    const v = opts[name];
    if (v !== undefined && (typeof v !== 'string' || (name === 'queue' && v === ''))) problems.push(`${name} must be a non-empty string, got ${describe(v)}`);
    else if (typeof v === 'string') checkName(v, name, problems, name !== 'shadow'); // queue, exchange and routing key names are short strings
  }
  if (opts.priority !== undefined && (!Number.isInteger(opts.priority) || opts.priority < 0 || opts.priority > 255)) {
    problems.push(`priority must be an integer from 0 to 255 (Redis uses 0-9, 0 first), got ${describe(opts.priority)}`);
  }
  for (const name of ['timeLimit', 'softTimeLimit'] as const) {
    const v = opts[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0))
      problems.push(`${name} must be a positive number of seconds, got ${describe(v)}`);
  }
  if (opts.ignoreResult !== undefined && typeof opts.ignoreResult !== 'boolean')
    problems.push(`ignoreResult must be a boolean, got ${describe(opts.ignoreResult)}`);
  if (opts.headers !== undefined) {
    if (opts.headers === null || typeof opts.headers !== 'object' || Array.isArray(opts.headers))
      problems.push(`headers must be an object, got ${describe(opts.headers)}`);
    else {
      checkJsonValue(opts.headers, 'headers', problems, depthBelow(2));
      for (const name of Object.keys(opts.headers)) {
        const bytes = utf8Bytes(name);
        if (bytes > MAX_SHORT_STRING_BYTES)
          problems.push(
            `headers has a name of ${bytes} bytes in UTF-8; AMQP header names hold at most ${MAX_SHORT_STRING_BYTES} bytes, so RabbitMQ cannot carry this job; use a shorter name`,
          );
      }
    }
  }
  const expires = collect(problems, () => resolveExpires(opts.expires));
  if (expires?.kind === 'relative') {
    // counted from dispatch, which is at the due time or later
    const fromMs = dueAt !== undefined && isRepresentableMs(dueAt * 1000) ? Math.max(dueAt * 1000, now.getTime()) : now.getTime();
    if (!isRepresentableMs(fromMs + expires.seconds * 1000)) {
      problems.push(
        `expires ${expires.seconds} s, counted from dispatch, lands after 9999-12-31T23:59:59Z, the latest time Python's datetime (and so Celery) can hold; pass at most ${secondsLeft(fromMs)} seconds`,
      );
    }
  }
  const link = collect(problems, () => toSignatureList(opts.link, 'link')) ?? [];
  const linkError = collect(problems, () => toSignatureList(opts.linkError, 'linkError')) ?? [];

  if (problems.length > 0) throw new ValidationError(problems);
  const job: Job = {
    id,
    task,
    args: argsList as unknown[],
    kwargs: kw as Record<string, unknown>,
    link,
    linkError,
    ...(opts.queue !== undefined && { queue: opts.queue }),
    ...(opts.routingKey !== undefined && { routingKey: opts.routingKey }),
    ...(opts.exchange !== undefined && { exchange: opts.exchange }),
    ...(opts.priority !== undefined && { priority: opts.priority }),
    ...(expires !== undefined && { expires }),
    ...(opts.headers !== undefined && { headers: opts.headers }),
    ...(opts.shadow !== undefined && { shadow: opts.shadow }),
    ...(opts.timeLimit !== undefined && { timeLimit: opts.timeLimit }),
    ...(opts.softTimeLimit !== undefined && { softTimeLimit: opts.softTimeLimit }),
    ...(opts.ignoreResult !== undefined && { ignoreResult: opts.ignoreResult }),
  };
  return { job, dueAt, ...(key && { key }), ...(tags && { tags }) };
}

function resolveExpires(value: TaskOptions['expires']): Expiry | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number') {
    if (value < 0) throw new ValidationError([`expires ${value} is negative; pass seconds >= 0 counted from dispatch, or a Date or ISO-8601 time with offset`]);
    if (!Number.isFinite(value))
      throw new ValidationError([`expires must be a Date, an ISO-8601 string with offset, or a finite number of seconds >= 0, got ${describe(value)}`]);
    return { kind: 'relative', seconds: value };
  }
  return { kind: 'absolute', at: checkRepresentable(toDate(value, 'expires'), 'expires') };
}

/** Whole seconds from `fromMs` to the latest representable time (for "pass at most N seconds"). */
function secondsLeft(fromMs: number): number {
  return Math.max(0, Math.floor((MAX_TIME_MS - fromMs) / 1000));
}

function toSignatureList(value: Signature | Signature[] | undefined | null, what: string): Signature[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((sig, i) => {
    const where = Array.isArray(value) ? `${what}[${i}]` : what;
    if (!sig || typeof sig !== 'object' || typeof sig.task !== 'string' || sig.task === '') {
      throw new ValidationError([
        `${where} must be a signature {task, args, kwargs, options, subtask_type, immutable}; build one with signature("proj.tasks.cb", [..])`,
      ]);
    }
    const normalized: Signature = {
      task: sig.task,
      args: sig.args ?? [],
      kwargs: sig.kwargs ?? {},
      options: sig.options ?? {},
      subtask_type: sig.subtask_type ?? null,
      immutable: sig.immutable ?? false,
    };
    const problems: string[] = [];
    // one signature is stored as the option's value, several as a list (one level more)
    checkJsonValue(normalized, where, problems, depthBelow(list.length > 1 ? 3 : 2));
    if (!Array.isArray(normalized.args)) problems.push(`${where}.args must be an array`);
    if (problems.length) throw new ValidationError(problems);
    return normalized;
  });
}

/** The most problems one value reports (a million bad strings must not make a million-item message). */
const MAX_PROBLEMS_PER_VALUE = 20;

/**
 * Checks that `value` survives a JSON round trip unchanged in meaning: no BigInt, functions,
 * symbols, undefined inside arrays, non-finite numbers, cycles, strings (or keys) with a lone
 * UTF-16 surrogate, or kombu's reserved `{"__type__", "__value__"}` shape (a Python worker on
 * kombu >= 5.3 would decode or drop it), and no deeper nesting than `maxDepth` levels (`value`
 * itself being level 1 when it is an array or object). The walk stops at `maxDepth`, so a value
 * nested 100,000 deep is one problem, not a stack overflow. (`nestedDeeperThan` in limits.ts is
 * not enough here: on a cycle it reports depth, where this reports the cycle.)
 */
export function checkJsonValue(value: unknown, path: string, problems: string[], maxDepth: number = MAX_JSON_DEPTH): void {
  const seen = new Set<object>();
  const found: string[] = [];
  let more = 0;
  let tooDeep = false;
  const problem = (text: string): void => {
    if (found.length < MAX_PROBLEMS_PER_VALUE) found.push(text);
    else more++;
  };
  const visit = (v: unknown, p: string, level: number): void => {
    switch (typeof v) {
      case 'string':
        if (!isWellFormed(v))
          problem(
            `${p} is not well-formed Unicode (it holds a lone UTF-16 surrogate, which no store, broker or worker can carry); fix the string, e.g. with toWellFormed()`,
          );
        else if (v.startsWith(PICKLE_MARKER))
          problem(
            `${p} starts with ${JSON.stringify(PICKLE_MARKER)}, which the Python package's dispatcher would unpickle (running what it holds); change the string`,
          );
        return;
      case 'boolean':
        return;
      case 'number':
        if (!Number.isFinite(v)) problem(`${p} is ${v}, which JSON cannot hold; use null or a finite number`);
        return;
      case 'bigint':
        problem(`${p} is a BigInt, which JSON cannot hold; convert it to a number or a string`);
        return;
      case 'function':
        problem(`${p} is a function, which JSON cannot hold; pass data only`);
        return;
      case 'symbol':
        problem(`${p} is a symbol, which JSON cannot hold`);
        return;
      case 'undefined':
        problem(`${p} is undefined, which JSON cannot hold; use null`);
        return;
    }
    if (v === null) return;
    const obj = v as object;
    if (seen.has(obj)) {
      problem(`${p} refers back to itself (a cycle), which JSON cannot hold`);
      return;
    }
    if (obj instanceof Date) {
      if (Number.isNaN(obj.getTime())) problem(`${p} is an invalid Date`);
      return; // JSON writes it as an ISO string
    }
    if (level > maxDepth) {
      tooDeep = true;
      return;
    }
    seen.add(obj);
    if (Array.isArray(obj)) {
      obj.forEach((item, i) => visit(item, `${p}[${i}]`, level + 1));
    } else {
      const entries = Object.entries(obj);
      const keys = entries.map(([k]) => k);
      if (keys.length === 2 && keys.includes('__type__') && keys.includes('__value__')) {
        problem(`${p} has exactly the keys __type__ and __value__, which Celery workers on kombu >= 5.3 treat as a tagged value; rename a key`);
      }
      for (const [k, item] of entries) {
        const wellFormed = isWellFormed(k);
        if (!wellFormed) problem(`${p} has the key ${JSON.stringify(k)}, which is not well-formed Unicode (a lone UTF-16 surrogate); rename it`);
        if (item === undefined) continue; // JSON drops undefined object members, as JS users expect
        visit(item, wellFormed ? `${p}.${k}` : `${p}[${JSON.stringify(k)}]`, level + 1);
      }
    }
    seen.delete(obj);
  };
  visit(value, path, 1);
  if (tooDeep) {
    found.unshift(
      `${path} is nested more than ${MAX_JSON_DEPTH} levels deep, counted from the stored job's root (Python's JSON decoder recurses once per level); flatten it`,
    );
  }
  problems.push(...found);
  if (more > 0) problems.push(`and ${more} more problem${more === 1 ? '' : 's'} like these in ${path}`);
}

/** The depth left for a value stored `levels` deep in the entry `[[task], {…}]` (args: 2). */
function depthBelow(levels: number): number {
  return MAX_JSON_DEPTH - levels;
}

/**
 * A string the job names (task id, queue, …): not well-formed Unicode, or, for an AMQP short
 * string, longer than RabbitMQ carries, is a problem naming `name`.
 */
function checkName(value: string, name: string, problems: string[], shortString: boolean): void {
  if (!isWellFormed(value)) {
    problems.push(
      `${name} ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)} is not well-formed Unicode (it holds a lone UTF-16 surrogate, which no store, broker or worker can carry); fix it`,
    );
    return;
  }
  const bytes = utf8Bytes(value);
  if (shortString && bytes > MAX_SHORT_STRING_BYTES) {
    problems.push(
      `${name} is ${bytes} bytes in UTF-8; RabbitMQ carries it as an AMQP short string, which holds at most ${MAX_SHORT_STRING_BYTES} bytes, so it cannot carry this job; use a shorter one`,
    );
  }
}

/** Runs `fn`; a `ValidationError` it throws adds its problems to `problems` (and gives undefined). */
export function collect<T>(problems: string[], fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ValidationError) {
      problems.push(...err.problems);
      return undefined;
    }
    throw err;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number') return String(v);
  return typeof v;
}
