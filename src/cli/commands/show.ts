/**
 * `show ID`: everything stored for one job and its state (scheduled, or claimed by a dispatcher
 * sending it now). An unknown id is printed as such (on stdout, so scripts can read it) and exits 1.
 */
import type { Command } from 'commander';
import { showJob } from '../../admin/scheduled-jobs.js';
import { isoOrUndefined } from '../../celery/time.js';
import type { CliContext } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';
import { jobJson, outOfRange, relative } from '../format.js';

export function addShowCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  program
    .command('show')
    .description('everything stored for one job, and its state (scheduled, claimed, unknown); exit 1 when unknown')
    .argument('<id>', 'task id')
    .option('--json', 'print it as JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const job = await ctx.withApp((a) => showJob(a.store, a.config.taskDefaultQueue, id));
      if (!job) {
        if (o.json) io.stdout(`${JSON.stringify({ id, state: 'unknown' })}\n`);
        else io.stdout(`id     ${id}\nstate  unknown (not in the store: never scheduled, already sent, or revoked)\n`);
        throw new ExitWith(EXIT.FAILURE);
      }
      if (o.json) {
        io.stdout(`${JSON.stringify({ ...jobJson(job), stored: JSON.parse(job.entry) as unknown })}\n`);
        return;
      }
      const rows: [string, string][] = [
        ['id', job.id],
        ['state', job.state === 'claimed' ? 'claimed (a dispatcher is sending it now)' : 'scheduled'],
        [job.state === 'claimed' ? 'lease ends' : 'due', `${isoOrUndefined(job.dueAtUnix) ?? outOfRange(job.dueAtUnix)} (${relative(job.dueAt, new Date())})`],
        ['task', job.task],
        ['args', JSON.stringify(job.args)],
        ['kwargs', JSON.stringify(job.kwargs)],
        ['queue', job.queue ?? '-'],
      ];
      if (job.exchange !== undefined) rows.push(['exchange', job.exchange]);
      if (job.routingKey !== undefined) rows.push(['routing key', job.routingKey]);
      if (job.priority !== undefined) rows.push(['priority', String(job.priority)]);
      if (job.key !== undefined) rows.push(['key', job.key]);
      if (job.tags !== undefined) rows.push(['tags', job.tags.join(', ')]);
      if (job.canvas?.chain) rows.push(['then', job.canvas.chain.join(' → ')]);
      if (job.canvas?.groupId !== undefined)
        rows.push(['group', `${job.canvas.groupId}${job.canvas.groupIndex !== undefined ? ` (index ${job.canvas.groupIndex})` : ''}`]);
      if (job.canvas?.chordBody !== undefined) rows.push(['chord body', job.canvas.chordBody]);
      if (job.corrupt !== undefined) rows.push(['corrupt', job.corrupt]);
      rows.push(['stored', job.entry]);
      const w = Math.max(...rows.map(([k]) => k.length));
      io.stdout(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}\n`).join(''));
    });
}
