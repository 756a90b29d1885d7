// The README's screenshots of the dashboard (docs/ui-*.png): a demo store (a temp SQLite file)
// with a few hundred jobs of three tasks over the next weeks, a pile-up, some overdue and some
// dead letters; the dashboard of the built package (npm run build first) against it, in Debian's
// chromium driven by playwright-core, in light and dark. Broker: REDIS_URL or 127.0.0.1:6379 when
// one answers (the overview then shows it up), else none (shown down).
//
//   npm run build && node scripts/ui-screenshots.mjs
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Celery } from '../dist/index.js';
import { startDashboardServer } from '../dist/exports/ui.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cls-shots-'));
const app = new Celery({ longtermSchedulerBackend: `sqlite:///${join(dir, 'demo.db')}`, broker: `${(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379').replace(/\/\d*$/, '')}/0` });
const HOUR = 3_600_000;
const now = Date.now();
const day0 = Math.floor(now / 86_400_000) * 86_400_000;
let seq = 0;
const id = () => `${(0x3f2c0000 + seq++ * 7919).toString(16)}-${((seq * 2654435761) >>> 0).toString(16).padStart(8, '0').slice(0, 4)}-4${String(seq).padStart(3, '0')}-9a1e-5c0d${String(seq).padStart(8, '0')}`;

const invoice = app.task('billing.send_invoice', { queue: 'billing' });
const remind = app.task('crm.send_reminder', { queue: 'mail' });
const report = app.task('reports.monthly');
// invoices: a few a day for a month, and a pile-up on the 1st of next month at 09:00
const calls = [];
for (let d = 0; d < 30; d++)
  for (let k = 0; k < 20 + (d % 5) * 4; k++)
    calls.push([[1000 + d * 100 + k], { tenant_id: 40 + (k % 5) }, { eta: new Date(day0 + d * 86_400_000 + (8 + (k % 10)) * HOUR + ((k * 7) % 60) * 60_000), taskId: id(), tags: [`tenant:${40 + (k % 5)}`, 'invoice'] }]);
for (const [args, kwargs, options] of calls) if (options.eta.getTime() > now) await invoice.applyAsync(args, kwargs, options);
const first = new Date(new Date(day0).getUTCFullYear(), new Date(day0).getUTCMonth() + 1, 1).getTime();
for (let k = 0; k < 400; k++) await invoice.applyAsync([5000 + k], { tenant_id: 42 }, { eta: new Date(first + 9 * HOUR + k * 9_000), taskId: id(), tags: ['tenant:42', 'invoice', 'month-end'] });
// reminders every few hours for two weeks; a few of them overdue
for (let h = -3; h < 14 * 24; h += 5) await remind.applyAsync([`user-${700 + h}`], { template: 'trial-ending' }, { eta: new Date(now + h * HOUR), taskId: id(), tags: ['trial'] });
for (let m = 0; m < 3; m++) await report.applyAsync([], { month: m + 1 }, { eta: new Date(first + m * 31 * 86_400_000 + 2 * HOUR), taskId: id(), priority: 5, expires: 86_400 });
// dead letters
await app.store.add([
  { id: id(), dueAt: now / 1000 - 4000, entry: '[["legacy.cleanup"],{"args":[],"task_id":"x","serializer":"pickle"}]' },
  { id: id(), dueAt: now / 1000 - 3000, entry: 'not json at all' },
  { id: id(), dueAt: now / 1000 - 2000, entry: '[["reports.export"],{"args":[],"task_id":"y","exchange":"exports","routing_key":"nobody"}]' },
]);
const doomed = new Set((await app.store.list({ limit: 100, to: now / 1000 - 1500 })).jobs.filter((j) => j.entry.includes('"legacy.') || j.entry.includes('"reports.export"') || j.entry === 'not json at all').map((j) => j.id));
const claimed = await app.store.claimDue({ until: now / 1000, now: now / 1000, limit: 100, leaseMs: 60_000 });
await app.store.release(claimed.filter((c) => !doomed.has(c.id)));
const claims = claimed.filter((c) => doomed.has(c.id));
const reasons = [
  ['unsupported', "stored job cannot be sent as Python's send_task would send it: serializer \"pickle\" is not supported; only json"],
  ['corrupt', 'stored job is corrupt: not JSON'],
  ['max_attempts', 'exchange "exports" has no queue bound for routing key "nobody"; start a worker that declares the queue, or schedule with a queue instead of an exchange'],
];
await app.store.bury(claims.map((claim, i) => ({ claim, reason: reasons[i % 3][0], error: reasons[i % 3][1], diedAt: now / 1000 - 1000 + i * 60, ...(i % 3 === 2 && { attempts: { count: 10, lastError: reasons[2][1], firstFailedAt: now / 1000 - 9000, firstDueAt: claim.dueAt } }) })));

const server = await startDashboardServer({ app, port: 0 });
const context = await chromium.launchPersistentContext(mkdtempSync(join(dir, 'profile-')), {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
  deviceScaleFactor: 1,
  timezoneId: 'Europe/Berlin',
});
const page = context.pages()[0] ?? (await context.newPage());
const base = server.url;
const shoot = async (hash, name, wait, o = {}) => {
  await page.goto(`${base}${hash}`);
  await page.waitForSelector(wait);
  await page.waitForTimeout(400);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(root, 'docs', `ui-${name}.png`), fullPage: o.full ?? false });
  console.error(`docs/ui-${name}.png`);
};
await shoot('#/overview', 'overview', 'svg.chart');
await shoot(`#/timeline?from=${encodeURIComponent(new Date(day0).toISOString().replace('.000', ''))}&to=${encodeURIComponent(new Date(first + 2 * 86_400_000 - 1000).toISOString().replace('.000', ''))}&by=hour`, 'timeline', 'table.busiest', { full: true });
await page.locator('table.busiest tbody tr').first().locator('text=spread these').click();
await page.click('section.bulk >> text=Dry run');
await page.waitForSelector('section.bulk .count');
await page.evaluate(() => window.scrollTo(0, 0));
await page.screenshot({ path: join(root, 'docs', 'ui-spread.png'), fullPage: true });
console.error('docs/ui-spread.png');
await shoot('#/search?tag=tenant:42', 'search', 'table.jobs tbody tr');
const one = (await app.store.list({ limit: 1, tags: { all: ['month-end'] } })).jobs[0];
await shoot(`#/job?id=${encodeURIComponent(one.id)}`, 'job', 'table.kv', { full: true });
await shoot('#/dead', 'dead-letters', 'table.dead');
await page.evaluate(() => localStorage.setItem('cls-theme', 'dark'));
await page.goto(`${base}#/overview`);
await page.reload();
await shoot('#/overview', 'overview-dark', 'svg.chart');
await context.close();
await server.close();
await app.close();
rmSync(dir, { recursive: true, force: true });
