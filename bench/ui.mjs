// Dashboard benchmarks (issue 14): the server-side time of each request the dashboard's views make
// (the `Server-Timing: app;dur=…` every API answer carries), on a SQLite store holding N_FUTURE jobs
// (1,000,000 at scale 1: one every 2.6 s over the next 30 days, 1% tagged `tenant:42`, and 1,000
// overdue): the overview (what the live page reads every 2 s), the 30-day hourly chart (unfiltered
// and by tag), a search page (unfiltered, by tag, 50 pages in by cursor), a dry-run count by tag, and
// a job page. Medians of 11 requests (the overview: of 5, a second apart, as it is read at most
// once a second). Target: each under 200 ms.

import { request } from 'node:http';
import { join } from 'node:path';
import { Celery } from '../dist/index.js';
import { startDashboardServer } from '../dist/exports/ui.js';

const TAG = 'tenant:42';
const EVERY = 100;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function get(port, path) {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const req = request({ host: '127.0.0.1', port, path, headers: { Host: `127.0.0.1:${port}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        const wall = performance.now() - t;
        if (res.statusCode !== 200) return reject(new Error(`${path}: ${res.statusCode} ${body}`));
        const server = Number(/app;dur=([\d.]+)/.exec(res.headers['server-timing'] ?? '')?.[1]);
        resolve({ server, wall, body: JSON.parse(body) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function timed(port, path, n = 11, gapMs = 0) {
  await get(port, path); // warm
  const server = [];
  const wall = [];
  let last;
  for (let i = 0; i < n; i++) {
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
    last = await get(port, path);
    server.push(last.server);
    wall.push(last.wall);
  }
  return { server: median(server), wall: median(wall), body: last.body };
}

/** ctx: row(), smallJob(dueAt), N_FUTURE, dir, brokerUrl (a Redis the broker health check pings). */
export async function uiBenchmarks(ctx) {
  const { row, smallJob, N_FUTURE, dir, brokerUrl } = ctx;
  const n = N_FUTURE.toLocaleString('en-US');
  console.error(`9. dashboard requests, SQLite, ${n} jobs stored`);
  const app = new Celery({ longtermSchedulerBackend: `sqlite:///${join(dir, 'bench-ui.db')}`, broker: brokerUrl });
  const now = Date.now() / 1000;
  const start = now + 3600;
  const step = (30 * 86_400 - 7200) / N_FUTURE;
  for (let i = 0; i < N_FUTURE; i += 5000) {
    const chunk = [];
    for (let k = i; k < Math.min(N_FUTURE, i + 5000); k++) {
      const job = smallJob(k < 1000 ? now - 3600 + k : start + k * step);
      chunk.push(k % EVERY === 0 ? { ...job, tags: [TAG] } : job);
    }
    await app.store.add(chunk);
  }
  const server = await startDashboardServer({ app, port: 0 });
  try {
    const port = server.port;
    const from = new Date(Math.floor(now / 3600) * 3600 * 1000).toISOString();
    const to = new Date((Math.floor(now / 3600) * 3600 + 30 * 86_400 - 1) * 1000).toISOString();
    const range = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    const first = await get(port, '/api/jobs?limit=50');
    let cursor;
    for (let p = 0; p < 50; p++)
      cursor = (await get(port, `/api/jobs?tag=${TAG}&limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).body.cursor;
    const someId = first.body.jobs[25].id;
    const cases = [
      ['overview', '/api/overview', 5, 1050],
      ['30-day hourly chart', `/api/histogram?by=hour&${range}`],
      ['30-day hourly chart by a 1% tag', `/api/histogram?by=hour&tag=${TAG}&${range}`],
      ['search page of 50', '/api/jobs?limit=50'],
      ['search page of 50 by a 1% tag', `/api/jobs?tag=${TAG}&limit=50`],
      ['search page of 50 by a 1% tag, 50 pages in', `/api/jobs?tag=${TAG}&limit=50&cursor=${encodeURIComponent(cursor)}`],
      ['dry-run count by a 1% tag', `/api/count?tag=${TAG}`],
      ['job page', `/api/job?id=${encodeURIComponent(someId)}`],
    ];
    for (const [label, path, times, gap] of cases) {
      const r = await timed(port, path, times, gap);
      if (label === 'overview' && (r.body.scheduled !== N_FUTURE || r.body.overdue !== 1000))
        throw new Error(`the overview is wrong: ${JSON.stringify(r.body)}`);
      if (label.startsWith('30-day') && r.body.counts.length !== 720) throw new Error(`the chart has ${r.body.counts.length} buckets`);
      if (label === 'dry-run count by a 1% tag' && r.body.count !== N_FUTURE / EVERY) throw new Error(`counted ${r.body.count}`);
      const serverMs = label === 'overview' ? r.body.tookMs : r.server;
      row(`dashboard (SQLite, ${n} jobs): ${label}`, `${serverMs.toFixed(1)} ms`, `round trip ${r.wall.toFixed(1)} ms`, '', '< 200 ms');
    }
  } finally {
    await server.close();
    await app.close();
  }
}
