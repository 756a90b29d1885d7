/**
 * A list by tags on the Redis store, served by the tag sets (`<prefix>celery_longterm_scheduler:tag:<tag>`,
 * the ids of the live jobs holding the tag) and the index (`scheduled_task_id_by_time`, id -> due),
 * never by reading every job, and never in one unbounded command: each command reads or checks
 * about `TAG_CHUNK` members at most (SSCAN COUNT, ZMSCORE, SMISMEMBER, ZRANGEBYSCORE LIMIT), so a
 * list never blocks Redis for more than about a millisecond at a time, whatever the size of a tag.
 *
 * A set has no order, so a page in due order has to look at every member of one set the filter
 * requires (the set walk):
 *
 * - the driver is the smallest set of `all`, or the sets of `any` (each walked, their members
 *   merged and deduplicated) when their sizes add up to less;
 * - each SSCAN chunk (the next one asked for in the same round trip) is checked against the other
 *   tags with one SMISMEMBER each, in one pipeline, and the members holding them are scored
 *   against the index in one ZMSCORE (no score: in flight, or an id the Python package sent or
 *   revoked and left in the set: skipped);
 * - of those within [from, to] and after the cursor, the `read` smallest (due, id) are kept.
 *
 * Its cost grows with the driver's size, not with the store's: a round trip or two per 1,000 members.
 * When the driver holds a large share of the store (or the range asked for is short), the
 * matches are dense in due order and walking the index from the cursor finds a page sooner (the
 * index walk): ZRANGEBYSCORE 1,000 at a time, each chunk checked with SMISMEMBER against every
 * tag of the filter. It is tried first when a page is expected within a quarter of the driver's
 * size (the driver's share of the index, or the number of jobs in the range, says how far), and
 * gives up after half of it (the matches were rarer there than the estimate), the set walk then
 * going on from where it stopped; so trying it never costs more than half again the set walk.
 */
import type { ChainableCommander, Redis } from 'ioredis';
import { compareDue } from '../store.js';
import type { ListRange, Position } from '../base.js';

/** The most members one command reads or checks. */
export const TAG_CHUNK = 1000;

export interface TagSearchKeys {
  /** the index, <prefix>scheduled_task_id_by_time */
  index: string;
  /** a tag's set is this then the tag */
  tagPrefix: string;
}

export interface Filter {
  /** the tags every match holds, checked by SMISMEMBER (the driver left out) */
  all: readonly string[];
  /** the tags a match holds at least one of, checked by SMISMEMBER ([]: none asked, or the driver is `any`) */
  any: readonly string[];
}

/** A window of due order: [from, to], strictly after `after`. */
export interface Window {
  from: number;
  to: number;
  after: Position | undefined;
}

/**
 * The walk of the sets a tag filter needs: `driver`, the set(s) walked (the smallest of `all`, or
 * every non-empty one of `any` when their sizes add up to less), `cost`, the members they hold
 * together, and `others`, the tags each member walked is then checked against.
 */
export interface TagPlan {
  driver: readonly string[];
  cost: number;
  others: Filter;
}

/**
 * The set walk for `tags` given each tag's set size (`allSizes[i]` of `tags.all[i]`, `anySizes[i]`
 * of `tags.any[i]`); undefined when no job can hold them (a set of `all` is empty, or every set
 * of `any` is).
 */
export function planTags(tags: Filter, allSizes: readonly number[], anySizes: readonly number[]): TagPlan | undefined {
  const { all, any } = tags;
  if (allSizes.some((n) => n === 0) || (any.length > 0 && anySizes.every((n) => n === 0))) return undefined;
  const anyTotal = anySizes.reduce((a, b) => a + b, 0);
  const smallest = all.length ? allSizes.indexOf(Math.min(...allSizes)) : -1;
  const byAll = smallest >= 0 && (any.length === 0 || (allSizes[smallest] as number) <= anyTotal);
  return byAll
    ? { driver: [all[smallest] as string], cost: allSizes[smallest] as number, others: { all: all.filter((_, i) => i !== smallest), any } }
    : { driver: any.filter((_, i) => (anySizes[i] as number) > 0), cost: anyTotal, others: { all, any: [] } };
}

/** Up to `read` scheduled jobs (id, due) holding `r.tags`, within the range, in due order. */
export async function listByTags(
  client: Redis,
  keys: TagSearchKeys,
  r: ListRange & { tags: NonNullable<ListRange['tags']> },
  read: number,
): Promise<Position[]> {
  const { all, any } = r.tags;
  const setKey = (tag: string) => `${keys.tagPrefix}${tag}`;
  const window: Window = { from: r.from ?? -Infinity, to: r.to ?? Infinity, after: r.after };
  const sizes = client
    .pipeline()
    .zcard(keys.index)
    .zcount(keys.index, bound(Math.max(window.from, window.after?.dueAt ?? -Infinity)), bound(window.to));
  for (const tag of [...all, ...any]) sizes.scard(setKey(tag));
  const [scheduled, inWindow, ...counts] = (await exec(sizes)).map(Number) as [number, number, ...number[]];
  const plan = planTags(r.tags, counts.slice(0, all.length), counts.slice(all.length));
  if (read <= 0 || inWindow === 0 || plan === undefined) return [];
  const { driver, cost, others } = plan;

  // the index walk, when the window is short or the driver's share of the index promises a page
  // soon (at most `cost` of the `scheduled` jobs match, so a page is expected in read * scheduled / cost)
  const expected = Math.min(inWindow, Math.ceil((read * Math.max(scheduled, cost)) / cost));
  let found: Position[] = [];
  let from = window;
  if (expected <= cost / 4) {
    const byIndex = await walkIndex(client, keys.index, setKey, { all, any }, window, read, 2 * expected, Math.ceil(cost / 2));
    if (byIndex.complete) return byIndex.found;
    found = byIndex.found;
    from = { ...window, after: byIndex.last };
  }
  return [...found, ...(await walkSets(client, keys.index, setKey, driver, others, from, read - found.length))];
}

/**
 * The index in due order from the window's start, each chunk checked against every tag of the
 * filter (`first` members, then `TAG_CHUNK` at a time), until `read` matches, the window's end,
 * or `budget` members read. `complete` when the page is found or the window read through; else
 * `last` is the last member read, where the set walk goes on.
 */
async function walkIndex(
  client: Redis,
  index: string,
  setKey: (tag: string) => string,
  filter: Filter,
  w: Window,
  read: number,
  first: number,
  budget: number,
): Promise<{ found: Position[]; complete: boolean; last: Position | undefined }> {
  const found: Position[] = [];
  let last = w.after;
  let lo = Math.max(w.from, w.after?.dueAt ?? -Infinity);
  let skip = 0; // members at score `lo` already read
  let count = Math.min(TAG_CHUNK, Math.max(100, first));
  for (let seen = 0; seen < budget;) {
    const flat = await client.zrangebyscore(index, bound(lo), bound(w.to), 'WITHSCORES', 'LIMIT', skip, count);
    const chunk: Position[] = [];
    for (let i = 0; i < flat.length; i += 2) chunk.push({ id: flat[i] as string, dueAt: Number(flat[i + 1]) });
    const end = chunk.at(-1);
    if (end === undefined) return { found, complete: true, last };
    // where the next chunk starts: after the members at the last score read so far
    if (end.dueAt === lo) skip += chunk.length;
    else {
      lo = end.dueAt;
      skip = chunk.filter((j) => j.dueAt === end.dueAt).length;
    }
    seen += chunk.length;
    const fresh = w.after ? chunk.filter((j) => compareDue(j, w.after as Position) > 0) : chunk;
    const ids = fresh.map((j) => j.id);
    const held = await holding(client, setKey, filter, ids);
    for (const [i, j] of fresh.entries()) {
      if (!held[i]) continue;
      found.push(j);
      if (found.length === read) return { found, complete: true, last: j };
    }
    if (last === undefined || compareDue(end, last) > 0) last = end;
    if (chunk.length < count) return { found, complete: true, last };
    count = TAG_CHUNK;
  }
  return { found, complete: false, last };
}

/**
 * Every member of the driver sets (SSCAN, `TAG_CHUNK` at a time), scored against the index and
 * checked against the other tags: the `read` smallest matches in the window, in due order.
 */
async function walkSets(
  client: Redis,
  index: string,
  setKey: (tag: string) => string,
  driver: readonly string[],
  others: Filter,
  w: Window,
  read: number,
): Promise<Position[]> {
  if (read <= 0) return [];
  const best = new Smallest(read);
  await scanSets(client, index, setKey, driver, others, w, (chunk) => {
    for (const j of chunk) best.offer(j);
  });
  return best.result();
}

/**
 * Walks every member of the driver sets (SSCAN, `TAG_CHUNK` at a time), each chunk checked
 * against the other tags (one SMISMEMBER a tag, one pipeline) and the members holding them scored
 * against the index (one ZMSCORE): `onChunk` gets those scheduled and in the window, with their
 * due times, in no particular order. A member may come twice (in two sets of `any`, or twice from
 * SSCAN while its set is resized); the caller drops repeats where it matters.
 */
export async function scanSets(
  client: Redis,
  index: string,
  setKey: (tag: string) => string,
  driver: readonly string[],
  others: Filter,
  w: Window,
  onChunk: (chunk: Position[]) => void | Promise<void>,
): Promise<void> {
  for (const tag of driver) {
    const scan = (cursor: string): Promise<[string, string[]]> => {
      const p = client.sscan(setKey(tag), cursor, 'COUNT', TAG_CHUNK);
      p.catch(() => {}); // awaited below, unless a check fails first
      return p;
    };
    for (let chunk: Promise<[string, string[]]> | undefined = scan('0'); chunk;) {
      const [next, ids]: [string, string[]] = await chunk;
      // the next chunk is asked for before this one is checked, in the same round trip
      chunk = next === '0' ? undefined : scan(next);
      for (let k = 0; k < ids.length; k += TAG_CHUNK) {
        // the other tags first (a membership is cheaper to check than a score to read), then
        // the due times of the members holding them
        const part = ids.slice(k, k + TAG_CHUNK);
        const held = others.all.length || others.any.length ? await holding(client, setKey, others, part) : undefined;
        const holders = held ? part.filter((_, i) => held[i]) : part;
        if (holders.length === 0) continue;
        const scores = await client.zmscore(index, ...holders);
        const inWindow: Position[] = [];
        holders.forEach((id, i) => {
          const score = scores[i];
          if (score === null || score === undefined) return; // in flight, or left behind by the Python package
          const j = { id, dueAt: Number(score) };
          if (j.dueAt < w.from || j.dueAt > w.to || (w.after && compareDue(j, w.after) <= 0)) return;
          inWindow.push(j);
        });
        if (inWindow.length) await onChunk(inWindow);
      }
    }
  }
}

/** For each id, whether it holds every tag of `all` and one of `any`: one SMISMEMBER a tag, one pipeline. */
export async function holding(client: Redis, setKey: (tag: string) => string, filter: Filter, ids: readonly string[]): Promise<boolean[]> {
  if (ids.length === 0) return [];
  const checks = client.pipeline();
  for (const t of [...filter.all, ...filter.any]) checks.smismember(setKey(t), ...ids);
  const members = (await exec(checks)) as number[][];
  const inAll = members.slice(0, filter.all.length);
  const inAny = members.slice(filter.all.length);
  return ids.map((_, i) => inAll.every((m) => m[i] === 1) && (inAny.length === 0 || inAny.some((m) => m[i] === 1)));
}

/**
 * The `k` smallest positions offered, in due order, each id once (SSCAN may return a member
 * twice). Kept in a buffer cut back to the `k` best whenever it doubles; once `k` are kept,
 * an offer not before the k-th is dropped at once.
 */
export class Smallest {
  #kept: Position[] = [];
  #worst: Position | undefined;
  readonly #k: number;
  readonly #room: number;

  constructor(k: number) {
    this.#k = k;
    this.#room = Math.max(2 * k, 1024);
  }

  offer(p: Position): void {
    if (this.#worst && compareDue(p, this.#worst) >= 0) return;
    this.#kept.push(p);
    if (this.#kept.length >= this.#room) this.#cut();
  }

  result(): Position[] {
    this.#cut();
    return this.#kept;
  }

  #cut(): void {
    const seen = new Set<string>();
    this.#kept = this.#kept
      .sort(compareDue)
      .filter((p) => !seen.has(p.id) && seen.add(p.id))
      .slice(0, this.#k);
    if (this.#kept.length === this.#k) this.#worst = this.#kept[this.#k - 1];
  }
}

/** A pipeline's replies, its first error thrown. */
export async function exec(pipeline: ChainableCommander): Promise<unknown[]> {
  const replies = (await pipeline.exec()) ?? [];
  return replies.map(([err, reply]) => {
    if (err) throw err;
    return reply;
  });
}

/** A score as a range bound: '-inf' and '+inf' for the infinities. */
export function bound(x: number): string {
  return x === Infinity ? '+inf' : x === -Infinity ? '-inf' : String(x);
}
