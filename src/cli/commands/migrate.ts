/**
 * `migrate --from URL --to URL`: copies every scheduled job from one store to another, ids, due
 * times and options intact; safe to run twice. Both URLs are checked before either store is
 * reached, and both stores are closed whatever happens. A signal stops it between pages: it then
 * prints the cursor to resume `--after` and exits 1. It reads neither --broker nor --backend.
 */
import type { Command } from 'commander';
import { migrateJobs, type MigrateProgress } from '../../admin/copy-jobs.js';
import { createStore } from '../../stores/registry.js';
import type { CliContext, CliIo } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';
import { LIMITS, bounded, formatMs } from '../format.js';

export function addMigrateCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  program
    .command('migrate')
    .description('copy every scheduled job from one store to another (ids, due times and options intact); safe to run twice')
    .requiredOption('--from <url>', 'the store to copy from (any kind, including a Redis store the Python package wrote)')
    .requiredOption('--to <url>', 'the store to copy to')
    .option('--from-key-prefix <prefix>', 'key prefix of a Redis source (default none: the original layout)')
    .option('--to-key-prefix <prefix>', 'key prefix of a Redis target (default none)')
    .option('--move', 'remove each job from the source once the target holds it')
    .option('--batch-size <n>', `jobs per page, ${LIMITS.batchSize.min} to ${LIMITS.batchSize.max}`, '1000')
    .option('--after <cursor>', 'resume after this cursor (printed when a run is interrupted)')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', '\nExample:\n  celery-longterm-scheduler migrate --from redis://localhost:6379/1 --to sqlite:///celery-longterm-scheduler.db\n')
    .action(
      async (o: {
        from: string;
        to: string;
        fromKeyPrefix?: string;
        toKeyPrefix?: string;
        move?: boolean;
        batchSize: string;
        after?: string;
        json?: boolean;
      }) => {
        const batchSize = bounded(o.batchSize, '--batch-size', LIMITS.batchSize);
        const migrate = ctx.globals().migrate === true;
        // both URLs are checked before either store is reached
        const logger = ctx.logger();
        const from = createStore(o.from, { ...(o.fromKeyPrefix && { keyPrefix: o.fromKeyPrefix }), logger });
        let to: ReturnType<typeof createStore>;
        try {
          to = createStore(o.to, { ...(o.toKeyPrefix && { keyPrefix: o.toKeyPrefix }), migrate, logger });
        } catch (err) {
          await from.close();
          throw err;
        }
        const stop = new AbortController();
        const unsubscribe = io.onSignal?.(() => stop.abort());
        try {
          try {
            const bar = progressBar(io, o.json === true);
            const summary = await migrateJobs(from, to, {
              batchSize,
              ...(o.move && { move: true }),
              ...(o.after !== undefined && { after: o.after }),
              onProgress: bar.update,
              signal: stop.signal,
            });
            bar.done();
            const rate = summary.elapsedMs > 0 ? Math.round((summary.seen / summary.elapsedMs) * 1000) : 0;
            if (o.json) io.stdout(`${JSON.stringify({ ...summary, elapsedMs: Math.round(summary.elapsedMs) })}\n`);
            else {
              const moved = o.move
                ? `, removed from source ${summary.removed}${summary.leftToSource ? `, left to the source's dispatcher ${summary.leftToSource}` : ''}${summary.resumed ? `, finished ${summary.resumed} an interrupted move had held` : ''}`
                : '';
              io.stdout(
                `copied ${summary.copied}, already there ${summary.skipped}${moved}; ${summary.seen} jobs in ${formatMs(summary.elapsedMs)} (${rate}/s)\n`,
              );
            }
            if (summary.held > 0) {
              io.stderr(
                `warning: ${summary.held} jobs are held (not sent) by an interrupted migrate --move that this run could not finish; run that migrate --move again, with the same --from\n`,
              );
            }
            if (summary.cursor !== undefined) {
              io.stderr(`interrupted; resume with --after '${summary.cursor}'\n`);
              throw new ExitWith(EXIT.FAILURE);
            }
          } finally {
            await to.close();
          }
        } finally {
          unsubscribe?.();
          await from.close();
        }
      },
    );
}

/** A progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise. */
function progressBar(io: CliIo, quiet: boolean): { update: (p: MigrateProgress) => void; done: () => void } {
  const tty = io.isTty?.() ?? false;
  let lastDecile = -1;
  let drawn = false;
  return {
    update: (p) => {
      if (quiet) return;
      const total = Math.max(p.total, p.seen);
      const share = total === 0 ? 1 : p.seen / total;
      const line = `${Math.floor(share * 100)
        .toString()
        .padStart(3)}% ${p.seen}/${total} jobs (copied ${p.copied}, already there ${p.skipped})`;
      if (tty) {
        const width = 30;
        const full = Math.round(share * width);
        io.stderr(`\r[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${line}`);
        drawn = true;
      } else if (Math.floor(share * 10) > lastDecile) {
        lastDecile = Math.floor(share * 10);
        io.stderr(`${line}\n`);
      }
    },
    done: () => {
      if (drawn) io.stderr('\n');
    },
  };
}
