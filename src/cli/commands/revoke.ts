/**
 * `revoke ID...`: deletes scheduled jobs for good. Every id is tried; any that was not scheduled is
 * named on stderr and the command exits 1.
 *
 * `revoke QUERY` (`--tag T`, `--from … --to …`, `--task`, `--queue`, … see options.ts): deletes
 * every scheduled job matching the query, each atomically on its own (a job a dispatcher claimed
 * meanwhile is skipped and counted), with a dry run, a question and progress as every bulk action
 * (../bulk.ts).
 */
import type { Command } from 'commander';
import { revokeWhere } from '../../admin/bulk.js';
import { getScheduler } from '../../client/scheduler.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';
import { runBulk, withBulkFlags, type BulkFlags } from '../bulk.js';
import { queryOf, withQueryFlags, type QueryFlags } from '../options.js';

interface RevokeFlags extends QueryFlags, BulkFlags {}

export function addRevokeCommand(program: Command, ctx: CliContext): void {
  withBulkFlags(
    withQueryFlags(
      program
        .command('revoke')
        .description('delete scheduled jobs for good, by id or by query; exits 1 naming any id that was not scheduled')
        .argument('[id...]', 'task ids (or none, with a query)'),
      'query: ',
    ),
    'revoke',
  )
    .addHelpText(
      'after',
      '\nBy id, --json prints {"revoked": [...], "notFound": [...]}; by query {"matched", "revoked", "skipped", "missing", ...}.\n' +
        '\nExamples:\n  celery-longterm-scheduler revoke 3f2c…\n  celery-longterm-scheduler revoke --tag tenant:42 --dry-run\n',
    )
    .action(async (ids: string[], o: RevokeFlags) => {
      const query = queryOf(o);
      if (query === undefined) {
        if (ids.length === 0) throw new ValidationError(['name the jobs to revoke: task ids, or a query (e.g. --tag tenant:42; see --help)']);
        if (o.dryRun || o.yes || o.after !== undefined)
          throw new ValidationError(['--dry-run, --yes and --after go with a query (e.g. --tag tenant:42), not with task ids']);
        return revokeIds(ctx, ids, o.json === true);
      }
      if (ids.length > 0) throw new ValidationError(['pass task ids or a query, not both']);
      await runBulk(ctx, {
        verb: 'revoke',
        past: 'revoked',
        warning: ' for good',
        query,
        flags: o,
        run: (a, options) => revokeWhere(a.store, a.config.taskDefaultQueue, query, options),
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
