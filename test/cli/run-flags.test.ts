/**
 * `run`'s flags at their edges, in-process: where the metrics server listens by default, and the
 * bounds every numeric flag keeps (a usage error, exit 2, before anything is opened).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { startMetricsServer } from '../../src/metrics/server.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-run-flags-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const sqlite = () => `sqlite:///${join(dir, `r${files++}.db`)}`;

/** Starts `run` in-process; `stop()` sends it SIGTERM and resolves with its exit code. */
function startRun(argv: string[]) {
  let stderr = '';
  let handler: ((s: NodeJS.Signals) => void) | undefined;
  const done = runCli(argv, {
    stdout: () => {},
    stderr: (t) => (stderr += t),
    env: {},
    onSignal: (h) => {
      handler = h;
      return () => {};
    },
  });
  return {
    stderr: () => stderr,
    stop: async () => {
      handler?.('SIGTERM');
      return done;
    },
  };
}

/** The log line in which `run` says where its metrics server listens, once it has. */
async function listeningLine(run: ReturnType<typeof startRun>): Promise<string> {
  await expect.poll(run.stderr, { timeout: 10_000 }).toMatch(/"msg":"metrics listening"/);
  return (
    run
      .stderr()
      .split('\n')
      .find((l) => l.includes('metrics listening')) ?? ''
  );
}

describe('run --metrics-host', () => {
  it('listens on 127.0.0.1 by default, so /healthz error texts stay on this host', async () => {
    const run = startRun(['--backend', sqlite(), '--log-format', 'json', 'run', '--metrics-port', '0']);
    const line = await listeningLine(run);
    expect(JSON.parse(line)).toMatchObject({ host: '127.0.0.1' });
    expect(await run.stop()).toBe(0);
  });

  it('serves the dispatcher’s metrics and prom-client’s default process metrics on /metrics', async () => {
    const run = startRun(['--backend', sqlite(), '--log-format', 'json', 'run', '--metrics-port', '0']);
    const line = await listeningLine(run);
    const { port } = JSON.parse(line) as { port: number };
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const name of ['cls_jobs_dispatched_total', 'cls_store_up 1', 'process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds'])
      expect(text).toContain(name);
    expect(await run.stop()).toBe(0);
  });

  it('startMetricsServer without a host listens on 127.0.0.1', async () => {
    const server = await startMetricsServer({
      port: 0,
      metrics: { render: () => '' },
      health: async () => ({ ok: true, store: { up: true }, broker: { up: true } }),
    });
    try {
      expect(server.host).toBe('127.0.0.1');
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('numeric flags at their extremes: a usage error before anything is opened', () => {
  const backend = () => ['--backend', sqlite()];
  it.each([
    [
      ['run', '--lease-ms', '1'],
      /^error: --lease-ms 1 is below 1000: a lease that runs out between claiming a job and acknowledging it lets another dispatcher send the job again; pass 1000 or more\n$/,
    ],
    [['run', '--lease-ms', '999'], /--lease-ms 999 is below 1000/],
    [['run', '--lease-ms', '1e12'], /^error: --lease-ms must be a whole number from 1000 to 86400000, got "1e12"\n$/],
    [['run', '--poll-interval-ms', '1'], /^error: --poll-interval-ms must be a whole number from 10 to 86400000, got "1"\n$/],
    [['run', '--poll-interval-ms', '1e10'], /--poll-interval-ms must be a whole number from 10 to 86400000/],
    [['run', '--batch-size', '1e9'], /^error: --batch-size must be a whole number from 1 to 10000, got "1e9"\n$/],
    [['run', '--batch-size', '0'], /--batch-size must be a whole number from 1 to 10000/],
    [['dispatch', '--batch-size', '100001'], /--batch-size must be a whole number from 1 to 10000/],
    [['migrate', '--from', 'sqlite://:memory:', '--to', 'sqlite://:memory:', '--batch-size', '1e6'], /--batch-size must be a whole number from 1 to 10000/],
    [['list', '--limit', '1e9'], /^error: --limit must be a whole number from 1 to 10000, got "1e9"\n$/],
    [['list', '--limit', ''], /--limit must be a whole number from 1 to 10000, got ""/],
    [['stats', '--days', '1e9'], /^error: --days must be a whole number from 1 to 3660, got "1e9"\n$/],
    [['stats', '--days', '0'], /--days must be a whole number from 1 to 3660/],
    [['stats', '--days', '2.5'], /--days must be a whole number from 1 to 3660/],
  ])('%j: exit 2, one line', async (argv, message) => {
    const errors: string[] = [];
    const code = await runCli([...backend(), ...argv], { stdout: () => {}, stderr: (t) => errors.push(t), env: {} });
    expect(code).toBe(2);
    expect(errors.join('')).toMatch(message);
  });

  it('the edges themselves are accepted: stats --days 3660, list --limit 10000, run --lease-ms 1000', async () => {
    const out: string[] = [];
    const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t), env: {} };
    expect(await runCli([...backend(), 'stats', '--days', '3660', '--json'], io)).toBe(0);
    expect((JSON.parse(out.pop() ?? '') as { byDay: unknown[] }).byDay).toHaveLength(3660);
    expect(await runCli([...backend(), 'list', '--limit', '10000'], io)).toBe(0);
    const run = startRun([...backend(), '--log-format', 'json', 'run', '--lease-ms', '1000', '--poll-interval-ms', '10', '--batch-size', '10000']);
    await expect.poll(run.stderr, { timeout: 10_000 }).toMatch(/"msg":"dispatcher started"/);
    expect(await run.stop()).toBe(0);
  });

  it('jobStats refuses days out of range too', async () => {
    const { jobStats } = await import('../../src/admin/scheduled-jobs.js');
    const { MemoryStore } = await import('../../src/stores/memory/memory-store.js');
    const { ValidationError } = await import('../../src/util/errors.js');
    for (const days of [0, 3661, 1e9, 1.5, Number.NaN]) await expect(jobStats(new MemoryStore(), new Date(), { days })).rejects.toThrow(ValidationError);
  });

  it('run --help says why the lease has a floor, and every bound', async () => {
    let help = '';
    await runCli(['run', '--help'], { stdout: (t) => (help += t), stderr: () => {}, env: {} });
    expect(help.replace(/\s+/g, ' ')).toMatch(
      /1000 to 86400000 \(a day\): a shorter lease can run out between claiming a job and acknowledging it, and another dispatcher then sends the job again/,
    );
    expect(help.replace(/\s+/g, ' ')).toMatch(/10 to 86400000 \(a day\)/);
    expect(help.replace(/\s+/g, ' ')).toMatch(/1 to 10000/);
  });
});
