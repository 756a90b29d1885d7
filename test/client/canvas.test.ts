/**
 * Canvas from TypeScript: stored in the layout the Python package writes for the same call
 * (compared with the captured entries), validated before anything is written.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Celery, ValidationError, chain, chord, group } from '../../src/index.js';
import { encodeEntry } from '../../src/job/entry.js';
import { canvasFixture } from '../helpers/fixture.js';
import { cli } from '../helpers/cli.js';

const NOW = new Date('2031-03-04T05:00:00Z');
const ETA = new Date('2031-03-04T05:06:07Z');
const dir = mkdtempSync(join(tmpdir(), 'cls-canvas-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function newApp(config: ConstructorParameters<typeof Celery>[0] = {}): Celery {
  return new Celery({ longtermSchedulerBackend: `sqlite:///${join(dir, `c${++n}.db`)}`, clock: () => NOW, ...config });
}

const app = newApp();
const add = app.task('bench.add');
const note = app.task('bench.note');
const tsum = app.task('bench.tsum');

/** The stored keywords of a job, without what our entries leave out (nulls, client-side objects, reply_to). */
function comparable(kw: Record<string, unknown>, drop: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(kw)) {
    if (v === null || ['producer', 'task_type', 'serializer', 'reply_to', 'add_to_parent', 'ignore_result', ...drop].includes(k)) continue;
    out[k] = v;
  }
  return out;
}

function stripIds(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (k, v) => (k === 'task_id' || k === 'reply_to' ? undefined : v)));
}

function fixtureKw(prefix: string): Record<string, unknown>[] {
  return canvasFixture.entries.filter((e) => e.description.startsWith(prefix)).map((e) => (JSON.parse(e.value) as [unknown, Record<string, unknown>])[1]);
}

function storedKw(job: Parameters<typeof encodeEntry>[0]): Record<string, unknown> {
  return (JSON.parse(encodeEntry(job)) as [unknown, Record<string, unknown>])[1];
}

describe('a canvas is planned in the layout the Python package writes', () => {
  it('chain(add(1,2), add(10), note.si("done")): one job, the rest of the chain reversed, each step frozen with an id', () => {
    const plan = chain(add.s([1, 2]), add.s([10]), note.si(['done'])).plan({ eta: ETA }, NOW);
    expect(plan.jobs).toHaveLength(1);
    expect(plan.dueAt).toBe(ETA.getTime() / 1000);
    const ours = storedKw(plan.jobs[0] as never);
    const [python] = fixtureKw('chain of three');
    expect(stripIds(comparable(ours))).toEqual(stripIds(comparable(python as Record<string, unknown>, ['kwargs'])));
    const steps = ours.chain as Array<{ options: { task_id: string } }>;
    expect(steps.map((s) => typeof s.options.task_id)).toEqual(['string', 'string']);
    // results in order: the first step (stored), add(10), then note (the chain's result)
    expect(plan.taskIds).toEqual([plan.jobs[0]?.id, steps[1]?.options.task_id, steps[0]?.options.task_id]);
    expect(plan.resultId).toBe(steps[0]?.options.task_id);
  });

  it('group(add(1,1), add(2,2)): one job per member with the group id and no index', () => {
    const plan = group(add.s([1, 1]), add.s([2, 2])).plan({ countdown: 60 }, NOW);
    expect(plan.dueAt).toBe(NOW.getTime() / 1000 + 60);
    const ours = plan.jobs.map((j) => storedKw(j));
    const python = fixtureKw('group of two');
    expect(ours.map((kw) => kw.args)).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect(new Set(ours.map((kw) => kw.group_id)).size).toBe(1);
    expect(ours[0]?.group_id).toBe(plan.groupId);
    for (const kw of ours) expect(Object.keys(comparable(kw)).sort()).toEqual(Object.keys(comparable(python[0] as Record<string, unknown>, ['kwargs'])).sort());
    expect(plan.chordSize).toBeUndefined();
  });

  it('chord([add(1,1), add(2,2)], tsum()): one job per header task with group id, index and the frozen body', () => {
    const plan = chord([add.s([1, 1]), add.s([2, 2])], tsum.s()).plan({ eta: ETA }, NOW);
    const ours = plan.jobs.map((j) => storedKw(j));
    const python = fixtureKw('chord:');
    expect(ours.map((kw) => kw.group_index)).toEqual([0, 1]);
    const body = ours[0]?.chord as { task: string; options: Record<string, unknown> };
    expect(body.task).toBe('bench.tsum');
    expect(Object.keys(body.options)).toEqual(['task_id']); // Python's also copies the eta (see canvas.ts)
    expect(ours[1]?.chord).toEqual(body);
    const pythonKeys = Object.keys(comparable(python[0] as Record<string, unknown>, ['kwargs'])).sort();
    expect(Object.keys(comparable(ours[0] as Record<string, unknown>)).sort()).toEqual(pythonKeys);
    expect(plan.chordSize).toBe(2);
    expect(plan.resultId).toBe(body.options.task_id);
    expect(plan.taskIds).toEqual([...plan.jobs.map((j) => j.id), body.options.task_id]);
  });

  it('signatures carry their own options under the keyword names the worker reads', () => {
    const link = note.s(['q'], {}, { queue: 'reports', priority: 3, countdown: 30, expires: 600, eta: '2031-03-04T06:00:00+01:00', timeLimit: 5 });
    expect(link).toEqual({
      task: 'bench.note',
      args: ['q'],
      kwargs: {},
      subtask_type: null,
      immutable: false,
      options: { queue: 'reports', priority: 3, countdown: 30, expires: 600, eta: '2031-03-04T05:00:00.000000+00:00', time_limit: 5 },
    });
    expect(note.si(['x']).immutable).toBe(true);
    // a task's defaults travel in its signatures, under what the signature is given
    const routed = app.task('bench.routed', { queue: 'math', priority: 2, timeLimit: 9, countdown: 5 });
    expect(routed.s([1]).options).toEqual({ queue: 'math', priority: 2, time_limit: 9 });
    expect(routed.s([1], {}, { queue: 'other' }).options).toEqual({ queue: 'other', priority: 2, time_limit: 9 });
    // as a link of a scheduled task, and as a chain step's own routing
    const plan = chain(add.s([1, 2], {}, { queue: 'first', priority: 9 }), add.s([3], {}, { queue: 'second' })).plan({ eta: ETA }, NOW);
    expect(plan.jobs[0]).toMatchObject({ queue: 'first', priority: 9 });
    expect(plan.jobs[0]?.chain?.[0]?.options).toMatchObject({ queue: 'second' });
  });
});

describe('a canvas is validated before anything is stored, every problem at once', () => {
  const problems = (fn: () => unknown): string[] => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).not.toContain('\n');
      return [...(err as ValidationError).problems];
    }
    throw new Error('expected a ValidationError');
  };

  it('needs eta or countdown, and takes nothing else', () => {
    expect(problems(() => chain(add.s([1])).plan({}, NOW))[0]).toContain('needs eta or countdown');
    expect(problems(() => group(add.s([1])).plan({ eta: ETA, queue: 'q' } as never, NOW))[0]).toContain('unknown group option "queue"');
    expect(problems(() => chain(add.s([1])).plan({ eta: '2031-03-04T05:06:07' }, NOW)).join(' ')).toContain('offset');
    expect(problems(() => chain(add.s([1])).plan({ eta: ETA, countdown: 5 }, NOW)).join(' ')).toContain('either eta or countdown');
  });

  it('refuses empty and nested canvas, non-signatures, and a stored step with its own eta or countdown', () => {
    expect(problems(() => chain().plan({ eta: ETA }, NOW))).toEqual(['a chain needs at least one signature']);
    expect(problems(() => chord([], tsum.s()).plan({ eta: ETA }, NOW))[0]).toContain('at least one header signature');
    expect(problems(() => chain(add.s([1]), group(add.s([2])) as never).plan({ eta: ETA }, NOW))[0]).toContain('canvas nested in canvas');
    expect(problems(() => chain(add.s([1]), { task: 'x', subtask_type: 'chain' } as never).plan({ eta: ETA }, NOW))[0]).toContain('nested');
    expect(problems(() => group(add.s([1]), 'bench.add' as never).plan({ eta: ETA }, NOW))[0]).toContain('group member 1 must be a signature');
    expect(problems(() => chain(add.s([1], {}, { countdown: 5 })).plan({ eta: ETA }, NOW))[0]).toContain('chain step 0 has its own countdown');
  });

  it('checks each step like a task: bad args, a pickle-looking string, an impossible option', () => {
    const all = problems(() => group(add.s([Number.NaN]), add.s(['__python_pickle__x'])).plan({ eta: ETA }, NOW));
    expect(all.join(' | ')).toMatch(/group member 0: args\[0\] is NaN.*group member 1: args\[0\] starts with "__python_pickle__"/);
    expect(problems(() => add.s([], {}, { priority: 300 }))[0]).toContain('priority must be a whole number from 0 to 255');
    expect(problems(() => add.s([], {}, { expires: new Date() as never }))[0]).toContain('expires in a signature must be seconds');
    expect(problems(() => add.s([], {}, { bogus: 1 } as never))[0]).toContain('unknown signature option "bogus"');
  });

  it('two tasks of one canvas with the same task id store nothing', async () => {
    const a = newApp();
    const t = a.task('bench.add');
    await expect(group(t.s([1], {}, { taskId: 'same' }), t.s([2], {}, { taskId: 'same' })).applyAsync({ eta: ETA })).rejects.toThrow(
      /"same" is given to two tasks/,
    );
    await expect(chain(t.s([1], {}, { taskId: 'same' }), t.s([2], {}, { taskId: 'same' })).applyAsync({ eta: ETA })).rejects.toThrow(/given to two tasks/);
    expect((await a.store.count()).scheduled).toBe(0);
    await a.close();
  });

  it('a chord whose result backend cannot be reached stores nothing, and says so in one line', async () => {
    const a = newApp({ resultBackend: 'redis://:secret@127.0.0.1:1/0', redisSocketConnectTimeout: 1 });
    const err = await chord([a.task('bench.add').s([1, 1])], a.task('bench.tsum').s())
      .applyAsync({ eta: ETA })
      .catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/cannot reach the .*127\.0\.0\.1:1/);
    expect((err as Error).message).not.toContain('secret');
    expect((err as Error).message).not.toContain('\n');
    expect((await a.store.count()).scheduled).toBe(0);
    await a.close();
  });

  it('a chord without a result backend stores nothing', async () => {
    const a = newApp();
    await expect(chord([a.task('bench.add').s([1, 1])], a.task('bench.tsum').s()).applyAsync({ eta: ETA })).rejects.toThrow(
      /a chord needs Celery's Redis result backend/,
    );
    expect((await a.store.count()).scheduled).toBe(0);
    await a.close();
  });

  it('an empty canvas says so, even with no app to find; a bad later step is named by its place', async () => {
    await expect(group().applyAsync({ eta: ETA })).rejects.toThrow('a group needs at least one signature');
    const bad = problems(() => chain(add.s([1]), add.s([2]), add.s([3], {}, { taskId: '\ud800' })).plan({ eta: ETA }, NOW));
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatch(/^chain step 2\.options\.task_id is not well-formed Unicode/);
  });

  it('a signature made without an app needs one passed', async () => {
    const { signature } = await import('../../src/index.js');
    await expect(chain(signature('bench.add', [1])).applyAsync({ eta: ETA })).rejects.toThrow(/pass one: applyAsync\(options, app\)/);
  });
});

describe('applyAsync stores every job of a canvas, all or none', () => {
  it('a group is stored as its members and comes back as results and scheduled ids', async () => {
    const a = newApp();
    const t = a.task('bench.add');
    const r = await group([t.s([1, 1]), t.s([2, 2])]).applyAsync({ eta: ETA });
    expect(r.scheduledIds).toHaveLength(2);
    expect(r.results.map((x) => x.id)).toEqual(r.scheduledIds);
    expect(r.result).toBeUndefined();
    expect(r.dueAt).toEqual(ETA);
    for (const id of r.scheduledIds) expect((await a.store.get(id))?.dueAt).toBe(ETA.getTime() / 1000);
    await a.close();
  });

  it('a chain is one stored job, its result the last step', async () => {
    const a = newApp();
    const t = a.task('bench.add');
    const r = await chain(t.s([1, 2]), t.s([10])).applyAsync({ countdown: 3600 });
    expect(r.scheduledIds).toEqual([r.results[0]?.id]);
    expect(r.result?.id).toBe(r.results[1]?.id);
    expect((await a.store.count()).scheduled).toBe(1);
    expect(await r.results[0]?.state()).toBe('SCHEDULED'); // the first step is in the store
    expect(await a.store.get(r.result?.id as string)).toBeUndefined(); // the last rides in its chain keyword
    await a.close();
  });

  it("`show` names a job's part in its canvas: the chain steps still to run, its group", async () => {
    const url = `sqlite:///${join(dir, 'show.db')}`;
    const a = new Celery({ longtermSchedulerBackend: url, clock: () => NOW });
    const t = a.task('bench.add');
    const c = await chain(t.s([1, 2]), t.s([10]), a.task('bench.note').si(['done'])).applyAsync({ eta: ETA });
    const g = await group(t.s([1]), t.s([2])).applyAsync({ eta: ETA });
    await a.close();
    const shown = await cli(['--backend', url, 'show', c.scheduledIds[0] as string]);
    expect(shown.stdout).toMatch(/^then\s+bench\.add → bench\.note$/m);
    const json = JSON.parse((await cli(['--backend', url, 'show', g.scheduledIds[1] as string, '--json'])).stdout);
    expect(json.canvas).toEqual({ groupId: g.groupId });
  });
});
