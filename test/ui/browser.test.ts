/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core, against the built
 * CLI's `ui` on a real SQLite store. It searches, opens a job, reschedules it (the date picker in
 * the viewer's zone, and a +1h shift) and revokes it, runs a bulk shift after its dry run (with
 * the typed confirmation), spreads a pile-up from the timeline, retries a dead letter, and checks
 * after each step that the store changed exactly as the page said. Then read-only (no action
 * shown) and the auth token (the login page). Every request the browser makes is routed through
 * the test, which fails on any that leaves 127.0.0.1, and on any console error (a CSP violation
 * is one).
 *
 * Skips locally without /usr/bin/chromium (`apt-get install -y chromium`); fails under CI=true.
 * Screenshots go to $UI_SCREENSHOTS_DIR when it is set.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import { Celery } from '../../src/client/celery.js';
import { spawnDashboard, type DashboardProcess } from '../helpers/dashboard.js';
import { requireService } from '../helpers/services.js';

/** how long a page may take to show what a step changed: generous, for a loaded CI machine */
const POLL = { timeout: 15_000 };

const CHROMIUM = '/usr/bin/chromium';
const skip = requireService(existsSync(CHROMIUM) ? CHROMIUM : undefined, `chromium at ${CHROMIUM} (apt-get install -y chromium)`);
const SHOTS = process.env.UI_SCREENSHOTS_DIR;
const dir = mkdtempSync(join(tmpdir(), 'cls-ui-browser-'));
const backend = `sqlite:///${join(dir, 'ui.db')}`;
const BROKER = 'redis://127.0.0.1:1/0'; // down: the page says so, and nothing here needs it
const TOKEN = 'browser-test-token-0123456789';
const app = new Celery({ longtermSchedulerBackend: backend, broker: BROKER });
const processes: DashboardProcess[] = [];
const contexts: BrowserContext[] = [];
/** every URL the browser asked for that is not on 127.0.0.1 */
const leaks: string[] = [];
const consoleErrors: string[] = [];

async function open(port: number, o: { zone?: string } = {}): Promise<Page> {
  const { chromium } = await import('playwright-core');
  const context = await chromium.launchPersistentContext(mkdtempSync(join(dir, 'profile-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timezoneId: o.zone ?? 'Europe/Berlin',
    viewport: { width: 1280, height: 860 },
  });
  contexts.push(context);
  await context.route('**/*', async (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== '127.0.0.1' || url.port !== String(port)) {
      leaks.push(url.href);
      return route.abort();
    }
    return route.continue();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.setDefaultTimeout(10_000);
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

const dueOf = async (id: string) => (await app.store.get(id))?.dueAt;

beforeAll(async () => {
  if (skip) return;
  const invoice = app.task('proj.invoice');
  for (let i = 0; i < 8; i++)
    await invoice.applyAsync([i], { tenant: 2 }, { eta: new Date(Date.UTC(2031, 0, 4, 9, i * 5)), taskId: `inv-${i}`, tags: ['tenant:2'], queue: 'billing' });
  const remind = app.task('proj.remind');
  for (let i = 0; i < 30; i++) await remind.applyAsync([i], {}, { eta: new Date(Date.UTC(2031, 0, 5, 14, i)), taskId: `rem-${String(i).padStart(2, '0')}` });
  await app.store.add([{ id: 'broken-1', dueAt: Date.now() / 1000 - 10, entry: '[["proj.lost"],{"args":[],"task_id":"broken-1"}]' }]);
  const claims = await app.store.claimDue({ until: Date.now() / 1000, now: Date.now() / 1000, limit: 10, leaseMs: 60_000 });
  await app.store.bury(
    claims.map((claim) => ({
      claim,
      reason: 'max_attempts' as const,
      error: 'exchange "" has no queue bound for routing key "lost"',
      diedAt: Date.now() / 1000,
    })),
  );
});

afterAll(async () => {
  for (const c of contexts) await c.close();
  for (const p of processes) await p.stop();
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skip)('the dashboard in chromium', () => {
  it('search, a job (reschedule, shift, revoke), a bulk shift with its dry run, a spread from the timeline, a dead letter', async () => {
    const ui = await spawnDashboard(['--backend', backend, '--broker', BROKER, 'ui', '--port', '0', '--confirm-threshold', '5']);
    processes.push(ui);
    const page = await open(ui.port);
    const base = `http://127.0.0.1:${ui.port}/`;

    await page.goto(base);
    await expect.poll(() => page.locator('.card-value').first().textContent(), POLL).toBe('38');
    await expect.poll(() => page.locator('.live').textContent(), POLL).toMatch(/live/);
    await shot(page, 'overview');

    // search by the form; the query lands in the address
    await page.click('nav.views a[data-view=search]');
    await page.keyboard.press('/');
    const focused = () =>
      page.evaluate(() =>
        (globalThis as unknown as { document: { activeElement: { getAttribute(n: string): string | null } | null } }).document.activeElement?.getAttribute(
          'name',
        ),
      );
    await expect.poll(focused, POLL).toBe('task');
    await page.fill('input[name=task]', 'proj.invoice');
    await page.fill('input[name=tag]', 'tenant:2');
    await page.click('form.query button[type=submit]');
    await expect.poll(() => page.locator('table.jobs tbody tr').count(), POLL).toBe(8);
    expect(decodeURIComponent(new URL(page.url()).hash)).toBe('#/search?task=proj.invoice&tag=tenant:2');
    expect(await page.locator('table.jobs tbody tr').first().locator('td').nth(0).textContent()).toBe('2031-01-04 09:00:00');
    expect(await page.locator('table.jobs tbody tr').first().locator('td').nth(1).textContent()).toBe('2031-01-04 10:00:00'); // Europe/Berlin
    await expect.poll(() => page.locator('.status').textContent(), POLL).toMatch(/8 matches in all/);
    await shot(page, 'search');

    // a job: the picker is in the viewer's zone (Berlin, UTC+1 in March), then +1h, then revoke
    await page.locator('table.jobs tbody tr[data-id=inv-3]').click();
    await expect.poll(() => page.locator('h2 .badge').textContent(), POLL).toBe('scheduled');
    await page.fill('.job-actions input[type=datetime-local]', '2031-03-01T10:30');
    await page.click('.job-actions button.primary');
    await expect.poll(() => page.locator('#flash').textContent(), POLL).toMatch(/^Rescheduled: now due 2031-03-01 09:30:00 UTC \(in \d+d \d+h\)$/);
    expect(await dueOf('inv-3')).toBe(Date.UTC(2031, 2, 1, 9, 30) / 1000);
    await shot(page, 'job');
    await page.click('.job-actions button[title="move it +1h"]');
    await expect.poll(() => page.locator('#flash').textContent(), POLL).toMatch(/^Shifted \+1h: now due 2031-03-01 10:30:00 UTC/);
    expect(await dueOf('inv-3')).toBe(Date.UTC(2031, 2, 1, 10, 30) / 1000);
    await page.click('.job-actions button.danger');
    await page.click('text=Revoke it for good?');
    await expect.poll(() => page.locator('#flash').textContent(), POLL).toBe('Revoked inv-3');
    expect(await app.store.get('inv-3')).toBeUndefined();
    await expect.poll(() => page.locator('h2 .badge').textContent(), POLL).toBe('unknown');

    // a bulk shift on the search: the dry run counts 7, over the threshold of 5 the count is typed
    await page.goto(`${base}#/search?tag=tenant:2`);
    await page.selectOption('section.bulk select[name=action]', 'shift');
    await page.fill('section.bulk input[name=length]', '+2h');
    await page.click('section.bulk >> text=Dry run');
    await expect.poll(() => page.locator('section.bulk .count').textContent(), POLL).toBe('7');
    const go = page.locator('section.bulk button.danger');
    expect(await go.textContent()).toBe('Shift +2h: 7 jobs');
    expect(await go.isDisabled()).toBe(true);
    await page.fill('section.bulk input[aria-label="type the count to confirm"]', '6');
    expect(await go.isDisabled()).toBe(true);
    await page.fill('section.bulk input[aria-label="type the count to confirm"]', '7');
    await shot(page, 'bulk');
    await go.click();
    await expect.poll(() => page.locator('section.bulk .ok').textContent(), POLL).toMatch(/^Done: 7 changed, of 7 matches, in [\d.]+ ms\.$/);
    for (const i of [0, 1, 2, 4, 5, 6, 7]) expect(await dueOf(`inv-${i}`)).toBe(Date.UTC(2031, 0, 4, 11, i * 5) / 1000);

    // the timeline: the 30 reminders due in one hour are the busiest bucket; spread them over 3h
    await page.goto(`${base}#/timeline?from=2031-01-04T00:00:00Z&to=2031-01-06T23:59:59Z&by=hour`);
    await expect.poll(() => page.locator('svg.chart rect.bar').count(), POLL).toBe(2); // the invoices at 11:00 on the 4th, the reminders at 14:00 on the 5th
    expect(await page.locator('table.busiest tbody tr').first().locator('td').first().textContent()).toBe('2031-01-05 14:00:00');
    await shot(page, 'timeline');
    await page.locator('table.busiest tbody tr').first().locator('text=spread these').click();
    expect(await page.locator('section.bulk select[name=action]').inputValue()).toBe('spread');
    expect(await page.locator('section.bulk input[name=length]').inputValue()).toBe('3h');
    await page.click('section.bulk >> text=Dry run');
    await expect.poll(() => page.locator('section.bulk .count').textContent(), POLL).toBe('30');
    await page.fill('section.bulk input[aria-label="type the count to confirm"]', '30');
    await page.click('section.bulk button.danger');
    await expect.poll(() => page.locator('#flash').textContent(), POLL).toMatch(/^Done: 29 changed, 1 already there, of 30 matches/);
    const spread = await Promise.all(Array.from({ length: 30 }, (_, i) => dueOf(`rem-${String(i).padStart(2, '0')}`)));
    expect(spread).toEqual(Array.from({ length: 30 }, (_, i) => Date.UTC(2031, 0, 5, 14) / 1000 + i * 360));
    await expect.poll(() => page.locator('svg.chart rect.bar').count(), POLL).toBe(4); // the invoices; 14, 15 and 16 o'clock on the 5th

    // dead letters: the one there is, retried
    await page.click('nav.views a[data-view=dead]');
    await expect.poll(() => page.locator('table.dead tbody tr').count(), POLL).toBe(1);
    expect(await page.locator('table.dead tbody tr td').nth(2).textContent()).toBe('max_attempts');
    await shot(page, 'dead-letters');
    await page.locator('table.dead button', { hasText: 'retry' }).click();
    await expect.poll(() => page.locator('#flash').textContent(), POLL).toBe('Retried 1 dead letter');
    expect((await app.store.get('broken-1'))?.state).toBe('scheduled');
    expect((await app.store.count()).dead).toBe(0);

    // dark mode
    await page.goto(`${base}#/overview`);
    await page.click('button.theme'); // light
    await page.click('button.theme'); // dark
    expect(
      await page.evaluate(
        () => (globalThis as unknown as { document: { documentElement: { dataset: Record<string, string> } } }).document.documentElement.dataset.theme,
      ),
    ).toBe('dark');
    await page.goto(`${base}#/timeline?from=2031-01-04T00:00:00Z&to=2031-01-06T23:59:59Z&by=hour`);
    await expect.poll(() => page.locator('svg.chart rect.bar').count(), POLL).toBe(4);
    expect(
      await page.evaluate(
        () => (globalThis as unknown as { document: { documentElement: { dataset: Record<string, string> } } }).document.documentElement.dataset.theme,
      ),
    ).toBe('dark'); // remembered
    await shot(page, 'timeline-dark');

    expect(leaks).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it('read-only: no action is shown anywhere', async () => {
    const ui = await spawnDashboard(['--backend', backend, '--broker', BROKER, 'ui', '--port', '0', '--read-only']);
    processes.push(ui);
    const page = await open(ui.port);
    const base = `http://127.0.0.1:${ui.port}/`;
    await page.goto(`${base}#/job?id=inv-0`);
    await expect.poll(() => page.locator('h2 .badge').textContent(), POLL).toBe('scheduled');
    expect(await page.locator('header .badge').textContent()).toBe('read-only');
    expect(await page.locator('main button').count()).toBe(0);
    await page.goto(`${base}#/search?tag=tenant:2`);
    await expect.poll(() => page.locator('table.jobs tbody tr').count(), POLL).toBe(7);
    expect(await page.locator('section.bulk').count()).toBe(0);
    await page.goto(`${base}#/timeline?from=2031-01-04T00:00:00Z&to=2031-01-06T23:59:59Z&by=hour`);
    await expect.poll(() => page.locator('table.busiest tbody tr').count(), POLL).toBeGreaterThan(0);
    expect(await page.locator('text=spread these').count()).toBe(0);
    expect(leaks).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it('with an auth token: the login page first, a wrong token refused, the right one lets in', async () => {
    const ui = await spawnDashboard(['--backend', backend, '--broker', BROKER, 'ui', '--port', '0'], { CELERY_LONGTERM_SCHEDULER_UI_TOKEN: TOKEN });
    processes.push(ui);
    expect(ui.output()).toContain('(sign in with the auth token)');
    const page = await open(ui.port);
    const first = await page.goto(`http://127.0.0.1:${ui.port}/#/search?task=proj.invoice`);
    expect(first?.status()).toBe(401);
    await page.fill('input[name=token]', 'not-the-token-at-all');
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('main .error').textContent(), POLL).toBe('That is not the token; try again.');
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('.card-value').count(), POLL).toBe(5);
    const cookies = await page.context().cookies();
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite])).toEqual([['cls_dashboard', true, 'Strict']]);
    expect(cookies[0]?.value).not.toContain(TOKEN);
    expect(leaks).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
});
