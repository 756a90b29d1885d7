/**
 * rediss:// with Celery's certificate options, against a real Redis serving TLS only (a private
 * server started here, with a throwaway CA and certificate made by openssl).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Celery, getScheduler } from '../../src/index.js';
import { makeTestCertificates, opensslAvailable, type TestCertificates } from '../helpers/certs.js';
import { canConnect, ephemeralRedisArgs, freePort, requireService } from '../helpers/services.js';

const tools = opensslAvailable && spawnSync('sh', ['-c', 'command -v redis-server']).status === 0 ? true : undefined;
const skip = requireService(tools, 'openssl and redis-server (for a private TLS Redis)');

describe.skipIf(skip)('rediss:// with certificate options', () => {
  let dir: string;
  let server: ChildProcess;
  let port: number;
  let certs: TestCertificates;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cls-tls-'));
    certs = makeTestCertificates(dir);
    port = await freePort();
    server = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--tls-cert-file',
        certs.cert,
        '--tls-key-file',
        certs.key,
        '--tls-ca-cert-file',
        certs.ca,
        '--tls-auth-clients',
        'no',
        ...ephemeralRedisArgs(dir),
      ],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 5000;
    while (!(await canConnect('127.0.0.1', port, 200)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  }, 30_000);

  afterAll(() => {
    server?.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('schedules and dispatches over TLS when the CA is given', async () => {
    const url = (db: number) => `rediss://localhost:${port}/${db}?ssl_cert_reqs=required&ssl_ca_certs=${certs.ca}`;
    const app = new Celery({ broker: url(0), longtermSchedulerBackend: url(1) });
    try {
      await app.task('t.tls').applyAsync([1], {}, { countdown: 0, queue: 'tlsq' });
      expect(await getScheduler(app).dispatchDue()).toMatchObject({ sent: 1, failed: 0 });
    } finally {
      await app.close();
    }
  });

  it('refuses a server whose certificate it cannot verify, with a one-line connection error', async () => {
    const app = new Celery({ longtermSchedulerBackend: `rediss://localhost:${port}/1`, redisSocketConnectTimeout: 2 });
    try {
      await expect(app.task('t.tls').applyAsync([1], {}, { countdown: 5 })).rejects.toThrow(
        /cannot reach the long-term scheduler store \(Redis\) at rediss:\/\/localhost/,
      );
    } finally {
      await app.close();
    }
  });
});
