/**
 * PostgreSQL URLs, options and driver errors, shared by the store and the migrations.
 */
import type pg from 'pg';
import { ConnectionError, ValidationError, malformedEscapeProblem, redactUrl } from '../../util/errors.js';

export const WHAT = 'long-term scheduler store (PostgreSQL)';
export const DEFAULT_SCHEMA = 'celery_longterm_scheduler';
/** a schema name leaves room for its `_wakeup` channel within PostgreSQL's 63-byte identifiers */
const MAX_SCHEMA_LENGTH = 63 - '_wakeup'.length;

export interface PostgresUrlOptions {
  /** the schema holding the store's tables (default `celery_longterm_scheduler`; or `?schema=` in the URL) */
  schema?: string;
  /** how long to wait for a connection, in milliseconds (default 10,000) */
  connectTimeoutMs?: number;
}

export interface PostgresTarget {
  /** the URL for the driver: `schema` taken out of the query */
  url: string;
  /** the URL as given, password redacted */
  description: string;
  schema: string;
  connectTimeoutMs: number;
}

/** Checks and splits a `postgres://` / `postgresql://` URL; a `ValidationError` lists every problem. */
export function parsePostgresUrl(url: string, options: PostgresUrlOptions = {}): PostgresTarget {
  const problems: string[] = [];
  const safe = redactUrl(String(url));
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\//i.test(url)) {
    problems.push(`${JSON.stringify(safe)} is not a PostgreSQL URL; use postgres://user:password@host:5432/database`);
  } else {
    try {
      new URL(url);
    } catch {
      problems.push(`${JSON.stringify(safe)} is not a valid URL; percent-encode special characters in the user and password`);
    }
    // pg would quietly take a malformed escape (`%zz`) literally, as part of the password
    const escape = malformedEscapeProblem(url, 'the store');
    if (escape) problems.push(escape);
  }
  const [base = '', query] = splitQuery(String(url));
  const kept: string[] = [];
  let fromUrl: string | undefined;
  for (const part of query?.split('&') ?? []) {
    const [key = '', value = ''] = part.split('=', 2);
    if (safeDecode(key) === 'schema') fromUrl = safeDecode(value);
    else if (part !== '') kept.push(part);
  }
  if (fromUrl !== undefined && options.schema !== undefined && fromUrl !== options.schema) {
    problems.push(`the URL says schema=${fromUrl} but the schema option says ${options.schema}; give it once`);
  }
  const schema = options.schema ?? fromUrl ?? DEFAULT_SCHEMA;
  if (!/^[a-z_][a-z0-9_]*$/.test(schema) || schema.length > MAX_SCHEMA_LENGTH || schema.startsWith('pg_')) {
    problems.push(
      `schema ${JSON.stringify(schema)} is not usable; use lowercase letters, digits and _ (not starting with a digit or pg_), at most ${MAX_SCHEMA_LENGTH} characters`,
    );
  }
  const timeout = options.connectTimeoutMs ?? 10_000;
  if (!Number.isInteger(timeout) || timeout <= 0) problems.push(`connectTimeoutMs must be a whole number of milliseconds > 0, not ${timeout}`);
  if (problems.length) throw new ValidationError(problems);
  return { url: kept.length ? `${base}?${kept.join('&')}` : base, description: safe, schema, connectTimeoutMs: timeout };
}

function splitQuery(url: string): [string, string | undefined] {
  const i = url.indexOf('?');
  return i === -1 ? [url, undefined] : [url.slice(0, i), url.slice(i + 1)];
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

export function connectionConfig(target: PostgresTarget, extra: pg.PoolConfig = {}): pg.PoolConfig {
  return {
    connectionString: target.url,
    connectionTimeoutMillis: target.connectTimeoutMs,
    application_name: 'celery-longterm-scheduler',
    ...extra,
  };
}

/** A quoted identifier (names are validated first; this is belt and braces). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE', 'ENOENT']);

/** Whether a driver error means the server could not be reached or would not let us in. */
export function isConnectionFailure(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.some(isConnectionFailure);
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code)) return true;
    // 08: connection exception, 28: authorization, 3D000: no such database, 57P0x: shutting down, 53300: too many connections
    if (/^(08|28)/.test(code) || code === '3D000' || /^57P0/.test(code) || code === '53300') return true;
  }
  return /connection terminated|timeout expired|connection timeout|Client has encountered a connection error/i.test(err.message);
}

/** Turns a connection failure into a `ConnectionError` (URL redacted); anything else is returned as is. */
export function wrapPgError(err: unknown, url: string): unknown {
  if (err instanceof ConnectionError || !isConnectionFailure(err)) return err;
  const cause = err instanceof AggregateError && !err.message ? (err.errors[0] ?? err) : err;
  return new ConnectionError(WHAT, url, cause);
}
