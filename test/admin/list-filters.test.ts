/**
 * `listJobs` filters beyond due time, task and queue: tags (every one, any one) and id prefix, on
 * the memory store; they combine, page in due order with a cursor, and bad filters (an inverted
 * range, a bad tag) are one ValidationError before anything is read.
 */
import { describe, expect, it } from 'vitest';
import { listJobs } from '../../src/admin/scheduled-jobs.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { ValidationError } from '../../src/util/errors.js';

const T0 = 1_900_000_000;
const job = (id: string, dueAt: number, tags?: string[]) => ({
  id,
  dueAt,
  entry: JSON.stringify([['t.task'], { args: [], task_id: id }]),
  ...(tags && { tags }),
});

async function seeded(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.add([
    job('inv-1', T0 + 1, ['tenant:42', 'invoice']),
    job('inv-2', T0 + 2, ['tenant:7', 'invoice']),
    job('rem-1', T0 + 3, ['tenant:42', 'reminder']),
    job('rem-2', T0 + 4),
    job('inv-3', T0 + 5, ['tenant:42', 'invoice']),
  ]);
  return store;
}

const ids = (page: { jobs: { id: string }[] }) => page.jobs.map((j) => j.id);

describe('listJobs by tag and id prefix', () => {
  it('every tag, any tag and an id prefix, alone and together, in due order', async () => {
    const store = await seeded();
    expect(ids(await listJobs(store, 'celery', { tags: ['tenant:42'] }))).toEqual(['inv-1', 'rem-1', 'inv-3']);
    expect(ids(await listJobs(store, 'celery', { tags: ['tenant:42', 'invoice'] }))).toEqual(['inv-1', 'inv-3']);
    expect(ids(await listJobs(store, 'celery', { anyTags: ['tenant:7', 'reminder'] }))).toEqual(['inv-2', 'rem-1']);
    expect(ids(await listJobs(store, 'celery', { idPrefix: 'rem-' }))).toEqual(['rem-1', 'rem-2']);
    expect(ids(await listJobs(store, 'celery', { idPrefix: 'inv-', anyTags: ['tenant:7'] }))).toEqual(['inv-2']);
    expect(ids(await listJobs(store, 'celery', { tags: ['nobody'] }))).toEqual([]);
    const first = await listJobs(store, 'celery', { tags: ['invoice'], limit: 2 });
    expect(ids(first)).toEqual(['inv-1', 'inv-2']);
    const rest = await listJobs(store, 'celery', { tags: ['invoice'], limit: 2, ...(first.cursor !== undefined && { cursor: first.cursor }) });
    expect(ids(rest)).toEqual(['inv-3']);
    expect(rest.cursor).toBeUndefined();
    expect((await listJobs(store, 'celery', { tags: ['invoice'] })).jobs[0]?.tags).toEqual(['tenant:42', 'invoice']);
  });

  it('an inverted range or a bad tag is a ValidationError, read before the store is', async () => {
    const store = await seeded();
    const inverted = await listJobs(store, 'celery', { from: new Date((T0 + 10) * 1000), to: new Date(T0 * 1000) }).catch((e: unknown) => e);
    expect(inverted).toBeInstanceOf(ValidationError);
    expect((inverted as ValidationError).problems).toEqual([
      'the range is inverted: from 2030-03-17T17:46:50.000Z is after to 2030-03-17T17:46:40.000Z; pass from <= to',
    ]);
    await expect(listJobs(store, 'celery', { tags: [''] })).rejects.toThrow(/tags\[0\] is empty or only whitespace/);
    await expect(listJobs(store, 'celery', { anyTags: ['a\nb'] })).rejects.toThrow(/anyTags\[0\] holds a control character/);
    await store.close();
    // a closed store would reject: the filters were checked first
    await expect(listJobs(store, 'celery', { tags: [''] })).rejects.toBeInstanceOf(ValidationError);
  });
});
