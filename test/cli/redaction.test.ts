/**
 * No secret from a store or broker URL ever reaches stdout, stderr, a log line or `/healthz`,
 * against real services, reachable and not: passwords holding `@`, quotes and spaces, and
 * libpq's `?password=` / `?sslpassword=`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { runCli } from '../../src/cli/program.js';
import { freePort, postgres, rabbitmq, requireService, sharedRedis } from '../helpers/services.js';

const redis = await sharedRedis();
const pgService = await postgres();
const amqpUrl = await rabbitmq();
const dir = mkdtempSync(join(tmpdir(), 'cls-redact-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const sqlite = () => `sqlite:///${join(dir, `r${files++}.db`)}`;

/** every fragment of the secrets used below; none may appear in any output */
const SECRETS = ['pa@ss', 'ss@', 'S3CRET', 'SSLSECRET', 'wr"o', 'o@ng', 'qu"ote', 'sp ace'];
function expectNoSecret(...texts: string[]): void {
  for (const text of texts) for (const s of SECRETS) expect(text).not.toContain(s);
}

describe('secrets in URLs never reach the CLI output', () => {
  it('an unreachable Redis store whose password holds @', async () => {
    const port = await freePort();
    const r = await cli(['--backend', `redis://u:pa@ss@127.0.0.1:${port}/0`, 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^error: cannot reach the long-term scheduler store \\(Redis\\) at redis://u:\\*\\*\\*@127\\.0\\.0\\.1:${port}/0`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expectNoSecret(r.stdout, r.stderr);
  });

  it('an unreachable PostgreSQL store with ?password= and ?sslpassword=', async () => {
    const port = await freePort();
    const r = await cli(['--backend', `postgres://app@127.0.0.1:${port}/x?password=S3CRET&sslpassword=SSLSECRET`, 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/password=\*\*\*&sslpassword=\*\*\*/);
    expectNoSecret(r.stdout, r.stderr);
  });

  describe.skipIf(requireService(pgService, 'PostgreSQL'))('a reachable PostgreSQL', () => {
    it('refusing an unknown role given with ?password= and a password holding @', async () => {
      const u = new URL(pgService!.url);
      for (const url of [
        `postgres://nobody-here@${u.host}${u.pathname}?password=S3CRET&sslpassword=SSLSECRET`,
        `postgres://nobody-here:pa@ss@${u.host}${u.pathname}`,
      ]) {
        const r = await cli(['--backend', url, 'list']);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/role "nobody-here" does not exist/);
        expectNoSecret(r.stdout, r.stderr);
      }
    });
  });

  describe.skipIf(requireService(amqpUrl, 'RabbitMQ'))('a reachable RabbitMQ', () => {
    it('refusing a password that holds a quote and @, in the text and the JSON output', async () => {
      const backend = sqlite();
      expect((await cli(['--backend', backend, 'schedule', 'redact.t', '--countdown', '0'])).code).toBe(0);
      const u = new URL(amqpUrl!);
      const broker = `amqp://guest:wr"o@ng@${u.host}//`;
      for (const extra of [[], ['--json']]) {
        const r = await cli(['--backend', backend, '--broker', broker, '--log-format', 'json', 'dispatch', ...extra]);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/ACCESS.REFUSED/);
        expect(r.stderr).toContain(`amqp://guest:***@${u.host}//`);
        expectNoSecret(r.stdout, r.stderr);
      }
    });
  });

  describe.skipIf(requireService(redis, 'Redis'))('run: log lines and /healthz', () => {
    it('a broker down, its password holding a quote, a space and @: logs and /healthz show it redacted', async () => {
      const backend = sqlite();
      expect((await cli(['--backend', backend, 'schedule', 'redact.t', '--countdown', '0'])).code).toBe(0);
      const port = await freePort();
      const broker = `redis://u:qu"ote sp ace pa@ss@127.0.0.1:${port}/0`;
      let stderr = '';
      let stdout = '';
      let stop: ((s: NodeJS.Signals) => void) | undefined;
      const running = runCli(['--backend', backend, '--broker', broker, '--log-format', 'json', 'run', '--metrics-port', '0', '--poll-interval-ms', '100'], {
        stdout: (t) => (stdout += t),
        stderr: (t) => (stderr += t),
        env: {},
        onSignal: (handler) => {
          stop = handler;
          return () => {};
        },
      });
      await expect.poll(() => stderr, { timeout: 10_000 }).toMatch(/"msg":"metrics listening"/);
      const listening = stderr.split('\n').find((l) => l.includes('metrics listening')) ?? '';
      const { port: metricsPort } = JSON.parse(listening) as { port: number };
      // the daemon tries to publish the due job, fails, and logs the outage
      await expect.poll(() => stderr, { timeout: 10_000 }).toMatch(/"msg":"broker unavailable/);
      const res = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      const body = await res.text();
      expect(res.status).toBe(503);
      expect(body).toContain(`redis://u:***@127.0.0.1:${port}/0`);
      stop?.('SIGTERM');
      expect(await running).toBe(0);
      for (const line of stderr.trim().split('\n')) expect(() => JSON.parse(line) as unknown).not.toThrow(); // every log line still valid JSON
      expect(stderr).toContain(`redis://u:***@127.0.0.1:${port}/0`);
      expectNoSecret(stdout, stderr, body);
    });
  });
});
