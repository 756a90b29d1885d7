// Search benchmarks (issue 13): on each store holding N_FUTURE jobs of which 1% carry the tag
// `tenant:42`, a page of 100 by that tag (the first page, and one 50 pages in by cursor) beside an
// unfiltered page of 100 from the same store, in the same run. Medians of 11 reads each. Then
// the 10% of jobs holding `bulk` are revoked by tag (the "100,000 jobs in under 5 s").

import { revokeWhere } from '../dist/exports/admin.js';

const TAG = 'tenant:42';
const EVERY = 100; // one job in EVERY holds the tag: 1%
const BULK = 'bulk';
const BULK_EVERY = 10; // one job in BULK_EVERY holds `bulk`: 10%, revoked by tag at the end

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timed(fn, n = 11) {
  await fn(); // warm
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return median(times);
}

/**
 * ctx: row(), smallJob(dueAt), N_FUTURE, kinds: [{ name, open() -> { store, drop() } }].
 * Each kind's store is seeded once, measured, and dropped.
 */
export async function searchBenchmarks(ctx) {
  const { row, smallJob, N_FUTURE, kinds, rate } = ctx;
  for (const kind of kinds) {
    console.error(`8. ${kind.name}: search by tag, ${N_FUTURE.toLocaleString('en-US')} jobs stored, 1% tagged`);
    const place = await kind.open();
    try {
      for (let i = 0; i < N_FUTURE; i += 5000) {
        const chunk = [];
        for (let k = i; k < Math.min(N_FUTURE, i + 5000); k++) {
          const job = smallJob(4e9 + k);
          const tags = [...(k % EVERY === 0 ? [TAG] : []), ...(k % BULK_EVERY === 1 ? [BULK] : [])];
          chunk.push(tags.length ? { ...job, tags } : job);
        }
        await place.store.add(chunk);
      }
      const tags = { all: [TAG] };
      const first = await place.store.list({ limit: 100, tags });
      if (first.jobs.length !== 100 || first.jobs.some((j) => !j.tags?.includes(TAG))) throw new Error(`${kind.name}: the tag page is wrong`);
      let cursor = first.cursor;
      for (let p = 0; p < 49; p++) cursor = (await place.store.list({ limit: 100, tags, cursor })).cursor;
      const plainMs = await timed(() => place.store.list({ limit: 100 }));
      const firstMs = await timed(() => place.store.list({ limit: 100, tags }));
      const laterMs = await timed(() => place.store.list({ limit: 100, tags, cursor }));
      const ref = `unfiltered page ${plainMs.toFixed(2)} ms`;
      row(`${kind.name}: page of 100 by a 1% tag, first`, `${firstMs.toFixed(2)} ms`, ref, (firstMs / plainMs).toFixed(2), '< 50 ms');
      row(`${kind.name}: page of 100 by a 1% tag, 50 pages in`, `${laterMs.toFixed(2)} ms`, ref, (laterMs / plainMs).toFixed(2), '< 50 ms');
      const before = (await place.store.count()).scheduled;
      const t = performance.now();
      const revoked = await revokeWhere(place.store, 'celery', { tags: [BULK] });
      const revokeMs = performance.now() - t;
      const expected = Math.ceil((N_FUTURE - 1) / BULK_EVERY);
      if (revoked.changed !== expected || (await place.store.count()).scheduled !== before - expected)
        throw new Error(`${kind.name}: revoked ${revoked.changed} of ${expected}`);
      row(`${kind.name}: revoke ${expected.toLocaleString('en-US')} jobs by tag`, `${(revokeMs / 1000).toFixed(2)} s`, `${Math.round(rate(expected, revokeMs)).toLocaleString('en-US')} jobs/s`, '', '< 5 s');
    } finally {
      await place.drop();
    }
  }
}
