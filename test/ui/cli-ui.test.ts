/**
 * `ui` and `run --ui-port` as real processes of the built CLI: `--port 0` prints the URL it
 * picked, SIGTERM stops it (exit 0), and beside the dispatcher the overview shows what the
 * dispatcher sent.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Celery } from '../../src/client/celery.js';
import type { Overview, SessionInfo } from '../../src/ui/web/api-types.js';
import { request, spawnDashboard, type DashboardProcess } from '../helpers/dashboard.js';
import { waitFor } from '../helpers/run-process.js';
import { requireService, sharedRedis, uniquePrefix } from '../helpers/services.js';

const redis = await sharedRedis();
const skipRedis = requireService(redis, 'Redis (the broker)');
const dir = mkdtempSync(join(tmpdir(), 'cls-ui-cli-'));
const running: DashboardProcess[] = [];
afterAll(async () => {
  for (const p of running) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the dashboard from the command line', () => {
  it('ui --port 0 picks a free port, prints the URL, serves, and stops on SIGTERM', async () => {
    const backend = `sqlite:///${join(dir, 'ui.db')}`;
    const p = await spawnDashboard(['--backend', backend, '--broker', 'redis://127.0.0.1:1/0', 'ui', '--port', '0', '--read-only']);
    running.push(p);
    expect(p.output()).toMatch(new RegExp(`^dashboard at http://127\\.0\\.0\\.1:${p.port}/\\n`, 'm'));
    const s = (await request(p.port, 'GET', '/api/session')).json<SessionInfo>();
    expect(s).toMatchObject({ readOnly: true, store: backend, dispatcher: false });
    const page = await request(p.port, 'GET', '/app.js');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(await p.stop()).toEqual({ code: 0, signal: null });
  });

  it.skipIf(skipRedis)('run --ui-port serves the dashboard beside the dispatcher, with what it sent', async () => {
    const backend = `sqlite:///${join(dir, 'run.db')}`;
    const queue = uniquePrefix('ui-q');
    const broker = redis!.urlFor(0);
    const app = new Celery({ longtermSchedulerBackend: backend, broker });
    try {
      const p = await spawnDashboard(['--backend', backend, '--broker', broker, '--log-format', 'json', 'run', '--poll-interval-ms', '100', '--ui-port', '0']);
      running.push(p);
      await app.task('proj.ping').applyAsync([], {}, { countdown: 0.2, queue });
      const o = await waitFor(
        'the dispatcher to send the job',
        async () => {
          const v = (await request(p.port, 'GET', '/api/overview')).json<Overview>();
          return (v.dispatcher?.sentTotal ?? 0) >= 1 && v;
        },
        15_000,
        200,
      );
      expect(o.dispatcher).toMatchObject({ sentTotal: 1, sentLastMinute: 1 });
      expect(o.dispatcher?.lateness?.samples).toBe(1);
      expect(o).toMatchObject({ scheduled: 0, broker: { up: true }, store: { up: true } });
      expect(await p.stop()).toEqual({ code: 0, signal: null });
    } finally {
      const { Redis } = await import('ioredis');
      const r = new Redis(broker);
      await r.del(queue);
      r.disconnect();
      await app.close();
    }
  });
});
