/**
 * The Redis store, in the original package's layout (see README "Redis layout"):
 *
 *   <prefix><task id>                              SET  the entry JSON [[task name], {send_task kwargs}]
 *   <prefix>scheduled_task_id_by_time              ZSET task id -> due time (unix seconds)
 *   <prefix>celery_longterm_scheduler:in_flight    ZSET task id -> lease deadline (ours)
 *   <prefix>celery_longterm_scheduler:corrupt      HASH task id -> {entry, dueAt, reason, movedAt} (ours)
 *
 * The prefix is '' by default, which is exactly the Python package's layout. Every change is one
 * Lua script (the .lua files beside this one), so it is atomic.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { DuplicateJobError, redactUrl } from '../../errors.js';
import type { NewJob } from '../../job.js';
import { RedisConnections, wrapRedisError, type RedisConnectionOptions } from '../../redis-connection.js';
import type { ClaimOptions, ClaimedJob, ScheduleStore, StoreCounts } from '../../store.js';

export const INDEX_KEY = 'scheduled_task_id_by_time';
export const IN_FLIGHT_KEY = 'celery_longterm_scheduler:in_flight';
export const CORRUPT_KEY = 'celery_longterm_scheduler:corrupt';
/** Bumped whenever a script changes meaning; part of the registered command names. */
const SCRIPT_VERSION = 1;
/** Jobs per add script call: bounds how long one call blocks Redis. */
const ADD_CHUNK = 1000;

export interface RedisStoreOptions extends RedisConnectionOptions {
  /** prepended to every key; '' (the default) is the original package's layout */
  keyPrefix?: string;
}

const SCRIPTS = {
  add: { file: 'add-1.lua', keys: 1 },
  remove: { file: 'remove-1.lua', keys: 1 },
  claim: { file: 'claim-2.lua', keys: 2 },
  ack: { file: 'ack-1.lua', keys: 1 },
  release: { file: 'release-2.lua', keys: 2 },
  quarantine: { file: 'quarantine-2.lua', keys: 2 },
} as const;
type ScriptName = keyof typeof SCRIPTS;

const here = dirname(fileURLToPath(import.meta.url));
let scriptSources: Record<ScriptName, string> | undefined;
function loadScripts(): Record<ScriptName, string> {
  scriptSources ??= Object.fromEntries(
    Object.entries(SCRIPTS).map(([name, s]) => [name, readFileSync(join(here, s.file), 'utf8')]),
  ) as Record<ScriptName, string>;
  return scriptSources;
}

function commandName(name: ScriptName): string {
  return `cls${SCRIPT_VERSION}_${name}`;
}

/**
 * A command registered with ioredis `defineCommand` (EVALSHA with a NOSCRIPT fallback).
 * ioredis adds these as dynamic methods; this is the one place that reaches them untyped.
 */
type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;
function script(client: Redis, name: ScriptName): ScriptCall {
  const fn = (client as unknown as Record<string, ScriptCall>)[commandName(name)];
  if (!fn) throw new Error(`script ${name} is not registered`);
  return fn.bind(client);
}

export class RedisStore implements ScheduleStore {
  readonly description: string;
  readonly prefix: string;
  readonly keys: { index: string; inFlight: string; corrupt: string };
  readonly #connections: RedisConnections;
  #client: Promise<Redis> | undefined;
  #closed = false;

  constructor(url: string, options: RedisStoreOptions = {}) {
    this.#connections = new RedisConnections(url, 'long-term scheduler store (Redis)', options);
    this.description = redactUrl(url);
    this.prefix = options.keyPrefix ?? '';
    this.keys = {
      index: `${this.prefix}${INDEX_KEY}`,
      inFlight: `${this.prefix}${IN_FLIGHT_KEY}`,
      corrupt: `${this.prefix}${CORRUPT_KEY}`,
    };
  }

  /** The connected client (connects on first use, once). */
  client(): Promise<Redis> {
    if (this.#closed) return Promise.reject(new Error('the store is closed'));
    this.#client ??= this.#connect();
    return this.#client;
  }

  async #connect(): Promise<Redis> {
    try {
      const client = await this.#connections.open();
      const sources = loadScripts();
      for (const [name, s] of Object.entries(SCRIPTS) as [ScriptName, (typeof SCRIPTS)[ScriptName]][]) {
        client.defineCommand(commandName(name), { numberOfKeys: s.keys, lua: sources[name] });
      }
      return client;
    } catch (err) {
      this.#client = undefined; // let the next call try again
      throw err;
    }
  }

  async #run<T>(fn: (client: Redis) => Promise<T>): Promise<T> {
    const client = await this.client();
    try {
      return await fn(client);
    } catch (err) {
      throw wrapRedisError(err, 'long-term scheduler store (Redis)', this.#connections.url);
    }
  }

  async add(jobs: readonly NewJob[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.#run(async (client) => {
      const add = script(client, 'add');
      for (let i = 0; i < jobs.length; i += ADD_CHUNK) {
        const args: (string | number)[] = [this.keys.index, this.prefix];
        for (const job of jobs.slice(i, i + ADD_CHUNK)) args.push(job.id, job.dueAt, job.entry);
        const taken = await add(...args);
        if (taken !== 0) throw new DuplicateJobError(String(taken));
      }
    });
  }

  async remove(id: string): Promise<boolean> {
    return this.#run(async (client) => (await script(client, 'remove')(this.keys.index, this.prefix, id)) === 1);
  }

  async claimDue(o: ClaimOptions): Promise<ClaimedJob[]> {
    const deadline = o.now + o.leaseMs / 1000;
    const flat = await this.#run(
      async (client) =>
        (await script(client, 'claim')(this.keys.index, this.keys.inFlight, this.prefix, o.until, o.now, o.limit, deadline)) as (string | null)[],
    );
    const out: ClaimedJob[] = [];
    for (let i = 0; i < flat.length; i += 3) {
      out.push({ id: String(flat[i]), dueAt: Number(flat[i + 1]), entry: flat[i + 2] ?? null });
    }
    return out;
  }

  async acknowledge(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#run((client) => script(client, 'ack')(this.keys.inFlight, this.prefix, ...ids));
  }

  async release(jobs: readonly Pick<ClaimedJob, 'id' | 'dueAt'>[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.#run((client) => script(client, 'release')(this.keys.index, this.keys.inFlight, ...jobs.flatMap((j) => [j.id, j.dueAt])));
  }

  async quarantine(job: ClaimedJob, reason: string): Promise<void> {
    const record = JSON.stringify({ entry: job.entry, dueAt: job.dueAt, reason, movedAt: Date.now() / 1000 });
    await this.#run((client) => script(client, 'quarantine')(this.keys.inFlight, this.keys.corrupt, this.prefix, job.id, record));
  }

  async get(id: string): Promise<{ dueAt: number; entry: string; state: 'scheduled' | 'in_flight' } | undefined> {
    return this.#run(async (client) => {
      const [[, entry], [, due], [, lease]] = (await client
        .multi()
        .get(`${this.prefix}${id}`)
        .zscore(this.keys.index, id)
        .zscore(this.keys.inFlight, id)
        .exec()) as [[unknown, unknown], [unknown, string | null], [unknown, string | null]];
      if (typeof entry !== 'string') return undefined;
      if (due !== null) return { dueAt: Number(due), entry, state: 'scheduled' as const };
      if (lease !== null) return { dueAt: Number(lease), entry, state: 'in_flight' as const };
      return undefined;
    });
  }

  async count(): Promise<StoreCounts> {
    return this.#run(async (client) => {
      const [[, scheduled], [, inFlight]] = (await client.multi().zcard(this.keys.index).zcard(this.keys.inFlight).exec()) as [[unknown, number], [unknown, number]];
      return { scheduled: Number(scheduled), inFlight: Number(inFlight) };
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client = undefined;
    await this.#connections.closeAll();
  }
}
