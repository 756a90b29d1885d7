/**
 * The HTTP endpoint of `run --metrics-port`: `GET /metrics` (Prometheus text format 0.0.4) and
 * `GET /healthz` (200 when the dispatcher can reach its store and broker, else 503 naming which
 * one is down and why). Anything else is a 404 (or a 405 for another method). node:http only.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage, redactUrlsIn } from '../util/errors.js';
import { METRICS_CONTENT_TYPE, type HealthReport } from './prometheus.js';

export interface MetricsServerOptions {
  /** 0 picks a free port (see the returned `port`) */
  port: number;
  /** default 127.0.0.1 (this host only): `/healthz` names what is down and why */
  host?: string;
  /** renders the exposition text (e.g. `DispatcherMetrics`) */
  metrics: { render(): Promise<string> | string };
  /** judges store and broker health (e.g. `() => metrics.health()`) */
  health: () => Promise<HealthReport>;
}

export interface MetricsServer {
  /** the port listened on (the one picked when asked for 0) */
  port: number;
  host: string;
  /** stops listening and closes open connections */
  close(): Promise<void>;
}

export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const host = o.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    handle(o, req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `${redactUrlsIn(errorMessage(err))}\n`, req.method === 'HEAD');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port,
    host,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

async function handle(o: MetricsServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path !== '/metrics' && path !== '/healthz') return send(res, 404, 'text/plain; charset=utf-8', 'not found; try /metrics or /healthz\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
  }
  const head = req.method === 'HEAD';
  if (path === '/metrics') return send(res, 200, METRICS_CONTENT_TYPE, await o.metrics.render(), head);
  const h = await o.health();
  const body: Record<string, unknown> = { status: h.ok ? 'ok' : 'unavailable', store: h.store.up ? 'up' : 'down', broker: h.broker.up ? 'up' : 'down' };
  const errors: Record<string, string> = {};
  if (!h.store.up) errors.store = h.store.error ?? 'unavailable';
  if (!h.broker.up) errors.broker = h.broker.error ?? 'unavailable';
  if (!h.ok) body.errors = errors;
  send(res, h.ok ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`, head);
}

function send(res: ServerResponse, status: number, type: string, body: string, head = false): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(head ? undefined : body);
}
