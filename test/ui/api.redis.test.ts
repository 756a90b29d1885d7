/**
 * The dashboard's API on a real Redis store (a key prefix of its own): the overview, a search by
 * tag, a job, a bulk shift and a bulk revoke after their dry runs, and no password in any response
 * (the store and broker URLs carry one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Celery } from '../../src/client/celery.js';
import { startDashboardServer, type DashboardServer } from '../../src/ui/server.js';
import type { BulkResult, CountResult, HistogramView, JobLookup, JobPage, Overview, SessionInfo } from '../../src/ui/web/api-types.js';
import { client, request, seen } from '../helpers/dashboard.js';
import { requireService, sharedRedis, uniquePrefix } from '../helpers/services.js';

const redis = await sharedRedis();
const skip = requireService(redis, 'Redis');
const SECRET = 'not-the-real-redis-password';
// user "default" with a password on a Redis that needs none: it answers, and the password is only in the URLs
const withPassword = (db: number) => (redis ? redis.urlFor(db).replace('redis://', `redis://default:${SECRET}@`) : '');

describe.skipIf(skip)('the dashboard API on Redis', () => {
  const prefix = uniquePrefix('ui');
  let app: Celery;
  let server: DashboardServer;
  beforeAll(async () => {
    app = new Celery({ longtermSchedulerBackend: withPassword(0), longtermSchedulerKeyPrefix: prefix, broker: withPassword(0) });
    const t = app.task('proj.remind');
    for (let i = 0; i < 40; i++)
      await t.applyAsync(
        [i],
        {},
        { eta: new Date(Date.UTC(2030, 5, 1, 8 + (i % 4), i)), taskId: `r-${String(i).padStart(2, '0')}`, tags: [i % 2 ? 'odd' : 'even'] },
      );
    server = await startDashboardServer({ app, port: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await app?.close();
  });

  it('shows the overview with the store and broker up, passwords redacted', async () => {
    const o = (await request(server.port, 'GET', '/api/overview')).json<Overview>();
    expect(o).toMatchObject({ scheduled: 40, inFlight: 0, dead: 0, dueNow: 0, overdue: 0, store: { up: true }, broker: { up: true } });
    const s = (await request(server.port, 'GET', '/api/session')).json<SessionInfo>();
    expect(s.store).toBe(withPassword(0).replace(SECRET, '***'));
  });

  it('searches by tag a page at a time, and charts the load of a tag', async () => {
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = (await request(server.port, 'GET', `/api/jobs?tag=odd&limit=7${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).json<JobPage>();
      ids.push(...page.jobs.map((j) => j.id));
      cursor = page.cursor;
    } while (cursor);
    expect(ids).toHaveLength(20);
    expect(ids.every((id) => Number(id.slice(2)) % 2 === 1)).toBe(true);
    const h = (await request(server.port, 'GET', '/api/histogram?tag=odd&by=hour&from=2030-06-01T00:00:00Z&to=2030-06-01T23:59:59Z')).json<HistogramView>();
    expect(h.total).toBe(20);
    expect(h.counts.slice(8, 12)).toEqual([0, 10, 0, 10]);
    const l = (await request(server.port, 'GET', '/api/job?id=r-03')).json<JobLookup>();
    expect(l.job).toMatchObject({ id: 'r-03', task: 'proj.remind', tags: ['odd'], args: [3], dueAt: '2030-06-01T11:03:00.000Z' });
  });

  it('shifts and then revokes by query, each after its dry run', async () => {
    const c = client(server.port);
    const q = 'tag=even&from=2030-06-01T08:00:00Z&to=2030-06-01T08:59:59Z';
    const dry = (await c.get(`/api/count?${q}`)).json<CountResult>();
    expect(dry.count).toBe(10);
    const shifted = (await c.post('/api/bulk', { action: 'reschedule', query: q, move: { shift: '+30m' }, expected: 10 })).json<BulkResult>();
    expect(shifted).toMatchObject({ matched: 10, changed: 10, skipped: 0, missing: 0 });
    expect((await app.store.get('r-00'))?.dueAt).toBe(Date.UTC(2030, 5, 1, 8, 30) / 1000);
    const left = (await c.get(`/api/count?tag=even`)).json<CountResult>();
    const revoked = (await c.post('/api/bulk', { action: 'revoke', query: 'tag=even', expected: left.count })).json<BulkResult>();
    expect(revoked).toMatchObject({ matched: 20, changed: 20 });
    expect((await app.store.count()).scheduled).toBe(20);
    expect((await c.post('/api/bulk', { action: 'revoke', query: 'tag=odd', expected: 19 })).status).toBe(409);
    expect((await app.store.count()).scheduled).toBe(20);
    expect((await c.post('/api/bulk', { action: 'revoke', query: 'tag=odd', expected: 20 })).json<BulkResult>()).toMatchObject({ changed: 20 });
  });

  it("shows Celery's result state from the result backend: SCHEDULED while stored, the record once sent", async () => {
    const withResults = new Celery({
      longtermSchedulerBackend: withPassword(0),
      longtermSchedulerKeyPrefix: prefix,
      broker: withPassword(0),
      resultBackend: withPassword(0),
    });
    const s = await startDashboardServer({ app: withResults, port: 0 });
    const sentId = `${prefix}sent-1`;
    const { Redis } = await import('ioredis');
    const r = new Redis(redis!.urlFor(0));
    try {
      await r.set(
        `celery-task-meta-${sentId}`,
        JSON.stringify({
          status: 'FAILURE',
          result: { exc_type: 'ValueError', exc_message: ['bad tenant'] },
          traceback: 'Traceback …',
          date_done: '2030-06-01T08:00:01.000000+00:00',
          task_id: sentId,
        }),
        'EX',
        60,
      );
      expect((await request(s.port, 'GET', '/api/session')).json()).toMatchObject({ resultBackend: true });
      await withResults.task('proj.later').applyAsync([], {}, { countdown: 3600, taskId: 'stored-1' });
      const stored = (await request(s.port, 'GET', '/api/job?id=stored-1')).json<JobLookup>();
      expect(stored).toMatchObject({ state: 'scheduled', result: { status: 'SCHEDULED' } });
      const sent = (await request(s.port, 'GET', `/api/job?id=${encodeURIComponent(sentId)}`)).json<JobLookup>();
      expect(sent).toEqual({
        id: sentId,
        state: 'sent',
        result: {
          status: 'FAILURE',
          dateDone: '2030-06-01T08:00:01.000000+00:00',
          result: '{"exc_type":"ValueError","exc_message":["bad tenant"]}',
          traceback: 'Traceback …',
        },
      });
      expect((await request(s.port, 'GET', '/api/job?id=never-there')).json()).toEqual({ id: 'never-there', state: 'unknown' });
    } finally {
      await r.del(`celery-task-meta-${sentId}`);
      r.disconnect();
      await withResults.store.remove('stored-1');
      await s.close();
      await withResults.close();
    }
  });

  it('no response carried the password', () => {
    expect(seen.length).toBeGreaterThan(10);
    expect(seen.filter((t) => t.includes(SECRET))).toEqual([]);
  });
});
