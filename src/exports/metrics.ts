/** `celery-longterm-scheduler/metrics`: the dispatcher's Prometheus metrics and the `/metrics` + `/healthz` server. */
export { DispatcherMetrics, METRICS_CONTENT_TYPE, type DispatcherMetricsOptions, type HealthReport, type ComponentHealth } from '../metrics/prometheus.js';
export { startMetricsServer } from '../metrics/server.js';
