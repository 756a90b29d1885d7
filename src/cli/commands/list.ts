/**
 * `list`: scheduled jobs in due order, a page at a time (--limit, then the printed --cursor),
 * filtered by due time and tags (through the store's indexes), task, queue and id prefix (matched
 * while reading in due order); a table for people, JSON lines with --json.
 */
import type { Command } from 'commander';
import { listJobs, type ListJobsOptions } from '../../admin/scheduled-jobs.js';
import { parseIsoWithOffset } from '../../celery/time.js';
import type { CliContext } from '../context.js';
import { repeatable } from '../options.js';
import { LIMITS, bounded, clip, humanTime, jobJson, printPage } from '../format.js';

interface ListFlags {
  from?: string;
  to?: string;
  task?: string;
  queue?: string;
  tag?: string[];
  anyTag?: string[];
  idPrefix?: string;
  limit: string;
  cursor?: string;
  json?: boolean;
}

export function addListCommand(program: Command, ctx: CliContext): void {
  program
    .command('list')
    .description('scheduled jobs in due order, a page at a time')
    .option('--from <iso8601>', 'only jobs due at or after this time')
    .option('--to <iso8601>', 'only jobs due at or before this time')
    .option('--task <name>', 'only this task')
    .option('--queue <name>', 'only jobs for this queue')
    .option('--tag <tag>', 'only jobs holding this tag (repeatable: every one)', repeatable)
    .option('--any-tag <tag>', 'only jobs holding at least one of these tags (repeatable)', repeatable)
    .option('--id-prefix <prefix>', 'only jobs whose id starts with this')
    .option('--limit <n>', `jobs per page, ${LIMITS.limit.min} to ${LIMITS.limit.max}`, '50')
    .option('--cursor <cursor>', 'the page after this cursor (printed at the end of the previous page)')
    .option('--json', 'one JSON object per line; a last line {"next_cursor": …} when there is another page')
    .action(async (o: ListFlags) => {
      const options: ListJobsOptions = { limit: bounded(o.limit, '--limit', LIMITS.limit) };
      if (o.from !== undefined) options.from = parseIsoWithOffset(o.from, '--from');
      if (o.to !== undefined) options.to = parseIsoWithOffset(o.to, '--to');
      if (o.task !== undefined) options.task = o.task;
      if (o.queue !== undefined) options.queue = o.queue;
      if (o.tag !== undefined) options.tags = o.tag;
      if (o.anyTag !== undefined) options.anyTags = o.anyTag;
      if (o.idPrefix !== undefined) options.idPrefix = o.idPrefix;
      if (o.cursor !== undefined) options.cursor = o.cursor;
      const page = await ctx.withApp((a) => listJobs(a.store, a.config.taskDefaultQueue, options));
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
