/**
 * Opening Redis connections at the edges: a Sentinel nobody answers on fails within the connect
 * timeout (ioredis alone retries forever), and what the real local Redis says about credentials
 * reaches the operator as one of our log lines, never as a stray console line.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { ConnectionError } from '../../src/errors.js';
import { RedisConnections } from '../../src/redis-connection.js';
import { cli } from '../helpers/cli.js';
import { freePort, requireService, sharedRedis, type RedisService } from '../helpers/services.js';

const redis = await sharedRedis();

describe('a Sentinel that cannot be reached', () => {
  it('fails the first connect within the connect timeout, with one ConnectionError line', async () => {
    const port = await freePort();
    const connections = new RedisConnections(`sentinel://:pw@127.0.0.1:${port}/0`, 'store', { masterName: 'm', socketConnectTimeout: 1 });
    const t0 = Date.now();
    const err = await connections.open().catch((e: unknown) => e);
    const elapsed = Date.now() - t0;
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(new RegExp(`^cannot reach the store at sentinel://:\\*\\*\\*@127\\.0\\.0\\.1:${port}/0: no Sentinel answered for master "m" within 1 s \\(last error: [^)]+\\); check that it is running`));
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
    expect(r.stderr).toMatch(/^error: cannot reach the long-term scheduler store \(Redis\) at sentinel:\/\/127\.0\.0\.1:\d+: no Sentinel answered for master "m" within 10 s/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(Date.now() - t0).toBeLessThan(12_000);
  }, 20_000);
});

describe.skipIf(requireService(redis, 'Redis'))('credentials against the real local Redis (it has no password)', () => {
  let raw: Redis;
  afterAll(() => raw?.disconnect());

  it('is a Redis without auth, as these tests assume', async () => {
    raw = new Redis((redis as RedisService).urlFor(0));
    expect(await raw.config('GET', 'requirepass')).toEqual(['requirepass', '']);
  });
});
