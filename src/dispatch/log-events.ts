/**
 * The dispatcher's log lines, written from its events: one line per state change of the store or
 * the broker (never one per retry), per-job lines for refused jobs and dead letters capped at
 * `LOG_LINES_PER_RUN` of each kind per run (the rest counted in one line), and one `dispatched`
 * line per daemon pass that did something. The logger decides the format and redacts.
 */
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { DispatchEvents } from './events.js';

/** Per-job log lines of one kind (refused, dead) per run; the rest are counted in one line. */
export const LOG_LINES_PER_RUN = 10;

/** Writes the dispatcher's log lines to `logger` from `events`; the returned function stops it. */
export function logDispatchEvents(events: DispatchEvents, logger: Logger): () => void {
  return events.listen({
    refused: (e) => {
      if (e.nthInRun > LOG_LINES_PER_RUN) return;
      logger.warn('broker refused a job; it stays scheduled and is tried again later', {
        id: e.id,
        task: e.task,
        attempt: e.attempt,
        maxAttempts: e.maxAttempts,
        retryInMs: e.retryInMs,
        error: e.error,
      });
    },
    dead: (e) => {
      if (e.nthInRun > LOG_LINES_PER_RUN) return;
      logger.warn('made a job a dead letter; it will not be sent (see `dead list`)', { id: e.id, reason: e.reason, attempts: e.attempts, error: e.error });
    },
    giveBackFailed: (e) => {
      logger.error(`could not give ${e.what} back; they will be claimed again when their lease ends`, { count: e.count, error: errorMessage(e.error) });
    },
    leaseLost: (e) => logger.warn('lost the lease of claimed jobs; another dispatcher may send them too', { count: e.count }),
    renewFailed: (e) => logger.warn('could not renew leases; will try again', { count: e.count, error: errorMessage(e.error) }),
    run: ({ summary, detail }) => {
      const refused = detail.refused - LOG_LINES_PER_RUN;
      const dead = summary.dead - LOG_LINES_PER_RUN;
      if (refused > 0) logger.warn('more jobs refused by the broker in this run (not logged one by one)', { count: refused });
      if (dead > 0) logger.warn('more jobs made dead letters in this run (not logged one by one)', { count: dead });
    },
    started: (e) => logger.info('dispatcher started', { store: e.store, broker: e.broker, pollIntervalMs: e.pollIntervalMs }),
    stopped: () => logger.info('dispatcher stopped'),
    pass: ({ summary, mode }) => {
      logger.info('dispatched', { sent: summary.sent, failed: summary.failed, dead: summary.dead, ms: Math.round(summary.elapsedMs * 10) / 10, mode });
    },
    storeState: (e) => {
      if (!e.up) logger.error('store unavailable; retrying with backoff', { store: e.store, error: errorMessage(e.error) });
      else logger.info('store available again', { store: e.store });
    },
    brokerState: (e) => {
      if (!e.up) logger.error('broker unavailable; jobs stay scheduled, retrying with backoff', { broker: e.broker, error: errorMessage(e.error) });
      else logger.info('broker available again', { broker: e.broker });
    },
  });
}
