/**
 * The command line. The only module that reads the environment or decides exit codes;
 * `runCli` takes them as arguments so tests can run it in-process.
 *
 * Exit codes: 0 ok, 1 failure or not found, 2 usage error (bad flags or bad input).
 */
import { Command, CommanderError, Option } from 'commander';
import { Celery, CELERY_DEFAULTS } from '../client/celery.js';
import { SchedulerError, ValidationError, ErrorCode, errorMessage, redactUrlsIn } from '../util/errors.js';
import { isScheduled, type TaskOptions } from '../job/options.js';
import { getScheduler } from '../client/scheduler.js';
import { isoOrUndefined, isRepresentableMs, parseIsoWithOffset } from '../celery/time.js';
import { createStore } from '../stores/registry.js';
import { migrateJobs, type MigrateProgress } from '../admin/copy-jobs.js';
import { MAX_STATS_DAYS, jobStats, listJobs, rescheduleJob, showJob, type ListJobsOptions, type ScheduledJobInfo } from '../admin/scheduled-jobs.js';
import { migrateStoreSchema } from '../admin/schema.js';
import { DispatcherMetrics } from '../metrics/prometheus.js';
import { DISPATCH_DEFAULTS } from '../dispatch/dispatcher.js';
import { startMetricsServer } from '../metrics/server.js';
import { LIMITS, bounded, clip, formatMs, humanTime, outOfRange, portNumber, printPage, relative, seconds } from './format.js';
import { addDeadCommand } from './dead-command.js';
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
    .option(
      '--backend <url>',
      `long-term store URL: sqlite://, postgres:// or redis:// [env CELERY_LONGTERM_SCHEDULER_BACKEND] (default ${CELERY_DEFAULTS.longtermSchedulerBackend})`,
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

  const app = (): Celery => {
    const g = program.opts<GlobalOptions>();
    const transport = g.brokerTransportOptions ?? io.env.CELERY_BROKER_TRANSPORT_OPTIONS;
    const brokerTransportOptions = transport === undefined ? undefined : parseJson(transport, '--broker-transport-options', 'a JSON object');
    if (
      brokerTransportOptions !== undefined &&
      (typeof brokerTransportOptions !== 'object' || brokerTransportOptions === null || Array.isArray(brokerTransportOptions))
    ) {
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
      logger: createCliLogger(g.logFormat, (line) => io.stderr(`${line}\n`)),
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
    .option('--job-key <key>', 'a deduplication key: at most one scheduled job holds it')
    .addOption(
      new Option(
        '--job-key-mode <mode>',
        'when a scheduled job already holds the key: fail (reject), take its place (replace), or leave it and print its id (keep)',
      ).choices(['reject', 'replace', 'keep']),
    )
    .addHelpText('after', '\nExample:\n  celery-longterm-scheduler schedule proj.tasks.add --args "[1, 2]" --countdown 3600\n')
    .action(async (task: string, o: Record<string, string | undefined>) => {
      const options = scheduleOptions(o);
      if (!isScheduled(options)) throw new ValidationError(['pass --eta ISO8601 or --countdown SECONDS; to publish at once use Celery itself']);
      const args = parseJson(o.args ?? '[]', '--args', "a JSON array, e.g. '[1, 2]'");
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

  withRetryFlags(program.command('dispatch'))
    .description('send every job due at or before --timestamp to the broker (run it from cron, or use a daemon)')
    .option('--timestamp <iso8601|now>', 'send jobs due at or before this time', 'now')
    .option('--lockfile <path>', 'refuse to run while another run holds this lock file')
    .option('--batch-size <n>', `jobs per claim and per broker round trip, ${LIMITS.batchSize.min} to ${LIMITS.batchSize.max}`, '500')
    .option('--json', 'print the summary as JSON')
    .action(async (o: { timestamp: string; lockfile?: string; batchSize: string; json?: boolean } & RetryFlags) => {
      const until = o.timestamp === 'now' ? undefined : parseIsoWithOffset(o.timestamp, '--timestamp');
      const batchSize = bounded(o.batchSize, '--batch-size', LIMITS.batchSize);
      const retry = retryOptions(o);
      const lock = o.lockfile !== undefined ? acquireLock(o.lockfile) : undefined;
      const logger = createCliLogger(program.opts<GlobalOptions>().logFormat, (line) => io.stderr(`${line}\n`));
      try {
        const summary = await withApp((a) => getScheduler(a).dispatchDue(until, { batchSize, ...retry, logger }));
        const { sent, failed, dead, corrupt, elapsedMs } = summary;
        if (o.json) {
          io.stdout(
            `${JSON.stringify({ sent, failed, dead, corrupt, elapsedMs: Math.round(elapsedMs * 10) / 10, ...(summary.error && { error: redactUrlsIn(summary.error.message) }) })}\n`,
          );
        } else {
          io.stdout(`sent ${sent}, failed ${failed}, dead letters ${dead}, elapsed ${formatMs(elapsedMs)}\n`);
        }
        if (summary.error) {
          io.stderr(`error: ${redactUrlsIn(summary.error.message)}\n`);
          throw new ExitWith(EXIT.FAILURE);
        }
        if (dead > 0) io.stderr(`${dead} job${dead === 1 ? '' : 's'} became dead letters and will not be sent; see \`dead list\`\n`);
        if (failed > 0 || dead > 0) throw new ExitWith(EXIT.FAILURE);
      } finally {
        lock?.release();
      }
    });

  withRetryFlags(program.command('run'))
    .description('run the dispatcher as a service: sends each job when it is due; SIGTERM/SIGINT stops it gracefully')
    .option(
      '--poll-interval-ms <ms>',
      `longest sleep between two looks at the store (finds jobs written by other tools), ${LIMITS.pollIntervalMs.min} to ${LIMITS.pollIntervalMs.max} (a day)`,
      '1000',
    )
    .option('--batch-size <n>', `jobs per claim and per broker round trip, ${LIMITS.batchSize.min} to ${LIMITS.batchSize.max}`, '500')
    .option(
      '--lease-ms <ms>',
      `how long a claim is exclusive; a dead dispatcher's jobs are sent again after it. ${LIMITS.leaseMs.min} to ${LIMITS.leaseMs.max} (a day): a shorter lease can run out between claiming a job and acknowledging it, and another dispatcher then sends the job again`,
      '60000',
    )
    .option('--metrics-port <n>', 'serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) on this port; 0 picks a free one')
    .option(
      '--metrics-host <host>',
      'address the metrics server listens on; /healthz names what is down and why, so open it wider (e.g. 0.0.0.0) only on a trusted network',
      '127.0.0.1',
    )
    .action(async (o: { pollIntervalMs: string; batchSize: string; leaseMs: string; metricsPort?: string; metricsHost: string } & RetryFlags) => {
      const options = {
        pollIntervalMs: bounded(o.pollIntervalMs, '--poll-interval-ms', LIMITS.pollIntervalMs),
        batchSize: bounded(o.batchSize, '--batch-size', LIMITS.batchSize),
        leaseMs: bounded(o.leaseMs, '--lease-ms', LIMITS.leaseMs),
        ...retryOptions(o),
      };
      const metricsPort = o.metricsPort === undefined ? undefined : portNumber(o.metricsPort, '--metrics-port');
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
        await withApp(async (a) => {
          const metrics =
            metricsPort === undefined ? undefined : new DispatcherMetrics({ store: a.store, broker: a.broker, clock: () => a.now(), processMetrics: true });
          const server = metrics && (await startMetricsServer({ port: metricsPort ?? 0, host: o.metricsHost, metrics, health: () => metrics.health() }));
          if (server) logger.info('metrics listening', { host: server.host, port: server.port });
          try {
            const daemon = getScheduler(a).daemon({ ...options, logger });
            metrics?.listen(daemon.events);
            await daemon.run(stop.signal);
          } finally {
            await server?.close();
          }
        });
      } finally {
        unsubscribe?.();
      }
    });

  program
    .command('list')
    .description('scheduled jobs in due order, a page at a time')
    .option('--from <iso8601>', 'only jobs due at or after this time')
    .option('--to <iso8601>', 'only jobs due at or before this time')
    .option('--task <name>', 'only this task')
    .option('--queue <name>', 'only jobs for this queue')
    .option('--limit <n>', `jobs per page, ${LIMITS.limit.min} to ${LIMITS.limit.max}`, '50')
    .option('--cursor <cursor>', 'the page after this cursor (printed at the end of the previous page)')
    .option('--json', 'one JSON object per line; a last line {"next_cursor": …} when there is another page')
    .action(async (o: { from?: string; to?: string; task?: string; queue?: string; limit: string; cursor?: string; json?: boolean }) => {
      const options: ListJobsOptions = { limit: bounded(o.limit, '--limit', LIMITS.limit) };
      if (o.from !== undefined) options.from = parseIsoWithOffset(o.from, '--from');
      if (o.to !== undefined) options.to = parseIsoWithOffset(o.to, '--to');
      if (o.task !== undefined) options.task = o.task;
      if (o.queue !== undefined) options.queue = o.queue;
      if (o.cursor !== undefined) options.cursor = o.cursor;
      const page = await withApp((a) => listJobs(a.store, a.config.taskDefaultQueue, options));
      printPage(
        io.stdout,
        { items: page.jobs, cursor: page.cursor },
        {
          json: o.json === true,
          toJson: jobJson,
          headers: ['ID', 'DUE (UTC)', 'TASK', 'QUEUE', 'ARGS'],
          row: (j) => [j.id, humanTime(j.dueAtUnix), j.task, j.queue ?? `exchange ${j.exchange ?? ''}`, clip(JSON.stringify(j.args), 40)],
          noun: ['job', 'jobs'],
          empty: 'no scheduled jobs match',
        },
      );
    });

  program
    .command('show')
    .description('everything stored for one job, and its state (scheduled, claimed, unknown); exit 1 when unknown')
    .argument('<id>', 'task id')
    .option('--json', 'print it as JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const job = await withApp((a) => showJob(a.store, a.config.taskDefaultQueue, id));
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
      if (job.canvas?.chain) rows.push(['then', job.canvas.chain.join(' → ')]);
      if (job.canvas?.groupId !== undefined)
        rows.push(['group', `${job.canvas.groupId}${job.canvas.groupIndex !== undefined ? ` (index ${job.canvas.groupIndex})` : ''}`]);
      if (job.canvas?.chordBody !== undefined) rows.push(['chord body', job.canvas.chordBody]);
      if (job.corrupt !== undefined) rows.push(['corrupt', job.corrupt]);
      rows.push(['stored', job.entry]);
      const w = Math.max(...rows.map(([k]) => k.length));
      io.stdout(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}\n`).join(''));
    });

  program
    .command('reschedule')
    .description('move a scheduled job to a new time, atomically; fails (exit 1) if a dispatcher already claimed or sent it')
    .argument('<id>', 'task id')
    .option('--eta <iso8601>', 'the new due time, with a UTC offset')
    .option('--countdown <seconds>', 'the new due time, this many seconds from now')
    .option('--json', 'print {"id", "dueAt"}')
    .action(async (id: string, o: { eta?: string; countdown?: string; json?: boolean }) => {
      if ((o.eta === undefined) === (o.countdown === undefined)) throw new ValidationError(['pass exactly one of --eta ISO8601 or --countdown SECONDS']);
      const dueAt = await withApp(async (a) => {
        const at = o.eta !== undefined ? parseIsoWithOffset(o.eta, '--eta') : countdownDate(a.now(), seconds(o.countdown ?? '', '--countdown'));
        await rescheduleJob(a.store, id, at);
        return at;
      });
      if (o.json) io.stdout(`${JSON.stringify({ id, dueAt: dueAt.toISOString() })}\n`);
      else io.stdout(`rescheduled ${id} to ${dueAt.toISOString()} (${relative(dueAt, new Date())})\n`);
    });

  program
    .command('run-now')
    .description('make a scheduled job due immediately; a running dispatcher sends it at once (SQLite: within its poll interval)')
    .argument('<id>', 'task id')
    .action(async (id: string) => {
      await withApp(async (a) => rescheduleJob(a.store, id, a.now(), 'run now'));
      io.stdout(`${id} is due now\n`);
    });

  program
    .command('stats')
    .description('how many jobs are scheduled, overdue and in flight; per task, and per day for the next 30 days')
    .option('--days <n>', `days to count ahead, 1 to ${MAX_STATS_DAYS} (ten years)`, '30')
    .option('--json', 'print the numbers as JSON')
    .action(async (o: { days: string; json?: boolean }) => {
      const days = bounded(o.days, '--days', { min: 1, max: MAX_STATS_DAYS });
      const s = await withApp((a) => jobStats(a.store, a.now(), { days }));
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
    .option('--batch-size <n>', `jobs per page, ${LIMITS.batchSize.min} to ${LIMITS.batchSize.max}`, '1000')
    .option('--after <cursor>', 'resume after this cursor (printed when a run is interrupted)')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', '\nExample:\n  celery-longterm-scheduler migrate --from redis://localhost:6379/1 --to sqlite:///celery-longterm-scheduler.db\n')
    .action(
      async (o: {
        from: string;
        to: string;
        fromKeyPrefix?: string;
        toKeyPrefix?: string;
        move?: boolean;
        batchSize: string;
        after?: string;
        json?: boolean;
      }) => {
        const batchSize = bounded(o.batchSize, '--batch-size', LIMITS.batchSize);
        const migrate = program.opts<GlobalOptions>().migrate === true;
        // both URLs are checked before either store is reached
        const logger = createCliLogger(program.opts<GlobalOptions>().logFormat, (line) => io.stderr(`${line}\n`));
        const from = createStore(o.from, { ...(o.fromKeyPrefix && { keyPrefix: o.fromKeyPrefix }), logger });
        let to: ReturnType<typeof createStore>;
        try {
          to = createStore(o.to, { ...(o.toKeyPrefix && { keyPrefix: o.toKeyPrefix }), migrate, logger });
        } catch (err) {
          await from.close();
          throw err;
        }
        const stop = new AbortController();
        const unsubscribe = io.onSignal?.(() => stop.abort());
        try {
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
              const moved = o.move
                ? `, removed from source ${summary.removed}${summary.leftToSource ? `, left to the source's dispatcher ${summary.leftToSource}` : ''}${summary.resumed ? `, finished ${summary.resumed} an interrupted move had held` : ''}`
                : '';
              io.stdout(
                `copied ${summary.copied}, already there ${summary.skipped}${moved}; ${summary.seen} jobs in ${formatMs(summary.elapsedMs)} (${rate}/s)\n`,
              );
            }
            if (summary.held > 0) {
              io.stderr(
                `warning: ${summary.held} jobs are held (not sent) by an interrupted migrate --move that this run could not finish; run that migrate --move again, with the same --from\n`,
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
      },
    );

  addDeadCommand(program, {
    withApp,
    stdout: io.stdout,
    stderr: io.stderr,
    fail: () => {
      throw new ExitWith(EXIT.FAILURE);
    },
  });

  return program;
}

interface RetryFlags {
  maxAttempts?: string;
  retryDelayMs?: string;
  retryDelayMaxMs?: string;
}

/** The flags of `dispatch` and `run` that say how a job the broker refuses is tried again. */
function withRetryFlags(command: Command): Command {
  const d = DISPATCH_DEFAULTS;
  return command
    .option(
      '--max-attempts <n>',
      `refusals by the broker before a job becomes a dead letter, ${LIMITS.maxAttempts.min} to ${LIMITS.maxAttempts.max} (default ${d.maxAttempts})`,
    )
    .option('--retry-delay-ms <ms>', `wait before trying a refused job again; doubles with each refusal (default ${d.retryDelayMs})`)
    .option('--retry-delay-max-ms <ms>', `the longest wait between two attempts (default ${d.retryDelayMaxMs}, an hour)`)
    .addHelpText(
      'after',
      '\nA job the broker refuses (unroutable, nacked, a broker key of another type) is tried again after its backoff and ' +
        'becomes a dead letter after --max-attempts refusals; a corrupt entry or a message the broker can never carry becomes ' +
        'one at once. The rest of its batch is sent as usual. See `dead --help`.\n',
    );
}

function retryOptions(o: RetryFlags): { maxAttempts?: number; retryDelayMs?: number; retryDelayMaxMs?: number } {
  return {
    ...(o.maxAttempts !== undefined && { maxAttempts: bounded(o.maxAttempts, '--max-attempts', LIMITS.maxAttempts) }),
    ...(o.retryDelayMs !== undefined && { retryDelayMs: bounded(o.retryDelayMs, '--retry-delay-ms', LIMITS.retryDelayMs) }),
    ...(o.retryDelayMaxMs !== undefined && { retryDelayMaxMs: bounded(o.retryDelayMaxMs, '--retry-delay-max-ms', LIMITS.retryDelayMaxMs) }),
  };
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
  if (o.jobKey !== undefined) options.jobKey = o.jobKey;
  if (o.jobKeyMode !== undefined) options.jobKeyMode = o.jobKeyMode as TaskOptions['jobKeyMode'];
  if (o.queue !== undefined) options.queue = o.queue;
  if (o.routingKey !== undefined) options.routingKey = o.routingKey;
  if (o.exchange !== undefined) options.exchange = o.exchange;
  if (o.priority !== undefined) {
    const n = Number(o.priority);
    if (!/^\d+$/.test(o.priority.trim())) problems.push(`--priority ${JSON.stringify(o.priority)} is not an integer from 0 to 255`);
    else options.priority = n;
  }
  if (o.expires !== undefined) {
    // anything written as a number is seconds (so `-5` is refused as negative, not as a bad date)
    options.expires = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(o.expires.trim()) ? Number(o.expires) : o.expires;
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

/**
 * A job as JSON for programs: times as ISO strings; `dueAt` is null when the stored time is
 * outside years 1-9999 (another writer stored it), and `dueAtUnix` is always the stored number.
 */
function jobJson(j: ScheduledJobInfo): Record<string, unknown> {
  const { entry: _entry, dueAt: _dueAt, dueAtUnix, ...rest } = j;
  return { ...rest, dueAt: isoOrUndefined(dueAtUnix) ?? null, dueAtUnix };
}

/** The time `countdown` seconds after `now`; a ValidationError when Python could not hold it. */
function countdownDate(now: Date, countdown: number): Date {
  if (countdown < 0) throw new ValidationError([`--countdown ${countdown} is negative; pass seconds from now (0 or more), or use run-now`]);
  const ms = now.getTime() + countdown * 1000;
  if (!isRepresentableMs(ms))
    throw new ValidationError([
      `--countdown ${countdown} lands outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, what Python's datetime (and so Celery) can hold`,
    ]);
  return new Date(ms);
}
