/**
 * A shard of the cluster store (./cluster-store.ts): the Redis store's layout under the shard's
 * hash tag, plus the compact tier (./compact.ts) for the jobs due later than the hot window.
 *
 * Where a job goes: `add` keeps a job compact when it is due more than `hotSeconds` from now, has
 * no tags and its bucket value fits a listpack (`coldValue`); every other job, and every job
 * added with a deduplication key, goes to the Redis layout. A compact job moves to the Redis
 * layout (never back) when a claim's horizon (its `until` plus `hotSeconds`) reaches it, when a
 * retag gives it tags, or when a reschedule brings it into the window. So a claim, and everything
 * about keys, tags, leases and dead letters, is the Redis store's own, unchanged.
 *
 * How the rest sees both: an id is checked free in both, in the same script (add, addKeyed,
 * revive: lua/includes/cold.lua's `coldHas`); get, remove and reschedule try the tier first, then
 * the Redis layout (a job promoted in between is then found there); a list merges a page of each
 * in due order (a job read in both, promoted between the two reads, once); counts and histograms
 * add the tier's. Searches by tags or key prefix are the Redis layout's alone: a compact job has
 * neither.
 */
import type { Redis } from 'ioredis';
import type { NewJob } from '../../job/types.js';
import { indexFieldsOf } from '../../job/entry.js';
import { wrapRedisError } from '../../redis/connection.js';
import { bucketOf, type ClaimQuery, type Lease, type ListRange, type ListedJob, type Position } from '../base.js';
import {
  compareDue,
  type Burial,
  type ClaimedJob,
  type HistogramBucket,
  type JobKeyMode,
  type JobMove,
  type RetagResult,
  type Retry,
  type StoreCounts,
  type StoredJob,
} from '../store.js';
import { coldBucket, coldValue, readColdValue } from './compact.js';
import { RedisStore, type RedisShardSource } from './redis-store.js';

export const CLUSTER_KEYS_KEY = 'celery_longterm_scheduler:cluster_keys';

/** The compact tier of a shard: its bucket count (the cluster's, fixed) and hot window. */
export interface ShardTier {
  buckets: number;
  /** a job due within this many seconds of now is kept in the Redis layout */
  hotSeconds: number;
  /** the clock placing jobs, unix seconds (the wall clock; a test may fix it) */
  now?: () => number;
}

const wallClock = () => Date.now() / 1000;

/** Ids per call of the tier's remove and move scripts, jobs per read of its range script. */
const COLD_CHUNK = 500;
/** At most this many compact jobs move to the Redis layout per claim, per shard. */
const PROMOTE_LIMIT = 1000;

/** A compact job's row as the range script gives it: id, due time, bucket value. */
interface ColdRow {
  id: string;
  dueAt: number;
  value: string;
}

const bound = (x: number) => (x === Infinity ? '+inf' : x === -Infinity ? '-inf' : String(x));

/** A shard: the Redis store and the compact tier, its steps callable by the cluster store (which checked the input). */
export class Shard extends RedisStore {
  readonly clusterKeys: string;
  readonly #tier: ShardTier | undefined;
  /** the tier's key prefix (lua/includes/cold.lua's <cp>) and chunk index */
  readonly #cp: string;
  readonly #chunks: string;
  readonly #source: RedisShardSource;

  constructor(url: string, keyPrefix: string, source: RedisShardSource, tier?: ShardTier) {
    super(url, { keyPrefix }, source);
    this.clusterKeys = `${keyPrefix}${CLUSTER_KEYS_KEY}`;
    this.#tier = tier;
    this.#cp = `${keyPrefix}celery_longterm_scheduler:`;
    this.#chunks = `${this.#cp}cold_chunks`;
    this.#source = source;
  }

  protected override coldArgs(): [string, number] {
    return this.#tier ? [this.#cp, this.#tier.buckets] : ['', 0];
  }

  protected override coldPlaceOf(job: NewJob): { value?: string | undefined; bucket?: number | undefined } {
    if (!this.#tier) return {};
    const bucket = coldBucket(job.id, this.#tier.buckets);
    if ((job.tags !== undefined && job.tags.length > 0) || job.dueAt <= (this.#tier.now ?? wallClock)() + this.#tier.hotSeconds) return { bucket };
    return { value: coldValue(job.id, job.dueAt, job.entry), bucket };
  }

  async #cold<T>(fn: (client: Redis, tier: ShardTier) => Promise<T>, none: T): Promise<T> {
    if (!this.#tier) return none;
    const client = await this.client();
    try {
      return await fn(client, this.#tier);
    } catch (err) {
      throw wrapRedisError(err, 'long-term scheduler store (Redis Cluster)', this.#source.url);
    }
  }

  add_(jobs: readonly NewJob[], mode: 'reject' | 'skip') {
    return this.doAdd(jobs, mode);
  }
  addKeyed_(job: NewJob, key: string, mode: JobKeyMode) {
    return this.doAddKeyed(job, key, mode);
  }
  removeMany_(ids: readonly string[]) {
    return this.doRemoveMany(ids);
  }
  reschedule_(id: string, dueAt: number, entry: string | undefined) {
    return this.doReschedule(id, dueAt, entry);
  }
  rescheduleMany_(moves: readonly JobMove[]) {
    return this.doRescheduleMany(moves);
  }
  retagMany_(ids: readonly string[], add: readonly string[], remove: readonly string[]) {
    return this.doRetagMany(ids, add, remove);
  }
  /** The Redis layout's claim alone: the cluster store promoted the shard's due jobs when it read them (`candidates`). */
  claim_(q: ClaimQuery, lease: Lease) {
    return super.doClaim(q, lease);
  }
  renew_(claims: readonly ClaimedJob[], lease: Lease) {
    return this.doRenew(claims, lease);
  }
  stillHeld_(claims: readonly ClaimedJob[]) {
    return this.doStillHeld(claims);
  }
  acknowledge_(claims: readonly ClaimedJob[]) {
    return this.doAcknowledge(claims);
  }
  release_(claims: readonly ClaimedJob[]) {
    return this.doRelease(claims);
  }
  retryLater_(retries: readonly Retry[]) {
    return this.doRetryLater(retries);
  }
  bury_(burials: readonly Burial[]) {
    return this.doBury(burials);
  }
  deadLetters_(after: Position | undefined, read: number) {
    return this.doDeadLetters(after, read);
  }
  getDead_(id: string) {
    return this.doGetDead(id);
  }
  reviveDead_(ids: readonly string[], dueAt: number) {
    return this.doReviveDead(ids, dueAt);
  }
  purgeDead_(ids: readonly string[] | 'all') {
    return this.doPurgeDead(ids);
  }
  get_(id: string) {
    return this.doGet(id);
  }
  tagsOf_(ids: readonly string[]) {
    return this.doTagsOf(ids);
  }
  list_(r: ListRange, read: number) {
    return this.doList(r, read);
  }
  countWhere_(r: ListRange) {
    return this.doCountWhere(r);
  }
  histogram_(r: ListRange & { from: number; to: number }, bucketSeconds: number) {
    return this.doHistogram(r, bucketSeconds);
  }
  count_() {
    return this.doCount();
  }
  nextDueAt_() {
    return this.doNextDueAt();
  }

  /** The ids of `ids` that are live here (scheduled, compact or in flight). */
  async taken(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const client = await this.client();
    const m = client
      .multi()
      .zmscore(this.keys.index, ...ids)
      .zmscore(this.keys.inFlight, ...ids);
    if (this.#tier) for (const id of ids) m.hexists(this.#bucketOf(id, this.#tier), id);
    const [[, due], [, flying], ...cold] = (await m.exec()) as [[unknown, (string | null)[]], [unknown, (string | null)[]], ...[unknown, number][]];
    return ids.filter((_, i) => due[i] !== null || flying[i] !== null || Number(cold[i]?.[1] ?? 0) === 1);
  }

  /**
   * A claim's first read of this shard, one script (candidates-3.lua): the compact jobs due by the
   * claim's horizon moved to the Redis layout, then up to `q.limit` claims whose lease ended by
   * `q.now` (a claim takes these first) and the first `count` jobs due by `q.until`.
   */
  async candidates(q: ClaimQuery, count: number): Promise<{ expired: { dueAt: number; id: string }[]; due: { dueAt: number; id: string }[] }> {
    const [cp, buckets] = this.coldArgs();
    const horizon = bound(q.until + (this.#tier?.hotSeconds ?? 0));
    const [expired, due] = await (
      await this.client()
    ).clsCandidates(this.#chunks, this.keys.index, this.keys.inFlight, cp, buckets, this.prefix, horizon, PROMOTE_LIMIT, q.now, q.limit, q.until, count);
    return { expired: pairs(expired), due: pairs(due) };
  }

  /** This shard's scheduled jobs due by `until`, in due order, `count` of them from the `offset`-th. */
  async dueCandidates(until: number, offset: number, count: number): Promise<{ dueAt: number; id: string }[]> {
    return pairs(await (await this.client()).zrangebyscore(this.keys.index, '-inf', String(until), 'WITHSCORES', 'LIMIT', offset, count));
  }

  /** Moves the compact jobs due by `horizon` (or the named ones, whatever their due time) to the Redis layout. */
  async #promote(horizon: number, ids: readonly string[] = []): Promise<void> {
    await this.#cold(async (client, tier) => {
      for (let i = 0; i === 0 || i < ids.length; i += COLD_CHUNK) {
        await client.clsColdPromote(
          this.#chunks,
          this.keys.index,
          this.#cp,
          tier.buckets,
          this.prefix,
          bound(horizon),
          PROMOTE_LIMIT,
          ...ids.slice(i, i + COLD_CHUNK),
        );
      }
    }, undefined);
  }

  #bucketOf(id: string, tier: ShardTier): string {
    return `${this.#cp}cold_bucket:${coldBucket(id, tier.buckets)}`;
  }

  protected override async doClaim(q: ClaimQuery, lease: Lease): Promise<ClaimedJob[]> {
    await this.#promote(q.until + (this.#tier?.hotSeconds ?? 0));
    return super.doClaim(q, lease);
  }

  protected override async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    const cold = await this.#cold(async (client, tier) => {
      const gone: string[] = [];
      for (let i = 0; i < ids.length; i += COLD_CHUNK)
        gone.push(...(await client.clsColdRemove(this.#chunks, this.#cp, tier.buckets, ...ids.slice(i, i + COLD_CHUNK))));
      return gone;
    }, []);
    if (cold.length === ids.length) return cold;
    const found = new Set(cold);
    return [...cold, ...(await super.doRemoveMany(ids.filter((id) => !found.has(id))))];
  }

  /** Moves compact jobs (coldMove): the ids moved; the others are the Redis layout's to move. */
  async #coldMoves(moves: readonly { id: string; dueAt: number; entry?: string | undefined }[]): Promise<Set<string>> {
    return this.#cold(async (client, tier) => {
      const hotUntil = (tier.now ?? wallClock)() + tier.hotSeconds;
      const moved = new Set<string>();
      for (let i = 0; i < moves.length; i += COLD_CHUNK) {
        const args = moves.slice(i, i + COLD_CHUNK).flatMap((m) => {
          const value = m.entry === undefined ? '' : (coldValue(m.id, m.dueAt, m.entry) ?? '');
          const stays = m.dueAt > hotUntil && (m.entry === undefined || value !== '');
          return [m.id, m.dueAt, stays ? 'c' : 'h', m.entry ?? '', value];
        });
        for (const id of await client.clsColdMove(this.#chunks, this.keys.index, this.#cp, tier.buckets, this.prefix, this.keys.wakeup, ...args)) moved.add(id);
      }
      return moved;
    }, new Set<string>());
  }

  protected override async doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean> {
    if ((await this.#coldMoves([{ id, dueAt, entry }])).has(id)) return true;
    return super.doReschedule(id, dueAt, entry);
  }

  protected override async doRescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    const cold = await this.#coldMoves(moves);
    if (cold.size === moves.length) return [...cold];
    return [...cold, ...(await super.doRescheduleMany(moves.filter((m) => !cold.has(m.id))))];
  }

  /** A compact job has no tags: one given tags moves to the Redis layout first, where the retag script finds it. */
  protected override async doRetagMany(ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<RetagResult> {
    if (add.length > 0) await this.#promote(0, ids);
    return super.doRetagMany(ids, add, remove);
  }

  protected override async doGet(id: string): Promise<StoredJob | undefined> {
    const value = await this.#cold((client, tier) => client.hget(this.#bucketOf(id, tier), id), null);
    if (value !== null) return { id, ...readColdValue(id, value), state: 'scheduled' };
    return super.doGet(id);
  }

  /** Up to `count` compact jobs due in the range after its cursor, in due order (one call of the range script). */
  async #coldPage(r: ListRange, count: number, values: boolean): Promise<ColdRow[]> {
    return this.#cold(async (client, tier) => {
      const from = r.from ?? -Infinity;
      const after = r.after && r.after.dueAt >= from ? r.after : undefined;
      const flat = await client.clsColdRange(
        this.#chunks,
        this.#cp,
        tier.buckets,
        bound(after ? after.dueAt : from),
        bound(r.to ?? Infinity),
        after ? String(after.dueAt) : '',
        after ? after.id : '',
        count,
        values ? '1' : '0',
      );
      const rows: ColdRow[] = [];
      for (let i = 0; i < flat.length; i += 3) rows.push({ id: flat[i]!, dueAt: Number(flat[i + 1]), value: flat[i + 2]! });
      return rows;
    }, []);
  }

  /**
   * Walks the compact jobs matching `r` in due order, pages of `page`, handing on each page's
   * matches (with their entries); stops when `onMatches` says false.
   */
  async #coldWalk(r: ListRange, page: number, onMatches: (rows: ListedJob[]) => boolean | Promise<boolean>): Promise<void> {
    const filtered = r.task !== undefined || r.queues !== undefined || r.idPrefix !== undefined;
    for (let after = r.after; ;) {
      const rows = await this.#coldPage({ ...r, after }, page, true);
      const matches: ListedJob[] = [];
      for (const row of rows) {
        if (r.idPrefix !== undefined && !row.id.startsWith(r.idPrefix)) continue;
        const { entry } = readColdValue(row.id, row.value);
        if (filtered && (r.task !== undefined || r.queues !== undefined)) {
          const f = indexFieldsOf(entry);
          if (r.task !== undefined && f.task !== r.task) continue;
          if (r.queues !== undefined && !r.queues.includes(f.queue)) continue;
        }
        matches.push({ id: row.id, dueAt: row.dueAt, entry });
      }
      if ((matches.length > 0 && !(await onMatches(matches))) || rows.length < page) return;
      after = rows.at(-1);
    }
  }

  /** Whether a search of `r` can match a compact job: not by tags or key prefix, which none holds. */
  #reachesCold(r: ListRange): boolean {
    return this.#tier !== undefined && r.tags === undefined && r.keyPrefix === undefined;
  }

  protected override async doList(r: ListRange, read: number): Promise<readonly ListedJob[]> {
    if (!this.#reachesCold(r)) return super.doList(r, read);
    const cold: ListedJob[] = [];
    await this.#coldWalk(r, Math.max(read, 100), (rows) => {
      cold.push(...rows);
      return cold.length < read;
    });
    const hot = await super.doList(r, read);
    const seen = new Set(hot.map((j) => j.id));
    return [...hot, ...cold.filter((j) => !seen.has(j.id))].sort(compareDue).slice(0, read);
  }

  /** The compact jobs first, then the Redis layout's walk: a job promoted meanwhile is there by then. */
  protected override async doEachMatch(range: ListRange, batch: number, onChunk: (ids: string[]) => Promise<boolean>): Promise<void> {
    if (this.#reachesCold(range)) {
      let go = true;
      await this.#coldWalk(range, Math.max(batch, 500), async (rows) => {
        for (let i = 0; go && i < rows.length; i += batch) go = await onChunk(rows.slice(i, i + batch).map((j) => j.id));
        return go;
      });
      if (!go) return;
    }
    await super.doEachMatch(range, batch, onChunk);
  }

  protected override async doCountWhere(r: ListRange): Promise<number> {
    if (!this.#reachesCold(r)) return super.doCountWhere(r);
    let cold = 0;
    if (r.task === undefined && r.queues === undefined && r.idPrefix === undefined) {
      const [n] = await this.#cold((client) => client.clsColdCount(this.#chunks, this.#cp, bound(r.from ?? -Infinity), bound(r.to ?? Infinity)), [0]);
      cold = Number(n);
    } else {
      await this.#coldWalk(r, 1000, (rows) => {
        cold += rows.length;
        return true;
      });
    }
    return cold + (await super.doCountWhere(r));
  }

  protected override async doHistogram(r: ListRange & { from: number; to: number }, bucketSeconds: number): Promise<HistogramBucket[]> {
    const hot = await super.doHistogram(r, bucketSeconds);
    if (!this.#reachesCold(r)) return hot;
    const sums = new Map(hot.map((b) => [b.start, b.count]));
    const add = (start: number, n: number) => n > 0 && sums.set(start, (sums.get(start) ?? 0) + n);
    if (r.task === undefined && r.queues === undefined && r.idPrefix === undefined) await this.#coldBuckets(r.from, r.to, bucketSeconds, add);
    else
      await this.#coldWalk(r, 1000, (rows) => {
        for (const j of rows) add(bucketOf(j.dueAt, bucketSeconds), 1);
        return true;
      });
    return [...sums].sort((a, b) => a[0] - b[0]).map(([start, count]) => ({ start, count }));
  }

  /**
   * The compact jobs due in [from, to] counted into buckets: one count script call per 250
   * buckets when the range holds more jobs than buckets, else their due times read through.
   */
  async #coldBuckets(from: number, to: number, width: number, add: (start: number, n: number) => void): Promise<void> {
    const [n] = await this.#cold((client) => client.clsColdCount(this.#chunks, this.#cp, bound(from), bound(to)), [0]);
    if (Number(n) === 0) return;
    const [first] = await this.#coldPage({ from, to }, 1, false);
    if (!first) return;
    const lo = first.dueAt;
    const firstBucket = bucketOf(lo, width);
    const buckets = Math.round((bucketOf(Math.min(to, 2 ** 52), width) - firstBucket) / width) + 1;
    const exact = lo > -(2 ** 52) && to + width < 2 ** 52 && lo >= 0;
    if (!exact || Number(n) < buckets) {
      await this.#coldWalk({ from, to }, 1000, (rows) => {
        for (const j of rows) add(bucketOf(j.dueAt, width), 1);
        return true;
      });
      return;
    }
    const ranges: { start: number; min: string; max: string }[] = [];
    for (let k = 0; k < buckets; k++) {
      const start = firstBucket + k * width;
      ranges.push({ start, min: bound(Math.max(lo, start)), max: start + width > to ? bound(to) : `(${bound(start + width)}` });
    }
    await this.#cold(async (client) => {
      for (let k = 0; k < ranges.length; k += 250) {
        const part = ranges.slice(k, k + 250);
        const counts = await client.clsColdCount(this.#chunks, this.#cp, ...part.flatMap((x) => [x.min, x.max]));
        part.forEach((x, i) => add(x.start, Number(counts[i])));
      }
    }, undefined);
  }

  protected override async doCount(): Promise<StoreCounts> {
    const cold = await this.#cold(async (client) => Number((await client.get(`${this.#cp}cold_count`)) ?? 0), 0);
    const hot = await super.doCount();
    return { ...hot, scheduled: hot.scheduled + cold };
  }

  protected override async doNextDueAt(): Promise<number | undefined> {
    const cold = await this.#cold(async (client) => {
      const [chunk] = await client.zrange(this.#chunks, 0, 0);
      if (chunk === undefined) return undefined;
      const [, due] = await client.zrange(`${this.#cp}cold:${chunk}`, 0, 0, 'WITHSCORES');
      return due === undefined ? undefined : Number(due);
    }, undefined);
    const hot = await super.doNextDueAt();
    return cold === undefined ? hot : hot === undefined ? cold : Math.min(cold, hot);
  }
}

/** A WITHSCORES reply as members and their scores. */
function pairs(flat: string[]): { id: string; dueAt: number }[] {
  const out: { id: string; dueAt: number }[] = [];
  for (let i = 0; i < flat.length; i += 2) out.push({ id: flat[i]!, dueAt: Number(flat[i + 1]) });
  return out;
}
