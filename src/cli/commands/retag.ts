/**
 * `retag ID... --add T --remove T`: changes the tags of scheduled jobs; exits 1 naming any id that
 * was not scheduled (or would hold more than 32 tags).
 *
 * `retag QUERY --add T --remove T`: the same for every scheduled job matching the query, each
 * atomically on its own, as every bulk action (../bulk.ts). Tags are removed first, then added
 * after those a job keeps.
 */
import type { Command } from 'commander';
import { retagWhere } from '../../admin/bulk.js';
import { ValidationError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';
import { runBulk, withBulkFlags, type BulkFlags } from '../bulk.js';
import { queryOf, repeatable, withQueryFlags, type QueryFlags } from '../options.js';

interface RetagFlags extends QueryFlags, BulkFlags {
  add?: string[];
  remove?: string[];
}

export function addRetagCommand(program: Command, ctx: CliContext): void {
  withBulkFlags(
    withQueryFlags(
      program
        .command('retag')
        .description('add and remove tags of scheduled jobs, by id or by query')
        .argument('[id...]', 'task ids (or none, with a query)')
        .option('--add <tag>', 'a tag to add (repeatable)', repeatable)
        .option('--remove <tag>', 'a tag to remove (repeatable)', repeatable),
      'query: ',
    ),
    'retag',
  )
    .addHelpText('after', '\nExamples:\n  celery-longterm-scheduler retag --tag tenant:42 --remove tenant:42 --add tenant:43 --dry-run\n')
    .action(async (ids: string[], o: RetagFlags) => {
      const change = { ...(o.add && { add: o.add }), ...(o.remove && { remove: o.remove }) };
      if (!o.add?.length && !o.remove?.length) throw new ValidationError(['say what to change: --add TAG and/or --remove TAG']);
      const query = queryOf(o);
      if (query !== undefined) {
        if (ids.length > 0) throw new ValidationError(['pass task ids or a query, not both']);
        await runBulk(ctx, {
          verb: 'retag',
          past: 'retagged',
          query,
          flags: o,
          run: (a, options) => retagWhere(a.store, a.config.taskDefaultQueue, query, change, options),
        });
        return;
      }
      if (ids.length === 0) throw new ValidationError(['name the jobs to retag: task ids, or a query (e.g. --tag tenant:42; see --help)']);
      if (o.dryRun || o.yes || o.after !== undefined) throw new ValidationError(['--dry-run, --yes and --after go with a query, not with task ids']);
      const r = await ctx.withApp((a) => a.store.retagMany(ids, change));
      const done = new Set([...r.changed, ...r.overLimit]);
      const notFound = [...new Set(ids)].filter((id) => !done.has(id));
      if (o.json) ctx.io.stdout(`${JSON.stringify({ retagged: r.changed, overLimit: r.overLimit, notFound })}\n`);
      else if (r.changed.length) ctx.io.stdout(`retagged ${r.changed.length} job${r.changed.length === 1 ? '' : 's'}\n`);
      if (r.overLimit.length) ctx.io.stderr(`left alone, they would hold more than 32 tags: ${r.overLimit.join(', ')}\n`);
      if (notFound.length) ctx.io.stderr(`not scheduled (unknown, claimed, or already sent): ${notFound.join(', ')}\n`);
      if (notFound.length || r.overLimit.length) throw new ExitWith(EXIT.FAILURE);
    });
}
