/**
 * `run-now ID`: makes a scheduled job due immediately, atomically, like `reschedule` to now; a
 * running dispatcher sends it at once (SQLite: within its poll interval).
 *
 * `run-now QUERY`: the same for every scheduled job matching the query (those due already are
 * left as they are), each atomically on its own, as every bulk action (../bulk.ts).
 */
import type { Command } from 'commander';
import { runNowWhere } from '../../admin/bulk.js';
import { rescheduleJob } from '../../admin/scheduled-jobs.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { runBulk, withBulkFlags, type BulkFlags } from '../bulk.js';
import { queryOf, withQueryFlags, type QueryFlags } from '../options.js';

export function addRunNowCommand(program: Command, ctx: CliContext): void {
  withBulkFlags(
    withQueryFlags(
      program
        .command('run-now')
        .description(
          'make a scheduled job (or every job a query matches) due immediately; a running dispatcher sends it at once (SQLite: within its poll interval)',
        )
        .argument('[id]', 'task id (or none, with a query)'),
      'query: ',
    ),
    'make due',
  ).action(async (id: string | undefined, o: QueryFlags & BulkFlags) => {
    const query = queryOf(o);
    if (id === undefined) {
      if (query === undefined) throw new ValidationError(['name the job to run now (a task id) or a query (e.g. --tag tenant:42; see --help)']);
      await runBulk(ctx, {
        verb: 'make due now',
        past: 'made due',
        query,
        flags: o,
        run: (a, options) => runNowWhere(a.store, a.config.taskDefaultQueue, query, a.now(), options),
      });
      return;
    }
    if (query !== undefined || o.dryRun || o.yes || o.after !== undefined || o.json)
      throw new ValidationError(['pass a task id or a query (with --dry-run, --yes, --after, --json), not both']);
    await ctx.withApp(async (a) => rescheduleJob(a.store, id, a.now(), 'run now'));
    ctx.io.stdout(`${id} is due now\n`);
  });
}
