/**
 * `celery-longterm-scheduler run` as a real child process, for tests: JSON log lines collected,
 * stopped politely or killed; and reading what it sent off a Redis broker queue.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist/cli/main.js');

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface RunProcess {
  child: ChildProcess;
  /** the JSON log lines written so far */
  logs: LogLine[];
  /** all of stderr so far (for failure messages) */
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive: () => boolean;
}

export interface RunOptions {
  backend: string;
  broker: string;
  /** Redis stores only */
  prefix?: string;
  batchSize: number;
  leaseMs: number;
  /** default 100 */
  pollIntervalMs?: number;
}

export const children = new Set<ChildProcess>();

export function spawnRun(o: RunOptions): RunProcess {
  const argv = [bin, '--backend', o.backend, '--broker', o.broker, ...(o.prefix ? ['--key-prefix', o.prefix] : []), '--log-format', 'json', 'run'];
  argv.push('--poll-interval-ms', String(o.pollIntervalMs ?? 100), '--lease-ms', String(o.leaseMs), '--batch-size', String(o.batchSize));
  const child = spawn(process.execPath, argv, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  const logs: LogLine[] = [];
  let text = '';
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    text += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        /* not a log line */
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, logs, stderr: () => text, exited, alive: () => child.exitCode === null && child.signalCode === null };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/** Polls `check` until it returns a truthy value, and returns it; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 60_000, intervalMs = 20): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as Truthy<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export function hasLog(p: RunProcess, test: (l: LogLine) => boolean): boolean {
  return p.logs.some(test);
}

/** How many log lines of each message a process wrote (for failure messages). */
export function logSummary(p: RunProcess): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of p.logs) out[l.msg] = (out[l.msg] ?? 0) + 1;
  return out;
}

/** Pops every message off `queue` and returns their Celery task ids. */
export async function drainQueue(client: Redis, queue: string): Promise<string[]> {
  const ids: string[] = [];
  for (;;) {
    const raws = await client.rpop(queue, 1000);
    if (!raws || raws.length === 0) return ids;
    for (const r of raws) ids.push(String(parseRedisEnvelope(r).headers.id));
  }
}

export function duplicates(ids: readonly string[]): number {
  return ids.length - new Set(ids).size;
}

/**
 * SIGTERM, then waits for the "dispatcher stopped" line and up to 3 s more for the exit; SIGKILL
 * after that. Returns how it ended. (Whether the exit itself is prompt is the SIGTERM test's subject.)
 */
export async function stopRun(p: RunProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (!p.alive()) return p.exited;
  p.child.kill('SIGTERM');
  await waitFor('"dispatcher stopped"', () => hasLog(p, (l) => l.msg === 'dispatcher stopped') || !p.alive(), 15_000);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 3000);
  try {
    return await p.exited;
  } finally {
    clearTimeout(timer);
  }
}
