/**
 * A driver loads only when its URL scheme is used: a process that imports the package and works
 * with a Redis store and a Redis broker loads neither pg, amqplib nor better-sqlite3 (checked in
 * a fresh Node process on the built package, through the CommonJS module cache the three land in).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DriverMissingError } from '../../src/util/errors.js';
import { loadDriver } from '../../src/util/drivers.js';
import { requireService, sharedRedis, uniquePrefix } from '../helpers/services.js';

const redis = await sharedRedis();
const dir = mkdtempSync(join(tmpdir(), 'cls-drivers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

const script = join(dir, 'probe.mjs');
writeFileSync(
  script,
  `import { createRequire } from 'node:module';
const [, , dist, broker, backend, prefix] = process.argv;
const { Celery, getScheduler } = await import(dist);
const app = new Celery({ broker, longtermSchedulerBackend: backend, ...(prefix && { longtermSchedulerKeyPrefix: prefix }) });
const r = await app.task('drivers.probe').applyAsync([1], {}, { countdown: 3600 });
await getScheduler(app).dispatchDue();
await getScheduler(app).revoke(r.id);
await app.close();
const loaded = Object.keys(createRequire(import.meta.url).cache);
console.log(JSON.stringify(['pg', 'amqplib', 'better-sqlite3', 'ioredis'].filter((d) => loaded.some((p) => p.includes('/node_modules/' + d + '/')))));
`,
);

function driversLoaded(broker: string, backend: string, prefix = ''): string[] {
  const r = spawnSync(process.execPath, [script, dist, broker, backend, prefix], { encoding: 'utf8', timeout: 30_000 });
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as string[];
}

describe.skipIf(requireService(redis, 'Redis'))('drivers load on demand', () => {
  it('a Redis store and broker load ioredis only', () => {
    expect(driversLoaded(redis!.urlFor(0), redis!.urlFor(0), uniquePrefix('drivers'))).toEqual(['ioredis']);
  });

  it('a SQLite store loads better-sqlite3 (and only that besides ioredis for the Redis broker)', () => {
    expect(driversLoaded(redis!.urlFor(0), `sqlite:///${join(dir, 'probe.db')}`)).toEqual(['better-sqlite3', 'ioredis']);
  });
});

describe('a driver that is not installed', () => {
  it('fails with one line naming the package to install', () => {
    let err: unknown;
    try {
      loadDriver('cls-no-such-driver' as never, 'PostgreSQL store');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DriverMissingError);
    expect((err as DriverMissingError).code).toBe('DRIVER_MISSING');
    expect((err as Error).message).toBe(
      'the PostgreSQL store needs the npm package "cls-no-such-driver", which is not installed; install it (npm install cls-no-such-driver)',
    );
  });

  it('loads an installed one', () => {
    expect(typeof loadDriver<{ connect: unknown }>('amqplib').connect).toBe('function');
  });
});
