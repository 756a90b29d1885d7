/**
 * `ui`: the dashboard (src/ui/) on a port of its own, against the --backend store and the
 * --broker (for its health), until SIGTERM/SIGINT. It listens on 127.0.0.1 unless told otherwise,
 * and any other address needs an auth token (--auth-token, or the environment variable, which
 * stays out of `ps`): without one it refuses to start (exit 2). `run --ui-port` serves the same
 * beside the dispatcher, with the same flags under `--ui-…` (see `withDashboardFlags`).
 */
import type { Command } from 'commander';
import { checkListen, startDashboardServer, type DashboardServer } from '../../ui/server.js';
import type { DispatchEvents } from '../../dispatch/events.js';
import type { Celery } from '../../client/celery.js';
import type { CliContext } from '../context.js';
import { bounded, portNumber } from '../format.js';

/** 5555 is Flower's; this one is the scheduler's. */
export const DEFAULT_UI_PORT = 5580;
export const UI_TOKEN_ENV = 'CELERY_LONGTERM_SCHEDULER_UI_TOKEN';

export interface DashboardFlags {
  port?: string;
  host: string;
  authToken?: string;
  readOnly?: boolean;
  confirmThreshold?: string;
}

/** The dashboard's settings from its flags (and the token's environment variable), checked before anything is opened. */
export function dashboardSettings(ctx: CliContext, o: DashboardFlags, flag: (name: string) => string) {
  const port = o.port === undefined ? DEFAULT_UI_PORT : portNumber(o.port, flag('port'));
  const authToken = o.authToken ?? (ctx.io.env[UI_TOKEN_ENV] || undefined);
  checkListen(o.host, authToken);
  const confirmThreshold = o.confirmThreshold === undefined ? undefined : bounded(o.confirmThreshold, flag('confirm-threshold'), { min: 0, max: 10_000_000 });
  return {
    port,
    host: o.host,
    ...(authToken !== undefined && { authToken }),
    readOnly: o.readOnly === true,
    ...(confirmThreshold !== undefined && { confirmThreshold }),
  };
}

export type DashboardSettings = ReturnType<typeof dashboardSettings>;

/** Starts the dashboard for `app` and says where it is (a log line and, for `ui`, the URL on stdout). */
export async function serveDashboard(app: Celery, s: DashboardSettings, dispatcherEvents?: DispatchEvents): Promise<DashboardServer> {
  return startDashboardServer({ app, ...s, ...(dispatcherEvents && { dispatcherEvents }) });
}

export function addUiCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  program
    .command('ui')
    .description('serve the dashboard: what is scheduled, the future load, search, one job, bulk actions, dead letters; until SIGTERM/SIGINT')
    .option('--port <n>', `port to listen on; 0 picks a free one (default ${DEFAULT_UI_PORT})`)
    .option('--host <host>', 'address to listen on; any other than this host (127.0.0.1, localhost, ::1) needs an auth token', '127.0.0.1')
    .option('--auth-token <token>', `require this token (16 characters or more) to open the dashboard [env ${UI_TOKEN_ENV}, which stays out of ps]`)
    .option('--read-only', 'hide every action; the API refuses every change')
    .option('--confirm-threshold <n>', 'above this many jobs a bulk action asks for the count to be typed (default 100)')
    .option('--result-backend <url>', "Celery's result_backend (Redis), to show each job's result state [env CELERY_RESULT_BACKEND]")
    .addHelpText(
      'after',
      `\nExamples:\n  celery-longterm-scheduler --backend redis://localhost:6379/1 ui\n  ${UI_TOKEN_ENV}=$(openssl rand -hex 24) celery-longterm-scheduler ui --host 0.0.0.0 --read-only\n`,
    )
    .action(async (o: DashboardFlags & { resultBackend?: string }) => {
      const settings = dashboardSettings(ctx, o, (name) => `--${name}`);
      const resultBackend = o.resultBackend ?? (io.env.CELERY_RESULT_BACKEND || undefined);
      const logger = ctx.logger();
      await ctx.withApp(
        async (a) => {
          const server = await serveDashboard(a, settings);
          logger.info('dashboard listening', { host: server.host, port: server.port, readOnly: settings.readOnly, auth: settings.authToken !== undefined });
          io.stdout(`dashboard at ${server.url}${settings.authToken !== undefined ? ' (sign in with the auth token)' : ''}\n`);
          try {
            await new Promise<void>((resolve) => {
              const off = io.onSignal?.((signal) => {
                logger.info('stopping the dashboard', { signal });
                off?.();
                resolve();
              });
            });
          } finally {
            await server.close();
          }
        },
        resultBackend !== undefined ? { resultBackend } : undefined,
      );
    });
}
