/**
 * `run`'s flags at their edges, in-process: where the metrics server listens by default, and the
 * bounds every numeric flag keeps (a usage error, exit 2, before anything is opened).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { startMetricsServer } from '../../src/metrics-server.js';

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

describe('run --metrics-host', () => {
  it('listens on 127.0.0.1 by default, so /healthz error texts stay on this host', async () => {
    const run = startRun(['--backend', sqlite(), '--log-format', 'json', 'run', '--metrics-port', '0']);
    await expect.poll(run.stderr, { timeout: 10_000 }).toMatch(/"msg":"metrics listening"/);
    const line = run.stderr().split('\n').find((l) => l.includes('metrics listening')) ?? '';
    expect(JSON.parse(line)).toMatchObject({ host: '127.0.0.1' });
    expect(await run.stop()).toBe(0);
  });

  it('startMetricsServer without a host listens on 127.0.0.1', async () => {
    const server = await startMetricsServer({ port: 0, metrics: { render: () => '' }, health: async () => ({ ok: true, store: { up: true }, broker: { up: true } }) });
    try {
      expect(server.host).toBe('127.0.0.1');
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
