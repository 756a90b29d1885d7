/**
 * Times at their edges through the CLI and the scheduler: what Python cannot hold is refused
 * when scheduling or rescheduling (exit 2, nothing written), years 1-99 stay as written, and a
 * due time another writer stored out of range is printed readably by list, show and stats.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { cli as runCli } from '../helpers/cli.js';
import { Celery, getScheduler, ValidationError } from '../../src/index.js';
import { requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';

const redis = await sharedRedis();
const dir = mkdtempSync(join(tmpdir(), 'cls-times-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

describe('scheduling and rescheduling refuse times Python cannot hold', () => {
  let g: string[];
  const cli = (...argv: string[]) => runCli([...g, ...argv]);
  const count = async () => Number(/scheduled\s+(\d+)/.exec((await cli('stats')).stdout)?.[1]);
  beforeAll(() => {
    g = ['--backend', `sqlite:///${join(dir, `t${files++}.db`)}`];
  });

  it.each([
    [['--countdown', '1e13'], /^error: countdown 10000000000000 s lands after 9999-12-31T23:59:59Z/],
    [['--eta', '9999-12-31T23:30:00-01:00'], /^error: eta .* is after the range; pass a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z/],
    [['--countdown', '5', '--expires', '-5'], /^error: expires -5 is negative; pass seconds >= 0 counted from dispatch/],
    [['--countdown', '5', '--expires', '1e13'], /^error: expires 10000000000000 s, counted from dispatch, lands after 9999/],
    [['--countdown', '5', '--expires', '9999-12-31T23:30:00-01:00'], /^error: expires .* is after the range/],
  ])('schedule %j: exit 2, one line, nothing stored', async (flags, message) => {
    const r = await cli('schedule', 't.times', ...flags);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await count()).toBe(0);
  });

  it('a year from 1 to 99 is kept as written, and shown as written', async () => {
    const id = (await cli('schedule', 't.times', '--eta', '0050-06-15T12:00:00Z')).stdout.trim();
    expect((await cli('show', id)).stdout).toMatch(/^due\s+0050-06-15T12:00:00\.000Z /m);
    expect(JSON.parse((await cli('show', id, '--json')).stdout)).toMatchObject({
      dueAt: '0050-06-15T12:00:00.000Z',
      dueAtUnix: Date.parse('0050-06-15T12:00:00Z') / 1000,
    });
    expect((await cli('revoke', id)).code).toBe(0);
  });

  it('reschedule --countdown / --eta past year 9999: exit 2, the job keeps its time', async () => {
    const id = (await cli('schedule', 't.times', '--countdown', '600')).stdout.trim();
    const before = JSON.parse((await cli('show', id, '--json')).stdout) as { dueAtUnix: number };
    for (const flags of [
      ['--countdown', '1e13'],
      ['--eta', '9999-12-31T23:30:00-01:00'],
    ]) {
      const r = await cli('reschedule', id, ...flags);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^error: .*(9999-12-31T23:59:59Z|after the range)/);
    }
    expect(JSON.parse((await cli('show', id, '--json')).stdout)).toMatchObject({ dueAtUnix: before.dueAtUnix });
  });

  it('reschedule --countdown refuses a negative count, as schedule does', async () => {
    const id = (await cli('schedule', 'proj.t', '--countdown', '60')).stdout.trim();
    const r = await cli('reschedule', id, '--countdown', '-5');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: --countdown -5 is negative; pass seconds from now (0 or more), or use run-now\n');
    expect((await cli('revoke', id)).code).toBe(0);
  });

  it('getScheduler(app).reschedule refuses such a Date, and a value that is not a Date', async () => {
    const app = new Celery({ longtermSchedulerBackend: g[1] });
    try {
      const r = await app.task('t.times').applyAsync([], {}, { countdown: 600 });
      await expect(getScheduler(app).reschedule(r.id, new Date(8.64e15))).rejects.toThrow(ValidationError);
      await expect(getScheduler(app).reschedule(r.id, '2031-01-01' as unknown as Date)).rejects.toThrow(/not a valid Date/);
      expect((await getScheduler(app).show(r.id))?.dueAtUnix).toBe(r.dueAt ? r.dueAt.getTime() / 1000 : NaN);
    } finally {
      await app.close();
    }
  });
});

describe.skipIf(requireService(redis, 'Redis'))('a due time stored out of range by another writer (Redis)', () => {
  const prefix = uniquePrefix('times');
  let raw: Redis;
  let g: string[];
  const cli = (...argv: string[]) => runCli([...g, ...argv]);
  beforeAll(async () => {
    const url = (redis as RedisService).urlFor(0);
    raw = new Redis(url);
    g = ['--backend', url, '--key-prefix', prefix];
    // what a foreign writer can do to the Python package's layout: any score, even inf
    for (const [id, score] of [
      ['far', '1e20'],
      ['early', '-1e20'],
      ['inf', '+inf'],
    ] as const) {
      await raw.set(`${prefix}${id}`, JSON.stringify([['t.foreign'], { args: [], task_id: id }]));
      await raw.zadd(`${prefix}scheduled_task_id_by_time`, score, id);
    }
  });
  afterAll(async () => {
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });

  it('list prints the raw unix seconds instead of crashing, as a table and as JSON', async () => {
    const text = await cli('list');
    expect(text).toMatchObject({ code: 0, stderr: '' });
    expect(text.stdout).toMatch(/^early\s+unix -100000000000000000000 \(outside years 1-9999\)\s+t\.foreign/m);
    expect(text.stdout).toMatch(/^far\s+unix 100000000000000000000 \(outside years 1-9999\)\s+t\.foreign/m);
    const json = await cli('list', '--json');
    expect(json.code).toBe(0);
    const jobs = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; dueAt: string | null; dueAtUnix: number | null });
    expect(jobs.find((j) => j.id === 'far')).toMatchObject({ dueAt: null, dueAtUnix: 1e20 });
  });

  it('show prints the raw unix seconds instead of crashing', async () => {
    const r = await cli('show', 'far');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^due\s+unix 100000000000000000000 \(outside years 1-9999\) \(out of range\)$/m);
    expect(JSON.parse((await cli('show', 'far', '--json')).stdout)).toMatchObject({ dueAt: null, dueAtUnix: 1e20 });
  });

  it('stats counts them and prints the next due time readably', async () => {
    const r = await cli('stats');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^scheduled\s+3$/m);
    expect(r.stdout).toMatch(/^next due\s+unix -100000000000000000000 \(outside years 1-9999\) \(out of range\)$/m);
    const json = JSON.parse((await cli('stats', '--json')).stdout) as { nextDueAt: string | null; nextDueAtUnix: number };
    expect(json).toMatchObject({ nextDueAt: null, nextDueAtUnix: -1e20 });
  });
});
