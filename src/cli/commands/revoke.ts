/**
 * `revoke ID...`: deletes scheduled jobs for good. Every id is tried; any that was not scheduled is
 * named on stderr and the command exits 1.
 */
import type { Command } from 'commander';
import { getScheduler } from '../../client/scheduler.js';
import type { CliContext } from '../context.js';
import { EXIT, ExitWith } from '../exit.js';

export function addRevokeCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  program
    .command('revoke')
    .description('delete scheduled jobs for good; exits 1 naming any id that was not scheduled')
    .argument('<id...>', 'task ids')
    .option('--json', 'print {"revoked": [...], "notFound": [...]}')
    .action(async (ids: string[], o: { json?: boolean }) => {
      const notFound: string[] = [];
      const revoked: string[] = [];
      await ctx.withApp(async (a) => {
        const scheduler = getScheduler(a);
        for (const id of ids) ((await scheduler.revoke(id)) ? revoked : notFound).push(id);
      });
      if (o.json) io.stdout(`${JSON.stringify({ revoked, notFound })}\n`);
      else if (revoked.length) io.stdout(`revoked ${revoked.length} job${revoked.length === 1 ? '' : 's'}\n`);
      if (notFound.length) {
        io.stderr(`not scheduled (unknown, or already sent): ${notFound.join(', ')}\n`);
        throw new ExitWith(EXIT.FAILURE);
      }
    });
}
