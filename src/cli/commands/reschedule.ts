/**
 * `reschedule ID`: moves a scheduled job to a new time (exactly one of --eta or --countdown),
 * atomically; fails (exit 1) if a dispatcher already claimed or sent it. The new time must be one
 * Python's datetime can hold.
 */
import type { Command } from 'commander';
import { rescheduleJob } from '../../admin/scheduled-jobs.js';
import { isRepresentableMs, parseIsoWithOffset } from '../../celery/time.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { relative, seconds } from '../format.js';

export function addRescheduleCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  program
    .command('reschedule')
    .description('move a scheduled job to a new time, atomically; fails (exit 1) if a dispatcher already claimed or sent it')
    .argument('<id>', 'task id')
    .option('--eta <iso8601>', 'the new due time, with a UTC offset')
    .option('--countdown <seconds>', 'the new due time, this many seconds from now')
    .option('--json', 'print {"id", "dueAt"}')
    .action(async (id: string, o: { eta?: string; countdown?: string; json?: boolean }) => {
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
