/**
 * `stats`: how many jobs are scheduled, in flight, dead and overdue, the next due time, and counts
 * per task and per UTC day for the next --days days (days with none are left out of the text).
 *
 * `stats --by minute|hour|day [--from T --to T] [QUERY]`: the future load, the jobs matching the
 * query due per UTC minute, hour or day over the range (default: from now, a day of minutes or 30
 * days of hours or days), counted from the store's indexes; the busiest buckets first, then one
 * line with a bar per bucket holding any.
 */
import type { Command } from 'commander';
import { MAX_STATS_DAYS, jobStats } from '../../admin/scheduled-jobs.js';
import { histogramWhere, type HistogramUnit } from '../../admin/bulk.js';
import { ValidationError } from '../../util/errors.js';
import { queryOf, withQueryFlags, type QueryFlags } from '../options.js';
import { isoOrUndefined } from '../../celery/time.js';
import type { CliContext } from '../context.js';
import { bounded, formatMs, outOfRange, relative } from '../format.js';

export function addStatsCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  withQueryFlags(
    program
      .command('stats')
      .description('how many jobs are scheduled, overdue and in flight; per task, and per day for the next 30 days; with --by, the future load of a query')
      .option('--days <n>', `days to count ahead, 1 to ${MAX_STATS_DAYS} (ten years)`, '30')
      .option('--by <unit>', 'count the jobs due per minute, hour or day over --from..--to (a histogram of the future load)'),
    'with --by: ',
  )
    .option('--json', 'print the numbers as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  celery-longterm-scheduler stats --by hour --from 2027-01-04T00:00:00Z --to 2027-01-05T00:00:00Z --task app.tasks.invoice\n',
    )
    .action(async (o: QueryFlags & { days: string; by?: string; json?: boolean }) => {
      if (o.by !== undefined) return histogram(ctx, o);
      if (queryOf(o) !== undefined)
        throw new ValidationError(['a query (--from, --to, --tag, ...) goes with --by minute|hour|day, the histogram of its future load']);
      const days = bounded(o.days, '--days', { min: 1, max: MAX_STATS_DAYS });
      const s = await ctx.withApp((a) => jobStats(a.store, a.now(), { days }));
      if (o.json) {
        io.stdout(
          `${JSON.stringify({ ...s, nextDueAt: s.nextDueAtUnix === undefined ? null : (isoOrUndefined(s.nextDueAtUnix) ?? null), at: s.at.toISOString() })}\n`,
        );
        return;
      }
      const n = (x: number) => x.toLocaleString('en-US');
      const lines = [
        `scheduled   ${n(s.scheduled)}`,
        `in flight   ${n(s.inFlight)}`,
        `dead        ${n(s.dead)}${s.dead ? ' (dead letters: see `dead list`)' : ''}`,
        `overdue     ${n(s.overdue)}${s.overdue ? ` (the oldest is ${formatMs(s.oldestOverdueSeconds * 1000)} late)` : ''}`,
        `next due    ${s.nextDueAt && s.nextDueAtUnix !== undefined ? `${isoOrUndefined(s.nextDueAtUnix) ?? outOfRange(s.nextDueAtUnix)} (${relative(s.nextDueAt, s.at)})` : '-'}`,
      ];
      if (s.byTask.length) {
        lines.push('', 'per task:');
        const w = Math.max(...s.byTask.map((t) => t.task.length));
        for (const t of s.byTask) lines.push(`  ${t.task.padEnd(w)}  ${n(t.count).padStart(8)}`);
      }
      const busy = s.byDay.filter((d) => d.count > 0);
      lines.push('', `per day (UTC, next ${days} days${busy.length < s.byDay.length ? ', days with none left out' : ''}):`);
      for (const d of busy) lines.push(`  ${d.day}  ${n(d.count).padStart(8)}`);
      if (!busy.length) lines.push('  none');
      io.stdout(`${lines.join('\n')}\n`);
    });
}

const DEFAULT_SPAN: Record<HistogramUnit, number> = { minute: 86_400_000, hour: 30 * 86_400_000, day: 30 * 86_400_000 };

async function histogram(ctx: CliContext, o: QueryFlags & { by?: string; json?: boolean }): Promise<void> {
  const { io } = ctx;
  const by = o.by as HistogramUnit;
  if (!['minute', 'hour', 'day'].includes(by)) throw new ValidationError([`--by must be minute, hour or day, got ${JSON.stringify(o.by)}`]);
  const query = queryOf(o) ?? {};
  const h = await ctx.withApp(async (a) => {
    const from = query.from ?? a.now();
    const to = query.to ?? new Date(Math.max(from.getTime(), a.now().getTime()) + DEFAULT_SPAN[by]);
    return histogramWhere(a.store, a.config.taskDefaultQueue, { ...query, from, to }, { by });
  });
  const when = (d: Date) => (by === 'day' ? d.toISOString().slice(0, 10) : d.toISOString().slice(0, 16).replace('T', ' '));
  if (o.json) {
    const b = (x: { start: Date; count: number }) => ({ start: x.start.toISOString(), count: x.count });
    io.stdout(
      `${JSON.stringify({ by, bucketSeconds: h.bucketSeconds, from: h.from.toISOString(), to: h.to.toISOString(), total: h.total, busiest: h.busiest.map(b), buckets: h.buckets.map(b), ...(h.scanned !== undefined && { scanned: h.scanned }) })}\n`,
    );
    return;
  }
  const n = (x: number) => x.toLocaleString('en-US');
  const lines = [`jobs due per ${by} (UTC), ${h.from.toISOString()} to ${h.to.toISOString()}: ${n(h.total)} in all`];
  if (h.scanned !== undefined) lines.push(`(an args match: ${n(h.scanned)} jobs read)`);
  if (h.busiest.length) lines.push(`busiest: ${h.busiest.map((x) => `${when(x.start)} (${n(x.count)})`).join(', ')}`);
  const full = h.buckets.filter((x) => x.count > 0);
  const max = Math.max(1, ...full.map((x) => x.count));
  const width = Math.max(...full.map((x) => n(x.count).length), 1);
  if (full.length) lines.push('');
  for (const x of full) lines.push(`  ${when(x.start)}  ${n(x.count).padStart(width)}  ${'#'.repeat(Math.max(1, Math.round((x.count / max) * 40)))}`);
  if (full.length < h.buckets.length && full.length) lines.push(`  (${n(h.buckets.length - full.length)} empty ${by}s left out)`);
  io.stdout(`${lines.join('\n')}\n`);
}
