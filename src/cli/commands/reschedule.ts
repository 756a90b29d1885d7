/**
 * `reschedule ID --eta T | --countdown S`: moves a scheduled job to a new time, atomically; fails
 * (exit 1) if a dispatcher already claimed or sent it. The new time must be one Python's datetime
 * can hold.
 *
 * `reschedule QUERY --eta T | --countdown S | --shift +2h | --spread 30m [--jitter]`: moves every
 * scheduled job
 * matching the query, each atomically on its own, with a dry run, a question and progress as
 * every bulk action (../bulk.ts). (`--to` is the query's due range, as in `list`, so the new time
 * is `--eta`, as for one job.) `--spread` spreads the matches over the window from `--from` for the
 * given length (evenly in due order, or at random times with `--jitter`), so it needs `--from`
 * and `--to`: the pile-up to spread.
 */
import type { Command } from 'commander';
import { rescheduleWhere, type Move } from '../../admin/bulk.js';
import { rescheduleJob } from '../../admin/scheduled-jobs.js';
import { isRepresentableMs, parseIsoWithOffset } from '../../celery/time.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { runBulk, withBulkFlags, type BulkFlags } from '../bulk.js';
import { relative, seconds } from '../format.js';
import { duration, queryOf, withQueryFlags, type QueryFlags } from '../options.js';

interface RescheduleFlags extends QueryFlags, BulkFlags {
  eta?: string;
  countdown?: string;
  shift?: string;
  spread?: string;
  jitter?: boolean;
}

export function addRescheduleCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  withBulkFlags(
    withQueryFlags(
      program
        .command('reschedule')
        .description('move a scheduled job (or every job a query matches) to a new time, atomically; exit 1 if a dispatcher already claimed or sent it')
        .argument('[id]', 'task id (or none, with a query)')
        .option('--eta <iso8601>', 'the new due time, with a UTC offset (by query: of every match)')
        .option('--countdown <seconds>', 'the new due time, this many seconds from now (by query: of every match)'),
      'query: ',
    )
      .option('--shift <duration>', 'by query: move every match by this much, e.g. +2h, -30m, +1d')
      .option('--spread <duration>', 'by query: spread the matches over this long a window from --from, e.g. 30m (needs --from and --to)')
      .option('--jitter', 'with --spread: at random times in the window instead of evenly'),
    'reschedule',
  )
    .addHelpText(
      'after',
      '\nExamples:\n  celery-longterm-scheduler reschedule 3f2c… --eta 2027-01-01T09:00:00Z\n' +
        '  celery-longterm-scheduler reschedule --from 2027-03-01T02:00:00Z --to 2027-03-01T04:00:00Z --shift +2h --dry-run\n' +
        '  celery-longterm-scheduler reschedule --from 2027-01-01T09:00:00Z --to 2027-01-01T09:00:00Z --spread 30m --yes\n' +
        '  celery-longterm-scheduler reschedule --tag tenant:42 --eta 2027-02-01T00:00:00Z --yes\n',
    )
    .action(async (id: string | undefined, o: RescheduleFlags) => {
      const query = queryOf(o);
      const byQuery = [o.shift, o.spread].filter((v) => v !== undefined).length;
      const moves = byQuery + [o.eta, o.countdown].filter((v) => v !== undefined).length;
      if (id === undefined) {
        if (query === undefined) throw new ValidationError(['name the job to move (a task id) or a query (e.g. --tag tenant:42; see --help)']);
        if (moves !== 1) throw new ValidationError(['by query, pass exactly one of --eta ISO8601, --countdown SECONDS, --shift DURATION or --spread DURATION']);
        if (o.jitter && o.spread === undefined) throw new ValidationError(['--jitter goes with --spread']);
        const move: Move =
          o.eta !== undefined
            ? { to: parseIsoWithOffset(o.eta, '--eta') }
            : o.countdown !== undefined
              ? { to: countdownDate(new Date(), seconds(o.countdown, '--countdown')) }
              : o.shift !== undefined
                ? { shiftSeconds: duration(o.shift, '--shift', true) }
                : { spreadSeconds: duration(o.spread ?? '', '--spread'), ...(o.jitter && { jitter: true }) };
        if ('spreadSeconds' in move && (query.from === undefined || query.to === undefined))
          throw new ValidationError(['--spread needs the pile-up to spread: pass --from and --to (the window starts at --from)']);
        await runBulk(ctx, {
          verb: 'reschedule',
          past: 'rescheduled',
          query,
          flags: o,
          run: (a, options) => rescheduleWhere(a.store, a.config.taskDefaultQueue, query, move, options),
        });
        return;
      }
      if (query !== undefined || byQuery > 0 || o.dryRun || o.yes || o.after !== undefined)
        throw new ValidationError(['--shift, --spread and the bulk flags go with a query, not with a task id (move one job with --eta or --countdown)']);
      if ((o.eta === undefined) === (o.countdown === undefined)) throw new ValidationError(['pass exactly one of --eta ISO8601 or --countdown SECONDS']);
      const dueAt = await ctx.withApp(async (a) => {
        const at = o.eta !== undefined ? parseIsoWithOffset(o.eta, '--eta') : countdownDate(a.now(), seconds(o.countdown ?? '', '--countdown'));
        await rescheduleJob(a.store, id, at);
        return at;
      });
      if (o.json) io.stdout(`${JSON.stringify({ id, dueAt: dueAt.toISOString() })}\n`);
      else io.stdout(`rescheduled ${id} to ${dueAt.toISOString()} (${relative(dueAt, new Date())})\n`);
    });
}

/** The time `countdown` seconds after `now`; a ValidationError when Python could not hold it. */
function countdownDate(now: Date, countdown: number): Date {
  if (countdown < 0) throw new ValidationError([`--countdown ${countdown} is negative; pass seconds from now (0 or more), or use run-now`]);
  const ms = now.getTime() + countdown * 1000;
  if (!isRepresentableMs(ms))
    throw new ValidationError([
      `--countdown ${countdown} lands outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, what Python's datetime (and so Celery) can hold`,
    ]);
  return new Date(ms);
}
