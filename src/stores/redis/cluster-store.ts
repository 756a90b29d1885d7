/**
 * The Redis Cluster store (`redis+cluster://…`, issue 15): one schedule spread over N shards of a
 * Redis Cluster. Each shard is the Redis store's own layout (./redis-store.ts) under a hash tag
 * of its own, `<prefix>{clts-<n>-<k>}:` (see ../../redis/cluster.ts for how the tags are chosen),
 * so each shard's keys are in one slot and every script of the store runs on one node, atomically,
 * exactly as on a single Redis. The rest of this file routes and merges:
 *
 *   <prefix>{clts-meta}celery_longterm_scheduler:cluster   HASH layout, shards (N), id, buckets:
 *       the store's shape, written once by the first store that opens it (N from `?shards=`,
 *       default 16, fixed from then on: a URL asking another N is refused; buckets a shard of
 *       the compact tier, 2^18 / N)
 *   shard n's keys: the Redis layout's and the compact tier's (./shard.ts), under `<prefix>{<tag of n>}:`
 *   <shard of K>celery_longterm_scheduler:cluster_keys      HASH deduplication key K -> the id of
 *       the job it was last given to (see "Keys")
 *
 * - A job lives in the shard of its id, `shardOf(id, N)` (FNV-1a of the UTF-8 bytes): ids are
 *   unique because each id has one shard, whose scripts check it. Every call by id goes to it.
 * - An add of many jobs checks every id first (one ZMSCORE per shard and set), then adds each
 *   shard's part; a part refused meanwhile (an add of the same id racing this one) takes the parts
 *   already added back out, so the add stays all or nothing but for a job claimed in between.
 * - Claims: each shard's first due jobs are read (expired leases first, as a shard claims them),
 *   merged in due order, and each shard claims its share of the first `limit`, with its own lease
 *   script. Dispatchers need no coordination; the next due time is the least of the shards'.
 * - Lists, searches and dead letters: each shard's first `read` rows after the cursor, merged in
 *   due order (a k-way merge); counts and histograms are the shards' summed.
 * - Wake-ups: each shard's script PUBLISHes on its own channel; PUBLISH reaches every node of a
 *   cluster, and `watch` subscribes to all N.
 * - Hand-off to the broker is publish-then-acknowledge (the broker is outside the shards' slots):
 *   at least once, never atomic; the store offers no `handOff`.
 *
 * Keys: a job with a deduplication key K lives in its id's shard, which holds K in its own
 * mappings (as the Redis store does; a claim drops them). Which job holds K across the cluster is
 * decided in the shard of K, by `cluster_keys`: K is held by the job it names while that job,
 * in its own shard, is scheduled and maps back to K. An addKeyed reads the holder, checks it, and
 * sets K to the new id by compare-and-set (another add that changed it meanwhile makes it start
 * over), then adds the job in its shard; if K was given to another job meanwhile, the job just
 * added is taken out and the add starts over. A name left behind (a crash between the two steps,
 * a job sent or removed) names a job that does not map back, so the key reads as free, and
 * `sweepKeys` deletes it.
 */
import type { Cluster, Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { DuplicateJobError, JobKeyTakenError, ValidationError, redactUrl } from '../../util/errors.js';
import type { NewJob } from '../../job/types.js';
import { ClusterConnections, DEFAULT_SHARDS, shardOf, shardTag, type ClusterConnectOptions } from '../../redis/cluster.js';
import { Lazy, wrapRedisError } from '../../redis/connection.js';
import { StoreBase, type ClaimQuery, type Lease, type ListRange, type ListedJob, type MissingDead, type Position } from '../base.js';
import {
  compareDue,
  type Burial,
  type ClaimedJob,
  type DeadLetter,
  type HistogramBucket,
  type JobKeyMode,
  type JobMove,
  type KeyedAddResult,
  type RetagResult,
  type Retry,
  type ReviveOutcome,
  type StoreCounts,
  type StoredJob,
} from '../store.js';
import type { RedisShardSource } from './redis-store.js';
import { CLUSTER_KEYS_KEY, Shard } from './shard.js';
import { groupBy } from '../../util/group.js';

const WHAT = 'long-term scheduler store (Redis Cluster)';
/** The layout this code writes and reads (the meta hash's `layout`). */
export const CLUSTER_LAYOUT = 'shards-2';
export const CLUSTER_META_KEY = 'celery_longterm_scheduler:cluster';
export { CLUSTER_KEYS_KEY };
/** The compact tier's buckets over all shards (each shard has this / N, at least 64): about 38 jobs each at 10M. */
export const CLUSTER_BUCKETS = 2 ** 18;
/** A job due within this many seconds of now is kept in the Redis layout, not the compact tier (./shard.ts). */
export const DEFAULT_HOT_SECONDS = 60;
/** How long an addKeyed holds its key's record while it adds the job (a crashed one's lock ends then). */
const KEY_LOCK_MS = 5000;
/** A claim starts a sweep of key records (`sweepKeys`) at most this often, per store object. */
const SWEEP_EVERY_MS = 10_000;
/** Records a sweep reads (one HSCAN page of one shard's `cluster_keys`). */
const SWEEP_COUNT = 200;
/** How much longer than a lock an addKeyed waits for the adds of its key before it gives up. */
const KEYED_WAIT_MS = 5000;

/** A key's record while an add holds it: `~<id>~<until, ms>`. */
function keyLock(id: string, until: number): string {
  return `~${until}~${id}`;
}

function parseKeyLock(value: string): { id: string; until: number } | undefined {
  const m = /^~(\d+)~([\s\S]*)$/.exec(value);
  return m ? { until: Number(m[1]), id: m[2]! } : undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long an acknowledgement is tried again while its shard's slot moves (see `whileSlotMoves`). */
const ACK_RETRY_MS = 10_000;

/**
 * Runs `fn` again while it fails because its slot is moving (TRYAGAIN, or the redirections
 * ioredis gave up following), for up to `ACK_RETRY_MS`. For acknowledgements: the messages are
 * already on the broker, so an acknowledgement given up would send them again when the lease
 * ends. An acknowledgement twice is harmless (the second finds the claims settled).
 */
async function whileSlotMoves<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + ACK_RETRY_MS;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline || !/TRYAGAIN|Too many Cluster redirections|\bASK\b|\bMOVED\b|CLUSTERDOWN/.test(String((err as Error).message))) throw err;
      await sleep(50);
    }
  }
}

export interface RedisClusterStoreOptions extends ClusterConnectOptions {
  /** prepended to every key, before the shard's hash tag; no `{` or `}` */
  keyPrefix?: string;
  /**
   * Jobs due later than this many seconds from now are kept compact (./shard.ts); 60 by default.
   * `Infinity` keeps every job in the Redis layout (more memory, and nothing to move when due).
   */
  hotSeconds?: number;
}

/** Creates the meta hash if missing (layout, shard count, id, buckets a shard) and returns them. */
const META_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'layout', ARGV[1], 'shards', ARGV[2], 'id', ARGV[3], 'buckets', ARGV[4])
end
return redis.call('HMGET', KEYS[1], 'layout', 'shards', 'id', 'buckets')`;

/** Sets field ARGV[1] of the hash to ARGV[3] if it holds ARGV[2] ('' for none); 1 if set. */
const CAS_SCRIPT = `
local now = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if now ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`;

/** Deletes field ARGV[1] of the hash if it holds ARGV[2]. */
const CAS_DELETE_SCRIPT = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

/**
 * In a shard: drops the local mapping of key ARGV[1] held by another job than ARGV[2] (one that
 * lost the key in the key's own shard), so that the job ARGV[2] can take it there.
 */
const DROP_LOST_MAPPING_SCRIPT = `
local other = redis.call('HGET', KEYS[1], ARGV[1])
if other and other ~= ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HGET', KEYS[2], other) == ARGV[1] then redis.call('HDEL', KEYS[2], other) end
end
return 1`;

/** The first `n` of several lists each in due order, merged in due order. */
function mergeDue<T extends { dueAt: number; id: string }>(lists: readonly (readonly T[])[], n: number): T[] {
  return lists.flat().sort(compareDue).slice(0, n);
}

interface Layout {
  shards: Shard[];
  id: string;
}

export class RedisClusterStore extends StoreBase {
  readonly description: string;
  readonly prefix: string;
  readonly #url: string;
  readonly #connections: ClusterConnections;
  readonly #layout = new Lazy(async () => (this.#opened = await this.#open()));
  /** the layout once open, for close */
  #opened: Layout | undefined;
  readonly #hotSeconds: number;
  /** where the next key sweep reads (`sweepKeys`), and when a claim may start it */
  readonly #sweep = { shard: 0, cursor: '0', next: 0, running: false };

  constructor(url: string, options: RedisClusterStoreOptions = {}) {
    super();
    const prefix = options.keyPrefix ?? '';
    if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
      throw new ValidationError([
        `keyPrefix ${JSON.stringify(prefix)} holds a brace; a cluster store's prefix comes before its shards' {hash tags}: use one without { or }`,
      ]);
    }
    const hot = options.hotSeconds ?? DEFAULT_HOT_SECONDS;
    if (typeof hot !== 'number' || Number.isNaN(hot) || hot < 0) {
      throw new ValidationError([`hotSeconds ${JSON.stringify(hot)} is not a number of seconds >= 0 (Infinity keeps every job out of the compact tier)`]);
    }
    this.#hotSeconds = hot;
    this.#connections = new ClusterConnections(url, WHAT, options);
    this.#url = url;
    this.description = redactUrl(url);
    this.prefix = prefix;
  }

  /** The number of shards, once the store is open (reads or creates the meta hash). */
  async shardCount(): Promise<number> {
    this.assertOpen();
    return (await this.#layout.get()).shards.length;
  }

  async #open(): Promise<Layout> {
    const client = await this.#connections.client();
    const asked = this.#connections.location.shards;
    const meta = `${this.prefix}{clts-meta}${CLUSTER_META_KEY}`;
    let reply: (string | null)[];
    try {
      const n = asked ?? DEFAULT_SHARDS;
      reply = (await client.eval(META_SCRIPT, 1, meta, CLUSTER_LAYOUT, String(n), randomUUID(), String(Math.max(64, Math.round(CLUSTER_BUCKETS / n))))) as (
        string | null
      )[];
    } catch (err) {
      throw wrapRedisError(err, WHAT, this.#url);
    }
    const [layout, shards, id, bucketCount] = reply;
    const count = Number(shards);
    const buckets = Number(bucketCount);
    if (layout !== CLUSTER_LAYOUT || !Number.isInteger(count) || count < 1 || typeof id !== 'string' || !Number.isInteger(buckets) || buckets < 1) {
      throw new ValidationError([
        `${meta} on ${this.description} holds layout ${JSON.stringify(layout)} with ${JSON.stringify(shards)} shards, which this version does not read (it reads ${CLUSTER_LAYOUT}); use another keyPrefix`,
      ]);
    }
    if (asked !== undefined && asked !== count) {
      throw new ValidationError([
        `the cluster store at ${this.description} was made with ${count} shards, and its URL asks for shards=${asked}; the count is fixed when the store is made: drop shards= or give ${count}`,
      ]);
    }
    const source: RedisShardSource = {
      client: async () => (await this.#connections.client()) as unknown as Redis,
      subscribe: (channel, onMessage) => this.#connections.subscribe(channel, onMessage),
      url: this.#url,
    };
    // read and moved on whatever hotSeconds is: another process may have made jobs compact
    const tier = { buckets, hotSeconds: this.#hotSeconds };
    return { id, shards: Array.from({ length: count }, (_, n) => new Shard(this.#url, `${this.prefix}{${shardTag(n, count)}}:`, source, tier)) };
  }

  async #shards(): Promise<Shard[]> {
    return (await this.#layout.get()).shards;
  }

  async #shardOf(id: string): Promise<Shard> {
    const shards = await this.#shards();
    return shards[shardOf(id, shards.length)]!;
  }

  /** Runs `fn` on each shard holding some of `items`, in parallel; the results in shard order. */
  async #byShard<T, R>(items: readonly T[], idOf: (item: T) => string, fn: (shard: Shard, part: T[]) => Promise<R>): Promise<R[]> {
    const shards = await this.#shards();
    const groups = groupBy(items, (item) => shardOf(idOf(item), shards.length));
    return Promise.all([...groups].map(([n, part]) => fn(shards[n]!, part)));
  }

  async #client(): Promise<Cluster> {
    return this.#connections.client();
  }

  protected async doAdd(jobs: readonly NewJob[], mode: 'reject' | 'skip'): Promise<number> {
    if (mode === 'skip')
      return (
        await this.#byShard(
          jobs,
          (j) => j.id,
          (shard, part) => shard.add_(part, 'skip'),
        )
      ).reduce((a, b) => a + b, 0);
    // every id checked first, so that an add refused for a taken id writes nothing anywhere
    const taken = (
      await this.#byShard(
        jobs,
        (j) => j.id,
        (shard, part) => shard.taken(part.map((j) => j.id)),
      )
    ).flat();
    if (taken.length) throw new DuplicateJobError(taken[0]!);
    const shards = await this.#shards();
    const groups = [...groupBy(jobs, (j) => shardOf(j.id, shards.length))];
    const done = await Promise.allSettled(groups.map(([n, part]) => shards[n]!.add_(part, 'reject')));
    const failed = done.find((d): d is PromiseRejectedResult => d.status === 'rejected');
    if (failed) {
      // an add of the same id raced this one: the parts added are taken back out
      const added = groups.filter((_, i) => done[i]!.status === 'fulfilled');
      await Promise.all(added.map(([n, part]) => shards[n]!.removeMany_(part.map((j) => j.id))));
      throw failed.reason;
    }
    return done.reduce((a, d) => a + (d.status === 'fulfilled' ? d.value : 0), 0);
  }

  /**
   * Deletes key records that no longer hold their key (see "Keys" above): a record stays in
   * `cluster_keys` when its job is sent or removed, reading as free but taking memory. Reads one
   * page of one shard's records (the next page, or the next shard's, each call) and deletes each
   * whose job no longer maps back to the key, by compare-and-set, so a record an add changed
   * meanwhile stays; a lock still running is left alone. A claim starts one in the background at
   * most every 10 s. Resolves to how many records it deleted.
   */
  async sweepKeys(): Promise<number> {
    this.assertOpen();
    const shards = await this.#shards();
    const shard = shards[this.#sweep.shard % shards.length]!;
    const client = await this.#client();
    const [cursor, flat] = await client.hscan(shard.clusterKeys, this.#sweep.cursor, 'COUNT', SWEEP_COUNT);
    this.#sweep.cursor = cursor;
    if (cursor === '0') this.#sweep.shard++;
    const now = Date.now();
    const stale = await Promise.all(
      Array.from({ length: flat.length / 2 }, async (_, i) => {
        const [key, value] = [flat[2 * i]!, flat[2 * i + 1]!];
        const lock = parseKeyLock(value);
        if (lock && lock.until > now) return 0;
        const named = lock ? lock.id : value;
        if (named !== '' && (await this.#holds(named, key))) return 0;
        return Number(await client.eval(CAS_DELETE_SCRIPT, 1, shard.clusterKeys, key, value));
      }),
    );
    return stale.reduce((a, b) => a + b, 0);
  }

  /** Starts a sweep of key records in the background when the last is 10 s old (claims call it). */
  #sweepSoon(): void {
    const now = Date.now();
    if (this.#sweep.running || now < this.#sweep.next) return;
    this.#sweep.next = now + SWEEP_EVERY_MS;
    this.#sweep.running = true;
    // a failed sweep changes nothing: the next one reads the same records again
    this.sweepKeys()
      .catch(() => undefined)
      .finally(() => (this.#sweep.running = false));
  }

  /** Whether `id` holds `key`: scheduled in its shard, mapping back to it there. */
  async #holds(id: string, key: string): Promise<boolean> {
    const job = await (await this.#shardOf(id)).get_(id);
    return job?.state === 'scheduled' && job.key === key;
  }

  protected async doAddKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult> {
    const keyShard = await this.#shardOf(key);
    const home = await this.#shardOf(job.id);
    const client = await this.#client();
    const record = keyShard.clusterKeys;
    const deadline = Date.now() + KEY_LOCK_MS + KEYED_WAIT_MS;
    for (;;) {
      const now = Date.now();
      const value = (await client.hget(record, key)) ?? '';
      const lock = parseKeyLock(value);
      if (lock && lock.until > now) {
        // another add of this key is in progress: wait for it, up to its lock's end
        if (now > deadline) throw new JobKeyTakenError(key, lock.id);
        await sleep(2 + Math.random() * 8);
        continue;
      }
      const named = lock ? lock.id : value;
      const holder = named !== '' && (await this.#holds(named, key)) ? named : undefined;
      if (holder !== undefined && mode === 'keep') return { id: holder, outcome: 'kept' };
      if (holder !== undefined && mode === 'reject') throw new JobKeyTakenError(key, holder);
      // a taken id changes nothing, not even the holder a replace would remove
      if (holder !== job.id && (await home.taken([job.id])).length) throw new DuplicateJobError(job.id);
      const mine = keyLock(job.id, now + KEY_LOCK_MS);
      if ((await client.eval(CAS_SCRIPT, 1, record, key, value, mine)) !== 1) continue; // changed meanwhile
      let replaced: string | undefined;
      try {
        if (holder !== undefined && (await (await this.#shardOf(holder)).removeMany_([holder])).length === 1) replaced = holder;
        // in its own shard the key is the job's: a mapping left there by a job that lost the key is dropped first
        await client.eval(DROP_LOST_MAPPING_SCRIPT, 2, home.keys.jobKeys, home.keys.jobKeyOf, key, job.id);
        await home.addKeyed_(job, key, 'reject');
      } catch (err) {
        await client.eval(CAS_DELETE_SCRIPT, 1, record, key, mine);
        throw err;
      }
      if ((await client.eval(CAS_SCRIPT, 1, record, key, mine, job.id)) !== 1) {
        // the lock ran out and another add took the key: this job goes, and the add starts over
        await home.removeMany_([job.id]);
        continue;
      }
      return replaced === undefined ? { id: job.id, outcome: 'added' } : { id: job.id, outcome: 'replaced', replacedId: replaced };
    }
  }

  protected async doRemove(id: string): Promise<boolean> {
    return (await (await this.#shardOf(id)).removeMany_([id])).length === 1;
  }

  protected async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    return (
      await this.#byShard(
        ids,
        (id) => id,
        (shard, part) => shard.removeMany_(part),
      )
    ).flat();
  }

  protected async doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean> {
    return (await this.#shardOf(id)).reschedule_(id, dueAt, entry);
  }

  protected async doRescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    return (
      await this.#byShard(
        moves,
        (m) => m.id,
        (shard, part) => shard.rescheduleMany_(part),
      )
    ).flat();
  }

  protected async doRetagMany(ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<RetagResult> {
    const parts = await this.#byShard(
      ids,
      (id) => id,
      (shard, part) => shard.retagMany_(part, add, remove),
    );
    return { changed: parts.flatMap((p) => p.changed), overLimit: parts.flatMap((p) => p.overLimit) };
  }

  /**
   * The first `limit` claims across the shards, as one store's claim would take them: expired
   * leases first, then due jobs, in due order. Each shard is asked for a little more than its
   * even share of the due jobs, and asked again (twice as many) only while all it gave is inside
   * the merged first `limit`; then each shard claims its share with its own script.
   */
  protected async doClaim(q: ClaimQuery, lease: Lease): Promise<ClaimedJob[]> {
    const shards = await this.#shards();
    this.#sweepSoon();
    type Candidate = { dueAt: number; id: string; n: number };
    const tagged = (lists: { dueAt: number; id: string }[][]) => lists.flatMap((list, n) => list.map((c): Candidate => ({ ...c, n })));
    let ask = Math.ceil(q.limit / shards.length) + 8;
    // the first read of each shard: its expired leases and first due jobs, in one script
    const first = await Promise.all(shards.map((s) => s.candidates(q, ask)));
    const expired = tagged(first.map((f) => f.expired))
      .sort(compareDue)
      .slice(0, q.limit);
    const room = q.limit - expired.length;
    const fetched: { dueAt: number; id: string }[][] = shards.map(() => []);
    let due: Candidate[] = [];
    let more = room > 0 ? shards.map((_, n) => n) : [];
    for (let round = 0; more.length; round++) {
      const got = round === 0 ? more.map((n) => first[n]!.due) : await Promise.all(more.map((n) => shards[n]!.dueCandidates(q.until, fetched[n]!.length, ask)));
      const full = new Set<number>();
      more.forEach((n, i) => {
        fetched[n]!.push(...got[i]!);
        if (got[i]!.length === ask) full.add(n);
      });
      due = tagged(fetched).sort(compareDue);
      const cutoff = due.length >= room ? due[room - 1] : undefined;
      // a shard may hold more of the first `room` while everything it gave is inside them
      more = [...full].filter((n) => cutoff === undefined || compareDue(fetched[n]!.at(-1)!, cutoff) < 0);
      ask *= 2;
    }
    const shares = groupBy([...expired, ...due.slice(0, room)], (c) => c.n);
    const claimed = await Promise.all([...shares].map(([n, share]) => shards[n]!.claim_({ ...q, limit: share.length }, lease)));
    return claimed.flat().sort(compareDue);
  }

  protected async doRenew(claims: readonly ClaimedJob[], lease: Lease): Promise<readonly ClaimedJob[]> {
    return (
      await this.#byShard(
        claims,
        (c) => c.id,
        (shard, part) => shard.renew_(part, lease),
      )
    ).flat();
  }

  protected async doStillHeld(claims: readonly ClaimedJob[]): Promise<readonly ClaimedJob[]> {
    return (
      await this.#byShard(
        claims,
        (c) => c.id,
        (shard, part) => shard.stillHeld_(part),
      )
    ).flat();
  }

  protected async doAcknowledge(claims: readonly ClaimedJob[]): Promise<void> {
    await this.#byShard(
      claims,
      (c) => c.id,
      (shard, part) => whileSlotMoves(() => shard.acknowledge_(part)),
    );
  }

  protected async doRelease(claims: readonly ClaimedJob[]): Promise<void> {
    await this.#byShard(
      claims,
      (c) => c.id,
      (shard, part) => shard.release_(part),
    );
  }

  protected async doRetryLater(retries: readonly Retry[]): Promise<void> {
    await this.#byShard(
      retries,
      (r) => r.claim.id,
      (shard, part) => shard.retryLater_(part),
    );
  }

  protected async doBury(burials: readonly Burial[]): Promise<void> {
    await this.#byShard(
      burials,
      (b) => b.claim.id,
      (shard, part) => shard.bury_(part),
    );
  }

  protected async doDeadLetters(after: Position | undefined, read: number): Promise<readonly (DeadLetter | MissingDead)[]> {
    const shards = await this.#shards();
    const pages = await Promise.all(shards.map((s) => s.deadLetters_(after, read)));
    const at = (d: DeadLetter | MissingDead) => ({ dueAt: d.diedAt, id: d.id });
    return pages
      .flat()
      .sort((a, b) => compareDue(at(a), at(b)))
      .slice(0, read);
  }

  protected async doGetDead(id: string): Promise<DeadLetter | undefined> {
    return (await this.#shardOf(id)).getDead_(id);
  }

  protected async doReviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]> {
    // by position: an id given twice is revived once, the second time it is not dead
    const out: ReviveOutcome[] = new Array<ReviveOutcome>(ids.length);
    await this.#byShard(
      ids.map((id, i) => ({ id, i })),
      (x) => x.id,
      async (shard, part) => {
        const got = await shard.reviveDead_(
          part.map((x) => x.id),
          dueAt,
        );
        part.forEach((x, k) => (out[x.i] = got[k]!));
      },
    );
    return out;
  }

  protected async doPurgeDead(ids: readonly string[] | 'all'): Promise<number> {
    if (ids === 'all') return (await Promise.all((await this.#shards()).map((s) => s.purgeDead_('all')))).reduce((a, b) => a + b, 0);
    return (
      await this.#byShard(
        ids,
        (id) => id,
        (shard, part) => shard.purgeDead_(part),
      )
    ).reduce((a, b) => a + b, 0);
  }

  protected async doGet(id: string): Promise<StoredJob | undefined> {
    const job = await (await this.#shardOf(id)).get_(id);
    if (!job || job.key === undefined) return job;
    // the shard's mapping counts only while the key's own shard names this job (see "Keys")
    const keyShard = await this.#shardOf(job.key);
    if ((await (await this.#client()).hget(keyShard.clusterKeys, job.key)) === id) return job;
    const { key: _lost, ...rest } = job;
    return rest;
  }

  protected async doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>> {
    const out = new Map<string, readonly string[]>();
    for (const part of await this.#byShard(
      ids,
      (id) => id,
      (shard, p) => shard.tagsOf_(p),
    ))
      for (const [id, tags] of part) out.set(id, tags);
    return out;
  }

  protected async doList(r: ListRange, read: number): Promise<readonly ListedJob[]> {
    const shards = await this.#shards();
    return mergeDue(await Promise.all(shards.map((s) => s.list_(r, read))), read);
  }

  protected override async doCountWhere(r: ListRange): Promise<number> {
    const shards = await this.#shards();
    return (await Promise.all(shards.map((s) => s.countWhere_(r)))).reduce((a, b) => a + b, 0);
  }

  protected override async doHistogram(r: ListRange & { from: number; to: number }, bucketSeconds: number): Promise<HistogramBucket[]> {
    const shards = await this.#shards();
    const sums = new Map<number, number>();
    for (const buckets of await Promise.all(shards.map((s) => s.histogram_(r, bucketSeconds)))) {
      for (const b of buckets) sums.set(b.start, (sums.get(b.start) ?? 0) + b.count);
    }
    return [...sums].sort((a, b) => a[0] - b[0]).map(([start, count]) => ({ start, count }));
  }

  protected async doCount(): Promise<StoreCounts> {
    const counts = await Promise.all((await this.#shards()).map((s) => s.count_()));
    return counts.reduce((a, c) => ({ scheduled: a.scheduled + c.scheduled, inFlight: a.inFlight + c.inFlight, dead: a.dead + c.dead }), {
      scheduled: 0,
      inFlight: 0,
      dead: 0,
    });
  }

  protected async doNextDueAt(): Promise<number | undefined> {
    const times = (await Promise.all((await this.#shards()).map((s) => s.nextDueAt_()))).filter((t): t is number => t !== undefined);
    return times.length ? Math.min(...times) : undefined;
  }

  /**
   * Hears every shard's wake-ups: each shard's scripts publish a job due before every other of
   * that shard, which is passed on when it is still the first due of the whole store. (PUBLISH
   * crosses the cluster bus on its way to the node a subscriber is on, so a message may come
   * late, even after a later one: only the store's first due time is news.)
   */
  async watch(onSooner: (dueAt: number) => void): Promise<() => Promise<void>> {
    this.assertOpen();
    const heard = (dueAt: number) => {
      this.doNextDueAt().then(
        (next) => {
          if (next === dueAt) onSooner(dueAt);
        },
        // unreadable now: pass it on, a wake-up too many costs one empty pass
        () => onSooner(dueAt),
      );
    };
    const stops = await Promise.all((await this.#shards()).map((s) => s.watch(heard)));
    return async () => {
      await Promise.all(stops.map((stop) => stop()));
    };
  }

  /** `redis-cluster:<id>:<prefix>`: the id the store's meta hash got when it was made, and the key prefix. */
  protected async doIdentity(): Promise<string> {
    return `redis-cluster:${(await this.#layout.get()).id}:${this.prefix}`;
  }

  protected async doClose(): Promise<void> {
    const layout = this.#opened;
    this.#opened = undefined;
    this.#layout.reset();
    if (layout) await Promise.all(layout.shards.map((s) => s.close()));
    await this.#connections.closeAll();
  }
}
