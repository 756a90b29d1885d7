/**
 * Redis Cluster, for the cluster layout of the store (issue 15): the `redis+cluster://` URL, the
 * ioredis `Cluster` it opens, and where each shard of a schedule lives.
 *
 * A shard is a set of keys under one hash tag, so every key of it is in one slot and every script
 * of the store stays one node's, atomic. Shard n of N takes the first tag `clts-<n>-<k>` (k = 0,
 * 1, …) whose slot falls in the n-th of N equal ranges of the 16,384 slots: `redis-cli --cluster
 * create` gives each master equal runs of slots, so the shards spread evenly over the masters,
 * and resharding moves a whole shard with its slot. The tags are a function of n and N alone.
 */
import { Cluster, type ClusterNode, type ClusterOptions } from 'ioredis';
import { ConnectionError, ValidationError, malformedEscapeProblem, redactUrl } from '../util/errors.js';
import { tlsFromCeleryQuery } from '../util/tls.js';
import { REDIS_DEFAULTS } from './connection.js';

export const CLUSTER_SCHEMES = ['redis+cluster', 'rediss+cluster'] as const;
/** The number of shards a new cluster store is made with, unless its URL says `?shards=`. */
export const DEFAULT_SHARDS = 16;
/** The most shards a store may have: each is one slot. */
export const MAX_SHARDS = 1024;
export const SLOTS = 16_384;

const FORMS = 'use redis+cluster://[user:password@]host:port,host:port[?shards=N] (rediss+cluster:// for TLS)';

/** True for `redis+cluster` and `rediss+cluster` (no colon), any case. */
export function isClusterScheme(scheme: string): boolean {
  return (CLUSTER_SCHEMES as readonly string[]).includes(scheme.toLowerCase());
}

export interface ClusterLocation {
  /** the seed nodes (ioredis finds the rest) */
  nodes: ClusterNode[];
  username?: string;
  password?: string;
  tls?: NonNullable<ClusterOptions['redisOptions']>['tls'];
  /** `?shards=N`: the shard count asked for, if given */
  shards?: number;
}

/**
 * Reads `redis+cluster://[user:password@]host:port,host:port,…[/][?shards=N]` (`rediss+cluster://`
 * for TLS, with the TLS query options of rediss://). The hosts are seeds: one live master is
 * enough for ioredis to find the others. A `ValidationError` (one line each) for anything else.
 */
export function parseClusterUrl(url: string, what: string): ClusterLocation {
  const escape = malformedEscapeProblem(url, what);
  if (escape) throw new ValidationError([escape]);
  const m = /^([a-z+]+):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(url);
  const shown = JSON.stringify(redactUrl(url));
  if (!m || !isClusterScheme(m[1]!)) throw new ValidationError([`${what} URL ${shown} is not a Redis Cluster URL; ${FORMS}`]);
  const [, scheme, auth, hostList, path, query] = m;
  const problems: string[] = [];
  const nodes: ClusterNode[] = [];
  for (const part of (hostList ?? '').split(',')) {
    const hm = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(part.trim());
    const port = hm?.[2] === undefined ? 6379 : Number(hm[2]);
    if (!hm || port < 1 || port > 65_535) {
      problems.push(`${what} URL ${shown} has the seed ${JSON.stringify(part)}, which is not host:port; ${FORMS}`);
      continue;
    }
    nodes.push({ host: hm[1]!.replace(/^\[|\]$/g, ''), port });
  }
  if (path !== undefined && path !== '/' && path !== '') {
    problems.push(`${what} URL ${shown} names a database (${path}); a Redis Cluster has only database 0: remove it`);
  }
  const loc: ClusterLocation = { nodes };
  if (auth) {
    const colon = auth.indexOf(':');
    const user = decodeURIComponent(colon < 0 ? auth : auth.slice(0, colon));
    const password = colon < 0 ? '' : decodeURIComponent(auth.slice(colon + 1));
    if (user) loc.username = user;
    if (password) loc.password = password;
  }
  const params = new URLSearchParams(query ?? '');
  const tlsParams = new URLSearchParams();
  for (const [key, value] of params) {
    if (key === 'shards') {
      const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
      if (!(n >= 1 && n <= MAX_SHARDS))
        problems.push(`${what} URL option shards=${value} is not a whole number from 1 to ${MAX_SHARDS}; e.g. shards=${DEFAULT_SHARDS}`);
      else loc.shards = n;
    } else if (scheme!.toLowerCase() === 'rediss+cluster' && key.startsWith('ssl_')) tlsParams.append(key, value);
    else
      problems.push(`${what} URL option ${JSON.stringify(key)} is not known; a Redis Cluster URL takes shards=N (and the ssl_ options with rediss+cluster://)`);
  }
  if (scheme!.toLowerCase() === 'rediss+cluster') {
    const tlsUrl = new URL(`rediss://host/?${tlsParams.toString()}`);
    loc.tls = tlsFromCeleryQuery(tlsUrl, what, problems);
  }
  if (problems.length) throw new ValidationError(problems);
  return loc;
}

export interface ClusterConnectOptions {
  /** seconds a command may wait for a reply; default 120 */
  socketTimeout?: number;
  /** seconds to wait for a connection; default 10 */
  socketConnectTimeout?: number;
}

/** An ioredis `Cluster` for the location, not connected yet (`lazyConnect`); reads and writes go to masters. */
export function openCluster(loc: ClusterLocation, o: ClusterConnectOptions = {}, extra: ClusterOptions = {}): Cluster {
  const connectMs = (o.socketConnectTimeout ?? REDIS_DEFAULTS.socketConnectTimeout) * 1000;
  const commandMs = (o.socketTimeout ?? REDIS_DEFAULTS.socketTimeout) * 1000;
  return new Cluster(loc.nodes, {
    lazyConnect: true,
    scaleReads: 'master',
    // MOVED and ASK are followed by ioredis (a reshard, a failover); this many in a row fail the command
    maxRedirections: 16,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: connectMs,
    clusterRetryStrategy: (times) => (times > 20 ? null : Math.min(100 * times, 2000)),
    redisOptions: {
      ...(loc.username !== undefined && { username: loc.username }),
      ...(loc.password !== undefined && { password: loc.password }),
      ...(loc.tls !== undefined && { tls: loc.tls }),
      connectTimeout: connectMs,
      commandTimeout: commandMs,
      maxRetriesPerRequest: 2,
      disableClientInfo: true,
    },
    ...extra,
  });
}

/** CRC16/XMODEM of each byte value alone, for the table-driven step below. */
const CRC16_TABLE = Uint16Array.from({ length: 256 }, (_, byte) => {
  let crc = byte << 8;
  for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  return crc;
});

/** CRC16/XMODEM of the bytes (polynomial 0x1021, no reflection, start 0): Redis Cluster's key hash. */
export function crc16(bytes: Uint8Array, start = 0): number {
  let crc = start;
  for (const b of bytes) crc = crcStep(crc, b);
  return crc;
}

/** The CRC16/XMODEM `crc` of some bytes, followed by one more byte. */
function crcStep(crc: number, byte: number): number {
  return ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!;
}

const utf8 = new TextEncoder();

/** The slot of a key, as Redis Cluster computes it: of the first non-empty `{…}` if there is one, else of the whole key. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(utf8.encode(key.slice(open + 1, close))) % SLOTS;
  }
  return crc16(utf8.encode(key)) % SLOTS;
}

/** The hash tag of shard `n` of `count` (see the header): its slot is in the n-th of `count` equal slot ranges. */
export function shardTag(n: number, count: number): string {
  const lo = Math.floor((n * SLOTS) / count);
  const hi = Math.floor(((n + 1) * SLOTS) / count);
  // keySlot(`{${tag}}`) of each candidate, the CRC of its fixed start computed once (the CRC of
  // a string goes on from the CRC of its start)
  const head = `clts-${n}-`;
  const headCrc = crc16(utf8.encode(head));
  for (let k = 0; ; k++) {
    const digits = String(k);
    let crc = headCrc;
    // ASCII digits are their own UTF-8 bytes
    for (let i = 0; i < digits.length; i++) crc = crcStep(crc, digits.charCodeAt(i));
    const slot = crc % SLOTS;
    if (slot >= lo && slot < hi) return `${head}${k}`;
  }
}

/** FNV-1a (32 bits) of the id's UTF-8 bytes, modulo `count`: the shard a job id belongs to, the same in every process. */
export function shardOf(id: string, count: number): number {
  let h = 0x811c9dc5;
  for (const b of utf8.encode(id)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h % count;
}

/**
 * The connections of one cluster store: one `Cluster` for commands, shared by every shard, and
 * one more for subscriptions, made on the first `subscribe`. The first connect fails fast (a
 * `ConnectionError` naming the redacted URL); once connected, ioredis reconnects and follows the
 * cluster's changes (failovers, resharding) on its own.
 */
export class ClusterConnections {
  readonly url: string;
  readonly #what: string;
  readonly #location: ClusterLocation;
  readonly #options: ClusterConnectOptions;
  #client: Promise<Cluster> | undefined;
  #subscriber: Promise<Cluster> | undefined;
  readonly #listeners = new Map<string, Set<(message: string) => void>>();
  readonly #made: Cluster[] = [];

  constructor(url: string, what: string, options: ClusterConnectOptions = {}) {
    this.url = url;
    this.#what = what;
    this.#location = parseClusterUrl(url, what);
    this.#options = options;
  }

  get location(): ClusterLocation {
    return this.#location;
  }

  /** The command client, connected (once; a failed first connect is tried again by the next call). */
  client(): Promise<Cluster> {
    this.#client ??= this.#connect({}).catch((err: unknown) => {
      this.#client = undefined;
      throw err;
    });
    return this.#client;
  }

  async #connect(extra: ClusterOptions): Promise<Cluster> {
    let connected = false;
    const cluster = openCluster(this.#location, this.#options, {
      clusterRetryStrategy: (times) => (connected ? Math.min(100 * times, 2000) : null),
      ...extra,
    });
    this.#made.push(cluster);
    // errors reach the callers through their commands; an unobserved 'error' event would crash the process
    cluster.on('error', () => {});
    try {
      await cluster.connect();
      connected = true;
      return cluster;
    } catch (err) {
      cluster.disconnect();
      throw new ConnectionError(this.#what, this.url, err, {
        action: 'connect',
        hint: 'check that the seed nodes are cluster nodes that are up, and the password',
      });
    }
  }

  /** Calls `onMessage` with each message published on `channel` (PUBLISH reaches every node of a cluster). */
  async subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
    this.#subscriber ??= this.#connect({}).then((sub) => {
      sub.on('message', (ch: string, message: string) => {
        for (const l of [...(this.#listeners.get(ch) ?? [])]) l(message);
      });
      return sub;
    });
    const sub = await this.#subscriber;
    let set = this.#listeners.get(channel);
    if (!set) {
      this.#listeners.set(channel, (set = new Set()));
      await sub.subscribe(channel);
    }
    set.add(onMessage);
    return async () => {
      set.delete(onMessage);
      if (set.size === 0 && this.#listeners.get(channel) === set) {
        this.#listeners.delete(channel);
        await sub.unsubscribe(channel).catch(() => {});
      }
    };
  }

  async closeAll(): Promise<void> {
    this.#client = undefined;
    this.#subscriber = undefined;
    this.#listeners.clear();
    const made = this.#made.splice(0);
    await Promise.all(made.map(async (c) => c.quit().catch(() => c.disconnect())));
  }
}
