/**
 * The command line, wired: the program, its global flags, and every command in the order `--help`
 * lists them. The CLI is the only code that reads the environment or decides exit codes; `runCli`
 * takes them as arguments so tests can run it in-process.
 *
 * Exit codes: 0 ok, 1 failure or not found, 2 usage error (bad flags or bad input); see exit.ts.
 * Each command lives in commands/<name>.ts; what they share is in context.ts, options.ts and format.ts.
 */
import { Command, Option } from 'commander';
import { CELERY_DEFAULTS } from '../client/celery.js';
import { addDeadCommand } from './commands/dead.js';
import { addDispatchCommand } from './commands/dispatch.js';
import { addListCommand } from './commands/list.js';
import { addMigrateSchemaCommand } from './commands/migrate-schema.js';
import { addMigrateCommand } from './commands/migrate.js';
import { addRescheduleCommand } from './commands/reschedule.js';
import { addRetagCommand } from './commands/retag.js';
import { addRevokeCommand } from './commands/revoke.js';
import { addRunNowCommand } from './commands/run-now.js';
import { addRunCommand } from './commands/run.js';
import { addScheduleCommand } from './commands/schedule.js';
import { addShowCommand } from './commands/show.js';
import { addStatsCommand } from './commands/stats.js';
import { addUiCommand } from './commands/ui.js';
import { createContext, type CliIo } from './context.js';
import { EXIT, exitCodeOf } from './exit.js';

export type { CliIo } from './context.js';
export { EXIT } from './exit.js';

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (err) {
    return exitCodeOf(err, io.stderr);
  }
}

function buildProgram(io: CliIo): Command {
  const program = new Command('celery-longterm-scheduler')
    .description('Schedule Celery tasks far in the future: a separate store, and a dispatcher that sends each job to the broker when it is due.')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError('(run with --help for usage)')
    .option('--broker <url>', `Celery broker URL [env CELERY_BROKER_URL] (default ${CELERY_DEFAULTS.broker})`)
    .option(
      '--backend <url>',
      `long-term store URL: sqlite://, postgres://, redis:// or redis+cluster:// [env CELERY_LONGTERM_SCHEDULER_BACKEND] (default ${CELERY_DEFAULTS.longtermSchedulerBackend})`,
    )
    .option(
      '--key-prefix <prefix>',
      'prefix for every store key, to share a Redis database [env CELERY_LONGTERM_SCHEDULER_KEY_PREFIX] (default none: the original layout)',
    )
    .option('--default-queue <name>', "Celery's task_default_queue [env CELERY_TASK_DEFAULT_QUEUE] (default celery)")
    .option(
      '--broker-transport-options <json>',
      'Celery\'s broker_transport_options as JSON, e.g. \'{"global_keyprefix": "pfx:", "master_name": "mymaster"}\' [env CELERY_BROKER_TRANSPORT_OPTIONS]',
    )
    .option('--backend-master-name <name>', 'Sentinel master name when --backend is a sentinel:// URL [env CELERY_LONGTERM_SCHEDULER_MASTER_NAME]')
    .option('--migrate', 'PostgreSQL store: apply pending schema migrations on start instead of failing')
    .addOption(new Option('--log-format <format>', 'log lines on stderr as text or json').choices(['text', 'json']).default('text'));

  const ctx = createContext(program, io);
  addScheduleCommand(program, ctx);
  addRevokeCommand(program, ctx);
  addDispatchCommand(program, ctx);
  addRunCommand(program, ctx);
  addListCommand(program, ctx);
  addShowCommand(program, ctx);
  addRescheduleCommand(program, ctx);
  addRunNowCommand(program, ctx);
  addRetagCommand(program, ctx);
  addStatsCommand(program, ctx);
  addMigrateSchemaCommand(program, ctx);
  addMigrateCommand(program, ctx);
  addDeadCommand(program, ctx);
  addUiCommand(program, ctx);
  return program;
}
