/**
 * Opening Redis connections at the edges: a Sentinel nobody answers on fails within the connect
 * timeout (ioredis alone retries forever), and what the real local Redis says about credentials
 * reaches the operator as one of our log lines, never as a stray console line.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { ConnectionError } from '../../src/util/errors.js';
import { RedisConnections } from '../../src/redis/connection.js';
import type { Logger } from '../../src/util/logger.js';
import { cli } from '../helpers/cli.js';
import { freePort, requireService, sharedRedis, type RedisService } from '../helpers/services.js';

const redis = await sharedRedis();
const bin = join(fileURLToPath(new URL('../..', import.meta.url)), 'dist/cli/main.js');
const run = promisify(execFile);

/** The built CLI as a user runs it: its real stderr, console lines included. */
async function binary(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...argv], { timeout: 60_000 });
    return { code: 0, stdout, stderr, ms: Date.now() - t0 };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, ms: Date.now() - t0 };
  }
}

function recordingLogger(): Logger & { lines: { level: string; message: string }[] } {
  const lines: { level: string; message: string }[] = [];
  return {
    lines,
    info: (message) => lines.push({ level: 'info', message }),
    warn: (message) => lines.push({ level: 'warn', message }),
    error: (message) => lines.push({ level: 'error', message }),
  };
}

describe('a Sentinel that cannot be reached', () => {
  it('fails the first connect within the connect timeout, with one ConnectionError line', async () => {
    const port = await freePort();
    const connections = new RedisConnections(`sentinel://:pw@127.0.0.1:${port}/0`, 'store', { masterName: 'm', socketConnectTimeout: 1 });
    const t0 = Date.now();
    const err = await connections.open().catch((e: unknown) => e);
    const elapsed = Date.now() - t0;
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^cannot reach the store at sentinel://:\\*\\*\\*@127\\.0\\.0\\.1:${port}/0: no Sentinel answered for master "m" within 1 s \\(last error: [^)]+\\); check that it is running`,
      ),
    );
    expect((err as Error).message).not.toContain('\n');
    expect(elapsed).toBeLessThan(2500);
    await connections.closeAll();
  });

  it.skipIf(requireService(redis, 'Redis'))('fails within the timeout too when the Sentinel answers but does not know the master', async () => {
    // a plain Redis answers SENTINEL get-master-addr-by-name with an error: "not a sentinel"
    const { port } = new URL((redis as RedisService).url);
    const connections = new RedisConnections(`sentinel://127.0.0.1:${port}`, 'store', { masterName: 'nope', socketConnectTimeout: 1 });
    const t0 = Date.now();
    await expect(connections.open()).rejects.toThrow(ConnectionError);
    expect(Date.now() - t0).toBeLessThan(2500);
    await connections.closeAll();
  });

  it('the CLI exits 1 within the default 10 s connect timeout', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const r = await cli(['--backend', `sentinel://127.0.0.1:${port}`, '--backend-master-name', 'm', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: cannot reach the long-term scheduler store \(Redis\) at sentinel:\/\/127\.0\.0\.1:\d+: no Sentinel answered for master "m" within 10 s/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(Date.now() - t0).toBeLessThan(12_000);
  }, 20_000);
});

describe.skipIf(requireService(redis, 'Redis'))('credentials against the real local Redis (it has no password)', () => {
  let raw: Redis;
  const url = (userinfo: string) => `redis://${userinfo}@${new URL((redis as RedisService).url).host}/0`;
  afterAll(() => raw?.disconnect());
  afterEach(() => vi.restoreAllMocks());

  it('is a Redis without auth, as these tests assume', async () => {
    raw = new Redis((redis as RedisService).urlFor(0));
    expect(await raw.config('GET', 'requirepass')).toEqual(['requirepass', '']);
  });

  // (`default:s3cret` draws no warning: Redis 7 answers OK to AUTH for a `nopass` user)
  it('a password the server does not need: one warning through the logger, no console line, and it works', async () => {
    const userinfo = ':s3cret';
    const warn = vi.spyOn(console, 'warn');
    const logger = recordingLogger();
    const connections = new RedisConnections(url(userinfo), 'store', { logger });
    try {
      const a = await connections.open();
      const b = await connections.open();
      expect(await a.ping()).toBe('PONG');
      expect(await b.ping()).toBe('PONG');
      expect(warn).not.toHaveBeenCalled();
      expect(logger.lines).toHaveLength(1); // once per connection pool, not per connection
      expect(logger.lines[0]?.level).toBe('warn');
      expect(logger.lines[0]?.message).toMatch(/^the store at redis:\/\/:\*\*\*@\S+ does not require a password, but the URL gives one/);
      expect(logger.lines[0]?.message).not.toContain('s3cret');
    } finally {
      await connections.closeAll();
    }
  });

  it('without a logger, the library reports it once as a process warning', async () => {
    const warn = vi.spyOn(console, 'warn');
    const emitted = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const connections = new RedisConnections(url(':s3cret'), 'store');
    try {
      await connections.open();
      await connections.open();
      expect(warn).not.toHaveBeenCalled();
      expect(emitted).toHaveBeenCalledTimes(1);
      expect(emitted.mock.calls[0]?.[0]).toMatch(/does not require a password/);
      expect(emitted.mock.calls[0]?.[1]).toMatchObject({ code: 'CLS_REDIS_UNCHECKED_PASSWORD' });
    } finally {
      await connections.closeAll();
    }
  });

  it('the CLI: no stray [WARN] line, the warning as one of its log lines (text and JSON)', async () => {
    const prefix = `cls-test:pw:${Date.now()}:`;
    const text = await binary('--backend', url(':s3cret'), '--key-prefix', prefix, 'list');
    expect(text.code).toBe(0);
    expect(text.stdout).toBe('no scheduled jobs match\n');
    expect(text.stderr).not.toMatch(/\[WARN\]|\[ERROR\]/);
    expect(text.stderr).toMatch(/^\S+ WARN the long-term scheduler store \(Redis\) at redis:\/\/:\*\*\*@\S+ does not require a password/);
    expect(text.stderr.trim().split('\n')).toHaveLength(1);
    const json = await binary('--backend', url(':s3cret'), '--key-prefix', prefix, '--log-format', 'json', 'list', '--json');
    expect(json.code).toBe(0);
    expect(json.stdout).toBe(''); // stdout stays the program's: no jobs, no warnings
    expect(JSON.parse(json.stderr)).toMatchObject({ level: 'warn', msg: expect.stringMatching(/does not require a password/) });
    expect(text.stderr + json.stderr).not.toContain('s3cret');
  });

  it('a refused user and password: exits 1 at once naming the refusal, no 120 s wait', async () => {
    const r = await binary('--backend', url('nobody:s3cret'), 'list');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot reach the long-term scheduler store \(Redis\) at redis:\/\/nobody:\*\*\*@\S+: WRONGPASS/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.ms).toBeLessThan(5000);
  });
});

describe.skipIf(requireService(redis, 'Redis'))('closing while a connection is being made', () => {
  it('closeAll ends a connection still being made: it is never handed out', async () => {
    const pool = new RedisConnections((redis as RedisService).urlFor(0), 'test store (Redis)');
    const opening = pool.open();
    await pool.closeAll();
    const err = await opening.then(
      (c) => c,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect(String(err)).toMatch(/closed while this one was being made|Connection is closed/);
  });
});
