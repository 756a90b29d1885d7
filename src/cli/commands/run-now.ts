/**
 * `run-now ID`: makes a scheduled job due immediately, atomically, like `reschedule` to now; a
 * running dispatcher sends it at once (SQLite: within its poll interval).
 */
import type { Command } from 'commander';
import { rescheduleJob } from '../../admin/scheduled-jobs.js';
import type { CliContext } from '../context.js';

export function addRunNowCommand(program: Command, ctx: CliContext): void {
  program
    .command('run-now')
    .description('make a scheduled job due immediately; a running dispatcher sends it at once (SQLite: within its poll interval)')
    .argument('<id>', 'task id')
    .action(async (id: string) => {
      await ctx.withApp(async (a) => rescheduleJob(a.store, id, a.now(), 'run now'));
      ctx.io.stdout(`${id} is due now\n`);
    });
}
