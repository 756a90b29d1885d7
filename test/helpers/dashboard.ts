/**
 * The dashboard for tests: requests with every header under the test's control (node:http, so
 * Host, Origin and Cookie are sent as given), and a record of every response, so a test can
 * assert that no secret appeared in any of them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface DashboardProcess {
  child: ChildProcess;
  port: number;
  /** what it wrote to stdout and stderr so far */
  output: () => string;
  /** SIGTERM, and how it ended */
  stop: () => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * The built CLI (`dist/cli/main.js`) as a child process with `argv`, once it said where it listens:
 * the `dashboard at http://…/` line of `ui`, or the `dashboard listening` log line of `run --ui-port`.
 */
export async function spawnDashboard(argv: readonly string[], env: Record<string, string> = {}): Promise<DashboardProcess> {
  const child = spawn(process.execPath, [join(root, 'dist/cli/main.js'), ...argv], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the dashboard did not say where it listens within 15 s:\n${out}`)), 15_000);
    const look = (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const m = /dashboard at http:\/\/[^:]+:(\d+)\//.exec(out) ?? /"msg":"dashboard listening".*?"port":(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', look);
    child.stderr?.on('data', look);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`the dashboard exited (${code}) before it listened:\n${out}`));
    });
  });
  return {
    child,
    port,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
