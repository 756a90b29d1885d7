/**
 * The dashboard: `createDashboardHandler` is a node:http request handler, `(req, res) => void`,
 * that serves the page (web/: static files read once, at creation) and its JSON API (api.ts)
 * under `api/`, with the safety of security.ts on every request. Mount it in a server of your
 * own (node:http, Express, Fastify's `server.on('request')`, …), or let `startDashboardServer`
 * listen for it (what `celery-longterm-scheduler ui` and `run --ui-port` do).
 *
 * - Mounting: the page uses relative URLs only, so it works under any prefix. With `basePath`
 *   (`'/scheduler'`) the handler strips that prefix itself; a framework that strips it already
 *   (Express's `app.use('/scheduler', handler)`) needs no option. The prefix without its
 *   trailing slash is redirected to the prefix with one, so relative URLs resolve below it.
 * - Routes: `GET ./` the page; `GET ./api/…` and `POST ./api/…` (api.ts); `GET ./api/events`,
 *   server-sent events with the overview every 2 s; `GET|POST ./login` when there is a token.
 * - Live updates share one read: the overview is read at most once a second, however many pages
 *   are open, and the event timer runs only while a page listens.
 * - `close()` ends the event streams and stops listening to the dispatcher's events; the app is
 *   the caller's to close.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Celery } from '../client/celery.js';
import type { DispatchEvents } from '../dispatch/events.js';
import { ValidationError } from '../util/errors.js';
import { answer, isMutation, oneLine, readOverview, type ApiContext } from './api.js';
import { DispatchStats } from './dispatch-stats.js';
import { MIN_TOKEN_LENGTH, authorized, hostAllowed, isLoopback, mutationRefusal, randomToken, sameSecret, secure, sessionCookie } from './security.js';
import type { Overview } from './web/api-types.js';

export interface DashboardOptions {
  /** the app whose store (and broker, result backend) the dashboard shows; the caller closes it */
  app: Celery;
  /** the path the dashboard is mounted at, e.g. '/scheduler' (default: wherever requests arrive) */
  basePath?: string;
  /** hide every action and refuse every change (403) */
  readOnly?: boolean;
  /**
   * Require this token (at least 16 characters): as `Authorization: Bearer <token>`, or typed
   * once into the login page, which sets a session cookie. Needed to listen beyond this host.
   */
  authToken?: string;
  /**
   * The Host names the dashboard answers to besides the loopback ones, or 'any'. Default: 'any'
   * with an auth token, else loopback names only (a page elsewhere cannot then reach it by DNS
   * rebinding). Behind a proxy or your own authentication, pass the names it is reached by.
   */
  hosts?: readonly string[] | 'any';
  /** a dispatcher running in this process (its daemon's `events`): the overview shows its rate, lateness and view of store and broker */
  dispatcherEvents?: DispatchEvents;
  /** above this many jobs a bulk action asks for the count to be typed (default 100) */
  confirmThreshold?: number;
  /** how often the live overview is pushed to open pages, ms (default 2000) */
  eventIntervalMs?: number;
}

/** A node:http request handler, with `close()`. */
export interface DashboardHandler {
  (req: IncomingMessage, res: ServerResponse, next?: unknown): void;
  /** ends the event streams and stops listening to the dispatcher */
  close(): void;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
const MAX_EVENT_STREAMS = 32;
/** The most bytes of overview frames one live page may leave unread before it is let go. */
const MAX_UNSENT_BYTES = 256 * 1024;

/** The page's files, read once: the built ones (dist/ui/web) or, running from the sources, the static ones of src/ui/web. */
function loadAssets(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(dir)) {
    if (TYPES[extname(name)] === undefined) continue;
    files.set(name, readFileSync(`${dir}/${name}`));
  }
  return files;
}

let assetCache: Map<string, Buffer> | undefined;

export function createDashboardHandler(o: DashboardOptions): DashboardHandler {
  checkOptions(o);
  const app = o.app;
  const assets = (assetCache ??= loadAssets(fileURLToPath(new URL('./web/', import.meta.url))));
  const token = o.authToken;
  const hosts = o.hosts ?? (token !== undefined ? 'any' : []);
  const basePath = (o.basePath ?? '').replace(/\/+$/, '');
  const stats = o.dispatcherEvents ? new DispatchStats(o.dispatcherEvents) : undefined;
  const csrfToken = randomToken();

  let shared: { at: number; value: Promise<Overview> } | undefined;
  const overview = (): Promise<Overview> => {
    const t = Date.now();
    if (!shared || t - shared.at >= 1000) shared = { at: t, value: readOverview(app, stats) };
    return shared.value;
  };
  const ctx: ApiContext = { app, readOnly: o.readOnly === true, csrfToken, confirmThreshold: o.confirmThreshold ?? 100, stats, overview };

  // --- the live overview: one timer for every open stream -----------------------------------
  const streams = new Set<ServerResponse>();
  let timer: NodeJS.Timeout | undefined;
  const push = (res?: ServerResponse) => {
    overview().then(
      (v) => {
        const frame = `event: overview\ndata: ${JSON.stringify(v)}\n\n`;
        for (const s of res ? [res] : streams) {
          // a page that stopped reading (a stuck tab, a slow link) is let go before its
          // unsent frames pile up in this process; its EventSource reconnects when it can
          if (s.writableLength > MAX_UNSENT_BYTES) s.destroy();
          else s.write(frame);
        }
      },
      () => undefined, // readOverview never rejects; kept so a bug cannot crash the process
    );
  };
  const openStream = (req: IncomingMessage, res: ServerResponse) => {
    if (streams.size >= MAX_EVENT_STREAMS) return sendJson(res, 503, { error: `at most ${MAX_EVENT_STREAMS} live pages at once; close some and reload` });
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.write('retry: 3000\n\n');
    streams.add(res);
    push(res);
    timer ??= setInterval(() => push(), o.eventIntervalMs ?? 2000);
    timer.unref();
    req.once('close', () => {
      streams.delete(res);
      if (streams.size === 0 && timer) {
        clearInterval(timer);
        timer = undefined;
      }
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    secure(res);
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    let path = url.pathname;
    if (basePath && (path === basePath || path.startsWith(`${basePath}/`))) path = path.slice(basePath.length);
    const mount = mountOf(req, basePath);
    if (mount.needsSlash) return redirect(res, `${mount.prefix}/${url.search}`);
    if (!hostAllowed(req, hosts))
      return sendText(res, 403, `this dashboard answers to this host's own names only (localhost, 127.0.0.1), not ${JSON.stringify(req.headers.host ?? '')}\n`);
    const method = req.method ?? 'GET';

    if (token !== undefined) {
      if (path === '/login') return login(req, res, token, mount.prefix || '/', assets);
      if (!authorized(req, token) && path !== '/style.css' && path !== '/favicon.svg') {
        if (path.startsWith('/api/'))
          return sendJson(res, 401, { error: 'sign in first: send Authorization: Bearer <token>, or open the dashboard and type the token' });
        return sendLogin(res, 401, assets);
      }
    }

    if (path.startsWith('/api/')) {
      const route = path.slice(5);
      if (route === 'events') return method === 'GET' ? openStream(req, res) : sendJson(res, 405, { error: `${method} is not allowed here; use GET` });
      if (method === 'POST' && isMutation(route)) {
        const refusal = ctx.readOnly ? undefined : mutationRefusal(req, csrfToken);
        if (refusal) return sendJson(res, 403, { error: refusal });
      }
      const stop = new AbortController();
      res.once('close', () => {
        if (!res.writableFinished) stop.abort();
      });
      const started = performance.now();
      const a = await answer(ctx, route, req, url.searchParams, stop.signal);
      res.setHeader('Server-Timing', `app;dur=${(performance.now() - started).toFixed(1)}`);
      return sendJson(res, a.status, a.body, method === 'HEAD');
    }

    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return sendText(res, 405, 'method not allowed\n');
    }
    const name = path === '/' ? 'index.html' : path.slice(1);
    if (name.includes('/') || name === 'login.html' || !assets.has(name)) return sendText(res, 404, 'not found\n');
    return sendAsset(res, 200, assets, name, method === 'HEAD');
  };

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: oneLine(err) });
      else res.destroy();
    });
  }) as DashboardHandler;
  handler.close = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
    for (const s of streams) s.end();
    streams.clear();
    stats?.close();
  };
  return handler;
}

function checkOptions(o: DashboardOptions): void {
  const problems: string[] = [];
  if (o === null || typeof o !== 'object' || o.app === undefined) throw new ValidationError(['pass the app: createDashboardHandler({ app })']);
  if (o.authToken !== undefined && (typeof o.authToken !== 'string' || o.authToken.length < MIN_TOKEN_LENGTH))
    problems.push(`the auth token must be at least ${MIN_TOKEN_LENGTH} characters (a shorter one can be guessed); make one with e.g. openssl rand -hex 24`);
  if (o.basePath !== undefined && (typeof o.basePath !== 'string' || (o.basePath !== '' && !o.basePath.startsWith('/'))))
    problems.push(`basePath must start with "/", e.g. "/scheduler", got ${JSON.stringify(o.basePath)}`);
  const t = o.confirmThreshold;
  if (t !== undefined && (!Number.isInteger(t) || t < 0)) problems.push(`confirmThreshold must be a whole number >= 0, got ${String(t)}`);
  const i = o.eventIntervalMs;
  if (i !== undefined && (!Number.isFinite(i) || i < 100)) problems.push(`eventIntervalMs must be a number of ms >= 100, got ${String(i)}`);
  if (problems.length) throw new ValidationError(problems);
}

/**
 * Where the dashboard is mounted, as the browser sees it: `basePath`, or what a framework cut off
 * the path (Express keeps the whole of it in `originalUrl`); and whether the request named the
 * mount without its trailing slash (Express turns `/scheduler` into `/`), which is redirected.
 */
function mountOf(req: IncomingMessage, basePath: string): { prefix: string; needsSlash: boolean } {
  const own = (req.url ?? '/').split('?', 1)[0] ?? '/';
  if (basePath) return { prefix: basePath, needsSlash: own === basePath };
  const originalUrl = (req as IncomingMessage & { originalUrl?: unknown }).originalUrl;
  const original = typeof originalUrl === 'string' ? (originalUrl.split('?', 1)[0] ?? own) : own;
  if (original === own) return { prefix: '', needsSlash: false };
  if (own === '/' && !original.endsWith('/')) return { prefix: original, needsSlash: true };
  return { prefix: original.endsWith(own) ? original.slice(0, original.length - own.length) : '', needsSlash: false };
}

async function login(req: IncomingMessage, res: ServerResponse, token: string, cookiePath: string, assets: Map<string, Buffer>): Promise<void> {
  if (req.method === 'GET' || req.method === 'HEAD') return sendLogin(res, 200, assets);
  if (req.method !== 'POST') {
    res.setHeader('Allow', 'GET, POST');
    return sendText(res, 405, 'method not allowed\n');
  }
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== 'null') {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host?.toLowerCase() !== req.headers.host?.toLowerCase()) return sendText(res, 403, "sign in from this dashboard's own login page\n");
  }
  let body = '';
  for await (const chunk of req as AsyncIterable<Buffer>) {
    body += chunk.toString('utf8');
    if (body.length > 4096) return sendText(res, 413, 'too long\n');
  }
  const given = new URLSearchParams(body).get('token') ?? '';
  if (!sameSecret(given, token)) return sendLogin(res, 401, assets, 'That is not the token; try again.');
  res.setHeader('Set-Cookie', sessionCookie(token, cookiePath, isTls(req)));
  redirect(res, './', 303);
}

function isTls(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true;
}

function redirect(res: ServerResponse, location: string, status = 308): void {
  res.writeHead(status, { Location: location, 'Content-Length': 0 });
  res.end();
}

function sendJson(res: ServerResponse, status: number, body: unknown, head = false): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(head ? undefined : text);
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** The login page, with a line saying why when there is one (plain text: nothing from the request). */
function sendLogin(res: ServerResponse, status: number, assets: Map<string, Buffer>, message?: string): void {
  const page = (assets.get('login.html') ?? Buffer.from('sign in first\n')).toString('utf8');
  const body = Buffer.from(message ? page.replace('<!--message-->', `<p class="error">${message}</p>`) : page);
  res.writeHead(status, { 'Content-Type': TYPES['.html'] as string, 'Content-Length': body.length });
  res.end(body);
}

function sendAsset(res: ServerResponse, status: number, assets: Map<string, Buffer>, name: string, head = false): void {
  const body = assets.get(name);
  if (!body) return sendText(res, status === 200 ? 404 : status, status === 200 ? 'not found\n' : 'sign in first\n');
  res.writeHead(status, { 'Content-Type': TYPES[extname(name)] as string, 'Content-Length': body.length });
  res.end(head ? undefined : body);
}

// --- a server of its own ------------------------------------------------------------------------

export interface DashboardServerOptions extends DashboardOptions {
  /** 0 picks a free port (see the returned `port`) */
  port: number;
  /** default 127.0.0.1 (this host only); any other address needs `authToken` */
  host?: string;
}

export interface DashboardServer {
  port: number;
  host: string;
  /** where to open it, e.g. http://127.0.0.1:5580/ */
  url: string;
  /** stops listening, ends the event streams and closes open connections */
  close(): Promise<void>;
}

/**
 * Refuses (a `ValidationError`) an address beyond this host without an auth token, and a token
 * too short to be safe: what `startDashboardServer` checks before it listens.
 */
export function checkListen(host: string, authToken: string | undefined): void {
  if (!isLoopback(host) && authToken === undefined)
    throw new ValidationError([
      `the dashboard would listen on ${host}, beyond this host, without an auth token; pass --auth-token (or set CELERY_LONGTERM_SCHEDULER_UI_TOKEN), or listen on 127.0.0.1`,
    ]);
  if (authToken !== undefined && authToken.length < MIN_TOKEN_LENGTH)
    throw new ValidationError([
      `the auth token must be at least ${MIN_TOKEN_LENGTH} characters (a shorter one can be guessed); make one with e.g. openssl rand -hex 24`,
    ]);
}

/**
 * Listens for the dashboard on its own port. Refuses (a `ValidationError`, before listening) an
 * address beyond this host without an auth token: the dashboard changes what is scheduled.
 */
export async function startDashboardServer(o: DashboardServerOptions): Promise<DashboardServer> {
  const host = o.host ?? '127.0.0.1';
  checkListen(host, o.authToken);
  const { port: _port, host: _host, ...handlerOptions } = o;
  const handler = createDashboardHandler(handlerOptions);
  const server = createServer(handler);
  server.keepAliveTimeout = 5000;
  // a client that sends its request slowly (slowloris) holds a socket for at most this long
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    handler.close();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    port,
    host,
    url: `http://${shown === '0.0.0.0' || shown === '[::]' ? '127.0.0.1' : shown}:${port}/`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        handler.close();
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
