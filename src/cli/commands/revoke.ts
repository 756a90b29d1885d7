/**
 * `revoke ID...`: deletes scheduled jobs for good. Every id is tried; any that was not scheduled is
 * named on stderr and the command exits 1.
 *
 * `revoke --tag T [--from … --to … --task … --queue … --any-tag … --id-prefix …]`: deletes every
 * scheduled job matching the query, each atomically on its own (a job a dispatcher claimed
 * meanwhile is skipped and counted). `--dry-run` prints the count and a sample and changes
 * nothing. Without `--yes` it shows the count and asks on a terminal, and refuses (exit 2) when
 * there is none to ask on.
 */
import type { Command } from 'commander';
import { countWhere, revokeWhere } from '../../admin/bulk.js';
import { getScheduler } from '../../client/scheduler.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';
import { humanTime, jobJson } from '../format.js';
import { queryOf, withQueryFlags, type QueryFlags } from '../options.js';

interface RevokeFlags extends QueryFlags {
  json?: boolean;
  dryRun?: boolean;
  yes?: boolean;
}

export function addRevokeCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  withQueryFlags(
    program
      .command('revoke')
      .description('delete scheduled jobs for good, by id or by query; exits 1 naming any id that was not scheduled')
      .argument('[id...]', 'task ids (or none, with a query)'),
    'query: ',
  )
    .option('--dry-run', 'with a query: print how many jobs match and a few of them; change nothing')
    .option('--yes', 'with a query: revoke without asking')
    .option('--json', 'print {"revoked": [...], "notFound": [...]} (by query: {"matched", "revoked", "skipped"})')
    .addHelpText('after', '\nExamples:\n  celery-longterm-scheduler revoke 3f2c…\n  celery-longterm-scheduler revoke --tag tenant:42 --dry-run\n')
    .action(async (ids: string[], o: RevokeFlags) => {
      const query = queryOf(o);
      if (query === undefined) {
        if (ids.length === 0) throw new ValidationError(['name the jobs to revoke: task ids, or a query (e.g. --tag tenant:42; see --help)']);
        if (o.dryRun || o.yes) throw new ValidationError(['--dry-run and --yes go with a query (e.g. --tag tenant:42), not with task ids']);
        return revokeIds(ctx, ids, o.json === true);
      }
      if (ids.length > 0) throw new ValidationError(['pass task ids or a query, not both']);
      await ctx.withApp(async (a) => {
        const queue = a.config.taskDefaultQueue;
        const nothingMatched = () =>
          io.stdout(o.json ? `${JSON.stringify({ matched: 0, revoked: 0, skipped: 0 })}\n` : 'no scheduled jobs match; nothing revoked\n');
        // counted first only to show or ask: with --yes the revoke itself reads the matches once
        const { count, sample } = o.dryRun || !o.yes ? await countWhere(a.store, queue, query) : { count: undefined, sample: [] };
        if (o.dryRun) {
          if (o.json) io.stdout(`${JSON.stringify({ matched: count, sample: sample.map(jobJson) })}\n`);
          else {
            io.stdout(`would revoke ${count} job${count === 1 ? '' : 's'}${count ? '; the first:' : ''}\n`);
            for (const j of sample) io.stdout(`  ${j.id}  ${humanTime(j.dueAtUnix)}  ${j.task}\n`);
          }
          return;
        }
        if (count === 0) {
          return nothingMatched();
        }
        if (count !== undefined) {
          const answer = await io.ask?.(`revoke ${count} scheduled job${count === 1 ? '' : 's'} for good? type yes to go on: `);
          if (answer === undefined)
            throw new ValidationError([
              `this revokes ${count} job${count === 1 ? '' : 's'} and there is no terminal to ask on; pass --yes to go on (or --dry-run to see them first)`,
            ]);
          if (answer.trim().toLowerCase() !== 'yes') {
            io.stderr('not confirmed; nothing revoked\n');
            throw new ExitWith(EXIT.USAGE);
          }
        }
        const tty = io.isTty?.() === true;
        const summary = await revokeWhere(a.store, queue, query, {
          ...(tty && { onProgress: (p) => io.stderr(`\rrevoked ${p.changed}${count === undefined ? '' : ` of ${count}`}…`) }),
        });
        if (tty) io.stderr('\n');
        if (summary.matched === 0) {
          return nothingMatched();
        }
        if (o.json) io.stdout(`${JSON.stringify({ matched: summary.matched, revoked: summary.changed, skipped: summary.skipped })}\n`);
        else
          io.stdout(
            `revoked ${summary.changed} job${summary.changed === 1 ? '' : 's'}` +
              (summary.skipped ? `; skipped ${summary.skipped} a dispatcher claimed (or that went) meanwhile` : '') +
              ` in ${(summary.elapsedMs / 1000).toFixed(1)} s\n`,
          );
      });
    });
}

async function revokeIds(ctx: CliContext, ids: string[], json: boolean): Promise<void> {
  const { io } = ctx;
  const notFound: string[] = [];
  const revoked: string[] = [];
  await ctx.withApp(async (a) => {
    const scheduler = getScheduler(a);
    for (const id of ids) ((await scheduler.revoke(id)) ? revoked : notFound).push(id);
  });
  if (json) io.stdout(`${JSON.stringify({ revoked, notFound })}\n`);
  else if (revoked.length) io.stdout(`revoked ${revoked.length} job${revoked.length === 1 ? '' : 's'}\n`);
  if (notFound.length) {
    io.stderr(`not scheduled (unknown, or already sent): ${notFound.join(', ')}\n`);
    throw new ExitWith(EXIT.FAILURE);
  }
}
