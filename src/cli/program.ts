/**
 * The command line. The only module that reads the environment or decides exit codes;
 * `runCli` takes them as arguments so tests can run it in-process.
 *
 * Exit codes: 0 ok, 1 failure or not found, 2 usage error (bad flags or bad input).
 */
import { Command, CommanderError, Option } from 'commander';
import { Celery, CELERY_DEFAULTS } from '../app.js';
import { SchedulerError, ValidationError, ErrorCode, errorMessage, redactUrlsIn } from '../errors.js';
import { isScheduled, type TaskOptions } from '../job.js';
import { getScheduler } from '../scheduler.js';
import { parseIsoWithOffset } from '../celery/time.js';
import { createStore } from '../connect.js';
import { migrateJobs, type MigrateProgress } from '../migrate.js';
import { migrateStoreSchema } from '../schema.js';
import { acquireLock } from './lockfile.js';
import { createCliLogger, type LogFormat } from './log.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  /** subscribes to SIGINT/SIGTERM (for `run`); returns an unsubscribe function */
  onSignal?: (handler: (signal: NodeJS.Signals) => void) => () => void;
  /** exits the process at once (a second signal during `run`) */
  exitNow?: (code: number) => void;
  /** whether stderr is a terminal (progress bars redraw in place) */
  isTty?: () => boolean;
}

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

interface GlobalOptions {
  broker?: string;
  brokerTransportOptions?: string;
  backendMasterName?: string;
  backend?: string;
  keyPrefix?: string;
  defaultQueue?: string;
  migrate?: boolean;
  logFormat: LogFormat;
}

class ExitWith extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (err) {
    if (err instanceof ExitWith) return err.code;
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return EXIT.OK;
      return EXIT.USAGE; // commander already printed the message
    }
    return reportError(err, io);
  }
}

function reportError(err: unknown, io: CliIo): number {
  const message = errorMessage(err);
  io.stderr(`error: ${redactUrlsIn(message.split('\n', 1)[0] ?? message)}\n`);
  if (err instanceof ValidationError) return EXIT.USAGE;
  if (err instanceof SchedulerError && err.code === ErrorCode.INVALID_ARGUMENT) return EXIT.USAGE;
  return EXIT.FAILURE;
}

function buildProgram(io: CliIo): Command {
  const program = new Command('celery-longterm-scheduler')
    .description('Schedule Celery tasks far in the future: a separate store, and a dispatcher that sends each job to the broker when it is due.')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError('(run with --help for usage)')
    .option('--broker <url>', `Celery broker URL [env CELERY_BROKER_URL] (default ${CELERY_DEFAULTS.broker})`)
    .option('--backend <url>', `long-term store URL: sqlite://, postgres:// or redis:// [env CELERY_LONGTERM_SCHEDULER_BACKEND] (default ${CELERY_DEFAULTS.longtermSchedulerBackend})`)
    .option('--key-prefix <prefix>', 'prefix for every store key, to share a Redis database [env CELERY_LONGTERM_SCHEDULER_KEY_PREFIX] (default none: the original layout)')
    .option('--default-queue <name>', "Celery's task_default_queue [env CELERY_TASK_DEFAULT_QUEUE] (default celery)")
    .option(
      '--broker-transport-options <json>',
      'Celery\'s broker_transport_options as JSON, e.g. \'{"global_keyprefix": "pfx:", "master_name": "mymaster"}\' [env CELERY_BROKER_TRANSPORT_OPTIONS]',
    )
    .option('--backend-master-name <name>', 'Sentinel master name when --backend is a sentinel:// URL [env CELERY_LONGTERM_SCHEDULER_MASTER_NAME]')
    .option('--migrate', 'PostgreSQL store: apply pending schema migrations on start instead of failing')
    .addOption(new Option('--log-format <format>', 'log lines on stderr as text or json').choices(['text', 'json']).default('text'));

  const app = (): Celery => {
    const g = program.opts<GlobalOptions>();
    const transport = g.brokerTransportOptions ?? io.env.CELERY_BROKER_TRANSPORT_OPTIONS;
    const brokerTransportOptions = transport === undefined ? undefined : parseJson(transport, '--broker-transport-options', 'a JSON object');
    if (brokerTransportOptions !== undefined && (typeof brokerTransportOptions !== 'object' || brokerTransportOptions === null || Array.isArray(brokerTransportOptions))) {
      throw new ValidationError(['--broker-transport-options must be a JSON object, e.g. \'{"global_keyprefix": "pfx:"}\'']);
    }
    const masterName = g.backendMasterName ?? io.env.CELERY_LONGTERM_SCHEDULER_MASTER_NAME;
    return new Celery({
      ...(brokerTransportOptions !== undefined && { brokerTransportOptions: brokerTransportOptions as Record<string, unknown> }),
      ...(masterName !== undefined && { longtermSchedulerMasterName: masterName }),
      broker: g.broker ?? io.env.CELERY_BROKER_URL ?? CELERY_DEFAULTS.broker,
      longtermSchedulerBackend: g.backend ?? io.env.CELERY_LONGTERM_SCHEDULER_BACKEND ?? CELERY_DEFAULTS.longtermSchedulerBackend,
      longtermSchedulerKeyPrefix: g.keyPrefix ?? io.env.CELERY_LONGTERM_SCHEDULER_KEY_PREFIX ?? '',
      taskDefaultQueue: g.defaultQueue ?? io.env.CELERY_TASK_DEFAULT_QUEUE ?? CELERY_DEFAULTS.taskDefaultQueue,
      ...(g.migrate && { longtermSchedulerMigrate: true }),
    });
  };
  const withApp = async <T>(fn: (a: Celery) => Promise<T>): Promise<T> => {
    const a = app();
    try {
      return await fn(a);
    } finally {
      await a.close();
    }
  };

  program
    .command('schedule')
    .description('store a task to be sent when due; prints its task id')
    .argument('<task>', 'registered Celery task name, e.g. proj.tasks.add')
    .option('--args <json>', 'positional arguments as a JSON array', '[]')
    .option('--kwargs <json>', 'keyword arguments as a JSON object', '{}')
    .option('--eta <iso8601>', 'when to send it, with a UTC offset, e.g. 2031-03-04T05:06:07Z')
    .option('--countdown <seconds>', 'send it this many seconds from now')
    .option('--id <id>', 'the Celery task id (default: a random UUID)')
    .option('--queue <queue>', 'the queue to send it to')
    .option('--routing-key <key>', 'routing key (with --exchange)')
    .option('--exchange <name>', 'exchange to publish to (default: the default exchange, by queue name)')
    .option('--priority <n>', 'message priority, an integer 0-255 (Redis: 0-9, 0 first)')
    .option('--expires <iso8601|seconds>', 'an ISO-8601 time, or seconds counted from dispatch')
    .addHelpText('after', '\nExample:\n  celery-longterm-scheduler schedule proj.tasks.add --args "[1, 2]" --countdown 3600\n')
    .action(async (task: string, o: Record<string, string | undefined>) => {
      const options = scheduleOptions(o);
      if (!isScheduled(options)) throw new ValidationError(['pass --eta ISO8601 or --countdown SECONDS; to publish at once use Celery itself']);
      const args = parseJson(o.args ?? '[]', '--args', 'a JSON array, e.g. \'[1, 2]\'');
      const kwargs = parseJson(o.kwargs ?? '{}', '--kwargs', 'a JSON object, e.g. \'{"y": 2}\'');
      const result = await withApp((a) => a.sendTask(task, args as unknown[], kwargs as Record<string, unknown>, options));
      io.stdout(`${result.id}\n`);
    });

  program
    .command('revoke')
    .description('delete scheduled jobs for good; exits 1 naming any id that was not scheduled')
    .argument('<id...>', 'task ids')
    .option('--json', 'print {"revoked": [...], "notFound": [...]}')
    .action(async (ids: string[], o: { json?: boolean }) => {
      const notFound: string[] = [];
      const revoked: string[] = [];
      await withApp(async (a) => {
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

  program
    .command('dispatch')
    .description('send every job due at or before --timestamp to the broker (run it from cron, or use a daemon)')
    .option('--timestamp <iso8601|now>', 'send jobs due at or before this time', 'now')
    .option('--lockfile <path>', 'refuse to run while another run holds this lock file')
    .option('--batch-size <n>', 'jobs per claim and per broker round trip', '500')
    .option('--json', 'print the summary as JSON')
    .action(async (o: { timestamp: string; lockfile?: string; batchSize: string; json?: boolean }) => {
      const until = o.timestamp === 'now' ? undefined : parseIsoWithOffset(o.timestamp, '--timestamp');
      const batchSize = positiveInt(o.batchSize, '--batch-size');
      const lock = o.lockfile ? acquireLock(o.lockfile) : undefined;
      const logger = createCliLogger(program.opts<GlobalOptions>().logFormat, (line) => io.stderr(`${line}\n`));
      try {
        const summary = await withApp((a) => getScheduler(a).dispatchDue(until, { batchSize, logger }));
        const { sent, failed, corrupt, elapsedMs } = summary;
        if (o.json) {
          io.stdout(`${JSON.stringify({ sent, failed, corrupt, elapsedMs: Math.round(elapsedMs * 10) / 10, ...(summary.error && { error: redactUrlsIn(summary.error.message) }) })}\n`);
        } else {
          io.stdout(`sent ${sent}, failed ${failed}, corrupt moved aside ${corrupt}, elapsed ${formatMs(elapsedMs)}\n`);
        }
        if (summary.error) {
          io.stderr(`error: ${redactUrlsIn(summary.error.message)}\n`);
          throw new ExitWith(EXIT.FAILURE);
        }
        if (failed > 0) throw new ExitWith(EXIT.FAILURE);
      } finally {
        lock?.release();
      }
    });

  program
    .command('run')
    .description('run the dispatcher as a service: sends each job when it is due; SIGTERM/SIGINT stops it gracefully')
    .option('--poll-interval-ms <ms>', 'longest sleep between two looks at the store (finds jobs written by other tools)', '1000')
    .option('--batch-size <n>', 'jobs per claim and per broker round trip', '500')
    .option('--lease-ms <ms>', "how long a claim is exclusive; a dead dispatcher's jobs are sent again after it", '60000')
    .action(async (o: { pollIntervalMs: string; batchSize: string; leaseMs: string }) => {
      const options = {
        pollIntervalMs: positiveInt(o.pollIntervalMs, '--poll-interval-ms'),
        batchSize: positiveInt(o.batchSize, '--batch-size'),
        leaseMs: positiveInt(o.leaseMs, '--lease-ms'),
      };
      const logger = createCliLogger(program.opts<GlobalOptions>().logFormat, (line) => io.stderr(`${line}\n`));
      const stop = new AbortController();
      let signals = 0;
      const unsubscribe = io.onSignal?.((signal) => {
        signals++;
        if (signals === 1) {
          logger.info('stopping: finishing the batch in flight (send the signal again to exit at once)', { signal });
          stop.abort();
        } else {
          logger.warn('exiting at once; leases return any claimed jobs', { signal });
          io.exitNow?.(signal === 'SIGINT' ? 130 : 143);
        }
      });
      try {
        await withApp((a) => getScheduler(a).daemon({ ...options, logger }).run(stop.signal));
      } finally {
        unsubscribe?.();
      }
    });

  program
    .command('migrate-schema')
    .description("create or upgrade the store's schema (PostgreSQL); SQLite files upgrade themselves, Redis has none")
    .option('--status', 'only print the version found and the version this code needs; change nothing')
    .option('--json', 'print the result as JSON')
    .action(async (o: { status?: boolean; json?: boolean }) => {
      const g = program.opts<GlobalOptions>();
      const url = g.backend ?? io.env.CELERY_LONGTERM_SCHEDULER_BACKEND ?? CELERY_DEFAULTS.longtermSchedulerBackend;
      const result = await migrateStoreSchema(url, { statusOnly: o.status === true });
      if (o.json) io.stdout(`${JSON.stringify(result)}\n`);
      else io.stdout(`${result.message}\n`);
    });

  program
    .command('migrate')
    .description('copy every scheduled job from one store to another (ids, due times and options intact); safe to run twice')
    .requiredOption('--from <url>', 'the store to copy from (any kind, including a Redis store the Python package wrote)')
    .requiredOption('--to <url>', 'the store to copy to')
    .option('--from-key-prefix <prefix>', 'key prefix of a Redis source (default none: the original layout)')
    .option('--to-key-prefix <prefix>', 'key prefix of a Redis target (default none)')
    .option('--move', 'remove each job from the source once the target holds it')
    .option('--batch-size <n>', 'jobs per page', '1000')
    .option('--after <cursor>', 'resume after this cursor (printed when a run is interrupted)')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', '\nExample:\n  celery-longterm-scheduler migrate --from redis://localhost:6379/1 --to sqlite:///celery-longterm-scheduler.db\n')
    .action(async (o: { from: string; to: string; fromKeyPrefix?: string; toKeyPrefix?: string; move?: boolean; batchSize: string; after?: string; json?: boolean }) => {
      const batchSize = positiveInt(o.batchSize, '--batch-size');
      const migrate = program.opts<GlobalOptions>().migrate === true;
      const from = createStore(o.from, { ...(o.fromKeyPrefix && { keyPrefix: o.fromKeyPrefix }) });
      const stop = new AbortController();
      const unsubscribe = io.onSignal?.(() => stop.abort());
      try {
        const to = createStore(o.to, { ...(o.toKeyPrefix && { keyPrefix: o.toKeyPrefix }), migrate });
        try {
          const bar = progressBar(io, o.json === true);
          const summary = await migrateJobs(from, to, {
            batchSize,
            ...(o.move && { move: true }),
            ...(o.after !== undefined && { after: o.after }),
            onProgress: bar.update,
            signal: stop.signal,
          });
          bar.done();
          const rate = summary.elapsedMs > 0 ? Math.round((summary.seen / summary.elapsedMs) * 1000) : 0;
          if (o.json) io.stdout(`${JSON.stringify({ ...summary, elapsedMs: Math.round(summary.elapsedMs) })}\n`);
          else {
            io.stdout(
              `copied ${summary.copied}, already there ${summary.skipped}${o.move ? `, removed from source ${summary.removed}` : ''}; ${summary.seen} jobs in ${formatMs(summary.elapsedMs)} (${rate}/s)\n`,
            );
          }
          if (summary.cursor !== undefined) {
            io.stderr(`interrupted; resume with --after '${summary.cursor}'\n`);
            throw new ExitWith(EXIT.FAILURE);
          }
        } finally {
          await to.close();
        }
      } finally {
        unsubscribe?.();
        await from.close();
      }
    });

  return program;
}

/** A progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise. */
function progressBar(io: CliIo, quiet: boolean): { update: (p: MigrateProgress) => void; done: () => void } {
  const tty = io.isTty?.() ?? false;
  let lastDecile = -1;
  let drawn = false;
  return {
    update: (p) => {
      if (quiet) return;
      const total = Math.max(p.total, p.seen);
      const share = total === 0 ? 1 : p.seen / total;
      const line = `${Math.floor(share * 100)
        .toString()
        .padStart(3)}% ${p.seen}/${total} jobs (copied ${p.copied}, already there ${p.skipped})`;
      if (tty) {
        const width = 30;
        const full = Math.round(share * width);
        io.stderr(`\r[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${line}`);
        drawn = true;
      } else if (Math.floor(share * 10) > lastDecile) {
        lastDecile = Math.floor(share * 10);
        io.stderr(`${line}\n`);
      }
    },
    done: () => {
      if (drawn) io.stderr('\n');
    },
  };
}

function scheduleOptions(o: Record<string, string | undefined>): TaskOptions {
  const options: TaskOptions = {};
  const problems: string[] = [];
  if (o.eta !== undefined) options.eta = o.eta;
  if (o.countdown !== undefined) {
    const n = Number(o.countdown);
    if (o.countdown.trim() === '' || Number.isNaN(n)) problems.push(`--countdown ${JSON.stringify(o.countdown)} is not a number of seconds`);
    else options.countdown = n;
  }
  if (o.id !== undefined) options.taskId = o.id;
  if (o.queue !== undefined) options.queue = o.queue;
  if (o.routingKey !== undefined) options.routingKey = o.routingKey;
  if (o.exchange !== undefined) options.exchange = o.exchange;
  if (o.priority !== undefined) {
    const n = Number(o.priority);
    if (!/^\d+$/.test(o.priority.trim())) problems.push(`--priority ${JSON.stringify(o.priority)} is not an integer from 0 to 255`);
    else options.priority = n;
  }
  if (o.expires !== undefined) {
    options.expires = /^\d+(\.\d+)?$/.test(o.expires.trim()) ? Number(o.expires) : o.expires;
  }
  if (problems.length) throw new ValidationError(problems);
  return options;
}

function parseJson(text: string, flag: string, expected: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError([`${flag} is not valid JSON; pass ${expected}`]);
  }
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new ValidationError([`${flag} must be a positive integer, got ${JSON.stringify(text)}`]);
  return n;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
