/**
 * `dead list | show | retry | purge`: the dead letters of the `--backend` store (jobs the
 * dispatcher will not send as they are; see the dispatcher). `retry` and `purge` take ids or
 * --all, never both; any id they could not act on is named and the command exits 1.
 */
import type { Command } from 'commander';
import type { DeadLetterInfo } from '../../admin/dead-letters.js';
import { isoOrUndefined } from '../../celery/time.js';
import { getScheduler } from '../../client/scheduler.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';
import { LIMITS, bounded, clip, humanTime, printPage } from '../format.js';

export function addDeadCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const dead = program
    .command('dead')
    .description(
      'dead letters: jobs that will not be sent as they are (corrupt, unsupported by this dispatcher, too large for the broker, or refused on every attempt)',
    )
    .addHelpText(
      'after',
      "\nA dead letter keeps the job's entry, the reason (corrupt, unsupported, rejected, max_attempts), the last error, its attempts and times.\n" +
        '`retry` schedules it again, due now, with its attempts cleared; `purge` deletes it for good.\n',
    );

  dead
    .command('list')
    .description('dead letters, oldest first, a page at a time')
    .option('--limit <n>', `dead letters per page, ${LIMITS.limit.min} to ${LIMITS.limit.max}`, '50')
    .option('--cursor <cursor>', 'the page after this cursor (printed at the end of the previous page)')
    .option('--json', 'one JSON object per line; a last line {"next_cursor": …} when there is another page')
    .action(async (o: { limit: string; cursor?: string; json?: boolean }) => {
      const limit = bounded(o.limit, '--limit', LIMITS.limit);
      const page = await ctx.withApp((a) => getScheduler(a).deadLetters({ limit, ...(o.cursor !== undefined && { cursor: o.cursor }) }));
      printPage(
        io.stdout,
        { items: page.letters, cursor: page.cursor },
        {
          json: o.json === true,
          toJson: deadJson,
          headers: ['ID', 'DIED (UTC)', 'REASON', 'ATTEMPTS', 'TASK', 'ERROR'],
          row: (d) => [clip(d.id, 40), humanTime(d.diedAt), d.reason, String(d.attempts), clip(d.task, 40), clip(d.error, 100)],
          noun: ['dead letter', 'dead letters'],
          empty: 'no dead letters',
        },
      );
    });

  dead
    .command('show')
    .description('everything kept for one dead letter; exit 1 when there is none with this id')
    .argument('<id>', 'task id')
    .option('--json', 'print it as JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const d = await ctx.withApp((a) => getScheduler(a).deadLetter(id));
      if (!d) {
        if (o.json) io.stdout(`${JSON.stringify({ id, state: 'not dead' })}\n`);
        else io.stdout(`id     ${id}\nstate  not a dead letter (never one, or already retried or purged)\n`);
        throw new ExitWith(EXIT.FAILURE);
      }
      if (o.json) {
        io.stdout(`${JSON.stringify({ ...deadJson(d), entry: d.entry })}\n`);
        return;
      }
      const rows: [string, string][] = [
        ['id', d.id],
        ['state', 'dead letter (never sent until retried)'],
        ['reason', d.reason],
        ['error', d.error],
        ['attempts', String(d.attempts)],
        ['task', d.task],
        ['due', humanTime(d.dueAt)],
        ...(d.firstFailedAt !== undefined ? ([['first failed', humanTime(d.firstFailedAt)]] as [string, string][]) : []),
        ['died', humanTime(d.diedAt)],
        ['stored', d.entry ?? '(no entry: its key was missing)'],
      ];
      const w = Math.max(...rows.map(([k]) => k.length));
      io.stdout(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}\n`).join(''));
    });

  dead
    .command('retry')
    .description('schedule dead letters again, due now, with their attempts cleared; exit 1 naming any that could not be')
    .argument('[id...]', 'task ids')
    .option('--all', 'every dead letter')
    .option('--json', 'print {"retried": [...], "notDead": [...], "idTaken": [...], "noEntry": [...]}')
    .action(async (ids: string[], o: { all?: boolean; json?: boolean }) => {
      const which = target(ids, o.all, 'retry');
      const r = await ctx.withApp((a) => getScheduler(a).retryDead(which));
      if (o.json) io.stdout(`${JSON.stringify(r)}\n`);
      else {
        const left = [
          r.notDead.length ? `not dead letters: ${r.notDead.join(', ')}` : '',
          r.idTaken.length ? `a scheduled job holds the id (left as they are): ${r.idTaken.join(', ')}` : '',
          r.noEntry.length ? `no entry to schedule (left as they are; purge them): ${r.noEntry.join(', ')}` : '',
        ].filter(Boolean);
        io.stdout(`retried ${r.retried.length}\n`);
        if (left.length) io.stderr(`${left.join('; ')}\n`);
      }
      if (r.notDead.length || r.idTaken.length || r.noEntry.length) throw new ExitWith(EXIT.FAILURE);
    });

  dead
    .command('purge')
    .description('delete dead letters for good; exit 1 naming any id that was not one')
    .argument('[id...]', 'task ids')
    .option('--all', 'every dead letter')
    .option('--json', 'print {"purged": n, "notDead": [...]}')
    .action(async (ids: string[], o: { all?: boolean; json?: boolean }) => {
      const which = target(ids, o.all, 'purge');
      const r = await ctx.withApp((a) => getScheduler(a).purgeDead(which));
      if (o.json) io.stdout(`${JSON.stringify(r)}\n`);
      else {
        io.stdout(`purged ${r.purged}\n`);
        if (r.notDead.length) io.stderr(`not dead letters: ${r.notDead.join(', ')}\n`);
      }
      if (r.notDead.length) throw new ExitWith(EXIT.FAILURE);
    });
}

function target(ids: string[], all: boolean | undefined, verb: string): string[] | 'all' {
  if (all && ids.length) throw new ValidationError([`pass ids or --all to ${verb}, not both`]);
  if (all) return 'all';
  if (ids.length === 0) throw new ValidationError([`pass the ids of the dead letters to ${verb}, or --all; see \`dead list\``]);
  return ids;
}

/** A dead letter as JSON for programs: times as unix seconds and ISO strings; the entry only in `show`. */
function deadJson(d: DeadLetterInfo): Record<string, unknown> {
  const { entry: _entry, ...rest } = d;
  return { ...rest, diedAtIso: isoOrUndefined(d.diedAt) ?? null, dueAtIso: isoOrUndefined(d.dueAt) ?? null };
}
