/**
 * What every bulk action by query (`revoke`, `reschedule`, `run-now`, `retag`) does the same way
 * on the command line:
 * - `--dry-run` prints how many jobs match and the first few, and changes nothing;
 * - without `--yes` it shows the count and asks on a terminal (typing "yes" goes on), and refuses
 *   with exit 2 when there is no terminal to ask on;
 * - progress on stderr while it runs (redrawn on a terminal, a line per tenth otherwise);
 * - SIGINT or SIGTERM stops it after the page in progress and prints the `--after` cursor that
 *   resumes it (exit 1);
 * - a summary of what changed, what was skipped (claimed by a dispatcher meanwhile) and what was
 *   missing (sent or revoked meanwhile); one JSON object with `--json`.
 */
import type { Command } from 'commander';
import { DEFAULT_BATCH, countWhere, type BulkOptions, type BulkProgress, type BulkSummary, type JobQuery } from '../admin/bulk.js';
import type { Celery } from '../client/celery.js';
import { ValidationError } from '../util/errors.js';
import type { CliContext } from './context.js';
import { EXIT, ExitWith } from './exit.js';
import { bounded, formatMs, humanTime, jobJson } from './format.js';
import { compileQuery } from '../admin/query.js';

export interface BulkFlags {
  dryRun?: boolean;
  yes?: boolean;
  json?: boolean;
  after?: string;
  batchSize?: string;
}

/** The flags every bulk action takes. */
export function withBulkFlags(command: Command, verb: string): Command {
  return command
    .option('--dry-run', `with a query: print how many jobs match and a few of them; ${verb} nothing`)
    .option('--yes', `with a query: ${verb} without asking`)
    .option('--after <cursor>', 'with a query: go on after this cursor (printed when an earlier run was interrupted)')
    .option('--batch-size <n>', `with a query: jobs changed per round trip, 1 to 10000 (default ${DEFAULT_BATCH})`)
    .option('--json', 'print the outcome as one JSON object');
}

export interface BulkRun {
  /** e.g. 'revoke' */
  verb: string;
  /** e.g. 'revoked' */
  past: string;
  /** said after the count in the question, e.g. ' for good' */
  warning?: string;
  query: JobQuery;
  flags: BulkFlags;
  /** checks what the action needs beyond the query before anything is read (e.g. --spread needs a range) */
  check?: (app: Celery) => void;
  run: (app: Celery, options: BulkOptions) => Promise<BulkSummary>;
}

/** Runs a bulk action by query as the header says. */
export async function runBulk(ctx: CliContext, b: BulkRun): Promise<void> {
  const { io } = ctx;
  const { flags: o } = b;
  if (o.dryRun && o.yes) throw new ValidationError(['--dry-run changes nothing and --yes goes on without asking: pass one of them']);
  const batchSize = o.batchSize === undefined ? undefined : bounded(o.batchSize, '--batch-size', { min: 1, max: 10_000 });
  await ctx.withApp(async (app) => {
    const queue = app.config.taskDefaultQueue;
    const compiled = compileQuery(b.query, queue, true);
    b.check?.(app);
    if (compiled.scans && !o.json) io.stderr('note: an args match reads every job the other filters let through (a scan)\n');
    const plural = (n: number) => `${n.toLocaleString('en-US')} job${n === 1 ? '' : 's'}`;
    // counted first only to show or ask: with --yes the action itself reads the matches once
    const counted = o.dryRun || !o.yes ? await countWhere(app.store, queue, b.query) : undefined;
    if (o.dryRun && counted) {
      if (o.json) io.stdout(`${JSON.stringify({ matched: counted.count, sample: counted.sample.map(jobJson) })}\n`);
      else {
        io.stdout(`would ${b.verb} ${plural(counted.count)}${counted.count ? '; the first:' : ''}\n`);
        for (const j of counted.sample) io.stdout(`  ${j.id}  ${humanTime(j.dueAtUnix)}  ${j.task}\n`);
      }
      return;
    }
    const nothing = () =>
      io.stdout(
        o.json ? `${JSON.stringify({ matched: 0, changed: 0, [b.past]: 0, skipped: 0, missing: 0 })}\n` : `no scheduled jobs match; nothing ${b.past}\n`,
      );
    if (counted?.count === 0) return nothing();
    if (counted) {
      const answer = await io.ask?.(`${b.verb} ${plural(counted.count)}${b.warning ?? ''}? type yes to go on: `);
      if (answer === undefined)
        throw new ValidationError([
          `this would ${b.verb} ${plural(counted.count)} and there is no terminal to ask on; pass --yes to go on (or --dry-run to see them first)`,
        ]);
      if (answer.trim().toLowerCase() !== 'yes') {
        io.stderr(`not confirmed; nothing ${b.past}\n`);
        throw new ExitWith(EXIT.USAGE);
      }
    }
    const stop = new AbortController();
    const unsubscribe = io.onSignal?.(() => stop.abort());
    const bar = progress(ctx, b.past, counted?.count, o.json === true);
    let summary: BulkSummary;
    try {
      summary = await b.run(app, {
        onProgress: bar.update,
        signal: stop.signal,
        ...(o.after !== undefined && { cursor: o.after }),
        ...(batchSize !== undefined && { batchSize }),
      });
    } finally {
      bar.done();
      unsubscribe?.();
    }
    if (summary.matched === 0 && summary.cursor === undefined) return nothing();
    if (o.json) io.stdout(`${JSON.stringify({ ...summary, [b.past]: summary.changed, elapsedMs: Math.round(summary.elapsedMs) })}\n`);
    else {
      const parts = [`${b.past} ${plural(summary.changed)}`];
      if (summary.unchanged) parts.push(`${plural(summary.unchanged)} already there`);
      if (summary.skipped) parts.push(`skipped ${plural(summary.skipped)} a dispatcher had claimed`);
      if (summary.missing) parts.push(`${plural(summary.missing)} gone meanwhile (sent or revoked)`);
      if (summary.overLimit) parts.push(`${plural(summary.overLimit)} left alone: they would hold more than 32 tags`);
      io.stdout(`${parts.join('; ')} in ${formatMs(summary.elapsedMs)}\n`);
    }
    if (summary.cursor !== undefined) {
      io.stderr(`interrupted; resume with --after '${summary.cursor}'\n`);
      throw new ExitWith(EXIT.FAILURE);
    }
  });
}

function progress(ctx: CliContext, past: string, count: number | undefined, quiet: boolean): { update: (p: BulkProgress) => void; done: () => void } {
  const { io } = ctx;
  const tty = io.isTty?.() === true;
  let drawn = false;
  let lastTenth = 0;
  return {
    update: (p) => {
      if (quiet) return;
      const total = p.total ?? count;
      const done = p.changed + p.skipped + p.missing + (p.unchanged ?? 0) + (p.overLimit ?? 0);
      const line = `${past} ${p.changed.toLocaleString('en-US')}${total === undefined ? '' : ` of ${total.toLocaleString('en-US')}`}…`;
      if (tty) {
        io.stderr(`\r${line}`);
        drawn = true;
      } else if (total !== undefined && total > 0 && Math.floor((done / total) * 10) > lastTenth) {
        lastTenth = Math.floor((done / total) * 10);
        io.stderr(`${line}\n`);
      }
    },
    done: () => {
      if (drawn) io.stderr('\n');
    },
  };
}
