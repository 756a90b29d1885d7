/**
 * `migrate --move` step by step, on real SQLite files (and a private Redis server for the case
 * of a restarted source): a dispatcher that claims a job in the instant between the copy and the
 * removal, the target's dispatcher looking at the same moment, and every state an interrupted
 * move can leave behind, finished by the next run. The same race between real processes is in
 * migrate-process.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createStore } from '../../src/stores/registry.js';
import { HOLD_AT, HOLD_WITHIN_SECONDS, holdEntry, migrateJobs, readHold } from '../../src/admin/copy-jobs.js';
import type { ClaimedJob, ScheduleStore } from '../../src/stores/store.js';
import { cli as runCli } from '../helpers/cli.js';
import { privateRedis, requireService, type RedisService } from '../helpers/services.js';

const redis = await privateRedis();
const skipRedis = requireService(redis, 'Redis');

const dir = mkdtempSync(join(tmpdir(), 'cls-migrate-move-'));
let files = 0;
const sqliteUrl = () => `sqlite:///${join(dir, `m${files++}.db`)}`;
const open: ScheduleStore[] = [];
function store(url = sqliteUrl(), keyPrefix?: string): ScheduleStore {
  const s = createStore(url, keyPrefix === undefined ? {} : { keyPrefix });
  open.push(s);
  return s;
}
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await redis?.stop();
});

const NOW = Date.now() / 1000;
const job = (id: string, dueAt: number) => ({ id, dueAt, entry: `[["t.move"],{"task_id":"${id}"}]` });
/** claims everything due up to `until` in `s`, as a dispatcher of that store would */
const claimAll = (s: ScheduleStore, until = NOW) => s.claimDue({ until, now: NOW, limit: 1000, leaseMs: 60_000 });

/**
 * `s`, except that removing `id` first runs `meanwhile` (a dispatcher claiming it, say): the
 * instant between the copy into the target and the removal from the source.
 */
function racing(s: ScheduleStore, id: string, meanwhile: () => Promise<void>): ScheduleStore {
  return new Proxy(s, {
    get(target, name) {
      if (name === 'remove') {
        return async (jobId: string) => {
          if (jobId === id) await meanwhile();
          return target.remove(jobId);
        };
      }
      const value = Reflect.get(target, name) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

async function all(s: ScheduleStore): Promise<{ id: string; dueAt: number; entry: string }[]> {
  const out: { id: string; dueAt: number; entry: string }[] = [];
  let cursor: string | undefined;
  do {
    const page = await s.list({ limit: 100, ...(cursor !== undefined && { cursor }) });
    out.push(...page.jobs.map(({ id, dueAt, entry }) => ({ id, dueAt, entry })));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}

describe('migrate --move when a dispatcher claims a job between the copy and the removal', () => {
  it('a due job the source dispatcher claims is never claimable in the target: it is sent once, by the source', async () => {
    const from = store();
    const to = store();
    await from.add([job('a', NOW - 10), job('b', NOW - 5), job('c', NOW - 1)]);
    let inTarget: ClaimedJob[] = [];
    let inSource: ClaimedJob[] = [];
    const source = racing(from, 'b', async () => {
      inSource = await claimAll(from); // the source's dispatcher takes b (and c) the moment b was to be removed
      inTarget = await claimAll(to, HOLD_AT - 1); // and the target's dispatcher looks at the same moment
    });
    const summary = await migrateJobs(source, to, { move: true });
    expect(inSource.map((c) => c.id)).toEqual(['b', 'c']);
    expect(inTarget).toEqual([]); // b and c are only held there: not claimable
    expect(summary).toMatchObject({ copied: 1, removed: 1, leftToSource: 2, skipped: 0, held: 0 });
    expect(await all(to)).toEqual([job('a', NOW - 10)]); // the held copies of b and c are gone: only the source sends them
    expect(await from.count()).toEqual({ scheduled: 0, inFlight: 2, dead: 0 });
  });

  it('a job due later that a dispatcher claims a day ahead is removed from the target again', async () => {
    const from = store();
    const to = store();
    const later = NOW + 2 * HOLD_WITHIN_SECONDS;
    await from.add([job('x', later), job('y', later + 1)]);
    const source = racing(from, 'x', async () => void (await claimAll(from, later))); // dispatch --timestamp two days ahead
    const summary = await migrateJobs(source, to, { move: true });
    expect(summary).toMatchObject({ copied: 1, removed: 1, leftToSource: 1 });
    expect(await all(to)).toEqual([job('y', later + 1)]);
    expect(await from.get('x')).toMatchObject({ state: 'in_flight' });
  });

  it('adds the jobs due within a day held, and the jobs due later at their due times (an injected clock decides)', async () => {
    const from = store();
    const target = store();
    const [soon, later] = [job('soon', NOW + HOLD_WITHIN_SECONDS - 60), job('later', NOW + HOLD_WITHIN_SECONDS + 60)];
    await from.add([soon, later]);
    const added: { id: string; dueAt: number; entry: string }[] = [];
    const to = new Proxy(target, {
      get(t, name) {
        if (name === 'add') return async (jobs: typeof added, o: object) => (added.push(...jobs), t.add(jobs, o));
        const value = Reflect.get(t, name) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(t) : value;
      },
    });
    await migrateJobs(from, to, { move: true, clock: () => new Date(NOW * 1000) });
    expect(added.map((j) => ({ id: j.id, dueAt: j.dueAt, hold: readHold(j.entry) }))).toEqual([
      { id: 'soon', dueAt: HOLD_AT, hold: { from: await from.identity(), source: from.description, dueAt: soon.dueAt, entry: soon.entry } },
      { id: 'later', dueAt: later.dueAt, hold: undefined },
    ]);
    expect(await all(target)).toEqual([soon, later]);
    expect(await from.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it("a job the target's dispatcher already has in flight is left to it, and removed from the source", async () => {
    const from = store();
    const to = store();
    await to.add([job('j', NOW - 1)]);
    expect(await claimAll(to)).toHaveLength(1); // the target's dispatcher is sending its copy
    await from.add([job('j', NOW - 1), job('k', NOW - 1)]);
    const summary = await migrateJobs(from, to, { move: true });
    expect(summary).toMatchObject({ copied: 1, skipped: 1, removed: 2, leftToSource: 0 });
    expect(await from.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    expect(await to.get('j')).toMatchObject({ state: 'in_flight' });
    expect(await to.get('k')).toMatchObject({ state: 'scheduled', dueAt: NOW - 1 });
  });
});

describe('migrate --move finishes what an interrupted move left held in the target', () => {
  /** The held copy an interrupted move from `from` would have left in `to`. */
  async function heldCopy(from: ScheduleStore, to: ScheduleStore, j: { id: string; dueAt: number; entry: string }, identity?: string): Promise<void> {
    const hold = { from: identity ?? (await from.identity()), source: from.description, dueAt: j.dueAt, entry: j.entry };
    await to.add([{ id: j.id, dueAt: HOLD_AT, entry: holdEntry(hold) }]);
  }

  it('moves on one the source still has, drops one the source has in flight, releases one the source gave up', async () => {
    const from = store();
    const to = store();
    const [claimed, still, gone] = [job('claimed', NOW - 3), job('still', NOW - 2), job('gone', NOW - 1)];
    await from.add([claimed, still]);
    expect((await claimAll(from, NOW - 2.5)).map((c) => c.id)).toEqual(['claimed']); // the source's dispatcher is sending it
    for (const j of [claimed, still, gone]) await heldCopy(from, to, j); // 'gone' the source had given up already
    const summary = await migrateJobs(from, to, { move: true });
    expect(summary).toMatchObject({ resumed: 3, copied: 2, removed: 1, leftToSource: 1, held: 0 });
    expect(await all(to)).toEqual([still, gone]);
    expect(await from.count()).toEqual({ scheduled: 0, inFlight: 1, dead: 0 });
    expect(await from.get('claimed')).toMatchObject({ state: 'in_flight' });
  });

  it('leaves alone, and warns about, what it cannot finish: a hold from another source, or any hold without --move', async () => {
    const from = store();
    const other = store();
    const to = store();
    await from.add([job('mine', NOW - 1)]);
    await heldCopy(from, to, job('mine', NOW - 1));
    await heldCopy(other, to, job('theirs', NOW - 1));
    const copy = await runCli(['migrate', '--from', from.description, '--to', to.description, '--json']);
    expect(copy.code).toBe(0);
    expect(JSON.parse(copy.stdout)).toMatchObject({ copied: 0, skipped: 1, held: 2 });
    expect(copy.stderr).toBe(
      'warning: 2 jobs are held (not sent) by an interrupted migrate --move that this run could not finish; run that migrate --move again, with the same --from\n',
    );
    const moved = await runCli(['migrate', '--from', from.description, '--to', to.description, '--move']);
    expect(moved.code).toBe(0);
    expect(moved.stdout).toMatch(/^copied 1, already there 0, removed from source 1, finished 1 an interrupted move had held; /);
    expect(moved.stderr).toMatch(/^warning: 1 jobs are held/);
    expect((await to.get('mine'))?.dueAt).toBe(NOW - 1);
    expect(readHold((await to.get('theirs'))!.entry)).toMatchObject({ source: other.description });
    expect(await from.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it("never copies a held copy out of a store as a job: a move into the source is that move's to finish", async () => {
    const elsewhere = store();
    const from = store();
    const to = store();
    await heldCopy(elsewhere, from, job('in-transit', NOW - 1));
    await from.add([job('real', NOW - 1)]);
    const summary = await migrateJobs(from, to, { move: true });
    expect(summary).toMatchObject({ seen: 2, copied: 1, held: 1 });
    expect(await all(to)).toEqual([job('real', NOW - 1)]);
    expect(readHold((await from.get('in-transit'))!.entry)).toBeDefined();
  });

  it.skipIf(skipRedis)('recognises its Redis source after a restart (a new run_id) by the same URL, database and prefix', async () => {
    const url = (redis as RedisService).urlFor(2);
    const from = store(url, 'restarted:');
    const to = store();
    const identity = await from.identity();
    const before = identity.replace(/^redis:\w+:/, 'redis:0123456789abcdef0123456789abcdef01234567:');
    expect(before).not.toBe(identity);
    await heldCopy(from, to, job('r1', NOW - 1), before); // held before the restart
    await heldCopy(from, to, { ...job('r2', NOW - 1) }, before.replace(/:2:restarted:$/, ':3:restarted:')); // another database
    const summary = await migrateJobs(from, to, { move: true });
    expect(summary).toMatchObject({ resumed: 1, copied: 1, held: 1 });
    expect(await to.get('r1')).toMatchObject({ dueAt: NOW - 1, entry: job('r1', NOW - 1).entry });
  });

  it('reads only the holds it wrote', () => {
    const hold = { from: 'sqlite:1:2', source: 'sqlite:///x.db', dueAt: 1_900_000_000.123, entry: '[["t"],{"task_id":"é\\u2028"}]' };
    expect(readHold(holdEntry(hold))).toEqual(hold);
    expect(readHold(hold.entry)).toBeUndefined();
    expect(readHold('{"celery_longterm_scheduler:moving":{"from":"x"}}')).toBeUndefined();
    expect(readHold('{"celery_longterm_scheduler:moving":')).toBeUndefined();
  });
});
