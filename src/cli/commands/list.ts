/**
 * `list`: scheduled jobs in due order, a page at a time (--limit, then the printed --cursor),
 * filtered by the query flags (options.ts; the store answers all but an args match, which reads
 * the jobs the rest lets through and says so on stderr); a table for people, JSON lines with --json.
 */
import type { Command } from 'commander';
import { listJobs, type ListJobsOptions } from '../../admin/scheduled-jobs.js';
import type { CliContext } from '../context.js';
import { queryOf, withQueryFlags, type QueryFlags } from '../options.js';
import { LIMITS, bounded, clip, humanTime, jobJson, printPage } from '../format.js';

interface ListFlags extends QueryFlags {
  limit: string;
  cursor?: string;
  json?: boolean;
}

export function addListCommand(program: Command, ctx: CliContext): void {
  withQueryFlags(program.command('list').description('scheduled jobs in due order, a page at a time'))
    .option('--limit <n>', `jobs per page, ${LIMITS.limit.min} to ${LIMITS.limit.max}`, '50')
    .option('--cursor <cursor>', 'the page after this cursor (printed at the end of the previous page)')
    .option('--json', 'one JSON object per line; a last line {"next_cursor": …} when there is another page')
    .action(async (o: ListFlags) => {
      const options: ListJobsOptions = { ...queryOf(o), limit: bounded(o.limit, '--limit', LIMITS.limit) };
      if (o.cursor !== undefined) options.cursor = o.cursor;
      const page = await ctx.withApp((a) => listJobs(a.store, a.config.taskDefaultQueue, options));
      if (page.scanned !== undefined && !o.json)
        ctx.io.stderr(
          `note: an args match reads every job the other filters let through; this page read ${page.scanned.toLocaleString('en-US')}` +
            (page.cursor !== undefined && page.jobs.length < (options.limit ?? 0) ? ' and stopped there (go on with the cursor below)\n' : '\n'),
        );
      printPage(
        ctx.io.stdout,
        { items: page.jobs, cursor: page.cursor },
        {
          json: o.json === true,
          toJson: jobJson,
          headers: ['ID', 'DUE (UTC)', 'TASK', 'QUEUE', 'ARGS'],
          row: (j) => [j.id, humanTime(j.dueAtUnix), j.task, j.queue ?? `exchange ${j.exchange ?? ''}`, clip(JSON.stringify(j.args), 40)],
          noun: ['job', 'jobs'],
          empty: 'no scheduled jobs match',
        },
      );
    });
}
