/**
 * Sentinel URLs as Celery writes them, against a real Redis master watched by a real Sentinel
 * (both private, started here): scheduling, dispatching and revoking go through the master the
 * Sentinel names.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Celery, getScheduler } from '../../src/index.js';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';
import { canConnect, freePort, privateRedis, requireService, type RedisService } from '../helpers/services.js';

const master = await privateRedis();
const skip = requireService(master, 'redis-server (for a private master and Sentinel)');

describe.skipIf(skip)('a store and a broker behind Redis Sentinel', () => {
  let server: RedisService;
  let sentinel: ChildProcess;
  let dir: string;
  let sentinelPort: number;
  let app: Celery;
  let raw: Redis;

  beforeAll(async () => {
    server = master as RedisService;
    const masterPort = new URL(server.url).port;
    sentinelPort = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'cls-sentinel-'));
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(conf, `port ${sentinelPort}\nbind 127.0.0.1\nsentinel monitor testmaster 127.0.0.1 ${masterPort} 1\n`);
    sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    const deadline = Date.now() + 5000;
    while (!(await canConnect('127.0.0.1', sentinelPort, 200)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    const url = (db: number) => `sentinel://127.0.0.1:${sentinelPort}/${db};sentinel://127.0.0.1:${sentinelPort}/${db}`;
    app = new Celery({
      broker: url(0),
      longtermSchedulerBackend: url(1),
      longtermSchedulerMasterName: 'testmaster',
      brokerTransportOptions: { master_name: 'testmaster' },
    });
    raw = new Redis(server.urlFor(0));
  }, 30_000);

  afterAll(async () => {
    await app?.close();
    raw?.disconnect();
    sentinel?.kill('SIGTERM');
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('schedules into the master named by the Sentinel, dispatches to it, and revokes there', async () => {
    const storeDb = new Redis(server.urlFor(1));
    const kept = await app.task('t.s').applyAsync([1], {}, { countdown: 0, queue: 'sq' });
    const gone = await app.task('t.s').applyAsync([2], {}, { countdown: 0, queue: 'sq' });
    expect(await storeDb.zcard('scheduled_task_id_by_time')).toBe(2);
    expect(await getScheduler(app).revoke(gone.id)).toBe(true);
    expect(await getScheduler(app).dispatchDue()).toMatchObject({ sent: 1, failed: 0 });
    const sent = (await raw.lrange('sq', 0, -1)).map((m) => parseRedisEnvelope(m).headers.id);
    expect(sent).toEqual([kept.id]);
    storeDb.disconnect();
  });

  it('refuses a Sentinel URL without a master name, clearly', () => {
    expect(() => new Celery({ longtermSchedulerBackend: `sentinel://127.0.0.1:${sentinelPort}` }).store).toThrow(/give the master name/);
  });
});
