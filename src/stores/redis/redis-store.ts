/**
 * The Redis store, in the original package's layout (see README "Redis layout"):
 *
 *   <prefix><task id>                              SET  the entry JSON [[task name], {send_task kwargs}]
 *   <prefix>scheduled_task_id_by_time              ZSET task id -> due time (unix seconds)
 *   <prefix>celery_longterm_scheduler:in_flight    ZSET task id -> lease deadline, the claim's token (ours)
 *   <prefix>celery_longterm_scheduler:in_flight_entries  HASH task id -> entry, while in flight (ours)
 *   <prefix>celery_longterm_scheduler:attempts     HASH task id -> failed attempts JSON, of a job the broker refused (ours)
 *   <prefix>celery_longterm_scheduler:dead         HASH task id -> dead letter JSON {entry, dueAt, reason, error, attempts, ...} (ours)
 *   <prefix>celery_longterm_scheduler:dead_by_time ZSET task id -> when it became a dead letter (ours)
 *   <prefix>celery_longterm_scheduler:corrupt      HASH task id -> {entry, dueAt, reason, movedAt}: corrupt jobs moved aside
 *                                                  by earlier versions; folded into the dead letters on first use
 *   <prefix>celery_longterm_scheduler:wakeup       pub/sub channel: the due time of a job sooner than all others
 *   <prefix>celery_longterm_scheduler:job_keys     HASH deduplication key -> id of the scheduled job holding it (ours)
 *   <prefix>celery_longterm_scheduler:job_key_of   HASH id -> the key it holds (ours)
 *   <prefix>celery_longterm_scheduler:tags         HASH task id -> JSON array of its tags, of a live (scheduled or
 *                                                  in-flight) job that has tags (ours)
 *   <prefix>celery_longterm_scheduler:tag:<tag>    SET  the ids of the live jobs holding <tag>, one set per tag (ours)
 *
 * Deduplication keys live only in our two hashes, never in the entry (the Python package's
 * dispatcher passes the entry to send_task as is). A mapping counts only while its holder is in
 * the index and maps back to the key, so one left behind by something that does not know about
 * keys (the Python package sending or revoking the job) reads as free. Claim and remove drop the
 * mappings of the jobs they take; a released job comes back without its key.
 *
 * Tags live only in our tags hash and tag sets too, never in the entry, and only for live jobs:
 * add and addKeyed write them (dropping any left for the id), claiming, releasing, rescheduling
 * and renewing leave them alone (the id does not change), acknowledge, hand-off, remove and a
 * keyed replace delete them, bury moves them into the dead letter's record (`tags`) and revive
 * back. A tag's set key is derived inside the scripts (the tag key prefix in ARGV, then the tag,
 * like a job's key is the prefix then its id; see lua/includes/tags.lua). Redis deletes a set or
 * hash with its last member, so a store with no tagged job has no tag keys. A job the Python
 * package sends or revokes (ZREM + DEL) leaves its tags behind until its id is added again here;
 * they are read only beside a live job of that id, and a search by tag checks the index anyway.
 * A list by tags walks the smallest set it needs, or the index in due order when the tag is
 * common, a bounded chunk per command (./tag-search.ts). Retagging (retag-2.lua) rewrites a
 * scheduled job's field and moves its id between the tag sets in the same script.
 *
 * Search by the other filters (./filter-search.ts) adds no key: the task and queue of a job are
 * read from its entry (a job the Python package wrote has nothing of ours to index them by), the
 * id prefix from the index, the key prefix from `job_keys` (HSCAN MATCH) or `job_key_of`. Each
 * list, count and histogram walks one driver (the index in the due range, the tag sets, or
 * `job_keys`, whichever is smallest) a chunk of about 1,000 per command, checking the rest of the
 * filter chunk by chunk; a list stops at its page. Counts and histograms by the due range alone
 * are ZCOUNTs (one a bucket, count-ranges-1.lua); by tags alone, the tag sets without the entries.
 * A task, queue or id prefix on its own is a scan of the range, accepted. Walking the index in due
 * order starts each chunk after the last job read by score, or by rank (range-after-1.lua) when
 * many jobs share its due time. rescheduleMany moves jobs in the index only (reschedule-many-1.lua),
 * a chunk of them per script, waking the dispatchers as reschedule does.
 *
 * The prefix is '' by default, which is exactly the Python package's layout. Every change is one
 * Lua script (the .lua files beside this one), so it is atomic.
 *
 * What every store does the same (the checks, the closed state, lease arithmetic, paging) is
 * `StoreBase`'s (../base.ts); this file is the rest.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis, Result } from 'ioredis';
import { DuplicateJobError, JobKeyTakenError, redactUrl } from '../../util/errors.js';
import type { NewJob } from '../../job/types.js';
import { Lazy, RedisConnections, serverId, wrapRedisError, type RedisConnectionOptions } from '../../redis/connection.js';
import type { RedisPush } from '../../redis/handoff.js';
import { listByTags } from './tag-search.js';
import { groupBy } from '../../util/group.js';
import { countWhere, eachMatch, histogramWhere, listWhere, type SearchContext } from './filter-search.js';
import { MAX_TAGS_PER_JOB } from '../../job/tags.js';
import { StoreBase, type ClaimQuery, type Lease, type ListRange, type ListedJob, type MissingDead, type Position } from '../base.js';
import {
  DEAD_REASONS,
  compareDue,
  deadLetterOf,
  decodeAttempts,
  encodeAttempts,
  type Burial,
  type DeadLetter,
  type DeadReason,
  type Retry,
  type ReviveOutcome,
  type ClaimedJob,
  type JobKeyMode,
  type KeyedAddResult,
  type JobMove,
  type RetagResult,
  type HistogramBucket,
  type StoreCounts,
  type StoredJob,
} from '../store.js';

export const INDEX_KEY = 'scheduled_task_id_by_time';
export const IN_FLIGHT_KEY = 'celery_longterm_scheduler:in_flight';
export const IN_FLIGHT_ENTRIES_KEY = 'celery_longterm_scheduler:in_flight_entries';
export const CORRUPT_KEY = 'celery_longterm_scheduler:corrupt';
export const WAKEUP_CHANNEL = 'celery_longterm_scheduler:wakeup';
export const JOB_KEYS_KEY = 'celery_longterm_scheduler:job_keys';
export const JOB_KEY_OF_KEY = 'celery_longterm_scheduler:job_key_of';
export const ATTEMPTS_KEY = 'celery_longterm_scheduler:attempts';
export const DEAD_KEY = 'celery_longterm_scheduler:dead';
export const DEAD_BY_TIME_KEY = 'celery_longterm_scheduler:dead_by_time';
export const TAGS_KEY = 'celery_longterm_scheduler:tags';
/** a tag's set of ids is this prefix then the tag (the scripts derive it: lua/includes/tags.lua) */
export const TAG_KEY_PREFIX = 'celery_longterm_scheduler:tag:';
/**
 * Jobs per add script call when duplicates are skipped (each job stands alone then): bounds how
 * long one call blocks Redis. A rejecting add is one call, so it stays all or nothing.
 */
const ADD_CHUNK = 1000;

export interface RedisStoreOptions extends RedisConnectionOptions {
  /** prepended to every key; '' (the default) is the original package's layout */
  keyPrefix?: string;
}

/**
 * Where a shard of the cluster store (./cluster-store.ts) gets its connections: one shared
 * ioredis `Cluster`, typed as the commands a shard sends (every key of a shard is in one slot, so
 * its scripts, MULTIs and MGETs are a single node's), and subscriptions through it.
 */
export interface RedisShardSource {
  /** the connected cluster client, shared by every shard (a shard never closes it) */
  client(): Promise<Redis>;
  /** subscribes to a wake-up channel; the returned function unsubscribes */
  subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>;
  /** what errors name: the cluster's URL (redacted when shown) */
  url: string;
}

/**
 * The scripts: every `lua/<name>-<number of keys>.lua` file is a command (`add-keyed-6.lua`
 * is `addKeyed`, 6 keys: the file name is the one place the key count is written). A line
 * `--- @include "<fragment>"` is replaced by `lua/includes/<fragment>.lua` (shared Lua functions).
 * They are registered with ioredis `defineCommand` (EVALSHA with a NOSCRIPT fallback) and called
 * through the typed commands declared below.
 */
/** Ids per call of the remove script: each call is one short script, so Redis is never blocked long. */
const REMOVE_CHUNK = 1000;

/**
 * Moves per call of the rescheduleMany script, and ids per call of the retag script: each call
 * about 2.5 ms of Redis time on a 1M-job index (measured: ~5 µs a move, ~10 µs a retag).
 */
const RESCHEDULE_CHUNK = 500;
const RETAG_CHUNK = 250;

const SCRIPT_NAMES = [
  'add',
  'addKeyed',
  'remove',
  'reschedule',
  'rescheduleMany',
  'retag',
  'renew',
  'claim',
  'ack',
  'release',
  'bury',
  'revive',
  'handoff',
  'rangeAfter',
  'countRanges',
  'coldRemove',
  'coldPromote',
  'coldMove',
  'coldRange',
  'coldCount',
  'candidates',
] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];
type ScriptArg = string | number;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    clsAdd(...args: ScriptArg[]): Result<[added: number, takenId: string | null], Context>;
    clsAddKeyed(...args: ScriptArg[]): Result<[outcome: string, id: string], Context>;
    clsRemove(...args: ScriptArg[]): Result<string[], Context>;
    clsReschedule(...args: ScriptArg[]): Result<number, Context>;
    clsRescheduleMany(...args: ScriptArg[]): Result<string[], Context>;
    clsRetag(...args: ScriptArg[]): Result<[changed: string[], overLimit: string[]], Context>;
    clsRenew(...args: ScriptArg[]): Result<string[], Context>;
    clsClaim(...args: ScriptArg[]): Result<(string | null)[], Context>;
    clsAck(...args: ScriptArg[]): Result<number, Context>;
    clsRelease(...args: ScriptArg[]): Result<number, Context>;
    clsBury(...args: ScriptArg[]): Result<number, Context>;
    clsRevive(...args: ScriptArg[]): Result<ReviveOutcome[], Context>;
    clsHandoff(...args: ScriptArg[]): Result<(number | string)[], Context>;
    clsRangeAfter(...args: ScriptArg[]): Result<string[], Context>;
    clsCountRanges(...args: ScriptArg[]): Result<number[], Context>;
    clsColdRemove(...args: ScriptArg[]): Result<string[], Context>;
    clsColdPromote(...args: ScriptArg[]): Result<number, Context>;
    clsColdMove(...args: ScriptArg[]): Result<string[], Context>;
    clsColdRange(...args: ScriptArg[]): Result<string[], Context>;
    clsColdCount(...args: ScriptArg[]): Result<number[], Context>;
    clsCandidates(...args: ScriptArg[]): Result<[expired: string[], due: string[]], Context>;
  }
}

const here = join(dirname(fileURLToPath(import.meta.url)), 'lua');
let scriptSources: Map<ScriptName, { lua: string; keys: number }> | undefined;

/** The scripts found in lua/, includes spliced in; fails loudly on a missing or extra one. */
export function loadScripts(dir: string = here): Map<ScriptName, { lua: string; keys: number }> {
  if (dir === here && scriptSources) return scriptSources;
  const found = new Map<ScriptName, { lua: string; keys: number }>();
  for (const file of readdirSync(dir)) {
    const m = /^([a-z][a-z-]*)-(\d+)\.lua$/.exec(file);
    if (!m) continue;
    const name = (m[1] as string).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as ScriptName;
    if (!SCRIPT_NAMES.includes(name)) throw new Error(`${join(dir, file)} is not one of the Redis store's scripts (${SCRIPT_NAMES.join(', ')})`);
    const lua = readFileSync(join(dir, file), 'utf8').replace(/^--- @include "([a-z-]+)"$/gm, (_, fragment: string) =>
      readFileSync(join(dir, 'includes', `${fragment}.lua`), 'utf8'),
    );
    found.set(name, { lua, keys: Number(m[2]) });
  }
  const missing = SCRIPT_NAMES.filter((n) => !found.has(n));
  if (missing.length) throw new Error(`the Redis store's scripts ${missing.join(', ')} are missing from ${dir}`);
  if (dir === here) scriptSources = found;
  return found;
}

/** `addKeyed` -> `clsAddKeyed`, the ioredis command. */
function commandName(name: ScriptName): `cls${Capitalize<ScriptName>}` {
  return `cls${name.charAt(0).toUpperCase()}${name.slice(1)}` as `cls${Capitalize<ScriptName>}`;
}

const claimToken = (c: { token: string }): string => c.token;

export class RedisStore extends StoreBase {
  readonly description: string;
  readonly prefix: string;
  readonly keys: {
    index: string;
    inFlight: string;
    inFlightEntries: string;
    corrupt: string;
    wakeup: string;
    jobKeys: string;
    jobKeyOf: string;
    attempts: string;
    dead: string;
    deadByTime: string;
    tags: string;
    /** a tag's set is this then the tag */
    tagPrefix: string;
  };
  readonly #connections: RedisConnections | undefined;
  readonly #shard: RedisShardSource | undefined;
  readonly #url: string;
  readonly #client = new Lazy(() => this.#connect());
  readonly #location = new Lazy(() => this.#run(async (client) => ({ server: await serverId(client), db: client.options.db ?? 0 })));
  /** the legacy `corrupt` hash was folded into the dead letters (once per store object) */
  #folded = false;

  /** A store on `url`; or, with `shard`, a shard of the cluster store (`url` its cluster's). */
  constructor(url: string, options: RedisStoreOptions = {}, shard?: RedisShardSource) {
    super();
    this.#shard = shard;
    this.#connections = shard ? undefined : new RedisConnections(url, 'long-term scheduler store (Redis)', options);
    this.#url = url;
    this.description = redactUrl(url);
    this.prefix = options.keyPrefix ?? '';
    this.keys = {
      index: `${this.prefix}${INDEX_KEY}`,
      inFlight: `${this.prefix}${IN_FLIGHT_KEY}`,
      inFlightEntries: `${this.prefix}${IN_FLIGHT_ENTRIES_KEY}`,
      corrupt: `${this.prefix}${CORRUPT_KEY}`,
      wakeup: `${this.prefix}${WAKEUP_CHANNEL}`,
      jobKeys: `${this.prefix}${JOB_KEYS_KEY}`,
      jobKeyOf: `${this.prefix}${JOB_KEY_OF_KEY}`,
      attempts: `${this.prefix}${ATTEMPTS_KEY}`,
      dead: `${this.prefix}${DEAD_KEY}`,
      deadByTime: `${this.prefix}${DEAD_BY_TIME_KEY}`,
      tags: `${this.prefix}${TAGS_KEY}`,
      tagPrefix: `${this.prefix}${TAG_KEY_PREFIX}`,
    };
  }

  /**
   * The compact tier's key prefix and bucket count, as the scripts take them (lua/includes/cold.lua):
   * none here (`['', 0]`); a cluster store's shard has one (./shard.ts).
   */
  protected coldArgs(): [string, number] {
    return ['', 0];
  }

  /**
   * Where a job is added: its bucket value in the compact tier (`value`; undefined: this layout),
   * and its bucket there (undefined when the store has no tier: nothing to check).
   */
  protected coldPlaceOf(_job: NewJob): { value?: string | undefined; bucket?: number | undefined } {
    return {};
  }

  /** The connected client (connects on first use, once). */
  async client(): Promise<Redis> {
    this.assertOpen();
    return this.#client.get();
  }

  async #connect(): Promise<Redis> {
    const client = this.#shard ? await this.#shard.client() : await this.#connections!.open();
    const sources = loadScripts();
    for (const [name, s] of sources) client.defineCommand(commandName(name), { numberOfKeys: s.keys, lua: s.lua });
    return client;
  }

  async #run<T>(fn: (client: Redis) => Promise<T>): Promise<T> {
    const client = await this.client();
    try {
      return await fn(client);
    } catch (err) {
      throw wrapRedisError(err, 'long-term scheduler store (Redis)', this.#url);
    }
  }

  protected async doAdd(jobs: readonly NewJob[], mode: 'reject' | 'skip'): Promise<number> {
    const chunk = mode === 'skip' ? ADD_CHUNK : jobs.length;
    return this.#run(async (client) => {
      const add = client.clsAdd.bind(client);
      let added = 0;
      for (let i = 0; i < jobs.length; i += chunk) {
        const args: (string | number)[] = [
          this.keys.index,
          this.keys.inFlight,
          this.keys.jobKeyOf,
          this.keys.attempts,
          this.keys.tags,
          this.prefix,
          this.keys.wakeup,
          mode,
          this.keys.tagPrefix,
          ...this.coldArgs(),
        ];
        for (const job of jobs.slice(i, i + chunk)) {
          const { value, bucket } = this.coldPlaceOf(job);
          args.push(job.id, job.dueAt, value ?? job.entry, encodeTags(job.tags), bucket === undefined ? '' : `${value === undefined ? 'h' : 'c'}${bucket}`);
        }
        const [n, taken] = await add(...args);
        if (taken) throw new DuplicateJobError(String(taken));
        added += n;
      }
      return added;
    });
  }

  protected async doAddKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult> {
    const [outcome, id] = await this.#run(
      async (client) =>
        await client.clsAddKeyed(
          this.keys.index,
          this.keys.inFlight,
          this.keys.jobKeys,
          this.keys.jobKeyOf,
          this.keys.attempts,
          this.keys.tags,
          this.prefix,
          this.keys.wakeup,
          key,
          mode,
          job.id,
          job.dueAt,
          job.entry,
          this.keys.tagPrefix,
          encodeTags(job.tags),
          ...this.coldArgs(),
        ),
    );
    switch (outcome) {
      case 'added':
        return { id: job.id, outcome: 'added' };
      case 'replaced':
        return { id: job.id, outcome: 'replaced', replacedId: id };
      case 'kept':
        return { id, outcome: 'kept' };
      case 'taken':
        throw new JobKeyTakenError(key, id);
      default:
        throw new DuplicateJobError(job.id);
    }
  }

  protected async doRemove(id: string): Promise<boolean> {
    return (await this.doRemoveMany([id])).length === 1;
  }

  protected async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    const gone: string[] = [];
    for (let i = 0; i < ids.length; i += REMOVE_CHUNK) {
      const part = ids.slice(i, i + REMOVE_CHUNK);
      const k = this.keys;
      gone.push(...(await this.#run((client) => client.clsRemove(k.index, k.jobKeys, k.jobKeyOf, k.attempts, k.tags, this.prefix, k.tagPrefix, ...part))));
    }
    return gone;
  }

  /**
   * The search's own walk (filter-search.ts), in no order: a tag set by SSCAN, the index by
   * score, the keys by HSCAN, each chunk of about 1,000 handed on before the next is read. None
   * of them sorts the matches, so a bulk revoke by a tag held by 100,000 jobs reads the set once
   * (in due order it would re-read it for every page), and each walk stays true while what it
   * named is removed.
   */
  protected override async doEachMatch(range: ListRange, batch: number, onChunk: (ids: string[]) => Promise<boolean>): Promise<void> {
    const stop = new Error('stopped');
    try {
      await this.#run((client) =>
        eachMatch(this.#search(client), range, async (chunk) => {
          for (let i = 0; i < chunk.length; i += batch) if (!(await onChunk(chunk.slice(i, i + batch).map((j) => j.id)))) throw stop;
        }),
      );
    } catch (err) {
      if (err !== stop) throw err;
    }
  }

  /** One reschedule-many-1.lua call per `RESCHEDULE_CHUNK` moves: each call is short, and each job moves on its own. */
  protected async doRescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    return this.#run(async (client) => {
      const moved: string[] = [];
      for (let i = 0; i < moves.length; i += RESCHEDULE_CHUNK) {
        const args = moves.slice(i, i + RESCHEDULE_CHUNK).flatMap((m) => [m.id, m.dueAt]);
        moved.push(...(await client.clsRescheduleMany(this.keys.index, this.prefix, this.keys.wakeup, ...args)));
      }
      return moved;
    });
  }

  /** One retag-2.lua call per `RETAG_CHUNK` ids: the tags hash and the tag sets change with each job, atomically. */
  protected async doRetagMany(ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<RetagResult> {
    return this.#run(async (client) => {
      const out: RetagResult = { changed: [], overLimit: [] };
      for (let i = 0; i < ids.length; i += RETAG_CHUNK) {
        const [changed, overLimit] = await client.clsRetag(
          this.keys.index,
          this.keys.tags,
          this.prefix,
          this.keys.tagPrefix,
          MAX_TAGS_PER_JOB,
          JSON.stringify(add),
          JSON.stringify(remove),
          ...ids.slice(i, i + RETAG_CHUNK),
        );
        out.changed.push(...changed);
        out.overLimit.push(...overLimit);
      }
      return out;
    });
  }

  protected async doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean> {
    return this.#run(async (client) => (await client.clsReschedule(this.keys.index, this.prefix, this.keys.wakeup, id, dueAt, entry ?? '')) === 1);
  }

  protected async doRenew(claims: readonly ClaimedJob[], lease: Lease): Promise<readonly ClaimedJob[]> {
    return this.#run(async (client) => {
      const renew = client.clsRenew.bind(client);
      const out: ClaimedJob[] = [];
      for (const [old, group] of groupBy(claims, claimToken)) {
        const kept = new Set(await renew(this.keys.inFlight, old, lease.token, ...group.map((c) => c.id)));
        for (const c of group) if (kept.has(c.id)) out.push(c);
      }
      return out;
    });
  }

  protected async doStillHeld(claims: readonly ClaimedJob[]): Promise<readonly ClaimedJob[]> {
    return this.#run(async (client) => {
      const read = client.pipeline();
      for (const c of claims) read.zscore(this.keys.inFlight, c.id);
      const scores = (await read.exec()) ?? [];
      return claims.filter((c, i) => {
        const [err, score] = scores[i] ?? [null, null];
        if (err) throw err;
        return typeof score === 'string' && Number(score) === Number(c.token);
      });
    });
  }

  protected async doClaim(o: ClaimQuery, { token }: Lease): Promise<ClaimedJob[]> {
    // the token is the lease deadline (see claim-6.lua)
    const flat = await this.#run(
      async (client) =>
        await client.clsClaim(
          this.keys.index,
          this.keys.inFlight,
          this.keys.inFlightEntries,
          this.keys.jobKeys,
          this.keys.jobKeyOf,
          this.keys.attempts,
          this.prefix,
          o.until,
          o.now,
          o.limit,
          token,
        ),
    );
    const out: ClaimedJob[] = [];
    for (let i = 0; i < flat.length; i += 4) {
      const claim: ClaimedJob = { id: String(flat[i]), dueAt: Number(flat[i + 1]), entry: flat[i + 2] ?? null, token };
      const attempts = flat[i + 3] ? decodeAttempts(flat[i + 3]) : undefined;
      out.push(attempts ? { ...claim, attempts } : claim);
    }
    return out;
  }

  protected async doAcknowledge(claims: readonly ClaimedJob[]): Promise<void> {
    await this.#run(async (client) => {
      const ack = client.clsAck.bind(client);
      for (const [token, group] of groupBy(claims, claimToken)) {
        await ack(
          this.keys.inFlight,
          this.keys.inFlightEntries,
          this.keys.attempts,
          this.keys.tags,
          this.prefix,
          token,
          this.keys.tagPrefix,
          ...group.map((c) => c.id),
        );
      }
    });
  }

  protected async doRelease(claims: readonly ClaimedJob[]): Promise<void> {
    await this.#release(claims.map((c) => ({ claim: c, dueAt: c.dueAt, attempts: '' })));
  }

  protected async doRetryLater(retries: readonly Retry[]): Promise<void> {
    await this.#release(retries.map((r) => ({ claim: r.claim, dueAt: r.retryAt, attempts: encodeAttempts(r.attempts) })));
  }

  async #release(items: readonly { claim: ClaimedJob; dueAt: number; attempts: string }[]): Promise<void> {
    await this.#run(async (client) => {
      const release = client.clsRelease.bind(client);
      for (const [token, group] of groupBy(items, (item) => item.claim.token)) {
        const args = group.flatMap((g) => [g.claim.id, g.dueAt, g.attempts]);
        await release(this.keys.index, this.keys.inFlight, this.keys.inFlightEntries, this.keys.attempts, this.prefix, token, ...args);
      }
    });
  }

  protected async doBury(burials: readonly Burial[]): Promise<void> {
    await this.#run(async (client) => {
      const bury = client.clsBury.bind(client);
      for (const [token, group] of groupBy(burials, (b) => b.claim.token)) {
        // the record without tags: the script adds the job's own (see bury-6.lua)
        const args = group.flatMap((b) => {
          const d = deadLetterOf(b, b.claim.entry);
          return [d.id, encodeDead(d), d.diedAt];
        });
        await bury(
          this.keys.inFlight,
          this.keys.inFlightEntries,
          this.keys.dead,
          this.keys.deadByTime,
          this.keys.attempts,
          this.keys.tags,
          token,
          this.keys.tagPrefix,
          ...args,
        );
      }
    });
  }

  /**
   * Moves the corrupt jobs earlier versions moved aside (the `corrupt` hash) into the dead
   * letters, once per store object, a chunk per transaction.
   */
  async #foldLegacy(client: Redis): Promise<void> {
    if (this.#folded) return;
    if ((await client.exists(this.keys.corrupt)) === 1) {
      let cursor = '0';
      do {
        const [next, flat] = await client.hscan(this.keys.corrupt, cursor, 'COUNT', 500);
        cursor = next;
        if (flat.length === 0) continue;
        const tx = client.multi();
        for (let i = 0; i < flat.length; i += 2) {
          const id = flat[i]!;
          const d = legacyCorrupt(id, flat[i + 1]!);
          tx.hsetnx(this.keys.dead, id, encodeDead(d)).zadd(this.keys.deadByTime, 'NX', d.diedAt, id).hdel(this.keys.corrupt, id);
        }
        await tx.exec();
      } while (cursor !== '0');
    }
    this.#folded = true;
  }

  protected async doDeadLetters(after: Position | undefined, read: number): Promise<readonly (DeadLetter | MissingDead)[]> {
    return this.#run(async (client) => {
      await this.#foldLegacy(client);
      const found = await pageByScore(client, this.keys.deadByTime, after, -Infinity, Infinity, read);
      const records = found.length ? await client.hmget(this.keys.dead, ...found.map((j) => j.id)) : [];
      return found.map((j, i): DeadLetter | MissingDead => {
        const raw = records[i];
        return typeof raw === 'string' ? decodeDead(j.id, raw, j.dueAt) : { id: j.id, diedAt: j.dueAt, missing: true };
      });
    });
  }

  protected async doGetDead(id: string): Promise<DeadLetter | undefined> {
    return this.#run(async (client) => {
      await this.#foldLegacy(client);
      const raw = await client.hget(this.keys.dead, id);
      return raw === null ? undefined : decodeDead(id, raw);
    });
  }

  protected async doReviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]> {
    return this.#run(async (client) => {
      await this.#foldLegacy(client);
      const revive = client.clsRevive.bind(client);
      const out: ReviveOutcome[] = [];
      for (let i = 0; i < ids.length; i += 1000) {
        const part = ids.slice(i, i + 1000);
        out.push(
          ...(await revive(
            this.keys.index,
            this.keys.inFlight,
            this.keys.dead,
            this.keys.deadByTime,
            this.keys.attempts,
            this.keys.tags,
            this.prefix,
            this.keys.wakeup,
            dueAt,
            this.keys.tagPrefix,
            ...this.coldArgs(),
            ...part,
          )),
        );
      }
      return out;
    });
  }

  protected async doPurgeDead(ids: readonly string[] | 'all'): Promise<number> {
    return this.#run(async (client) => {
      await this.#foldLegacy(client);
      if (ids === 'all') {
        const [[, n]] = (await client.multi().zcard(this.keys.deadByTime).del(this.keys.dead, this.keys.deadByTime).exec()) as [[unknown, number]];
        return Number(n);
      }
      let n = 0;
      for (let i = 0; i < ids.length; i += 1000) {
        const part = ids.slice(i, i + 1000);
        const [[, removed]] = (await client
          .multi()
          .hdel(this.keys.dead, ...part)
          .zrem(this.keys.deadByTime, ...part)
          .exec()) as [[unknown, number]];
        n += Number(removed);
      }
      return n;
    });
  }

  async handOff(claims: readonly ClaimedJob[], pushes: readonly (readonly RedisPush[])[]): Promise<(boolean | Error)[]> {
    this.assertOpen();
    const { db } = await this.redisLocation();
    const brokerDbs = new Set(pushes.flatMap((list) => list.map((p) => p.db)));
    if (brokerDbs.size > 1) throw new Error('one hand-off goes to one broker database');
    const brokerDb = brokerDbs.values().next().value ?? db;
    return this.#run(async (client) => {
      const handoff = client.clsHandoff.bind(client);
      const done: (boolean | Error)[] = [];
      for (const [token, group] of groupBy(
        claims.map((c, i) => ({ ...c, i })),
        claimToken,
      )) {
        const args: (string | number)[] = [
          this.keys.inFlight,
          this.keys.inFlightEntries,
          this.keys.attempts,
          this.keys.tags,
          this.prefix,
          token,
          db,
          brokerDb,
          this.keys.tagPrefix,
        ];
        for (const c of group) {
          const list = pushes[c.i] ?? [];
          args.push(c.id, list.length);
          for (const p of list) args.push(p.key, p.value);
        }
        const results = await handoff(...args);
        group.forEach((c, k) => {
          const r = results[k];
          done[c.i] = r === 1 ? true : r === 0 || r === undefined ? false : new Error(String(r));
        });
      }
      return done;
    });
  }

  /** This store's Redis server identity (`run_id`) and database number. */
  redisLocation(): Promise<{ server: string; db: number }> {
    return this.#location.get();
  }

  protected async doNextDueAt(): Promise<number | undefined> {
    return this.#run(async (client) => {
      const [[, due], [, lease]] = (await client.multi().zrange(this.keys.index, 0, 0, 'WITHSCORES').zrange(this.keys.inFlight, 0, 0, 'WITHSCORES').exec()) as [
        [unknown, string[]],
        [unknown, string[]],
      ];
      const times = [due[1], lease[1]].filter((t): t is string => t !== undefined).map(Number);
      return times.length ? Math.min(...times) : undefined;
    });
  }

  async watch(onSooner: (dueAt: number) => void): Promise<() => Promise<void>> {
    this.assertOpen();
    if (this.#shard) return this.#shard.subscribe(this.keys.wakeup, (message) => onSooner(Number(message)));
    const connections = this.#connections!;
    const subscriber = await connections.open({ maxRetriesPerRequest: null });
    subscriber.on('message', (_channel: string, message: string) => onSooner(Number(message)));
    await subscriber.subscribe(this.keys.wakeup);
    return () => connections.close(subscriber);
  }

  protected async doGet(id: string): Promise<StoredJob | undefined> {
    return this.#run(async (client) => {
      const [[, entry], [, due], [, lease], [, inFlightEntry], [, key]] = (await client
        .multi()
        .get(`${this.prefix}${id}`)
        .zscore(this.keys.index, id)
        .zscore(this.keys.inFlight, id)
        .hget(this.keys.inFlightEntries, id)
        .hget(this.keys.jobKeyOf, id)
        .exec()) as [[unknown, unknown], [unknown, string | null], [unknown, string | null], [unknown, string | null], [unknown, string | null]];
      if (due !== null && typeof entry === 'string') {
        // a mapping counts only while the key maps back to this job (see the header)
        const held = typeof key === 'string' && (await client.hget(this.keys.jobKeys, key)) === id;
        return { id, dueAt: Number(due), entry, state: 'scheduled' as const, ...(held && { key: key as string }) };
      }
      if (lease !== null && typeof inFlightEntry === 'string') return { id, dueAt: Number(lease), entry: inFlightEntry, state: 'in_flight' as const };
      return undefined;
    });
  }

  /** One HMGET on the tags hash, whatever the number of ids. */
  protected async doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>> {
    return this.#run(async (client) => {
      const raw = await client.hmget(this.keys.tags, ...ids);
      const out = new Map<string, readonly string[]>();
      ids.forEach((id, i) => {
        const tags = decodeTags(raw[i]);
        if (tags) out.set(id, tags);
      });
      return out;
    });
  }

  /**
   * Pages through the index by score; ties come back in member (byte) order, which is the
   * contract's due order. Jobs at the cursor's own due time are skipped up to the cursor's id.
   * By tags, the tag sets are walked instead, a bounded chunk per command (./tag-search.ts); by
   * anything else, ./filter-search.ts.
   */
  protected async doList(r: ListRange, read: number): Promise<readonly ListedJob[]> {
    return this.#run(async (client) => {
      if (r.task !== undefined || r.queues !== undefined || r.keyPrefix !== undefined || r.idPrefix !== undefined) {
        return listWhere(this.#search(client), r, read);
      }
      const found = r.tags
        ? await listByTags(client, this.keys, { ...r, tags: r.tags }, read)
        : await pageByScore(client, this.keys.index, r.after, r.from ?? -Infinity, r.to ?? Infinity, read);
      const entries = found.length ? await client.mget(found.map((j) => `${this.prefix}${j.id}`)) : [];
      // a job claimed between the two reads is in flight now, not scheduled: null
      return found.map((j, i): ListedJob => {
        const entry = entries[i];
        return { ...j, entry: typeof entry === 'string' ? entry : null };
      });
    });
  }

  /** ZCOUNT by the due range alone, else one driver walked through (./filter-search.ts). */
  protected override async doCountWhere(r: ListRange): Promise<number> {
    return this.#run((client) => countWhere(this.#search(client), r));
  }

  /** One ZCOUNT a bucket, or the due times read, by the due range alone; else one driver walked through (./filter-search.ts). */
  protected override async doHistogram(r: ListRange & { from: number; to: number }, bucketSeconds: number): Promise<HistogramBucket[]> {
    return this.#run((client) => histogramWhere(this.#search(client), r, bucketSeconds));
  }

  #search(client: Redis): SearchContext {
    return { client, keys: this.keys, prefix: this.prefix };
  }

  protected async doCount(): Promise<StoreCounts> {
    return this.#run(async (client) => {
      await this.#foldLegacy(client);
      const [[, scheduled], [, inFlight], [, dead]] = (await client
        .multi()
        .zcard(this.keys.index)
        .zcard(this.keys.inFlight)
        .zcard(this.keys.deadByTime)
        .exec()) as [[unknown, number], [unknown, number], [unknown, number]];
      return { scheduled: Number(scheduled), inFlight: Number(inFlight), dead: Number(dead) };
    });
  }

  /** `redis:<run_id>:<db>:<prefix>`: the server process, the database and the key prefix. */
  protected async doIdentity(): Promise<string> {
    const { server, db } = await this.redisLocation();
    return `redis:${server}:${db}:${this.prefix}`;
  }

  protected async doClose(): Promise<void> {
    this.#client.reset();
    this.#location.reset();
    await this.#connections?.closeAll();
  }
}

/**
 * Members of a sorted set in (score, member) order from `after` (exclusive) or `min`, up to `max`,
 * at most `wanted`: ZRANGEBYSCORE pages, skipping members at the cursor's own score up to its id.
 */
async function pageByScore(
  client: Redis,
  key: string,
  after: { dueAt: number; id: string } | undefined,
  min: number,
  max: number,
  wanted: number,
): Promise<{ id: string; dueAt: number }[]> {
  const from = Math.max(min, after?.dueAt ?? -Infinity);
  const bound = (x: number) => (x === Infinity ? '+inf' : x === -Infinity ? '-inf' : String(x));
  const found: { id: string; dueAt: number }[] = [];
  for (let offset = 0; found.length < wanted;) {
    const count = Math.max(wanted, 100);
    const flat = await client.zrangebyscore(key, bound(from), bound(max), 'WITHSCORES', 'LIMIT', offset, count);
    for (let i = 0; i < flat.length && found.length < wanted; i += 2) {
      const j = { id: flat[i]!, dueAt: Number(flat[i + 1]) };
      if (!after || compareDue(j, after) > 0) found.push(j);
    }
    if (flat.length < count * 2) break;
    offset += count;
  }
  return found;
}

/** A job's tags as the scripts take them: a JSON array, '' for none. */
function encodeTags(tags: readonly string[] | undefined): string {
  return tags && tags.length > 0 ? JSON.stringify(tags) : '';
}

/** A field of the tags hash (a JSON array); undefined when there is none or it is unreadable. */
function decodeTags(raw: string | null | undefined): string[] | undefined {
  if (typeof raw !== 'string') return undefined;
  try {
    return tagList(JSON.parse(raw));
  } catch {
    return undefined;
  }
}

/** The strings of a parsed tag array (a tags hash field, a dead letter's `tags`); undefined when none. */
function tagList(v: unknown): string[] | undefined {
  if (!Array.isArray(v)) return undefined;
  const tags = v.filter((t): t is string => typeof t === 'string');
  return tags.length > 0 ? tags : undefined;
}

/** A dead letter as the Redis store keeps it: JSON, its id being the hash field. */
function encodeDead(d: DeadLetter): string {
  const { id: _id, ...rest } = d;
  return JSON.stringify(rest);
}

/** Reads `encodeDead`'s form; a record that is not one reads as a corrupt dead letter holding the raw text. */
function decodeDead(id: string, raw: string, diedAt?: number): DeadLetter {
  try {
    const v = JSON.parse(raw) as Partial<DeadLetter>;
    const reason = DEAD_REASONS.includes(v.reason as DeadReason) ? (v.reason as DeadReason) : 'corrupt';
    const d: DeadLetter = {
      id,
      entry: typeof v.entry === 'string' ? v.entry : null,
      dueAt: typeof v.dueAt === 'number' ? v.dueAt : 0,
      reason,
      error: typeof v.error === 'string' ? v.error : '',
      attempts: typeof v.attempts === 'number' ? v.attempts : 0,
      diedAt: typeof v.diedAt === 'number' ? v.diedAt : (diedAt ?? 0),
    };
    const tags = tagList(v.tags);
    return { ...d, ...(typeof v.firstFailedAt === 'number' && { firstFailedAt: v.firstFailedAt }), ...(tags && { tags }) };
  } catch {
    return { id, entry: null, dueAt: 0, reason: 'corrupt', error: `unreadable dead letter record: ${raw.slice(0, 200)}`, attempts: 0, diedAt: diedAt ?? 0 };
  }
}

/** A record of the `corrupt` hash earlier versions wrote (`{entry, dueAt, reason, movedAt}`), as a dead letter. */
function legacyCorrupt(id: string, raw: string): DeadLetter {
  try {
    const v = JSON.parse(raw) as { entry?: unknown; dueAt?: unknown; reason?: unknown; movedAt?: unknown };
    return {
      id,
      entry: typeof v.entry === 'string' ? v.entry : null,
      dueAt: typeof v.dueAt === 'number' ? v.dueAt : 0,
      reason: 'corrupt',
      error: typeof v.reason === 'string' ? v.reason : 'moved aside as corrupt',
      attempts: 0,
      diedAt: typeof v.movedAt === 'number' ? v.movedAt : 0,
    };
  } catch {
    return { id, entry: null, dueAt: 0, reason: 'corrupt', error: `moved aside as corrupt: ${raw.slice(0, 200)}`, attempts: 0, diedAt: 0 };
  }
}
