/**
 * `celery-longterm-scheduler/dispatch`: the dispatcher and its daemon, for embedding them with a
 * store and broker of your own (`getScheduler(app).dispatchDue()` / `.daemon()` are the usual way).
 */
export { Dispatcher, DISPATCH_DEFAULTS, type DispatcherOptions, type DispatchSummary, type HandoffMode } from '../dispatch/dispatcher.js';
export { DispatcherDaemon, DAEMON_DEFAULTS, MAX_TIMER_MS, type DaemonOptions } from '../dispatch/daemon.js';
export {
  DispatchEvents,
  type DispatchEventMap,
  type DispatchEventName,
  type DispatchListener,
  type DispatchListeners,
  type DispatchDetail,
} from '../dispatch/events.js';
export { logDispatchEvents, LOG_LINES_PER_RUN } from '../dispatch/log-events.js';
