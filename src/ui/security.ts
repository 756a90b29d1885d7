/**
 * What keeps the dashboard safe to open, in one place:
 *
 * - **Headers on every response**: a strict Content-Security-Policy (scripts, styles and requests
 *   from the dashboard itself only, no inline script or style, no frames, no `<base>`), `nosniff`,
 *   `no-store`, no referrer, same-origin opener and resources.
 * - **The Host header**: without an auth token the dashboard answers only to loopback host names
 *   (localhost, 127.0.0.1, [::1]), so a page elsewhere cannot reach it by DNS rebinding (pointing
 *   its own name at 127.0.0.1, which would make it same-origin).
 * - **The auth token**, when set: a request carries it as `Authorization: Bearer <token>` or
 *   holds the session cookie that `POST login` sets (an HMAC of the token, never the token
 *   itself; HttpOnly, SameSite=Strict). Compared in constant time: both sides are hashed to
 *   SHA-256 first, so `timingSafeEqual` compares equal lengths and the time says nothing about
 *   the token.
 * - **Mutations** (every POST but login) need the CSRF token the page got from `GET api/session`
 *   in the `X-CSRF-Token` header, an `Origin` whose host is the request's `Host`, and a JSON body:
 *   a page of another origin can neither read the token nor send that header without asking
 *   first (CORS preflight, which is never granted).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export const SESSION_COOKIE = 'cls_dashboard';
/** The shortest auth token taken: shorter ones can be guessed. */
export const MIN_TOKEN_LENGTH = 16;

/** Equal strings, in time that does not depend on where they differ (or on their lengths). */
export function sameSecret(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/** A fresh random token (CSRF), URL-safe. */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The session cookie's value for a token: an HMAC of it, so the cookie never holds the token. */
export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('celery-longterm-scheduler dashboard session').digest('base64url');
}

/** The value of one cookie of the request, if it is there. */
export function cookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Whether the request carries the auth token (bearer header) or the session cookie made from it. */
export function authorized(req: IncomingMessage, token: string): boolean {
  const auth = req.headers.authorization;
  if (auth !== undefined && /^Bearer /i.test(auth)) return sameSecret(auth.slice(7).trim(), token);
  const c = cookie(req, SESSION_COOKIE);
  return c !== undefined && sameSecret(c, sessionValue(token));
}

/** The Set-Cookie header of a session, for the path the dashboard is mounted at. */
export function sessionCookie(token: string, path: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${sessionValue(token)}; Path=${path}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/** Whether an address to listen on is this host only. */
export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host.toLowerCase()) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The host name of a Host header (without its port; IPv6 in brackets). */
export function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/** Whether the request's Host is one the dashboard answers to (`'any'`: every one). */
export function hostAllowed(req: IncomingMessage, hosts: readonly string[] | 'any'): boolean {
  if (hosts === 'any') return true;
  const h = req.headers.host;
  if (h === undefined) return false;
  const name = hostName(h);
  return isLoopback(name) || hosts.map((x) => x.toLowerCase()).includes(name);
}

/** Why a mutation is refused (a one-line reason), or undefined when it may go on. */
export function mutationRefusal(req: IncomingMessage, csrfToken: string): string | undefined {
  const given = req.headers['x-csrf-token'];
  if (typeof given !== 'string' || !sameSecret(given, csrfToken))
    return 'this change needs the X-CSRF-Token header the dashboard page sends; reload the page and try again';
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (typeof origin !== 'string' || host === undefined) return 'this change needs an Origin header naming this dashboard (same-origin requests only)';
  let originHost: string;
  try {
    originHost = new URL(origin).host;
  } catch {
    return `the Origin ${JSON.stringify(origin)} is not a URL; changes are taken from this dashboard's own pages only`;
  }
  if (originHost.toLowerCase() !== host.toLowerCase()) return `changes are taken from this dashboard's own pages only, not from ${JSON.stringify(origin)}`;
  return undefined;
}

/** Writes the security headers (every response has them). */
export function secure(res: ServerResponse): void {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
}
