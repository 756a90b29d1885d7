/**
 * Lists, counts and histograms by any filter on the Redis store (`doList` by task, queue, key or
 * id prefix, `doCountWhere`, `doHistogram`), never in one unbounded command: each command reads or
 * checks about `CHUNK` members at most, so none blocks Redis for more than a millisecond or so.
 *
 * What is indexed:
 * - the due time: the index (`scheduled_task_id_by_time`), read in due order a chunk at a time:
 *   ZRANGEBYSCORE from the due time of the last job read, those up to it dropped (exact whatever
 *   changed meanwhile), or range-after-1.lua (ZRANK of the last job read, then ZRANGE by rank) when
 *   many jobs share that due time or the walk starts at a cursor; with no filter but the due
 *   range, a count is one ZCOUNT and a histogram one ZCOUNT a bucket (count-ranges-1.lua, 250
 *   buckets a call) or, when the range holds few jobs for its buckets, the jobs' due times read;
 * - tags: the tag sets (./tag-search.ts);
 * - deduplication keys: `job_keys` (key -> id), walked by HSCAN MATCH <prefix>* (the match is the
 *   server's), each mapping checked (`job_key_of` maps the id back to the key, the id is in the
 *   index) before it counts, as the store's header says.
 * Task and queue are not: a job the Python package wrote has nothing of ours beside its entry, so
 * they are read from the entries (MGET, `indexFieldsOf`), after every cheaper check.
 *
 * One driver is walked: the index in the window (`inWindow` jobs), the tag sets a tag filter
 * needs (their sizes), or `job_keys` (its size), whichever holds the fewest members (ties: the
 * index, then the tags). Each chunk of it is then checked against the rest of the filter: the id
 * prefix (no command), the tags (SMISMEMBER) and the key (`job_key_of`) in one pipeline, then
 * the key's holder (`job_keys`) and the entries in another; the next chunk is asked for before
 * this one is checked, and (from the second chunk on) checked before this one is matched here. A
 * task or queue is matched on the entry as `indexFieldsOf` reads it, after a check that the entry
 * holds the name's JSON string (or a backslash) skips most of the others. A count or histogram
 * walks its driver through; a list walks the index (or the tag pages of ./tag-search.ts) in due
 * order until `read` jobs matched. By a key prefix, the index is tried first when a page is expected within a quarter of
 * `job_keys` and given up after half of it, the walk of `job_keys` then going on from there (the
 * `read` smallest kept), as ./tag-search.ts does with a tag's set.
 *
 * So a filter the indexes cannot narrow (a task, a queue, an id prefix on its own) costs a scan
 * of the jobs in the range, a chunk at a time, until a page is found; that is accepted, and is
 * why a list stops as soon as it has one. Counting by task reads every entry in the range.
 */
import type { Redis } from 'ioredis';
import { indexFieldsOf } from '../../job/entry.js';
import { bucketOf, filtersJobs, type ListRange, type ListedJob, type Position } from '../base.js';
import { compareDue, type HistogramBucket } from '../store.js';
import { Smallest, bound, exec, listByTags, planTags, scanSets, type Filter, type TagPlan, type Window } from './tag-search.js';

/** The most members one command reads or checks. */
export const CHUNK = 1000;

export interface SearchKeys {
  /** the index, <prefix>scheduled_task_id_by_time */
  index: string;
  /** a tag's set is this then the tag */
  tagPrefix: string;
  /** key -> id of the scheduled job holding it */
  jobKeys: string;
  /** id -> the key it holds */
  jobKeyOf: string;
}

export interface SearchContext {
  client: Redis;
  keys: SearchKeys;
  /** a job's entry is under this then its id */
  prefix: string;
}

/** What is left to check of a job once its driver found it (the due window is checked by every driver). */
interface Checks {
  idPrefix?: string | undefined;
  tags?: Filter | undefined;
  keyPrefix?: string | undefined;
  task?: string | undefined;
  queues?: readonly (string | null)[] | undefined;
}

/** A job that passed the checks; `entry` when it was read for them. */
type Match = Position & { entry?: string | null };

type Driver = 'none' | 'index' | 'tags' | 'keys';

interface Plan {
  driver: Driver;
  window: Window;
  /** the jobs in the window (after the cursor) */
  inWindow: number;
  /** the size of `job_keys`, when a key prefix is asked */
  keyed?: number;
  /** the set walk, when tags are asked */
  tags?: TagPlan;
}

/** Up to `read` scheduled jobs matching `r` in due order, each with its entry (null when it went meanwhile). */
export async function listWhere(ctx: SearchContext, r: ListRange, read: number): Promise<ListedJob[]> {
  const plan = await planOf(ctx, r);
  let found: Match[];
  switch (plan.driver) {
    case 'none':
      return [];
    case 'index':
      found = (await walkOrdered(ctx, plan.window, checksOf(r), read, Infinity)).found;
      break;
    case 'tags':
      found = await listByTagPages(ctx, r, plan.window, read);
      break;
    case 'keys':
      found = await listByKeys(ctx, r, plan, read);
      break;
  }
  return withEntries(ctx, found);
}

/** How many scheduled jobs match `r`. */
export async function countWhere(ctx: SearchContext, r: ListRange): Promise<number> {
  const w = windowOf(r);
  if (!filtersJobs(r)) return Number(await ctx.client.zcount(ctx.keys.index, bound(w.from), bound(w.to)));
  let n = 0;
  await eachMatch(ctx, r, (chunk) => {
    n += chunk.length;
  });
  return n;
}

/** The non-empty buckets of the scheduled jobs matching `r`, in time order (`bucketOf` says which bucket a job is in). */
export async function histogramWhere(ctx: SearchContext, r: ListRange & { from: number; to: number }, bucketSeconds: number): Promise<HistogramBucket[]> {
  if (!filtersJobs(r)) return histogramByIndex(ctx, r.from, r.to, bucketSeconds);
  const counts = new Map<number, number>();
  await eachMatch(ctx, r, (chunk) => {
    for (const j of chunk) {
      const b = bucketOf(j.dueAt, bucketSeconds);
      counts.set(b, (counts.get(b) ?? 0) + 1);
    }
  });
  return [...counts].sort((a, b) => a[0] - b[0]).map(([start, count]) => ({ start, count }));
}

/**
 * The buckets by the index alone: the first and last job in range bound the buckets counted;
 * then one ZCOUNT a bucket, [start, start + width) (count-ranges-1.lua), or, when the range holds
 * fewer than `READ_PER_BUCKET` jobs a bucket, their due times read a chunk at a time (cheaper
 * then). For a whole width, `bucketOf(x)` is the start S with S <= x < S + width for every x
 * within ±2^52 but a negative one so close to 0 that x / width rounds to -0 (bucket 0, though
 * x < 0): a range reaching those is read through too, so the counts are always `bucketOf`'s.
 */
async function histogramByIndex(ctx: SearchContext, from: number, to: number, b: number): Promise<HistogramBucket[]> {
  const { client, keys } = ctx;
  const [n, first, last] = (await exec(
    client
      .pipeline()
      .zcount(keys.index, bound(from), bound(to))
      .zrangebyscore(keys.index, bound(from), bound(to), 'WITHSCORES', 'LIMIT', 0, 1)
      .zrevrangebyscore(keys.index, bound(to), bound(from), 'WITHSCORES', 'LIMIT', 0, 1),
  )) as [number, string[], string[]];
  if (Number(n) === 0 || first[1] === undefined || last[1] === undefined) return [];
  const lo = Number(first[1]);
  const hi = Number(last[1]);
  const firstBucket = bucketOf(lo, b);
  const buckets = Math.round((bucketOf(hi, b) - firstBucket) / b) + 1;
  const exact = lo > -(2 ** 52) && hi + b < 2 ** 52 && !(lo < 0 && hi > -b * Number.MIN_VALUE);
  if (!exact || Number(n) < buckets * READ_PER_BUCKET) {
    const counts = new Map<number, number>();
    for await (const chunk of indexChunks(ctx, { from: lo, to: hi, after: undefined })) {
      for (const j of chunk) {
        const start = bucketOf(j.dueAt, b);
        counts.set(start, (counts.get(start) ?? 0) + 1);
      }
    }
    return [...counts].sort((x, y) => x[0] - y[0]).map(([start, count]) => ({ start, count }));
  }
  const ranges: { start: number; min: string; max: string }[] = [];
  for (let k = 0; k < buckets; k++) {
    const start = firstBucket + k * b;
    ranges.push({ start, min: bound(Math.max(lo, start)), max: start + b > hi ? bound(hi) : `(${bound(start + b)}` });
  }
  const calls = [];
  for (let k = 0; k < ranges.length; k += RANGES_PER_CALL) {
    calls.push(client.clsCountRanges(keys.index, ...ranges.slice(k, k + RANGES_PER_CALL).flatMap((x) => [x.min, x.max])));
  }
  const counts = (await Promise.all(calls)).flat();
  return ranges.flatMap((x, k) => (Number(counts[k]) > 0 ? [{ start: x.start, count: Number(counts[k]) }] : []));
}

/**
 * A bucket read through its jobs' due times beats one ZCOUNT a bucket when the range holds fewer
 * jobs than this a bucket (measured on a 1M-job index: a ZCOUNT in count-ranges-1.lua costs ~3 µs
 * of Redis time, a due time read and bucketed ~0.4 µs of Redis time and ~1 µs here).
 */
const READ_PER_BUCKET = 4;

/** Buckets per call of count-ranges-1.lua: ~1 ms of Redis time each. */
const RANGES_PER_CALL = 250;

/** Every match of `r` (one driver walked through, see the header), a chunk at a time, each job once, in no particular order. */
export async function eachMatch(ctx: SearchContext, r: ListRange, onMatches: (chunk: readonly Position[]) => void | Promise<void>): Promise<void> {
  const plan = await planOf(ctx, r);
  const all = checksOf(r);
  // a chunk of which nothing matched is not handed on
  const onChunk = async (matches: readonly Position[]) => {
    if (matches.length) await onMatches(matches);
  };
  switch (plan.driver) {
    case 'none':
      return;
    case 'index':
      for await (const [, matches] of ahead(indexChunks(ctx, plan.window), (chunk) => refine(ctx, chunk, all))) await onChunk(matches);
      return;
    case 'tags': {
      // the set walk may name a job twice (two sets of `any`, or SSCAN during a resize)
      const seen = new Set<string>();
      const { driver, others } = plan.tags as TagPlan;
      const rest = { ...all, tags: undefined };
      await scanSets(ctx.client, ctx.keys.index, setKeyOf(ctx), driver, others, plan.window, async (chunk) => {
        const fresh = chunk.filter((j) => !seen.has(j.id) && seen.add(j.id));
        if (fresh.length) await onChunk(await refine(ctx, fresh, rest));
      });
      return;
    }
    case 'keys':
      await eachByKey(ctx, r.keyPrefix as string, plan.window, async (chunk) => onChunk(await refine(ctx, chunk, { ...all, keyPrefix: undefined })));
      return;
  }
}

/** The window, the sizes of what could drive the walk, and the driver: the one holding the fewest members. */
async function planOf(ctx: SearchContext, r: ListRange): Promise<Plan> {
  const { client, keys } = ctx;
  const window = windowOf(r);
  const p = client.pipeline().zcount(keys.index, bound(Math.max(window.from, window.after?.dueAt ?? -Infinity)), bound(window.to));
  if (r.keyPrefix !== undefined) p.hlen(keys.jobKeys);
  const tagList = r.tags ? [...r.tags.all, ...r.tags.any] : [];
  for (const t of tagList) p.scard(`${keys.tagPrefix}${t}`);
  const replies = (await exec(p)).map(Number);
  const inWindow = replies[0] as number;
  const keyed = r.keyPrefix !== undefined ? (replies[1] as number) : undefined;
  const sizes = replies.slice(r.keyPrefix !== undefined ? 2 : 1);
  const tags = r.tags ? planTags(r.tags, sizes.slice(0, r.tags.all.length), sizes.slice(r.tags.all.length)) : undefined;
  const plan: Plan = { driver: 'index', window, inWindow, ...(keyed !== undefined && { keyed }), ...(tags && { tags }) };
  if (inWindow === 0 || keyed === 0 || (r.tags && !tags)) return { ...plan, driver: 'none' };
  let cost = inWindow;
  if (tags && tags.cost < cost) {
    plan.driver = 'tags';
    cost = tags.cost;
  }
  if (keyed !== undefined && keyed < cost) plan.driver = 'keys';
  return plan;
}

/**
 * The index in the window in due order, each chunk checked, until `read` matches or `budget`
 * members read. `complete` when the page is found or the window read through; else `last` is the
 * last member read, where another walk goes on.
 */
async function walkOrdered(
  ctx: SearchContext,
  w: Window,
  checks: Checks,
  read: number,
  budget: number,
  first = Math.min(CHUNK, Math.max(100, 2 * read)),
): Promise<{ found: Match[]; complete: boolean; last: Position | undefined }> {
  const found: Match[] = [];
  let seen = 0;
  let last = w.after;
  for await (const [chunk, matches] of ahead(indexChunks(ctx, w, first), (chunk) => refine(ctx, chunk, checks))) {
    for (const j of matches) {
      found.push(j);
      if (found.length === read) return { found, complete: true, last: j };
    }
    last = chunk.at(-1);
    seen += chunk.length;
    if (seen >= budget) return { found, complete: false, last };
  }
  return { found, complete: true, last };
}

/**
 * A list by tags and more: the tag pages of ./tag-search.ts in due order (a page of `read`, then
 * four times larger up to `TAG_PAGE_MAX`: a rare match costs few walks of the sets), each checked
 * against the rest of the filter, until `read` matches.
 */
async function listByTagPages(ctx: SearchContext, r: ListRange, w: Window, read: number): Promise<Match[]> {
  const rest: Checks = { ...checksOf(r), tags: undefined };
  const found: Match[] = [];
  let after = w.after;
  for (let size = Math.max(read, 100); ; size = Math.min(4 * size, TAG_PAGE_MAX)) {
    const page = await listByTags(ctx.client, ctx.keys, { tags: r.tags!, from: w.from, to: w.to, ...(after && { after }) }, size);
    for (let k = 0; k < page.length; k += CHUNK) {
      for (const j of await refine(ctx, page.slice(k, k + CHUNK), rest)) {
        found.push(j);
        if (found.length === read) return found;
      }
    }
    if (page.length < size) return found;
    after = page.at(-1);
  }
}

const TAG_PAGE_MAX = 16_000;

/**
 * A list by key prefix and more: the index in due order when a page is expected soon (within a
 * quarter of `job_keys`; given up after half of it), then the walk of `job_keys` from where it
 * stopped, the `read` smallest kept.
 */
async function listByKeys(ctx: SearchContext, r: ListRange, plan: Plan, read: number): Promise<Match[]> {
  const keyed = plan.keyed as number;
  const all = checksOf(r);
  // at most `keyed` of the `inWindow` jobs match, so a page is expected within read * inWindow / keyed
  const expected = Math.min(plan.inWindow, Math.ceil((read * plan.inWindow) / keyed));
  let found: Match[] = [];
  let w = plan.window;
  if (expected <= keyed / 4) {
    const byIndex = await walkOrdered(ctx, w, all, read, Math.ceil(keyed / 2), Math.min(CHUNK, Math.max(100, 2 * expected)));
    if (byIndex.complete) return byIndex.found;
    found = byIndex.found;
    w = { ...w, after: byIndex.last };
  }
  const best = new Smallest(read - found.length);
  await eachByKey(ctx, r.keyPrefix as string, w, async (chunk) => {
    for (const j of await refine(ctx, chunk, { ...all, keyPrefix: undefined })) best.offer(j);
  });
  // the objects offered come back, with the entries read for a task or queue
  return [...found, ...(best.result() as Match[])];
}

/**
 * Every scheduled job in the window holding a key that starts with `keyPrefix`: HSCAN MATCH of
 * `job_keys` (the glob's special characters escaped, the prefix checked again here), each mapping
 * counted only when `job_key_of` maps the id back to the key and the id is in the index (one
 * HMGET and one ZMSCORE a chunk, one pipeline). Each job once, in no particular order.
 */
async function eachByKey(ctx: SearchContext, keyPrefix: string, w: Window, onChunk: (chunk: Position[]) => Promise<void>): Promise<void> {
  const { client, keys } = ctx;
  const pattern = `${keyPrefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  const seen = new Set<string>();
  const scan = (cursor: string): Promise<[string, string[]]> => {
    const p = client.hscan(keys.jobKeys, cursor, 'MATCH', pattern, 'COUNT', CHUNK);
    p.catch(() => {}); // awaited below, unless a check fails first
    return p;
  };
  for (let pending: Promise<[string, string[]]> | undefined = scan('0'); pending;) {
    const [next, flat]: [string, string[]] = await pending;
    // the next chunk is asked for before this one is checked, in the same round trip
    pending = next === '0' ? undefined : scan(next);
    const pairs: { key: string; id: string }[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const key = flat[i] as string;
      const id = flat[i + 1] as string;
      if (key.startsWith(keyPrefix) && !seen.has(id)) pairs.push({ key, id });
    }
    for (let k = 0; k < pairs.length; k += CHUNK) {
      const part = pairs.slice(k, k + CHUNK);
      const ids = part.map((x) => x.id);
      const [owners, scores] = (await exec(
        client
          .pipeline()
          .hmget(keys.jobKeyOf, ...ids)
          .zmscore(keys.index, ...ids),
      )) as [(string | null)[], (string | null)[]];
      const chunk: Position[] = [];
      part.forEach((x, i) => {
        const score = scores[i];
        if (owners[i] !== x.key || score === null || score === undefined) return; // a stale mapping, or not scheduled
        const j = { id: x.id, dueAt: Number(score) };
        if (j.dueAt < w.from || j.dueAt > w.to || (w.after && compareDue(j, w.after) <= 0) || seen.has(j.id)) return;
        seen.add(j.id);
        chunk.push(j);
      });
      if (chunk.length) await onChunk(chunk);
    }
  }
}

/**
 * The index within the window in due order, `first` members then `CHUNK` at a time, the next
 * chunk asked for as soon as a chunk arrives, before it is checked. A chunk after the last member
 * read (`last`, at due time s) is ZRANGEBYSCORE from s, asking for as many more as members at s
 * were read already (`tied`), those up to `last` dropped: exact whatever changed meanwhile (no
 * offset to go stale), and cheap while few jobs share a due time. When many do (more than
 * `MAX_TIED`), or a walk starts at a cursor (how many jobs at its due time sort before it is not
 * known), range-after-1.lua finds where to start in O(log N) instead.
 */
async function* indexChunks(ctx: SearchContext, w: Window, first: number = CHUNK): AsyncGenerator<Position[]> {
  const { client, keys } = ctx;
  /** the members after `last` (or from the window's start): `more` says whether the range may hold more */
  const read = (last: Position | undefined, tied: number, count: number): Promise<IndexChunk> => {
    const after = last && last.dueAt >= w.from ? last : undefined;
    const byScore = after === undefined || tied <= MAX_TIED;
    const reply = !after
      ? client.zrangebyscore(keys.index, bound(w.from), bound(w.to), 'WITHSCORES', 'LIMIT', 0, count)
      : byScore
        ? client.zrangebyscore(keys.index, bound(after.dueAt), bound(w.to), 'WITHSCORES', 'LIMIT', 0, count + tied)
        : client.clsRangeAfter(keys.index, String(after.dueAt), after.id, bound(w.to), count);
    const p = reply.then((flat): IndexChunk => {
      const chunk: Position[] = [];
      let before = 0; // members read up to `after` (all at its due time): how many are tied there now
      for (let i = 0; i < flat.length; i += 2) {
        const j = { id: flat[i] as string, dueAt: Number(flat[i + 1]) };
        if (!after || compareDue(j, after) > 0) chunk.push(j);
        else before++;
      }
      // the members at the due time of the last one, up to it: the chunk's own, and when the
      // chunk is all at `after`'s due time (or empty), those before it too
      const end = chunk.at(-1) ?? after;
      let atEnd = 0;
      for (let i = chunk.length - 1; i >= 0 && (chunk[i] as Position).dueAt === end?.dueAt; i--) atEnd++;
      if (after && end?.dueAt === after.dueAt) atEnd += byScore ? before : tied;
      return { chunk, more: flat.length / 2 === (after && byScore ? count + tied : count), tied: atEnd };
    });
    p.catch(() => {}); // awaited below, unless the walk stops first
    return p;
  };
  // a cursor's own due time may hold many jobs before it: its first read is by rank
  let last = w.after;
  for (let pending: Promise<IndexChunk> | undefined = read(last, w.after ? MAX_TIED + 1 : 0, first); pending;) {
    const { chunk, more, tied }: IndexChunk = await pending;
    last = chunk.at(-1) ?? last;
    pending = more ? read(last, tied, CHUNK) : undefined;
    if (chunk.length) yield chunk;
  }
}

interface IndexChunk {
  /** the members read, after the last one read before */
  chunk: Position[];
  /** whether the window may hold more */
  more: boolean;
  /** the members read so far at the due time of the last one */
  tied: number;
}

/**
 * `fn` of each item of `source`, in order, with the call for the next item made before the
 * caller gets this one (from the second item on: a walk that stops at its first chunk does no
 * more): Redis answers the next chunk's checks while this one's are matched here.
 */
async function* ahead<T, R>(source: AsyncIterable<T>, fn: (item: T) => Promise<R>): AsyncGenerator<[T, R]> {
  const it = source[Symbol.asyncIterator]();
  const pull = (): Promise<[T, R] | undefined> => {
    const p = it.next().then(async (n): Promise<[T, R] | undefined> => (n.done ? undefined : [n.value, await fn(n.value)]));
    p.catch(() => {}); // awaited below, unless the walk stops first
    return p;
  };
  try {
    let next: Promise<[T, R] | undefined> | undefined = pull();
    for (let first = true; next !== undefined; first = false) {
      const done: [T, R] | undefined = await next;
      if (done === undefined) return;
      next = first ? undefined : pull();
      yield done;
      next ??= pull();
    }
  } finally {
    await it.return?.(undefined);
  }
}

/** The most members at one due time re-read to start a chunk after them (more: range-after-1.lua). */
const MAX_TIED = 100;

/**
 * The jobs of `chunk` (at most `CHUNK`, scheduled, in the window) passing `c`: the id prefix
 * first (no command), then the tags (one SMISMEMBER a tag) and the key (`job_key_of`) in one
 * pipeline, then the key's holder (`job_keys`) and the entries (only when a task or queue is
 * asked) in another. Order kept.
 */
async function refine(ctx: SearchContext, chunk: readonly Position[], c: Checks): Promise<Match[]> {
  const { client, keys, prefix } = ctx;
  let found: (Match & { key?: string })[] = c.idPrefix === undefined ? [...chunk] : chunk.filter((j) => j.id.startsWith(c.idPrefix as string));
  if (found.length === 0) return found;
  const tags = c.tags ? [...c.tags.all, ...c.tags.any] : [];
  if (tags.length || c.keyPrefix !== undefined) {
    const ids = found.map((j) => j.id);
    const p = client.pipeline();
    for (const t of tags) p.smismember(`${keys.tagPrefix}${t}`, ...ids);
    if (c.keyPrefix !== undefined) p.hmget(keys.jobKeyOf, ...ids);
    const replies = await exec(p);
    const inAll = replies.slice(0, c.tags?.all.length ?? 0) as number[][];
    const inAny = replies.slice(inAll.length, tags.length) as number[][];
    const keysOf = c.keyPrefix !== undefined ? (replies[tags.length] as (string | null)[]) : undefined;
    found = found.flatMap((j, i) => {
      if (!inAll.every((m) => m[i] === 1) || (inAny.length > 0 && !inAny.some((m) => m[i] === 1))) return [];
      if (!keysOf) return [j];
      const key = keysOf[i];
      return typeof key === 'string' && key.startsWith(c.keyPrefix as string) ? [{ ...j, key }] : [];
    });
  }
  const byEntry = c.task !== undefined || c.queues !== undefined;
  if (found.length === 0 || (c.keyPrefix === undefined && !byEntry)) return found;
  const p = client.pipeline();
  if (c.keyPrefix !== undefined) p.hmget(keys.jobKeys, ...found.map((j) => j.key as string));
  if (byEntry) p.mget(...found.map((j) => `${prefix}${j.id}`));
  const replies = await exec(p);
  const holders = c.keyPrefix !== undefined ? (replies[0] as (string | null)[]) : undefined;
  const entries = byEntry ? (replies.at(-1) as (string | null)[]) : undefined;
  const literals = literalsOf(c);
  return found.flatMap((j, i): Match[] => {
    if (holders && holders[i] !== j.id) return []; // a mapping left behind: the key is free
    const match: Match = { id: j.id, dueAt: j.dueAt };
    if (!entries) return [match];
    const entry = entries[i];
    if (typeof entry !== 'string') return []; // claimed meanwhile: no longer scheduled
    if (!mayName(entry, literals)) return [];
    const f = indexFieldsOf(entry);
    if (c.task !== undefined && f.task !== c.task) return [];
    if (c.queues !== undefined && !c.queues.includes(f.queue)) return [];
    return [{ ...match, entry }];
  });
}

/**
 * Strings one of which a matching entry written without escapes holds: the task's JSON string
 * when a task is asked, else each queue's when the queues asked do not include none (null);
 * undefined when nothing is known (every entry is decoded then).
 */
function literalsOf(c: Checks): string[] | undefined {
  if (c.task !== undefined) return [JSON.stringify(c.task)];
  if (c.queues !== undefined && !c.queues.includes(null)) return c.queues.map((q) => JSON.stringify(q));
  return undefined;
}

/**
 * Whether `entry` may match before it is decoded: an entry with no backslash holds every string
 * as it is, so one naming the task (or queue) holds its JSON string, which is the string between
 * quotes (a name needing an escape cannot be named without a backslash); one with a backslash
 * may escape anything, and is decoded.
 */
function mayName(entry: string, literals: readonly string[] | undefined): boolean {
  return literals === undefined || entry.includes('\\') || literals.some((l) => entry.includes(l));
}

/** The matches as listed rows: the entries not read yet read in one MGET a chunk. */
async function withEntries(ctx: SearchContext, found: readonly Match[]): Promise<ListedJob[]> {
  const missing = found.filter((j) => j.entry === undefined);
  const read = new Map<string, string | null>();
  for (let k = 0; k < missing.length; k += CHUNK) {
    const part = missing.slice(k, k + CHUNK);
    const entries = await ctx.client.mget(part.map((j) => `${ctx.prefix}${j.id}`));
    part.forEach((j, i) => read.set(j.id, entries[i] ?? null));
  }
  return found.map((j) => ({ id: j.id, dueAt: j.dueAt, entry: j.entry !== undefined ? j.entry : (read.get(j.id) ?? null) }));
}

function checksOf(r: ListRange): Checks {
  return { idPrefix: r.idPrefix, tags: r.tags, keyPrefix: r.keyPrefix, task: r.task, queues: r.queues };
}

function windowOf(r: ListRange): Window {
  return { from: r.from ?? -Infinity, to: r.to ?? Infinity, after: r.after };
}

function setKeyOf(ctx: SearchContext): (tag: string) => string {
  return (tag) => `${ctx.keys.tagPrefix}${tag}`;
}
