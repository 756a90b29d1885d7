/**
 * The dashboard's inputs, read and checked on the server: the job query in a URL's query string
 * (the parameters are named as the CLI's flags: `task=app.invoice&tag=tenant:42&from=…`, so a view
 * can be shared as a link), page sizes, and the moves of a reschedule. What is wrong is a
 * `ValidationError` with the CLI's own words, since the same functions check both (compileQuery,
 * parseIsoWithOffset, duration); the API sends it as a 400 `{ error }`.
 */
import type { JobQuery, Move } from '../admin/bulk.js';
import { duration } from '../admin/duration.js';
import { parseIsoWithOffset } from '../celery/time.js';
import { ValidationError } from '../util/errors.js';

/** The query parameters, as the CLI's flags without their `--`; `tag`, `any-tag` and `args-match` repeat. */
export const QUERY_PARAMS = ['from', 'to', 'task', 'queue', 'tag', 'any-tag', 'job-key-prefix', 'id-prefix', 'args-contains', 'args-match'] as const;

/**
 * The job query of a query string. `extra` names the other parameters the route takes (e.g.
 * `limit`, `cursor`); any other name is refused, as compileQuery refuses an unknown filter. An
 * empty value counts as absent (what an empty form field sends).
 */
export function queryFromParams(params: URLSearchParams, extra: readonly string[] = []): JobQuery {
  const known = new Set<string>([...QUERY_PARAMS, ...extra]);
  const unknown = [...new Set([...params.keys()].filter((k) => !known.has(k)))];
  if (unknown.length)
    throw new ValidationError([`unknown filter ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the filters are ${QUERY_PARAMS.join(', ')}`]);
  const problems: string[] = [];
  const one = (name: string): string | undefined => {
    const all = params.getAll(name).filter((v) => v !== '');
    if (all.length > 1) problems.push(`${name} is given ${all.length} times; pass it once`);
    return all[0];
  };
  const many = (name: string): string[] | undefined => {
    const all = params.getAll(name).filter((v) => v !== '');
    return all.length ? all : undefined;
  };
  const time = (name: string): Date | undefined => {
    const v = one(name);
    if (v === undefined) return undefined;
    try {
      return parseIsoWithOffset(v, name);
    } catch (err) {
      problems.push(...(err instanceof ValidationError ? err.problems : [String(err)]));
      return undefined;
    }
  };
  const q: JobQuery = {};
  const from = time('from');
  const to = time('to');
  const fields: [keyof JobQuery, string][] = [
    ['task', 'task'],
    ['queue', 'queue'],
    ['keyPrefix', 'job-key-prefix'],
    ['idPrefix', 'id-prefix'],
    ['argsContains', 'args-contains'],
  ];
  if (from) q.from = from;
  if (to) q.to = to;
  for (const [field, name] of fields) {
    const v = one(name);
    if (v !== undefined) (q as Record<string, unknown>)[field] = v;
  }
  const tags = many('tag');
  const anyTags = many('any-tag');
  const argsMatch = many('args-match');
  if (tags) q.tags = tags;
  if (anyTags) q.anyTags = anyTags;
  if (argsMatch) q.argsMatch = argsMatch;
  if (problems.length) throw new ValidationError(problems);
  return q;
}

/** A whole number parameter within a range; `fallback` when absent. */
export function intParam(params: URLSearchParams, name: string, range: { min: number; max: number }, fallback: number): number {
  const v = params.get(name);
  if (v === null || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < range.min || n > range.max)
    throw new ValidationError([`${name} must be a whole number from ${range.min} to ${range.max}, got ${JSON.stringify(v)}`]);
  return n;
}

/** One of `choices`; `fallback` when absent. */
export function choiceParam<T extends string>(params: URLSearchParams, name: string, choices: readonly T[], fallback: T): T {
  const v = params.get(name);
  if (v === null || v === '') return fallback;
  if (!(choices as readonly string[]).includes(v)) throw new ValidationError([`${name} must be ${choices.join(', ')}; got ${JSON.stringify(v)}`]);
  return v as T;
}

/** A JSON request body's object, with only the keys named (any other is refused). */
export function bodyObject(body: unknown, keys: readonly string[]): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ValidationError(['the request body must be a JSON object']);
  const unknown = Object.keys(body).filter((k) => !keys.includes(k));
  if (unknown.length)
    throw new ValidationError([`unknown field ${unknown.map((k) => JSON.stringify(k)).join(', ')} in the request body; the fields are ${keys.join(', ')}`]);
  return body as Record<string, unknown>;
}

/** A non-empty string field. */
export function stringField(o: Record<string, unknown>, name: string): string {
  const v = o[name];
  if (typeof v !== 'string' || v === '') throw new ValidationError([`${name} must be a non-empty string`]);
  return v;
}

/**
 * How a reschedule moves jobs, from a request body: `{ eta }` (an ISO time with an offset),
 * `{ shift: "+2h" }`, or, by query only, `{ spread: "30m", jitter? }` over the window from the
 * query's `from`. The words are the CLI's (`--eta`, `--shift`, `--spread`) without the dashes.
 */
export function moveOf(move: unknown, query: JobQuery | undefined): Move {
  const allowed = query === undefined ? ['eta', 'shift'] : ['eta', 'shift', 'spread', 'jitter'];
  const o = bodyObject(move, allowed);
  const given = ['eta', 'shift', 'spread'].filter((k) => o[k] !== undefined);
  if (given.length !== 1)
    throw new ValidationError([query === undefined ? 'pass exactly one of eta or shift' : 'by query, pass exactly one of eta, shift or spread']);
  if (o.jitter !== undefined && (typeof o.jitter !== 'boolean' || o.spread === undefined))
    throw new ValidationError(['jitter (true or false) goes with spread']);
  const text = (name: string): string => {
    const v = o[name];
    if (typeof v !== 'string') throw new ValidationError([`${name} must be a string, e.g. ${name === 'eta' ? '"2027-01-01T09:00:00Z"' : '"+2h"'}`]);
    return v;
  };
  if (o.eta !== undefined) return { to: parseIsoWithOffset(text('eta'), 'eta') };
  if (o.shift !== undefined) return { shiftSeconds: duration(text('shift'), 'shift', true) };
  const spreadSeconds = duration(text('spread'), 'spread');
  if (query?.from === undefined || query.to === undefined)
    throw new ValidationError(['spread needs the pile-up to spread: pass from and to (the window starts at from)']);
  return { spreadSeconds, ...(o.jitter === true && { jitter: true }) };
}
