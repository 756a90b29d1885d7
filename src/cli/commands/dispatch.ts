/**
 * `dispatch`: one pass, for cron: sends every job due at or before --timestamp and prints a summary.
 * Exits 1 when any job failed or became a dead letter, or the pass stopped on an error; with
 * --lockfile it refuses to run while another live run holds the lock, and always releases it.
 */
import type { Command } from 'commander';
import { parseIsoWithOffset } from '../../celery/time.js';
import { getScheduler } from '../../client/scheduler.js';
import { redactUrlsIn } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';
import { LIMITS, bounded, formatMs } from '../format.js';
import { acquireLock } from '../lockfile.js';
import { retryOptions, withRetryFlags, type RetryFlags } from '../options.js';

export function addDispatchCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  withRetryFlags(program.command('dispatch'))
    .description('send every job due at or before --timestamp to the broker (run it from cron, or use a daemon)')
    .option('--timestamp <iso8601|now>', 'send jobs due at or before this time', 'now')
    .option('--lockfile <path>', 'refuse to run while another run holds this lock file')
    .option('--batch-size <n>', `jobs per claim and per broker round trip, ${LIMITS.batchSize.min} to ${LIMITS.batchSize.max}`, '500')
    .option('--json', 'print the summary as JSON')
    .action(async (o: { timestamp: string; lockfile?: string; batchSize: string; json?: boolean } & RetryFlags) => {
      const until = o.timestamp === 'now' ? undefined : parseIsoWithOffset(o.timestamp, '--timestamp');
      const batchSize = bounded(o.batchSize, '--batch-size', LIMITS.batchSize);
      const retry = retryOptions(o);
      const lock = o.lockfile !== undefined ? acquireLock(o.lockfile) : undefined;
      const logger = ctx.logger();
      try {
        const summary = await ctx.withApp((a) => getScheduler(a).dispatchDue(until, { batchSize, ...retry, logger }));
        const { sent, failed, dead, corrupt, elapsedMs } = summary;
        if (o.json) {
          io.stdout(
            `${JSON.stringify({ sent, failed, dead, corrupt, elapsedMs: Math.round(elapsedMs * 10) / 10, ...(summary.error && { error: redactUrlsIn(summary.error.message) }) })}\n`,
          );
        } else {
          io.stdout(`sent ${sent}, failed ${failed}, dead letters ${dead}, elapsed ${formatMs(elapsedMs)}\n`);
        }
        if (summary.error) {
          io.stderr(`error: ${redactUrlsIn(summary.error.message)}\n`);
          throw new ExitWith(EXIT.FAILURE);
        }
        if (dead > 0) io.stderr(`${dead} job${dead === 1 ? '' : 's'} became dead letters and will not be sent; see \`dead list\`\n`);
        if (failed > 0 || dead > 0) throw new ExitWith(EXIT.FAILURE);
      } finally {
        lock?.release();
      }
    });
}
