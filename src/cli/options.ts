/**
 * Flags that more than one command reads: a JSON flag (a usage error naming the flag when it is
 * not JSON), and the retry flags of `dispatch` and `run` (absent flags leave the dispatcher's
 * defaults; present ones are checked against LIMITS).
 */
import type { Command } from 'commander';
import { DISPATCH_DEFAULTS } from '../dispatch/dispatcher.js';
import { ValidationError } from '../util/errors.js';
import { LIMITS, bounded } from './format.js';
import type { JobQuery } from '../admin/bulk.js';
import { parseIsoWithOffset } from '../celery/time.js';

export { duration } from '../admin/duration.js';

export function parseJson(text: string, flag: string, expected: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError([`${flag} is not valid JSON; pass ${expected}`]);
  }
}

export interface RetryFlags {
  maxAttempts?: string;
  retryDelayMs?: string;
  retryDelayMaxMs?: string;
}

/** The flags of `dispatch` and `run` that say how a job the broker refuses is tried again. */
export function withRetryFlags(command: Command): Command {
  const d = DISPATCH_DEFAULTS;
  return command
    .option(
      '--max-attempts <n>',
      `refusals by the broker before a job becomes a dead letter, ${LIMITS.maxAttempts.min} to ${LIMITS.maxAttempts.max} (default ${d.maxAttempts})`,
    )
    .option('--retry-delay-ms <ms>', `wait before trying a refused job again; doubles with each refusal (default ${d.retryDelayMs})`)
    .option('--retry-delay-max-ms <ms>', `the longest wait between two attempts (default ${d.retryDelayMaxMs}, an hour)`)
    .addHelpText(
      'after',
      '\nA job the broker refuses (unroutable, nacked, a broker key of another type) is tried again after its backoff and ' +
        'becomes a dead letter after --max-attempts refusals; a corrupt entry or a message the broker can never carry becomes ' +
        'one at once. The rest of its batch is sent as usual. See `dead --help`.\n',
    );
}

export function retryOptions(o: RetryFlags): { maxAttempts?: number; retryDelayMs?: number; retryDelayMaxMs?: number } {
  return {
    ...(o.maxAttempts !== undefined && { maxAttempts: bounded(o.maxAttempts, '--max-attempts', LIMITS.maxAttempts) }),
    ...(o.retryDelayMs !== undefined && { retryDelayMs: bounded(o.retryDelayMs, '--retry-delay-ms', LIMITS.retryDelayMs) }),
    ...(o.retryDelayMaxMs !== undefined && { retryDelayMaxMs: bounded(o.retryDelayMaxMs, '--retry-delay-max-ms', LIMITS.retryDelayMaxMs) }),
  };
}

/** A commander option parser for a repeatable flag: every value given, in order. */
export function repeatable(value: string, all: string[] = []): string[] {
  return [...all, value];
}

/** The flags of a job query, as commander parses them (`list`, and `revoke` by query). */
export interface QueryFlags {
  from?: string;
  to?: string;
  task?: string;
  queue?: string;
  tag?: string[];
  anyTag?: string[];
  jobKeyPrefix?: string;
  idPrefix?: string;
  argsContains?: string;
  argsMatch?: string[];
}

/** Adds the job query flags to a command; `lead` starts each description (e.g. 'query: '). */
export function withQueryFlags(command: Command, lead = ''): Command {
  return command
    .option('--from <iso8601>', `${lead}only jobs due at or after this time`)
    .option('--to <iso8601>', `${lead}only jobs due at or before this time`)
    .option('--task <name>', `${lead}only this task`)
    .option('--queue <name>', `${lead}only jobs for this queue`)
    .option('--tag <tag>', `${lead}only jobs holding this tag (repeatable: every one)`, repeatable)
    .option('--any-tag <tag>', `${lead}only jobs holding at least one of these tags (repeatable)`, repeatable)
    .option('--job-key-prefix <prefix>', `${lead}only jobs holding a deduplication key (schedule --key) that starts with this`)
    .option('--id-prefix <prefix>', `${lead}only jobs whose id starts with this`)
    .option('--args-contains <text>', `${lead}only jobs whose arguments, as JSON, contain this text (reads every job the other filters let through)`)
    .option(
      '--args-match <path=value>',
      `${lead}only jobs whose argument at the path equals the value, e.g. kwargs.tenant_id=42 or 'args[0]="x"' (repeatable: every one; reads every job the other filters let through)`,
      repeatable,
    );
}

/** The query the flags give (times checked: an ISO time with an offset), or undefined when they name none. */
export function queryOf(o: QueryFlags): JobQuery | undefined {
  const q: JobQuery = {};
  if (o.from !== undefined) q.from = parseIsoWithOffset(o.from, '--from');
  if (o.to !== undefined) q.to = parseIsoWithOffset(o.to, '--to');
  if (o.task !== undefined) q.task = o.task;
  if (o.queue !== undefined) q.queue = o.queue;
  if (o.tag !== undefined) q.tags = o.tag;
  if (o.anyTag !== undefined) q.anyTags = o.anyTag;
  if (o.jobKeyPrefix !== undefined) q.keyPrefix = o.jobKeyPrefix;
  if (o.idPrefix !== undefined) q.idPrefix = o.idPrefix;
  if (o.argsContains !== undefined) q.argsContains = o.argsContains;
  if (o.argsMatch !== undefined) q.argsMatch = o.argsMatch;
  return Object.keys(q).length ? q : undefined;
}
