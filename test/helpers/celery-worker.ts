/**
 * A real Python Celery worker for end-to-end tests.
 *
 * Runs `/usr/bin/python3 -m celery -A e2e_tasks worker` (the Debian Celery 5.2; the PATH `python3` may
 * lack celery) against the app in `test/e2e/pyapp/e2e_tasks.py`. Every task of that app appends one
 * JSON line to the Redis list `recordKey`, which `records()` / `waitForRecords()` read back.
 *
 * - Solo pool by default (fast start); `concurrency > 1` switches to prefork.
 * - No heartbeat, gossip, mingle or remote control, so nothing but the given queues (and the record
 *   key) is touched on a shared Redis. Kombu also BRPOPs the priority lists `<queue>\x06\x16<n>`.
 * - `remoteControl: true` turns the pidbox on (for revoke broadcasts); give it a unique
 *   `controlExchange` so other tests' broadcasts do not reach it. `stop()` then also deletes the
 *   `_kombu.binding.<control_exchange>.pidbox` sets.
 * - `startCeleryWorker` resolves once the worker logs "ready.", and rejects after 30 s with its log.
 * - `stop()` sends SIGTERM, then SIGKILL after 10 s, and deletes the record key and the
 *   `_kombu.binding.<queue>` sets the worker declared. Workers left running are killed when the
 *   test process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';

export interface WorkerRecord {
  task: string;
  id: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  queue: string | null;
  priority: number | null;
  eta: string | null;
  expires: string | null;
  headers: Record<string, unknown> | null;
  at: number;
  [k: string]: unknown;
}

export interface CeleryWorker {
  /** All records written so far, oldest first. */
  records(): Promise<WorkerRecord[]>;
  /** Polls until at least `n` records exist; rejects with the count and the log tail on timeout. */
  waitForRecords(n: number, timeoutMs?: number): Promise<WorkerRecord[]>;
  /** The worker's captured stdout + stderr. */
  log(): string;
  stop(): Promise<void>;
}

export interface StartCeleryWorkerOptions {
  brokerUrl: string;
  queues: string[];
  recordKey: string;
  resultBackend?: string;
  concurrency?: number;
  /** Redis for the record list (E2E_RECORD_REDIS_URL); default `brokerUrl`. Required for a non-Redis broker. */
  recordRedisUrl?: string;
  /** `task_queue_max_priority` of the worker (E2E_QUEUE_MAX_PRIORITY), e.g. to match a RabbitMQ queue declared with `x-max-priority`. */
  queueMaxPriority?: number;
  /** Celery's `broker_transport_options` for the worker (E2E_BROKER_TRANSPORT_OPTIONS), e.g. `{ global_keyprefix: 'pfx:' }`. */
  transportOptions?: Record<string, unknown>;
  /** turn remote control (the pidbox, which hears revoke broadcasts) on (E2E_REMOTE_CONTROL=1); default off */
  remoteControl?: boolean;
  /** Celery's `control_exchange` (E2E_CONTROL_EXCHANGE), to isolate a test's broadcasts; default 'celery' */
  controlExchange?: string;
}

const PYTHON = '/usr/bin/python3';
const PYAPP_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'e2e', 'pyapp');
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_LIMIT = 200_000;

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

let available: boolean | undefined;

/** True when /usr/bin/python3 can import celery and redis (checked once). */
/** Waits until the worker's log matches `pattern`; fails with the log's tail after `timeoutMs`. */
export async function waitForWorkerLog(worker: CeleryWorker, pattern: RegExp, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(worker.log())) {
    if (Date.now() > deadline) throw new Error(`worker never logged ${pattern}; log tail:\n${worker.log().split('\n').slice(-30).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function pythonCeleryAvailable(): boolean {
  if (available === undefined) {
    const r = spawnSync(PYTHON, ['-c', 'import celery, redis'], { stdio: 'ignore', timeout: 20_000 });
    available = r.status === 0;
  }
  return available;
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function startCeleryWorker(opts: StartCeleryWorkerOptions): Promise<CeleryWorker> {
  if (opts.queues.length === 0) throw new Error('startCeleryWorker: at least one queue is required');
  const concurrency = opts.concurrency ?? 1;
  const pool = concurrency > 1 ? ['-P', 'prefork', '-c', String(concurrency)] : ['-P', 'solo'];
  const hostname = `e2e-${randomBytes(4).toString('hex')}@%h`;
  const args = [
    '-m',
    'celery',
    '-A',
    'e2e_tasks',
    'worker',
    ...pool,
    '-Q',
    opts.queues.join(','),
    '-n',
    hostname,
    '--loglevel',
    'INFO',
    '--without-heartbeat',
    '--without-gossip',
    '--without-mingle',
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONPATH: [PYAPP_DIR, process.env.PYTHONPATH].filter(Boolean).join(':'),
    E2E_BROKER_URL: opts.brokerUrl,
    E2E_RECORD_KEY: opts.recordKey,
    E2E_DEFAULT_QUEUE: opts.queues[0],
  };
  delete env.E2E_RESULT_BACKEND;
  if (opts.resultBackend) env.E2E_RESULT_BACKEND = opts.resultBackend;
  delete env.E2E_RECORD_REDIS_URL;
  if (opts.recordRedisUrl) env.E2E_RECORD_REDIS_URL = opts.recordRedisUrl;
  delete env.E2E_QUEUE_MAX_PRIORITY;
  if (opts.queueMaxPriority !== undefined) env.E2E_QUEUE_MAX_PRIORITY = String(opts.queueMaxPriority);
  delete env.E2E_REMOTE_CONTROL;
  if (opts.remoteControl) env.E2E_REMOTE_CONTROL = '1';
  delete env.E2E_CONTROL_EXCHANGE;
  if (opts.controlExchange) env.E2E_CONTROL_EXCHANGE = opts.controlExchange;
  delete env.E2E_BROKER_TRANSPORT_OPTIONS;
  if (opts.transportOptions) env.E2E_BROKER_TRANSPORT_OPTIONS = JSON.stringify(opts.transportOptions);

  const child = spawn(PYTHON, args, { cwd: PYAPP_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let log = '';
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      running.delete(child);
      resolve();
    });
  });

  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer): void => {
      log += chunk.toString('utf8');
      if (log.length > LOG_LIMIT) log = log.slice(-LOG_LIMIT);
      if (/ ready\.\s*$/m.test(log)) settle();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (err) => settle(new Error(`celery worker could not be spawned: ${err.message}`)));
    child.once('exit', (code, signal) => settle(new Error(`celery worker exited before ready (code ${code}, signal ${signal}):\n${tail(log)}`)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(new Error(`celery worker not ready after ${READY_TIMEOUT_MS} ms:\n${tail(log)}`));
    }, READY_TIMEOUT_MS);
  });

  const redis = new Redis(opts.recordRedisUrl ?? opts.brokerUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  // kombu's Redis binding sets exist only when the broker itself is Redis
  const brokerIsRedis = /^rediss?:/i.test(opts.brokerUrl);

  const records = async (): Promise<WorkerRecord[]> => {
    const lines = await redis.lrange(opts.recordKey, 0, -1);
    return lines.map((line) => JSON.parse(line) as WorkerRecord);
  };

  const waitForRecords = async (n: number, timeoutMs = 20_000): Promise<WorkerRecord[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await records();
      if (got.length >= n) return got;
      if (Date.now() > deadline || exited) {
        const why = exited ? 'worker exited' : `timed out after ${timeoutMs} ms`;
        throw new Error(`expected ${n} worker record(s), got ${got.length} (${why}); worker log tail:\n${tail(log)}`);
      }
      await sleep(50);
    }
  };

  const stop = async (): Promise<void> => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exitPromise;
      clearTimeout(timer);
    }
    try {
      const ctl = opts.controlExchange ?? 'celery';
      // with remote control, kombu also binds the worker's pidbox queue (and replies) on Redis
      const pidbox = brokerIsRedis && opts.remoteControl ? [`_kombu.binding.${ctl}.pidbox`, `_kombu.binding.reply.${ctl}.pidbox`] : [];
      await redis.del(opts.recordKey, ...(brokerIsRedis ? opts.queues.map((q) => `_kombu.binding.${q}`) : []), ...pidbox);
    } finally {
      redis.disconnect();
    }
  };

  return { records, waitForRecords, log: () => log, stop };
}
