/**
 * `stats`: how many jobs are scheduled, in flight, dead and overdue, the next due time, and counts
 * per task and per UTC day for the next --days days (days with none are left out of the text).
 */
import type { Command } from 'commander';
import { MAX_STATS_DAYS, jobStats } from '../../admin/scheduled-jobs.js';
import { isoOrUndefined } from '../../celery/time.js';
import type { CliContext } from '../context.js';
import { bounded, formatMs, outOfRange, relative } from '../format.js';

export function addStatsCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  program
    .command('stats')
    .description('how many jobs are scheduled, overdue and in flight; per task, and per day for the next 30 days')
    .option('--days <n>', `days to count ahead, 1 to ${MAX_STATS_DAYS} (ten years)`, '30')
    .option('--json', 'print the numbers as JSON')
    .action(async (o: { days: string; json?: boolean }) => {
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
