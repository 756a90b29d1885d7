/**
 * `run`: the dispatcher as a service, until SIGTERM/SIGINT. The first signal lets the batch in
 * flight finish; a second exits at once (130 for SIGINT, 143 for SIGTERM) and leases return any
 * claimed jobs. With --metrics-port it also serves Prometheus metrics and /healthz, and with
 * --ui-port the dashboard (showing this dispatcher's rate and lateness), both closed when the
 * dispatcher stops. All of `run`'s wiring, metrics and dashboard included, is in this file.
 */
import type { Command } from 'commander';
import { getScheduler } from '../../client/scheduler.js';
import { DispatcherMetrics } from '../../metrics/prometheus.js';
import { startMetricsServer } from '../../metrics/server.js';
import type { CliContext } from '../context.js';
import { LIMITS, bounded, portNumber } from '../format.js';
import { retryOptions, withRetryFlags, type RetryFlags } from '../options.js';
import { UI_TOKEN_ENV, dashboardSettings, serveDashboard } from './ui.js';

export function addRunCommand(program: Command, ctx: CliContext): void {
  const { io } = ctx;
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
    .option('--ui-port <n>', "serve the dashboard (see `ui --help`) on this port, with this dispatcher's rate and lateness; 0 picks a free one")
    .option('--ui-host <host>', 'address the dashboard listens on; any other than this host needs --ui-auth-token', '127.0.0.1')
    .option('--ui-auth-token <token>', `require this token (16 characters or more) to open the dashboard [env ${UI_TOKEN_ENV}]`)
    .option('--ui-read-only', 'the dashboard hides every action and refuses every change')
    .option('--ui-confirm-threshold <n>', 'above this many jobs a bulk action in the dashboard asks for the count to be typed (default 100)')
    .action(async (o: RunFlags) => {
      const options = {
        pollIntervalMs: bounded(o.pollIntervalMs, '--poll-interval-ms', LIMITS.pollIntervalMs),
        batchSize: bounded(o.batchSize, '--batch-size', LIMITS.batchSize),
        leaseMs: bounded(o.leaseMs, '--lease-ms', LIMITS.leaseMs),
        ...retryOptions(o),
      };
      const metricsPort = o.metricsPort === undefined ? undefined : portNumber(o.metricsPort, '--metrics-port');
      const ui =
        o.uiPort === undefined
          ? undefined
          : dashboardSettings(
              ctx,
              {
                port: o.uiPort,
                host: o.uiHost,
                ...(o.uiAuthToken !== undefined && { authToken: o.uiAuthToken }),
                ...(o.uiReadOnly && { readOnly: true }),
                ...(o.uiConfirmThreshold !== undefined && { confirmThreshold: o.uiConfirmThreshold }),
              },
              (name) => `--ui-${name}`,
            );
      const logger = ctx.logger();
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
        await ctx.withApp(async (a) => {
          const metrics =
            metricsPort === undefined ? undefined : new DispatcherMetrics({ store: a.store, broker: a.broker, clock: () => a.now(), processMetrics: true });
          const daemon = getScheduler(a).daemon({ ...options, logger });
          metrics?.listen(daemon.events);
          const server = metrics && (await startMetricsServer({ port: metricsPort ?? 0, host: o.metricsHost, metrics, health: () => metrics.health() }));
          if (server) logger.info('metrics listening', { host: server.host, port: server.port });
          try {
            const dashboard = ui && (await serveDashboard(a, ui, daemon.events));
            try {
              if (dashboard && ui)
                logger.info('dashboard listening', { host: dashboard.host, port: dashboard.port, readOnly: ui.readOnly, auth: ui.authToken !== undefined });
              await daemon.run(stop.signal);
            } finally {
              await dashboard?.close();
            }
          } finally {
            await server?.close();
          }
        });
      } finally {
        unsubscribe?.();
      }
    });
}

interface RunFlags extends RetryFlags {
  pollIntervalMs: string;
  batchSize: string;
  leaseMs: string;
  metricsPort?: string;
  metricsHost: string;
  uiPort?: string;
  uiHost: string;
  uiAuthToken?: string;
  uiReadOnly?: boolean;
  uiConfirmThreshold?: string;
}
