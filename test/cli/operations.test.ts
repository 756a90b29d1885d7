/**
 * `list`, `show`, `reschedule`, `run-now` and `stats` through the CLI (in-process), on every
 * store that has a URL: SQLite (a temp file), PostgreSQL (a schema), Redis (a key prefix).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli as runCli } from '../helpers/cli.js';
import { createStore } from '../../src/stores/registry.js';
import type { ScheduleStore } from '../../src/stores/store.js';
import { dropSchema, schemaUrl } from '../helpers/postgres.js';
import { postgres, requireService, sharedRedis, uniquePrefix, uniqueSchema } from '../helpers/services.js';

const redis = await sharedRedis();
const pgService = await postgres();
const dir = mkdtempSync(join(tmpdir(), 'cls-ops-'));
const schemas: string[] = [];
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  for (const s of schemas) await dropSchema(pgService!.url, s);
});

interface Target {
  name: string;
  skip: boolean;
  /** global flags selecting a fresh, empty store */
  flags(): Promise<string[]>;
}

let n = 0;
const targets: Target[] = [
  { name: 'SQLite', skip: false, flags: async () => ['--backend', `sqlite:///${join(dir, `ops${n++}.db`)}`] },
  {
    name: 'PostgreSQL',
    skip: requireService(pgService, 'PostgreSQL'),
    async flags() {
      const schema = uniqueSchema('ops');
      schemas.push(schema);
      return ['--backend', schemaUrl(pgService!.url, schema), '--migrate'];
    },
  },
  { name: 'Redis', skip: requireService(redis, 'Redis'), flags: async () => ['--backend', redis!.urlFor(0), '--key-prefix', uniquePrefix('ops')] },
];

const cli = (...argv: string[]) => runCli(argv);

const HOUR = 3600_000;
const iso = (ms: number) => new Date(ms).toISOString();

for (const target of targets) {
  describe.skipIf(target.skip)(`operations on the ${target.name} store`, () => {
    let g: string[];
    let store: ScheduleStore;
    const ids: Record<string, string> = {};
    const t0 = Date.now();

    async function schedule(name: string, task: string, at: number, ...extra: string[]): Promise<string> {
      const r = await cli(...g, 'schedule', task, '--eta', iso(at), '--args', `["${name}"]`, ...extra);
      expect(r.stderr).toBe('');
      return (ids[name] = r.stdout.trim());
    }

    beforeAll(async () => {
      g = await target.flags();
      await schedule('a', 'proj.report', t0 + 3 * HOUR, '--queue', 'reports');
      await schedule('b', 'proj.email', t0 + 1 * HOUR);
      await schedule('c', 'proj.email', t0 + 2 * HOUR, '--queue', 'mail');
      await schedule('d', 'proj.report', t0 + 26 * HOUR, '--queue', 'reports');
      await schedule('late', 'proj.email', t0 - 90_000); // overdue by 90 s
      store = createStore(g[1]!, g[2] === '--key-prefix' ? { keyPrefix: g[3]! } : { migrate: true });
    });
    afterAll(async () => {
      await store?.close();
    });

    it('list: a table in due order, JSON lines, filters, and pages chained by cursor', async () => {
      const text = await cli(...g, 'list');
      expect(text.code).toBe(0);
      const lines = text.stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^ID\s+DUE \(UTC\)\s+TASK\s+QUEUE\s+ARGS$/);
      expect(lines.slice(1, 6).map((l) => l.split(/\s+/)[0])).toEqual([ids.late, ids.b, ids.c, ids.a, ids.d]);
      expect(lines[2]).toContain('proj.email');
      expect(lines[2]).toContain('celery'); // the default queue
      expect(lines[6]).toBe('5 jobs');

      const json = (await cli(...g, 'list', '--json', '--task', 'proj.report')).stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(json.map((j) => j.id)).toEqual([ids.a, ids.d]);
      expect(json[0]).toMatchObject({ task: 'proj.report', args: ['a'], queue: 'reports', state: 'scheduled', dueAt: iso(t0 + 3 * HOUR) });

      expect(
        (await cli(...g, 'list', '--json', '--queue', 'mail')).stdout
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { id: string }).id),
      ).toEqual([ids.c]);
      const window = await cli(...g, 'list', '--json', '--from', iso(t0), '--to', iso(t0 + 2 * HOUR));
      expect(
        window.stdout
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { id: string }).id),
      ).toEqual([ids.b, ids.c]);

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const out = (await cli(...g, 'list', '--json', '--limit', '2', ...(cursor ? ['--cursor', cursor] : []))).stdout.trim().split('\n');
        const rows = out.map((l) => JSON.parse(l) as { id?: string; next_cursor?: string });
        cursor = rows.find((r) => r.next_cursor)?.next_cursor;
        seen.push(...rows.filter((r) => r.id).map((r) => r.id!));
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual([ids.late, ids.b, ids.c, ids.a, ids.d]);

      const paged = await cli(...g, 'list', '--limit', '2');
      expect(paged.stdout).toMatch(/\n2 jobs; next page: --cursor '[^']+'\n$/);
      expect((await cli(...g, 'list', '--task', 'nope')).stdout).toBe('no scheduled jobs match\n');
      const bad = await cli(...g, 'list', '--cursor', 'nonsense');
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^error: "nonsense" is not a list cursor/);
    });

    it('show: everything stored, and the state: scheduled, claimed, unknown (exit 1)', async () => {
      const shown = await cli(...g, 'show', ids.a!, '--json');
      expect(shown.code).toBe(0);
      expect(JSON.parse(shown.stdout)).toMatchObject({
        id: ids.a,
        state: 'scheduled',
        task: 'proj.report',
        args: ['a'],
        queue: 'reports',
        stored: [['proj.report'], { args: ['a'], task_id: ids.a, queue: 'reports' }],
      });
      const text = await cli(...g, 'show', ids.b!);
      expect(text.stdout).toMatch(/^id\s+\S+\nstate\s+scheduled\ndue\s+\S+ \(in (59m|1h)/);

      await schedule('claimed', 'proj.claim', t0 - 10_000);
      const claims = await store.claimDue({ until: Date.now() / 1000, now: Date.now() / 1000, limit: 1, leaseMs: 60_000 });
      expect(claims.map((c) => c.id)).toEqual([ids.late].length ? claims.map((c) => c.id) : []);
      const claimedId = claims[0]!.id;
      expect(JSON.parse((await cli(...g, 'show', claimedId, '--json')).stdout)).toMatchObject({ id: claimedId, state: 'claimed' });
      await store.release(claims);

      const unknown = await cli(...g, 'show', 'no-such-id');
      expect(unknown.code).toBe(1);
      expect(unknown.stdout).toMatch(/state\s+unknown/);
      expect(JSON.parse((await cli(...g, 'show', 'no-such-id', '--json')).stdout)).toEqual({ id: 'no-such-id', state: 'unknown' });
      await cli(...g, 'revoke', ids.claimed!);
    });

    it('reschedule and run-now move a job atomically; a claimed or unknown job fails clearly and is left alone', async () => {
      const moved = await cli(...g, 'reschedule', ids.d!, '--countdown', '7200', '--json');
      expect(moved.code).toBe(0);
      const due = Date.parse((JSON.parse(moved.stdout) as { dueAt: string }).dueAt);
      expect(Math.abs(due - (Date.now() + 2 * HOUR))).toBeLessThan(5000);
      expect(JSON.parse((await cli(...g, 'show', ids.d!, '--json')).stdout)).toMatchObject({ dueAt: new Date(due).toISOString() });
      await cli(...g, 'reschedule', ids.d!, '--eta', iso(t0 + 26 * HOUR));

      const eta = await cli(...g, 'reschedule', ids.b!, '--eta', '2031-03-04T05:06:07+02:00');
      expect(eta.stdout).toMatch(new RegExp(`^rescheduled ${ids.b} to 2031-03-04T03:06:07.000Z \\(in \\d+d \\d+h\\)\\n$`));
      expect(JSON.parse((await cli(...g, 'show', ids.b!, '--json')).stdout)).toMatchObject({ dueAt: '2031-03-04T03:06:07.000Z' });

      const now = await cli(...g, 'run-now', ids.b!);
      expect(now.stdout).toBe(`${ids.b} is due now\n`);
      const after = Date.parse((JSON.parse((await cli(...g, 'show', ids.b!, '--json')).stdout) as { dueAt: string }).dueAt);
      expect(after).toBeLessThanOrEqual(Date.now());
      await cli(...g, 'reschedule', ids.b!, '--eta', iso(t0 + HOUR));

      await schedule('busy', 'proj.busy', t0 - 5000);
      const nowS = Date.now() / 1000;
      const claims = await store.claimDue({ until: nowS, now: nowS, limit: 10, leaseMs: 60_000 });
      const busy = claims.find((c) => c.id === ids.busy);
      expect(busy).toBeDefined();
      const refused = await cli(...g, 'reschedule', ids.busy!, '--countdown', '60');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`^error: cannot reschedule job "${ids.busy}": a dispatcher has claimed it`));
      expect(refused.stderr.split('\n')).toHaveLength(2);
      expect((await cli(...g, 'run-now', ids.busy!)).stderr).toMatch(/^error: cannot run now job .*claimed/);
      expect((await store.get(ids.busy!))?.state).toBe('in_flight');
      await store.acknowledge([busy!]);
      await store.release(claims.filter((c) => c.id !== ids.busy));

      const gone = await cli(...g, 'reschedule', ids.busy!, '--countdown', '60');
      expect(gone.code).toBe(1);
      expect(gone.stderr).toMatch(/it is not scheduled: the id is unknown, or the job was already sent or revoked/);
      expect((await cli(...g, 'reschedule', ids.a!)).code).toBe(2);
      expect((await cli(...g, 'reschedule', ids.a!, '--eta', iso(t0), '--countdown', '5')).code).toBe(2);
    });

    it('stats: totals, overdue lag, per task and per day', async () => {
      const r = await cli(...g, 'stats', '--json');
      expect(r.code).toBe(0);
      const s = JSON.parse(r.stdout) as {
        scheduled: number;
        inFlight: number;
        overdue: number;
        oldestOverdueSeconds: number;
        nextDueAt: string;
        byTask: { task: string; count: number }[];
        byDay: { day: string; count: number }[];
      };
      expect(s).toMatchObject({ scheduled: 5, inFlight: 0, dead: 0, overdue: 1 });
      expect(s.oldestOverdueSeconds).toBeGreaterThanOrEqual(90);
      expect(s.oldestOverdueSeconds).toBeLessThan(200);
      expect(s.byTask).toEqual([
        { task: 'proj.email', count: 3 },
        { task: 'proj.report', count: 2 },
      ]);
      expect(s.byDay).toHaveLength(30);
      const day = (ms: number) => iso(ms).slice(0, 10);
      const expected = new Map<string, number>();
      for (const ms of [t0 + HOUR, t0 + 2 * HOUR, t0 + 3 * HOUR, t0 + 26 * HOUR]) expected.set(day(ms), (expected.get(day(ms)) ?? 0) + 1);
      for (const d of s.byDay)
        expect(d.count).toBe(d.day === day(t0) && day(t0 - 90_000) === day(t0) ? (expected.get(d.day) ?? 0) + 1 : (expected.get(d.day) ?? 0));
      const text = await cli(...g, 'stats');
      expect(text.stdout).toMatch(
        /^scheduled\s+5\nin flight\s+0\ndead\s+0\noverdue\s+1 \(the oldest is [\d.]+ s late\)\nnext due\s+\S+ \(1m \d+s ago\)\n\nper task:\n  proj\.email\s+3\n  proj\.report\s+2\n\nper day/,
      );
    });
  });
}

describe('the same operations through getScheduler(app)', () => {
  it('list, show, reschedule, runNow and stats on an app', async () => {
    const { Celery, getScheduler, NotScheduledError } = await import('../../src/index.js');
    const app = new Celery({ longtermSchedulerBackend: `sqlite:///${join(dir, 'lib.db')}` });
    try {
      const s = getScheduler(app);
      const a = await app.task('lib.a').applyAsync([1], {}, { countdown: 600, queue: 'q1' });
      const b = await app.task('lib.b').applyAsync([2], {}, { countdown: 300 });
      expect((await s.list()).jobs.map((j) => j.id)).toEqual([b.id, a.id]);
      expect((await s.list({ queue: 'q1' })).jobs.map((j) => j.task)).toEqual(['lib.a']);
      expect(await s.show(a.id)).toMatchObject({ id: a.id, state: 'scheduled', task: 'lib.a', args: [1], queue: 'q1' });
      await s.reschedule(a.id, new Date(Date.now() + 60_000));
      expect((await s.list()).jobs.map((j) => j.id)).toEqual([a.id, b.id]);
      await s.runNow(b.id);
      expect((await s.stats()).overdue).toBe(1);
      await s.revoke(b.id);
      await expect(s.runNow(b.id)).rejects.toBeInstanceOf(NotScheduledError);
      expect(await s.show(b.id)).toBeUndefined();
    } finally {
      await app.close();
    }
  });
});
