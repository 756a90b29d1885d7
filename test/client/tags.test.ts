/**
 * Tags from the caller's side, on SQLite temp files: `applyAsync` / `sendTask` / `sendTasks` with
 * `tags`, `schedule --tag` (repeatable) and `show`, and `migrate` carrying them to another store.
 * The stored entry never holds them, so the Python package reads it as it would its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Celery, ValidationError, chain, group } from '../../src/index.js';
import { migrateJobs } from '../../src/admin/copy-jobs.js';
import { createStore } from '../../src/stores/registry.js';
import { cli as runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-tags-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => `sqlite:///${join(dir, `tags-${++n}.db`)}`;

describe('tags through the client', () => {
  it('are stored beside the job, never in its entry; repeats are dropped', async () => {
    const app = new Celery({ longtermSchedulerBackend: fresh() });
    try {
      const r = await app.task('bill.invoice').applyAsync([42], {}, { countdown: 3600, tags: ['tenant:42', 'invoice', 'tenant:42'] });
      const stored = await app.store.get(r.id);
      expect(stored?.tags).toEqual(['tenant:42', 'invoice']);
      const [, kw] = JSON.parse(stored?.entry ?? 'null') as [string[], Record<string, unknown>];
      expect(Object.keys(kw).sort()).toEqual(['args', 'task_id']);
      expect(stored?.entry).not.toContain('tenant');
      const untagged = await app.sendTask('bill.other', [], {}, { countdown: 60, tags: [] });
      expect((await app.store.get(untagged.id))?.tags).toBeUndefined();
      const [a, b] = await app.sendTasks([
        { name: 't.a', options: { countdown: 10, tags: ['batch'] } },
        { name: 't.b', options: { countdown: 10 } },
      ]);
      expect((await app.store.get(a?.id ?? ''))?.tags).toEqual(['batch']);
      expect((await app.store.get(b?.id ?? ''))?.tags).toBeUndefined();
    } finally {
      await app.close();
    }
  });

  it('a canvas gives its tags to every job it stores; bad ones store nothing', async () => {
    const app = new Celery({ longtermSchedulerBackend: fresh() });
    try {
      const add = app.task('bench.add');
      const c = await chain(add.s([1, 2]), add.s([3])).applyAsync({ countdown: 60, tags: ['flow:1'] }, app);
      const g = await group(add.s([1]), add.s([2])).applyAsync({ countdown: 60, tags: ['flow:2', 'flow:2'] }, app);
      for (const id of c.scheduledIds) expect((await app.store.get(id))?.tags).toEqual(['flow:1']);
      expect(g.scheduledIds).toHaveLength(2);
      for (const id of g.scheduledIds) expect((await app.store.get(id))?.tags).toEqual(['flow:2']);
      const bad = await group(add.s([1]))
        .applyAsync({ countdown: 60, tags: [''] }, app)
        .catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(ValidationError);
      expect(await app.store.count()).toMatchObject({ scheduled: 3 });
    } finally {
      await app.close();
    }
  });

  it('bad tags are one ValidationError naming each problem, and nothing is stored', async () => {
    const app = new Celery({ longtermSchedulerBackend: fresh() });
    try {
      const cases: [unknown, RegExp][] = [
        ['tenant:42', /^tags must be an array of strings/],
        [[''], /^tags\[0\] is empty or only whitespace/],
        [['ok', 7], /^tags\[1\] must be a string, got number/],
        [['a\nb'], /^tags\[0\] holds a control character/],
        [['x\uD800'], /^tags\[0\] is not well-formed Unicode/],
        [['é'.repeat(65)], /^tags\[0\] is 130 bytes; a tag is at most 128 bytes/],
        [Array.from({ length: 33 }, (_, i) => `t${i}`), /^tags holds 33 tags; a job holds at most 32/],
      ];
      for (const [tags, message] of cases) {
        const err = await app.sendTask('t.bad', [], {}, { countdown: 60, tags: tags as string[] }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).problems[0]).toMatch(message);
      }
      const now = await app.sendTask('t.now', [], {}, { tags: ['x'] }).catch((e: unknown) => e);
      expect((now as ValidationError).problems).toEqual(['tags need an eta or countdown: only scheduled jobs hold tags']);
      expect(await app.store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    } finally {
      await app.close();
    }
  });

  it('schedule --tag (repeatable) and show, as text and JSON; a bad tag is exit 2 with one line', async () => {
    const g = ['--backend', fresh()];
    const added = await runCli([...g, 'schedule', 'report.send', '--countdown', '600', '--tag', 'tenant:7', '--tag', 'weekly']);
    expect(added.code).toBe(0);
    const id = added.stdout.trim();
    const text = await runCli([...g, 'show', id]);
    expect(text.stdout).toMatch(/^tags\s+tenant:7, weekly$/m);
    const json = JSON.parse((await runCli([...g, 'show', id, '--json'])).stdout) as { tags: string[]; stored: unknown };
    expect(json.tags).toEqual(['tenant:7', 'weekly']);
    expect(JSON.stringify(json.stored)).not.toContain('weekly');
    // rescheduling and run-now keep them
    expect((await runCli([...g, 'reschedule', id, '--countdown', '1200'])).code).toBe(0);
    expect((await runCli([...g, 'run-now', id])).code).toBe(0);
    expect((JSON.parse((await runCli([...g, 'show', id, '--json'])).stdout) as { tags: string[] }).tags).toEqual(['tenant:7', 'weekly']);
    const bad = await runCli([...g, 'schedule', 'report.send', '--countdown', '600', '--tag', '  ']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: tags\[0\] is empty or only whitespace; a tag names something, e.g. "tenant:42"\n$/);
  });

  it('list --tag / --any-tag / --id-prefix find them; an inverted range is exit 2 with one line', async () => {
    const g = ['--backend', fresh()];
    for (const [id, tags] of [
      ['a-1', ['tenant:1', 'x']],
      ['a-2', ['tenant:2']],
      ['b-1', ['tenant:1']],
    ] as const)
      await runCli([...g, 'schedule', 't.l', '--countdown', '60', '--id', id, ...tags.flatMap((t) => ['--tag', t])]);
    const listed = async (...flags: string[]) =>
      (await runCli([...g, 'list', '--json', ...flags])).stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { id: string }).id);
    expect(await listed('--tag', 'tenant:1')).toEqual(['a-1', 'b-1']);
    expect(await listed('--tag', 'tenant:1', '--tag', 'x')).toEqual(['a-1']);
    expect(await listed('--any-tag', 'x', '--any-tag', 'tenant:2')).toEqual(['a-1', 'a-2']);
    expect(await listed('--id-prefix', 'b-')).toEqual(['b-1']);
    const inverted = await runCli([...g, 'list', '--from', '2031-01-02T00:00:00Z', '--to', '2031-01-01T00:00:00Z']);
    expect(inverted.code).toBe(2);
    expect(inverted.stderr).toBe('error: the range is inverted: from 2031-01-02T00:00:00.000Z is after to 2031-01-01T00:00:00.000Z; pass from <= to\n');
  });

  it('migrate carries them to the target store', async () => {
    const fromUrl = fresh();
    const app = new Celery({ longtermSchedulerBackend: fromUrl });
    const tagged = await app.sendTask('t.m', [], {}, { countdown: 86_400 * 30, tags: ['tenant:1', 'm'] });
    const plain = await app.sendTask('t.m', [], {}, { countdown: 86_400 * 30 });
    await app.close();
    const from = createStore(fromUrl);
    const to = createStore(fresh());
    try {
      expect(await migrateJobs(from, to, {})).toMatchObject({ copied: 2 });
      expect((await to.get(tagged.id))?.tags).toEqual(['tenant:1', 'm']);
      expect((await to.get(plain.id))?.tags).toBeUndefined();
      const moved = createStore(fresh());
      expect(await migrateJobs(from, moved, { move: true })).toMatchObject({ copied: 2 });
      expect((await moved.get(tagged.id))?.tags).toEqual(['tenant:1', 'm']);
      await moved.close();
    } finally {
      await from.close();
      await to.close();
    }
  });
});
