/**
 * The dashboard for tests: requests with every header under the test's control (node:http, so
 * Host, Origin and Cookie are sent as given), and a record of every response, so a test can
 * assert that no secret appeared in any of them.
 */
import { request as httpRequest } from 'node:http';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: <T = Record<string, unknown>>() => T;
}

/** Every answer received, headers and body, as text: what "no secret in any response" searches. */
export const seen: string[] = [];

export function request(
  port: number,
  method: string,
  path: string,
  o: { headers?: Record<string, string>; body?: string; hostHeader?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: { Host: o.hostHeader ?? `127.0.0.1:${port}`, ...(o.body !== undefined && { 'Content-Length': Buffer.byteLength(o.body) }), ...o.headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          seen.push(JSON.stringify(res.headers), text);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
        });
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

/** A client of one dashboard: GETs, and POSTs the way its page sends them (CSRF token, Origin, JSON). */
export function client(port: number) {
  let csrf: string | undefined;
  const origin = `http://127.0.0.1:${port}`;
  const token = async () => (csrf ??= (await request(port, 'GET', '/api/session')).json<{ csrfToken: string }>().csrfToken);
  return {
    get: (path: string, headers: Record<string, string> = {}) => request(port, 'GET', path, { headers }),
    post: async (path: string, body: unknown, headers: Record<string, string> = {}) =>
      request(port, 'POST', path, {
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': await token(), Origin: origin, ...headers },
        body: JSON.stringify(body),
      }),
  };
}
