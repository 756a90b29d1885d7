/**
 * A job query, as operators write it (`list`, `count`, the bulk actions, the histogram), checked
 * once and split in two:
 *
 * - what the store answers (`JobFilter`, store.ts): the due range, task, queue, tags, job-key
 *   prefix and id prefix, each from an index where the store has one (see each store's header);
 * - what is matched here, job by job, on the decoded entry: a substring of the arguments
 *   (`argsContains`) and JSON-path matches on them (`argsMatch`). These read every job the
 *   store's part lets through, so a query with them is a scan (`CompiledQuery.scans`).
 *
 * A JSON path names a value inside a job's positional or keyword arguments and the value it must
 * equal: `kwargs.tenant_id=42`, `args[0]="invoice"`, `kwargs.user.email=a@b.c`, `kwargs["odd key"]=null`.
 * The path starts at `args` or `kwargs` (an optional `$.` before it), then `.name`, `[index]` or
 * `["any name"]` steps; after the `=` comes JSON (`42`, `"42"`, `true`, `{"a":1}`), or, when it is
 * not JSON, the text as a string (`kwargs.kind=invoice`). A job matches when the path leads to a
 * value equal to it (objects and arrays compared deeply).
 */
import { isDeepStrictEqual } from 'node:util';
import { resolveTags } from '../job/tags.js';
import { isWellFormed } from '../celery/limits.js';
import { ValidationError } from '../util/errors.js';
import type { JobFilter } from '../stores/store.js';

/** Which scheduled jobs: every filter given narrows the query. */
export interface JobQuery {
  /** only jobs due at or after this */
  from?: Date;
  /** only jobs due at or before this */
  to?: Date;
  /** only this task name */
  task?: string;
  /** only jobs for this queue (a job naming no queue goes to the app's default queue) */
  queue?: string;
  /** only jobs holding every one of these tags */
  tags?: readonly string[];
  /** only jobs holding at least one of these tags */
  anyTags?: readonly string[];
  /** only jobs holding a deduplication key (`applyAsync(..., { key })`) that starts with this */
  keyPrefix?: string;
  /** only jobs whose id starts with this */
  idPrefix?: string;
  /** only jobs whose arguments, as JSON text (`[args, kwargs]`), contain this; a scan */
  argsContains?: string;
  /** only jobs matching every one of these JSON paths (`kwargs.tenant_id=42`, see the header); a scan */
  argsMatch?: readonly string[];
}

export const QUERY_FIELDS: readonly (keyof JobQuery)[] = [
  'from',
  'to',
  'task',
  'queue',
  'tags',
  'anyTags',
  'keyPrefix',
  'idPrefix',
  'argsContains',
  'argsMatch',
];

/** A query split into the store's part and the part matched here. */
export interface CompiledQuery {
  /** what the store answers */
  filter: JobFilter;
  /** the job-by-job part, on a job's arguments; undefined when the store answers it all */
  match?: (job: { args: unknown[]; kwargs: Record<string, unknown> }) => boolean;
  /** true when `match` is set: every job the filter lets through is read and decoded */
  scans: boolean;
}

type Step = string | number;
interface PathMatch {
  root: 'args' | 'kwargs';
  steps: Step[];
  value: unknown;
}

/**
 * Checks a query and splits it (see the header). `defaultQueue` is the app's: a job naming no
 * queue is sent there, so it matches a query for that queue. With `needsFilter`, a query naming
 * nothing is refused (a bulk action would otherwise touch every job by accident).
 */
export function compileQuery(q: JobQuery, defaultQueue: string, needsFilter = false): CompiledQuery {
  if (q === null || typeof q !== 'object') throw new ValidationError(['the query must be an object of filters, e.g. { tags: ["tenant:42"] }']);
  const unknown = Object.keys(q).filter((k) => !(QUERY_FIELDS as readonly string[]).includes(k));
  if (unknown.length)
    throw new ValidationError([`unknown filter ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the filters are ${QUERY_FIELDS.join(', ')}`]);
  const given = Object.entries(q).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0));
  if (needsFilter && given.length === 0)
    throw new ValidationError([
      'the query has no filter, so it would match every scheduled job; name at least one (a due range, task, queue, tag, key or id prefix, or an args match)',
    ]);
  const problems: string[] = [];
  const time = (d: Date | undefined, what: string): number | undefined => {
    if (d === undefined) return undefined;
    if (!(d instanceof Date) || !Number.isFinite(d.getTime())) {
      problems.push(`${what} must be a valid Date`);
      return undefined;
    }
    return d.getTime() / 1000;
  };
  const from = time(q.from, 'from');
  const to = time(q.to, 'to');
  if (from !== undefined && to !== undefined && from > to)
    problems.push(`the range is inverted: from ${q.from?.toISOString()} is after to ${q.to?.toISOString()}; pass from <= to`);
  const text = (v: unknown, what: string): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '' || !isWellFormed(v)) problems.push(`${what} must be a non-empty string, got ${JSON.stringify(v) ?? String(v)}`);
    else return v;
    return undefined;
  };
  const task = text(q.task, 'task');
  const queue = text(q.queue, 'queue');
  const keyPrefix = text(q.keyPrefix, 'keyPrefix');
  const idPrefix = text(q.idPrefix, 'idPrefix');
  const contains = text(q.argsContains, 'argsContains');
  const all = resolveTags(q.tags, problems, 'tags');
  const any = resolveTags(q.anyTags, problems, 'anyTags');
  let paths: PathMatch[] = [];
  if (q.argsMatch !== undefined) {
    if (!Array.isArray(q.argsMatch)) problems.push('argsMatch must be a list of matches like "kwargs.tenant_id=42"');
    else paths = q.argsMatch.flatMap((m) => parseArgsMatch(m, problems));
  }
  if (problems.length) throw new ValidationError(problems);

  const filter: JobFilter = {
    ...(from !== undefined && { from }),
    ...(to !== undefined && { to }),
    ...((all || any) && { tags: { ...(all && { all }), ...(any && { any }) } }),
    ...(task !== undefined && { task }),
    ...(queue !== undefined && { queues: queue === defaultQueue ? [queue, null] : [queue] }),
    ...(keyPrefix !== undefined && { keyPrefix }),
    ...(idPrefix !== undefined && { idPrefix }),
  };
  if (contains === undefined && paths.length === 0) return { filter, scans: false };
  const match = (job: { args: unknown[]; kwargs: Record<string, unknown> }): boolean => {
    if (contains !== undefined && !JSON.stringify([job.args, job.kwargs]).includes(contains)) return false;
    return paths.every((p) => {
      const found = follow(p.root === 'args' ? job.args : job.kwargs, p.steps);
      return found.ok && isDeepStrictEqual(found.value, p.value);
    });
  };
  return { filter, match, scans: true };
}

/** The value at `steps` inside `v`, if the path leads anywhere. */
function follow(v: unknown, steps: readonly Step[]): { ok: true; value: unknown } | { ok: false } {
  let at: unknown = v;
  for (const s of steps) {
    if (typeof s === 'number') {
      if (!Array.isArray(at) || s >= at.length) return { ok: false };
      at = at[s];
    } else {
      if (at === null || typeof at !== 'object' || Array.isArray(at) || !Object.hasOwn(at, s)) return { ok: false };
      at = (at as Record<string, unknown>)[s];
    }
  }
  return { ok: true, value: at };
}

const NAME = /^[A-Za-z_][A-Za-z0-9_-]*/;

/** Reads `PATH=VALUE` (see the header); a problem naming what is wrong when it is not one. */
export function parseArgsMatch(text: unknown, problems: string[]): PathMatch[] {
  const bad = (why: string) => {
    problems.push(`the args match ${JSON.stringify(text)} is malformed: ${why}; write e.g. kwargs.tenant_id=42 or args[0]="invoice"`);
    return [];
  };
  if (typeof text !== 'string' || !isWellFormed(text)) return bad('it is not a string');
  let rest = text.startsWith('$.') ? text.slice(2) : text;
  const root = /^(args|kwargs)(?![A-Za-z0-9_-])/.exec(rest)?.[1] as 'args' | 'kwargs' | undefined;
  if (root === undefined) return bad('a path starts at args or kwargs');
  rest = rest.slice(root.length);
  const steps: Step[] = [];
  while (rest.length && rest[0] !== '=') {
    if (rest[0] === '.') {
      const name = NAME.exec(rest.slice(1))?.[0];
      if (name === undefined) return bad(`after "." comes a name (letters, digits, _ or -); quote others as ["name"]`);
      steps.push(name);
      rest = rest.slice(1 + name.length);
    } else if (rest.startsWith('["')) {
      const end = quotedEnd(rest, 1);
      if (end < 0 || rest[end + 1] !== ']') return bad('a quoted step ends with "]');
      steps.push(JSON.parse(rest.slice(1, end + 1)) as string);
      rest = rest.slice(end + 2);
    } else if (rest[0] === '[') {
      const m = /^\[(\d{1,9})\]/.exec(rest);
      if (!m) return bad('an index is a whole number in brackets, e.g. args[0]');
      steps.push(Number(m[1]));
      rest = rest.slice(m[0].length);
    } else return bad(`unexpected ${JSON.stringify(rest[0])} in the path`);
  }
  if (rest[0] !== '=') return bad('it needs =VALUE after the path');
  let raw = rest.slice(1);
  if (raw.startsWith('=')) raw = raw.slice(1); // `==` reads as `=`
  if (raw === '') return bad('the value after = is empty (write "" for an empty string)');
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  return [{ root, steps, value }];
}

/** The index of the closing quote of the JSON string starting at `start`, or -1. */
function quotedEnd(s: string, start: number): number {
  for (let i = start + 1; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '"') {
      try {
        JSON.parse(s.slice(start, i + 1));
        return i;
      } catch {
        return -1;
      }
    }
  }
  return -1;
}
