/**
 * The page's side of the JSON API (types: api-types.ts). Every URL is relative, so the dashboard
 * works wherever it is mounted. A POST carries the CSRF token from `api/session`; the browser adds
 * the Origin the server checks. An error answer becomes an `ApiError` holding the server's one line.
 */
import type { SessionInfo } from './api-types.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = '';

async function read<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text.trim() || res.statusText };
  }
  if (res.status === 401) {
    // the session ended (or the token changed): the page itself shows the login form
    location.reload();
  }
  if (!res.ok) throw new ApiError(res.status, (body as { error?: string }).error ?? `${res.status} ${res.statusText}`);
  return body as T;
}

export async function get<T>(route: string, params?: URLSearchParams): Promise<T> {
  const q = params && [...params.keys()].length ? `?${params.toString()}` : '';
  return read<T>(await fetch(`api/${route}${q}`, { headers: { Accept: 'application/json' }, credentials: 'same-origin' }));
}

export async function post<T>(route: string, body: unknown): Promise<T> {
  return read<T>(
    await fetch(`api/${route}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-Token': csrf },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    }),
  );
}

export async function loadSession(): Promise<SessionInfo> {
  const s = await get<SessionInfo>('session');
  csrf = s.csrfToken;
  return s;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
