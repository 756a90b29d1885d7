/**
 * The dashboard's API on a real SQLite store (a temp file), through node:http: what every view
 * reads, every change, and every refusal (validation with the CLI's words, read-only, CSRF and
 * same-origin, the auth token, foreign Host names), the security headers, and no secret in any
 * response (the broker URL carries a password, and the broker is down so its error is shown).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, get as httpGet, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Celery } from '../../src/client/celery.js';
import { DispatchEvents } from '../../src/dispatch/events.js';
import { CSP } from '../../src/ui/security.js';
import { createDashboardHandler, startDashboardServer, type DashboardServer } from '../../src/ui/server.js';
import type { BulkResult, CountResult, HistogramView, JobLookup, JobPage, Overview } from '../../src/ui/web/api-types.js';
import { cli } from '../helpers/cli.js';
import { client, request, seen } from '../helpers/dashboard.js';

const SECRET = 'hunter2-broker-secret';
const dir = mkdtempSync(join(tmpdir(), 'cls-ui-api-'));
const backend = `sqlite:///${join(dir, 'ui.db')}`;
// nothing listens on port 1: the broker is down, and its error (with the URL) is shown redacted
const broker = `redis://operator:${SECRET}@127.0.0.1:1/0`;
const app = new Celery({ longtermSchedulerBackend: backend, broker, redisSocketConnectTimeout: 0.2 });
const servers: DashboardServer[] = [];
let port = 0;
const now = Date.now();
const iso = (ms: number) => new Date(ms).toISOString();

async function serve(o: Partial<Parameters<typeof startDashboardServer>[0]> = {}): Promise<number> {
  const s = await startDashboardServer({ app, port: 0, eventIntervalMs: 200, ...o });
  servers.push(s);
  return s.port;
}

beforeAll(async () => {
  const task = app.task('proj.invoice');
  await task.applyAsync([1], {}, { eta: new Date(now - 120_000), taskId: 'late-1', tags: ['tenant:1'] });
  for (let i = 0; i < 7; i++)
    await task.applyAsync([i], { n: i }, { eta: new Date(Date.UTC(2031, 0, 4, 9, i)), taskId: `inv-${i}`, tags: ['tenant:2'], queue: 'billing' });
  await app
    .task('proj.report')
    .applyAsync([], {}, { eta: new Date(Date.UTC(2031, 0, 4, 11)), taskId: 'rep-1', priority: 3, expires: 600, jobKey: 'report:2031-01' });
  port = await serve();
});

afterAll(async () => {
  for (const s of servers) await s.close();
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the dashboard API on SQLite', () => {
  it('serves the page with the security headers, on every answer', async () => {
    const page = await request(port, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.text).toContain('<script type="module" src="app.js"></script>');
    expect(page.text).not.toMatch(/<script>|<style|style=/);
    for (const a of [page, await request(port, 'GET', '/api/overview'), await request(port, 'GET', '/nope'), await request(port, 'GET', '/api/nope')]) {
      expect(a.headers['content-security-policy']).toBe(CSP);
      expect(a.headers['x-content-type-options']).toBe('nosniff');
      expect(a.headers['cache-control']).toBe('no-store');
      expect(a.headers['x-frame-options']).toBe('DENY');
    }
    expect(CSP).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    expect((await request(port, 'GET', '/nope')).status).toBe(404);
    expect((await request(port, 'GET', '/api/nope')).json()).toEqual({ error: 'no API route "nope"' });
  });

  it('gives the page its session: the CSRF token and the redacted store and broker', async () => {
    const s = (await request(port, 'GET', '/api/session')).json<Record<string, unknown>>();
    expect(s).toMatchObject({ readOnly: false, confirmThreshold: 100, store: backend, broker: 'redis://operator:***@127.0.0.1:1/0', dispatcher: false });
    expect(String(s.csrfToken)).toMatch(/^[\w-]{43}$/);
  });

  it('the overview counts scheduled, due now, overdue and how late the oldest is, and says the broker is down', async () => {
    const o = (await request(port, 'GET', '/api/overview')).json<Overview>();
    expect(o).toMatchObject({ scheduled: 9, inFlight: 0, dead: 0, dueNow: 1, overdue: 1, store: { up: true }, dispatcher: null });
    expect(o.oldestLatenessSeconds).toBeGreaterThanOrEqual(119);
    expect(o.nextDueAt).toBe(iso(now - 120_000));
    expect(o.broker.up).toBe(false);
    expect(o.broker.error).toContain('redis://operator:***@127.0.0.1:1/0');
  });

  it('searches by the query in the URL, a page at a time with the cursor', async () => {
    const first = (await request(port, 'GET', '/api/jobs?tag=tenant:2&queue=billing&limit=4')).json<JobPage>();
    expect(first.jobs.map((j) => j.id)).toEqual(['inv-0', 'inv-1', 'inv-2', 'inv-3']);
    expect(first.jobs[0]).toMatchObject({
      task: 'proj.invoice',
      dueAt: '2031-01-04T09:00:00.000Z',
      queue: 'billing',
      tags: ['tenant:2'],
      argsPreview: '[[0],{"n":0}]',
    });
    const second = (
      await request(port, 'GET', `/api/jobs?tag=tenant:2&queue=billing&limit=4&cursor=${encodeURIComponent(first.cursor ?? '')}`)
    ).json<JobPage>();
    expect(second.jobs.map((j) => j.id)).toEqual(['inv-4', 'inv-5', 'inv-6']);
    expect(second.cursor).toBeUndefined();
    const matched = (await request(port, 'GET', '/api/jobs?args-match=kwargs.n%3D5')).json<JobPage>();
    expect(matched.jobs.map((j) => j.id)).toEqual(['inv-5']);
    expect(matched.scanned).toBe(9);
    const c = (await request(port, 'GET', '/api/count?task=proj.invoice&from=2031-01-01T00:00:00Z')).json<CountResult>();
    expect(c.count).toBe(7);
    expect(c.sample.map((j) => j.id)).toEqual(['inv-0', 'inv-1', 'inv-2', 'inv-3', 'inv-4']);
  });

  it('refuses bad input with a 400 and the words the CLI uses for it', async () => {
    const cases: [string, string[]][] = [
      ['/api/jobs?args-match=nope', ['list', '--args-match', 'nope']],
      ['/api/jobs?tag=' + encodeURIComponent('x'.repeat(200)), ['list', '--tag', 'x'.repeat(200)]],
      ['/api/count?from=2031-01-02T00:00:00Z&to=2031-01-01T00:00:00Z', ['list', '--from', '2031-01-02T00:00:00Z', '--to', '2031-01-01T00:00:00Z']],
    ];
    for (const [path, argv] of cases) {
      const a = await request(port, 'GET', path);
      expect(a.status).toBe(400);
      const line = (await cli(['--backend', backend, ...argv])).stderr.trim();
      expect(`error: ${a.json<{ error: string }>().error}`).toBe(line);
    }
    const bad: [string, string][] = [
      [
        '/api/jobs?frm=2031-01-01T00:00:00Z',
        'unknown filter "frm"; the filters are from, to, task, queue, tag, any-tag, job-key-prefix, id-prefix, args-contains, args-match',
      ],
      ['/api/jobs?from=2031-01-01T00:00', 'from "2031-01-01T00:00" has no UTC offset; add one, e.g. "2031-01-01T00:00Z" or "+02:00"'],
      ['/api/jobs?limit=0', 'limit must be a whole number from 1 to 500, got "0"'],
      ['/api/jobs?cursor=nope', '"nope" is not a list cursor; pass the cursor a previous page returned'],
      ['/api/histogram?by=week', 'by must be minute, hour, day; got "week"'],
      [
        '/api/histogram?by=minute&from=2031-01-01T00:00:00Z&to=2031-01-31T00:00:00Z',
        'the chart would have 43201 minutes; at most 2000: count by a wider unit or a shorter range',
      ],
      ['/api/job', 'pass the id of the job, e.g. api/job?id=3f2c…'],
    ];
    for (const [path, error] of bad) {
      const a = await request(port, 'GET', path);
      expect({ path, status: a.status, body: a.json() }).toEqual({ path, status: 400, body: { error } });
    }
  });

  it('charts the load per hour with the busiest buckets, for a query', async () => {
    const h = (await request(port, 'GET', '/api/histogram?by=hour&from=2031-01-04T00:00:00Z&to=2031-01-04T23:59:59Z')).json<HistogramView>();
    expect(h).toMatchObject({ by: 'hour', bucketSeconds: 3600, total: 8, start: Date.UTC(2031, 0, 4) / 1000 });
    expect(h.counts).toHaveLength(24);
    expect(h.counts[9]).toBe(7);
    expect(h.counts[11]).toBe(1);
    expect(h.busiest).toEqual([
      { start: '2031-01-04T09:00:00.000Z', count: 7 },
      { start: '2031-01-04T11:00:00.000Z', count: 1 },
    ]);
    const byTask = (
      await request(port, 'GET', '/api/histogram?by=day&task=proj.report&from=2031-01-01T00:00:00Z&to=2031-01-10T00:00:00Z')
    ).json<HistogramView>();
    expect(byTask.total).toBe(1);
    const fallback = (await request(port, 'GET', '/api/histogram')).json<HistogramView>();
    expect(fallback.counts).toHaveLength(720); // 30 days by hour, from this hour
  });

  it('shows one job with everything stored; an unknown one as unknown', async () => {
    const l = (await request(port, 'GET', '/api/job?id=rep-1')).json<JobLookup>();
    expect(l.state).toBe('scheduled');
    expect(l.job).toMatchObject({
      id: 'rep-1',
      task: 'proj.report',
      priority: 3,
      options: { priority: 3, expires: 600 },
      args: [],
      kwargs: {},
      key: 'report:2031-01',
    });
    expect((await request(port, 'GET', '/api/job?id=inv-1')).json<JobLookup>().job?.key).toBeNull();
    expect(JSON.parse(l.job?.entry ?? '')).toEqual([['proj.report'], { args: [], task_id: 'rep-1', priority: 3, expires: 600 }]);
    expect(l.result).toBeUndefined(); // no result backend configured
    expect((await request(port, 'GET', '/api/job?id=nobody')).json()).toEqual({ id: 'nobody', state: 'unknown' });
  });

  it('takes a change only with the CSRF token, from its own origin, as JSON', async () => {
    const { csrfToken } = (await request(port, 'GET', '/api/session')).json<{ csrfToken: string }>();
    const body = JSON.stringify({ id: 'inv-6', shift: '+1h' });
    const origin = `http://127.0.0.1:${port}`;
    const refused: [Record<string, string>, number, RegExp][] = [
      [{ 'Content-Type': 'application/json', Origin: origin }, 403, /X-CSRF-Token/],
      [{ 'Content-Type': 'application/json', Origin: origin, 'X-CSRF-Token': 'x'.repeat(43) }, 403, /X-CSRF-Token/],
      [{ 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken }, 403, /Origin/],
      [{ 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken, Origin: 'http://evil.example' }, 403, /own pages only/],
      [{ 'Content-Type': 'text/plain', 'X-CSRF-Token': csrfToken, Origin: origin }, 415, /JSON/],
    ];
    for (const [headers, status, error] of refused) {
      const a = await request(port, 'POST', '/api/job/reschedule', { headers, body });
      expect(a.status).toBe(status);
      expect(a.json<{ error: string }>().error).toMatch(error);
    }
    expect((await app.store.get('inv-6'))?.dueAt).toBe(Date.UTC(2031, 0, 4, 9, 6) / 1000);
    const ok = await request(port, 'POST', '/api/job/reschedule', {
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken, Origin: origin },
      body,
    });
    expect(ok.json()).toEqual({ id: 'inv-6', dueAt: '2031-01-04T10:06:00.000Z' });
    expect((await app.store.get('inv-6'))?.dueAt).toBe(Date.UTC(2031, 0, 4, 10, 6) / 1000);
  });

  it('reschedules, runs now and revokes one job, and says why it cannot', async () => {
    const c = client(port);
    expect((await c.post('/api/job/reschedule', { id: 'inv-5', eta: '2032-02-02T10:00:00+01:00' })).json()).toEqual({
      id: 'inv-5',
      dueAt: '2032-02-02T09:00:00.000Z',
    });
    expect((await app.store.get('inv-5'))?.dueAt).toBe(Date.UTC(2032, 1, 2, 9) / 1000);
    const naive = await c.post('/api/job/reschedule', { id: 'inv-5', eta: '2032-02-02T10:00:00' });
    expect({ status: naive.status, body: naive.json() }).toEqual({
      status: 400,
      body: { error: 'eta "2032-02-02T10:00:00" has no UTC offset; add one, e.g. "2032-02-02T10:00:00Z" or "+02:00"' },
    });
    const both = await c.post('/api/job/reschedule', { id: 'inv-5', eta: '2032-02-02T10:00:00Z', shift: '+1h' });
    expect(both.json()).toEqual({ error: 'pass exactly one of eta or shift' });
    const zero = await c.post('/api/job/reschedule', { id: 'inv-5', shift: '0h' });
    expect(zero.json()).toEqual({ error: 'shift "0h" is zero; pass a length of time' });
    const before = Date.now() / 1000;
    expect((await c.post('/api/job/run-now', { id: 'inv-5' })).status).toBe(200);
    expect((await app.store.get('inv-5'))?.dueAt).toBeGreaterThanOrEqual(before - 0.01);
    expect((await c.post('/api/job/revoke', { id: 'inv-5' })).json()).toEqual({ revoked: 'inv-5' });
    expect(await app.store.get('inv-5')).toBeUndefined();
    const gone = await c.post('/api/job/revoke', { id: 'inv-5' });
    expect(gone.status).toBe(404);
    expect(gone.json<{ error: string }>().error).toBe(
      'cannot revoke job "inv-5": it is not scheduled: the id is unknown, or the job was already sent or revoked; check the id with `list` or `show`',
    );
    expect((await c.post('/api/job/revoke', { id: 'inv-4', extra: 1 })).json()).toEqual({
      error: 'unknown field "extra" in the request body; the fields are id',
    });
  });

  it('runs a bulk action only after its dry run, and never on more jobs than the dry run showed', async () => {
    const c = client(port);
    const q = 'tag=tenant:2&from=2031-01-04T09:00:00Z&to=2031-01-04T09:59:59Z';
    const dry = (await c.get(`/api/count?${q}`)).json<CountResult>();
    expect(dry.count).toBe(5); // inv-0..4 (inv-5 was revoked, inv-6 moved to 10:06)
    const noDry = await c.post('/api/bulk', { action: 'revoke', query: q });
    expect(noDry.json<{ error: string }>().error).toMatch(/^expected must be the count the dry run showed/);
    const tooMany = await c.post('/api/bulk', { action: 'reschedule', query: q, move: { spread: '1h' }, expected: 4 });
    expect({ status: tooMany.status, body: tooMany.json() }).toEqual({
      status: 409,
      body: { error: '5 jobs match now, more than the 4 the dry run showed; run the dry run again' },
    });
    const noFilter = await c.post('/api/bulk', { action: 'revoke', query: '', expected: 100 });
    expect(noFilter.json<{ error: string }>().error).toMatch(/^the query has no filter, so it would match every scheduled job/);
    const noRange = await c.post('/api/bulk', { action: 'reschedule', query: 'tag=tenant:2', move: { spread: '1h' }, expected: 100 });
    expect(noRange.json()).toEqual({ error: 'spread needs the pile-up to spread: pass from and to (the window starts at from)' });
    const spread = (await c.post('/api/bulk', { action: 'reschedule', query: q, move: { spread: '10m' }, expected: 5 })).json<BulkResult>();
    expect(spread).toMatchObject({ matched: 5, changed: 4, skipped: 0, missing: 0, unchanged: 1 }); // inv-0 stays at 09:00
    const dues = await Promise.all(['inv-0', 'inv-1', 'inv-2', 'inv-3', 'inv-4'].map(async (id) => (await app.store.get(id))?.dueAt));
    expect(dues).toEqual([0, 2, 4, 6, 8].map((m) => Date.UTC(2031, 0, 4, 9, m) / 1000));
    const shift = (await c.post('/api/bulk', { action: 'reschedule', query: 'tag=tenant:2', move: { shift: '+1d' }, expected: 6 })).json<BulkResult>();
    expect(shift).toMatchObject({ matched: 6, changed: 6 });
    expect((await app.store.get('inv-6'))?.dueAt).toBe(Date.UTC(2031, 0, 5, 10, 6) / 1000);
    const revoked = (await c.post('/api/bulk', { action: 'revoke', query: 'tag=tenant:2&id-prefix=inv-0', expected: 1 })).json<BulkResult>();
    expect(revoked).toMatchObject({ matched: 1, changed: 1 });
    expect(await app.store.get('inv-0')).toBeUndefined();
  });

  it('lists, shows, retries and purges dead letters', async () => {
    await app.store.add([
      { id: 'junk-1', dueAt: now / 1000 - 5, entry: 'not json' },
      { id: 'junk-2', dueAt: now / 1000 - 4, entry: '[["proj.x"],{"args":[],"task_id":"junk-2"}]' },
    ]);
    const claims = await app.store.claimDue({ until: now / 1000, now: now / 1000, limit: 10, leaseMs: 60_000 });
    const ours = claims.filter((cl) => cl.id.startsWith('junk-'));
    const others = claims.filter((cl) => !cl.id.startsWith('junk-'));
    await app.store.release(others);
    await app.store.bury(ours.map((claim) => ({ claim, reason: 'corrupt' as const, error: 'stored job is corrupt: not JSON', diedAt: now / 1000 })));
    const c = client(port);
    const page = (await c.get('/api/dead')).json<{ letters: { id: string; reason: string; error: string }[] }>();
    expect(page.letters.map((d) => [d.id, d.reason])).toEqual([
      ['junk-1', 'corrupt'],
      ['junk-2', 'corrupt'],
    ]);
    const lookup = (await c.get('/api/job?id=junk-1')).json<JobLookup>();
    expect(lookup.state).toBe('dead');
    expect(lookup.dead?.entry).toBe('not json');
    expect((await c.get('/api/dead-letter?id=junk-2')).json()).toMatchObject({ id: 'junk-2', task: 'proj.x' });
    expect((await c.get('/api/dead-letter?id=nope')).status).toBe(404);
    expect((await c.post('/api/dead/retry', { ids: ['junk-2', 'nope'] })).json()).toEqual({ retried: ['junk-2'], notDead: ['nope'], idTaken: [], noEntry: [] });
    expect((await app.store.get('junk-2'))?.state).toBe('scheduled');
    expect((await c.post('/api/dead/purge', { ids: [] })).status).toBe(400);
    expect((await c.post('/api/dead/purge', { all: true })).json()).toEqual({ purged: 1, notDead: [] });
    expect((await app.store.count()).dead).toBe(0);
  });

  it('pushes the overview live, as server-sent events', async () => {
    const frames = await new Promise<string>((resolve, reject) => {
      let text = '';
      const req = requestStream(port, '/api/events', (chunk) => {
        text += chunk;
        if ((text.match(/event: overview/g) ?? []).length >= 2) {
          req.destroy();
          resolve(text);
        }
      });
      req.on('error', reject);
    });
    const data = /data: (.*)\n/.exec(frames)?.[1] ?? '';
    expect(JSON.parse(data)).toMatchObject({ store: { up: true } });
    expect((JSON.parse(data) as Overview).scheduled).toBeGreaterThan(0);
  });

  it('hostile requests: each gets one clear line and changes nothing; the server keeps serving', async () => {
    const c = client(port);
    const before = JSON.stringify((await app.store.list({ limit: 100 })).jobs);
    const huge = await c.post('/api/job/revoke', { id: 'inv-1', pad: 'x'.repeat(70 * 1024) });
    expect({ status: huge.status, body: huge.json() }).toEqual({ status: 413, body: { error: 'the request body is over 65536 bytes' } });
    const { csrfToken } = (await request(port, 'GET', '/api/session')).json<{ csrfToken: string }>();
    const headers = { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken, Origin: `http://127.0.0.1:${port}` };
    for (const body of ['{"id": "inv-1"', '', 'null', '[1]', '"inv-1"']) {
      const a = await request(port, 'POST', '/api/job/revoke', { headers, body });
      expect(a.status, body).toBe(400);
      expect(a.json<{ error: string }>().error, body).toMatch(/^[^\n]+$/);
    }
    // an id that is not well-formed Unicode: a lone surrogate in the JSON, and raw bytes that are not UTF-8 in the URL
    const lone = await c.post('/api/job/revoke', { id: '\ud800' });
    expect(lone.status).toBeGreaterThanOrEqual(400);
    expect(lone.json<{ error: string }>().error).toMatch(/^[^\n]+$/);
    const bytes = await request(port, 'GET', '/api/job?id=%ED%A0%80%FF');
    expect(bytes.status).toBe(200);
    expect(bytes.json()).toMatchObject({ state: 'unknown' });
    // a query longer than a request line may be: node:http's own 431, and the server lives on
    const long = await request(port, 'GET', `/api/jobs?task=${'t'.repeat(20_000)}`);
    expect(long.status).toBe(431);
    expect(JSON.stringify((await app.store.list({ limit: 100 })).jobs)).toBe(before);
    expect((await request(port, 'GET', '/api/overview')).status).toBe(200);
  });

  it('at most 32 live pages: the 33rd stream is refused with 503, and a closed one frees its place', async () => {
    const own = await serve();
    const open: ReturnType<typeof requestStream>[] = [];
    const opened = () =>
      new Promise<void>((resolve, reject) => {
        const req = requestStream(own, '/api/events', () => resolve());
        req.on('error', reject);
        open.push(req);
      });
    for (let i = 0; i < 32; i++) await opened();
    const refused = await request(own, 'GET', '/api/events');
    expect({ status: refused.status, body: refused.json() }).toEqual({ status: 503, body: { error: 'at most 32 live pages at once; close some and reload' } });
    (open.pop() as ReturnType<typeof requestStream>).destroy();
    await new Promise((r) => setTimeout(r, 100));
    await opened();
    for (const req of open) req.destroy();
  });

  it('answers only to loopback Host names without a token (no DNS rebinding)', async () => {
    const a = await request(port, 'GET', '/api/overview', { hostHeader: 'rebind.example:80' });
    expect(a.status).toBe(403);
    expect(a.text).toMatch(/this host's own names only/);
    expect((await request(port, 'GET', '/api/overview', { hostHeader: `localhost:${port}` })).status).toBe(200);
  });

  it('read-only: the API refuses every change, and the page is told to hide them', async () => {
    const ro = await serve({ readOnly: true });
    expect((await request(ro, 'GET', '/api/session')).json()).toMatchObject({ readOnly: true });
    const c = client(ro);
    for (const [path, body] of [
      ['/api/job/revoke', { id: 'inv-4' }],
      ['/api/job/run-now', { id: 'inv-4' }],
      ['/api/bulk', { action: 'revoke', query: 'task=proj.invoice', expected: 10 }],
      ['/api/dead/purge', { all: true }],
    ] as const) {
      const a = await c.post(path, body);
      expect({ path, status: a.status, body: a.json() }).toEqual({
        path,
        status: 403,
        body: { error: 'this dashboard is read-only (--read-only): it changes nothing' },
      });
    }
    expect((await app.store.get('inv-4'))?.state).toBe('scheduled');
    expect((await c.get('/api/jobs?task=proj.invoice')).status).toBe(200);
  });

  it('with an auth token: 401 without it or with a wrong one; a bearer header or the login cookie lets in', async () => {
    const token = 'correct-horse-battery-staple-42';
    const p = await serve({ authToken: token });
    const page = await request(p, 'GET', '/');
    expect(page.status).toBe(401);
    expect(page.text).toContain('<form method="post" action="login">');
    expect(page.headers['content-security-policy']).toBe(CSP);
    expect((await request(p, 'GET', '/app.js')).status).toBe(401);
    expect((await request(p, 'GET', '/api/overview')).status).toBe(401);
    expect((await request(p, 'GET', '/api/overview', { headers: { Authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    expect((await request(p, 'GET', '/api/overview', { headers: { Authorization: `Bearer ${token}x` } })).status).toBe(401);
    expect((await request(p, 'GET', '/api/overview', { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await request(p, 'GET', '/api/overview', { headers: { Cookie: 'cls_dashboard=forged' } })).status).toBe(401);
    const form = { 'Content-Type': 'application/x-www-form-urlencoded', Origin: `http://127.0.0.1:${p}` };
    const wrong = await request(p, 'POST', '/login', { headers: form, body: 'token=nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.text).toContain('That is not the token; try again.');
    expect(wrong.headers['set-cookie']).toBeUndefined();
    const foreign = await request(p, 'POST', '/login', { headers: { ...form, Origin: 'http://evil.example' }, body: `token=${token}` });
    expect(foreign.status).toBe(403);
    const ok = await request(p, 'POST', '/login', { headers: form, body: `token=${encodeURIComponent(token)}` });
    expect(ok.status).toBe(303);
    const setCookie = String(ok.headers['set-cookie']);
    expect(setCookie).toMatch(/^cls_dashboard=[\w-]+; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(setCookie).not.toContain(token);
    const cookie = setCookie.split(';', 1)[0] as string;
    expect((await request(p, 'GET', '/', { headers: { Cookie: cookie } })).status).toBe(200);
    expect((await request(p, 'GET', '/api/overview', { headers: { Cookie: cookie } })).status).toBe(200);
    // with a token, any Host name is answered (the cookie cannot be had by another origin)
    expect((await request(p, 'GET', '/api/overview', { headers: { Cookie: cookie }, hostHeader: 'scheduler.internal' })).status).toBe(200);
  });

  it('refuses to listen beyond this host without a token, and a short token anywhere', async () => {
    await expect(startDashboardServer({ app, port: 0, host: '0.0.0.0' })).rejects.toThrow(
      'the dashboard would listen on 0.0.0.0, beyond this host, without an auth token; pass --auth-token (or set CELERY_LONGTERM_SCHEDULER_UI_TOKEN), or listen on 127.0.0.1',
    );
    expect(() => createDashboardHandler({ app, authToken: 'short' })).toThrow(/at least 16 characters/);
    const r = await cli(['--backend', backend, 'ui', '--host', '0.0.0.0', '--port', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'error: the dashboard would listen on 0.0.0.0, beyond this host, without an auth token; pass --auth-token (or set CELERY_LONGTERM_SCHEDULER_UI_TOKEN), or listen on 127.0.0.1\n',
    );
    const short = await cli(['--backend', backend, 'ui', '--port', '0'], { CELERY_LONGTERM_SCHEDULER_UI_TOKEN: 'abc' });
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/^error: the auth token must be at least 16 characters/);
  });

  it('mounts under a path: with basePath, and under a framework that strips the prefix (Express)', async () => {
    const handler = createDashboardHandler({ app, basePath: '/scheduler' });
    const stripped = createDashboardHandler({ app });
    const server: Server = createServer((req, res) => {
      if (req.url?.startsWith('/scheduler')) return handler(req, res);
      if (req.url?.startsWith('/ops')) {
        // what Express's app.use('/ops', handler) does: the prefix off req.url, the whole in originalUrl
        Object.assign(req, { originalUrl: req.url, url: req.url.slice(4) || '/' });
        return stripped(req, res);
      }
      res.writeHead(404).end('the app');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const p = (server.address() as AddressInfo).port;
    try {
      const bare = await request(p, 'GET', '/scheduler');
      expect([bare.status, bare.headers.location]).toEqual([308, '/scheduler/']);
      expect((await request(p, 'GET', '/scheduler/')).text).toContain('src="app.js"');
      expect((await request(p, 'GET', '/scheduler/api/jobs?task=proj.report')).json<JobPage>().jobs.map((j) => j.id)).toEqual(['rep-1']);
      const express = await request(p, 'GET', '/ops');
      expect([express.status, express.headers.location]).toEqual([308, '/ops/']);
      expect((await request(p, 'GET', '/ops/api/job?id=rep-1')).json<JobLookup>().state).toBe('scheduled');
      expect((await request(p, 'GET', '/other')).text).toBe('the app');
    } finally {
      handler.close();
      stripped.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('shows a dispatcher beside it: its rate, lateness, and what it saw of the store', async () => {
    const events = new DispatchEvents();
    const p = await serve({ dispatcherEvents: events });
    const deadByReason = { corrupt: 0, unsupported: 0, rejected: 0, max_attempts: 0 };
    events.emit('run', {
      summary: { sent: 30, failed: 2, dead: 1, corrupt: 1, elapsedMs: 5 },
      detail: { latenessSeconds: [0.01, 0.02, 0.5], refused: 2, deadByReason },
      mode: 'publish-then-ack',
    });
    events.emit('storeState', { up: false, store: 'sqlite://…', error: new Error(`cannot write the store at redis://u:${SECRET}@b:6379/0: READONLY`) });
    await new Promise((r) => setTimeout(r, 1100)); // past the overview's one-second sharing
    const o = (await request(p, 'GET', '/api/overview')).json<Overview>();
    expect(o.dispatcher).toMatchObject({
      sentLastMinute: 30,
      ratePerSecond: 0.5,
      sentTotal: 30,
      failedTotal: 2,
      deadTotal: 1,
      lateness: { p50: 0.02, max: 0.5, samples: 3 },
    });
    // the store answers the dashboard, but the dispatcher saw it fail: down, with the dispatcher's (redacted) error
    expect(o.store).toEqual({ up: false, error: 'cannot write the store at redis://u:***@b:6379/0: READONLY' });
    expect((await request(p, 'GET', '/api/session')).json()).toMatchObject({ dispatcher: true });
  });

  it('no response carried a secret', () => {
    expect(seen.length).toBeGreaterThan(40);
    expect(seen.filter((t) => t.includes(SECRET))).toEqual([]);
  });
});

/** A GET whose body is read as it streams (server-sent events). */
function requestStream(port: number, path: string, onData: (chunk: string) => void) {
  return httpGet({ host: '127.0.0.1', port, path, headers: { Host: `127.0.0.1:${port}` } }, (res) => {
    res.setEncoding('utf8');
    res.on('data', onData);
  });
}
