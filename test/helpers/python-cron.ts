/**
 * Runs `test/e2e/pyapp/python_cron.py`: the Python package's dispatcher (its cron), on Debian's
 * Celery, over a store in the package's bare Redis layout. Skip with `pythonCeleryAvailable()`.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'e2e', 'pyapp', 'python_cron.py');
const TIMEOUT_MS = 60_000;

export interface PythonCronOptions {
  /** the store: a Redis database in the package's layout (no key prefix) */
  storeUrl: string;
  brokerUrl: string;
  resultBackend?: string;
  defaultQueue?: string;
  /** send jobs due by this unix time (default: now) */
  timestamp?: number;
}

export interface PythonCronRun {
  /** the exit code; null when it was killed (see `timedOut`) */
  code: number | null;
  /** true when it ran past the timeout and was killed */
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** the ids it sent, in order */
  sent: string[];
}

export function runPythonCron(o: PythonCronOptions): Promise<PythonCronRun> {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONDONTWRITEBYTECODE: '1', CRON_STORE_URL: o.storeUrl, CRON_BROKER_URL: o.brokerUrl };
  delete env.CRON_RESULT_BACKEND;
  if (o.resultBackend) env.CRON_RESULT_BACKEND = o.resultBackend;
  if (o.defaultQueue) env.CRON_DEFAULT_QUEUE = o.defaultQueue;
  const args = [SCRIPT, ...(o.timestamp !== undefined ? ['--timestamp', String(o.timestamp)] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      const sent = stdout
        .split('\n')
        .filter((l) => l.startsWith('sent '))
        .map((l) => l.split(' ')[1] as string);
      resolve({ code, timedOut, stdout, stderr, sent });
    });
  });
}
