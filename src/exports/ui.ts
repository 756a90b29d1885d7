/**
 * `celery-longterm-scheduler/ui`: the dashboard, as a node:http request handler to mount in a
 * server of your own (`createDashboardHandler`), or on a port of its own (`startDashboardServer`).
 */
export {
  createDashboardHandler,
  startDashboardServer,
  type DashboardHandler,
  type DashboardOptions,
  type DashboardServer,
  type DashboardServerOptions,
} from '../ui/server.js';
export type * from '../ui/web/api-types.js';
