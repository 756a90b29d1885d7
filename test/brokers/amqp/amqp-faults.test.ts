/**
 * AmqpBroker under faults, against the real RabbitMQ (TEST_AMQP_URL, default
 * amqp://guest:guest@127.0.0.1:5672//):
 *
 * - the server kills the broker's connection between two publishes: the next publish reconnects,
 *   and every message arrives exactly once;
 * - a Dispatcher over a Redis store publishes 2,000 due jobs to a queue that does not exist yet:
 *   nothing is lost (all stay scheduled), and once the queue exists they all go, each once.
 *
 * Finding "our" connection without touching the broker's internals: this test file runs in its own
 * process (vitest pool 'forks'), so the TCP sockets of this process to the AMQP port are ours
 * (/proc/self/fd + /proc/net/tcp). The one that appears when the broker first publishes is the
 * broker's; RabbitMQ knows it by the same peer port (`rabbitmqctl list_connections`). Only that
 * one connection is ever closed; if it cannot be singled out, the test fails without closing any.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { AmqpBroker } from '../../../src/brokers/amqp/amqp-broker.js';
import { buildTaskMessage, type TaskMessage } from '../../../src/celery/message.js';
import { Dispatcher } from '../../../src/dispatch/dispatcher.js';
import { encodeEntry } from '../../../src/job/entry.js';
import { resolveTaskCall } from '../../../src/job/options.js';
import { RedisStore } from '../../../src/stores/redis/redis-store.js';
import { rabbitmq, requireService, sharedRedis, uniquePrefix, type RedisService } from '../../helpers/services.js';

const run = promisify(execFile);
const url = await rabbitmq();
const redis = await sharedRedis();
const skipAmqp = requireService(url, 'RabbitMQ');
const skipRedis = requireService(redis, 'Redis');

const amqpPort = url ? Number(new URL(url).port || 5672) : 5672;
const amqpHost = url ? new URL(url).hostname : '';
/** rabbitmqctl manages the local node only: the kill test needs it and a loopback broker. */
const canKill = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(amqpHost) && spawnSync('sh', ['-c', 'command -v rabbitmqctl']).status === 0;
if (!skipAmqp && !canKill) console.warn('[skip] rabbitmqctl or a local RabbitMQ is missing: the connection-kill test is skipped');

/** Local ports of this process's established TCP connections to the AMQP port. */
function ourAmqpPorts(): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // the fd closed while we listed
    }
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const [local, remote, state, inode] = [f[1], f[2], f[3], f[9]];
      if (!local || !remote || !inode || state !== '01' || !inodes.has(inode)) continue; // 01 = ESTABLISHED
      if (parseInt(remote.split(':')[1] ?? '', 16) !== amqpPort) continue;
      ports.add(parseInt(local.split(':')[1] ?? '', 16));
    }
  }
  return ports;
}

/** RabbitMQ's connection pids whose peer (client) port is `port`. */
async function rabbitConnectionsFrom(port: number): Promise<string[]> {
  const { stdout } = await run('rabbitmqctl', ['list_connections', '-q', '--no-table-headers', 'pid', 'peer_port']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split('\t'))
    .filter(([pid, peer]) => pid?.startsWith('<') && Number(peer) === port)
    .map(([pid]) => pid as string);
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(skipAmqp)('AmqpBroker under faults', () => {
  const tag = randomBytes(4).toString('hex');
  const killQ = `cls-test-faults-kill-${tag}`;
  const lateQ = `cls-test-faults-late-${tag}`;
  const prefix = uniquePrefix('amqp-faults');
  let conn: ChannelModel;
  let ch: Channel;
  let raw: Redis | undefined;
  const opened: { close(): Promise<void> }[] = [];

  /** Reads every message of `queue` (noAck) until `n` arrived and the queue stays empty. */
  const drainIds = async (queue: string, n: number): Promise<string[]> => {
    const ids: string[] = [];
    const { consumerTag } = await ch.consume(
      queue,
      (m: ConsumeMessage | null) => {
        if (m) ids.push(String(m.properties.correlationId));
      },
      { noAck: true },
    );
    await until(`${n} messages from ${queue}`, () => ids.length >= n, 20_000);
    await new Promise((r) => setTimeout(r, 200)); // anything extra (a duplicate) would arrive now
    await ch.cancel(consumerTag);
    return ids;
  };

  beforeAll(async () => {
    conn = await amqp.connect(url as string);
    ch = await conn.createChannel();
    await ch.assertQueue(killQ, { durable: true });
    if (redis) raw = new Redis((redis as RedisService).urlFor(0));
  });

  afterAll(async () => {
    await Promise.all(opened.map((o) => o.close()));
    if (ch) for (const q of [killQ, lateQ]) await ch.deleteQueue(q).catch(() => undefined);
    await conn?.close();
    if (raw) {
      const keys = await raw.keys(`${prefix}*`);
      if (keys.length) await raw.del(...keys);
      raw.disconnect();
    }
  });

  it.skipIf(!canKill)('reconnects on the next publish after the server closed its connection, losing and repeating nothing', async () => {
    const broker = new AmqpBroker(url as string);
    opened.push(broker);
    const now = new Date();
    const msg = (i: number): TaskMessage => {
      const { job } = resolveTaskCall('proj.kill', [i], {}, { taskId: `id-${tag}-kill-${i}`, queue: killQ }, now);
      return buildTaskMessage(job, { now, defaultQueue: killQ });
    };
    const before = ourAmqpPorts();
    const first = Array.from({ length: 20 }, (_, i) => msg(i));
    expect((await broker.publish(first)).every((o) => o.ok)).toBe(true);

    const brokerPorts = [...ourAmqpPorts()].filter((p) => !before.has(p));
    expect(brokerPorts, 'exactly one new connection of this process: the broker').toHaveLength(1);
    const port = brokerPorts[0] as number;
    const pids = await rabbitConnectionsFrom(port);
    expect(pids, 'RabbitMQ sees exactly one connection from that port').toHaveLength(1);
    await run('rabbitmqctl', ['close_connection', pids[0] as string, 'test']);
    // our side processed the close once its socket is gone
    await until('the killed socket to close', () => !ourAmqpPorts().has(port));

    const second = Array.from({ length: 20 }, (_, i) => msg(100 + i));
    expect(await broker.publish(second)).toEqual(second.map(() => ({ ok: true })));
    const reconnected = [...ourAmqpPorts()].filter((p) => !before.has(p));
    expect(reconnected).toHaveLength(1);
    expect(reconnected[0]).not.toBe(port);

    expect((await ch.checkQueue(killQ)).messageCount).toBe(40);
    const ids = await drainIds(killQ, 40);
    expect(ids.sort()).toEqual([...first, ...second].map((m) => m.properties.correlation_id).sort());
  });

  it.skipIf(skipRedis)('keeps 2,000 due jobs scheduled while their queue does not exist, then sends each exactly once', async () => {
    const n = 2000;
    const nowS = Date.now() / 1000;
    const jobs = Array.from({ length: n }, (_, i) => {
      const { job } = resolveTaskCall('proj.late', [i], {}, { queue: lateQ });
      return { id: job.id, dueAt: nowS - 60 - (i % 100), entry: encodeEntry(job) };
    });
    const store = new RedisStore((redis as RedisService).urlFor(0), { keyPrefix: prefix });
    const broker = new AmqpBroker(url as string);
    opened.push(store, broker);
    await store.add(jobs);
    let skew = 0; // seconds the dispatcher's clock runs ahead
    const dispatcher = new Dispatcher({ store, broker, batchSize: 500, retryDelayMs: 10_000, clock: () => new Date(Date.now() + skew * 1000) });

    const refused = await dispatcher.dispatchDue();
    expect(refused).toMatchObject({ sent: 0, failed: n, dead: 0 });
    expect(refused.error).toBeUndefined(); // unroutable is a refusal, not an outage
    expect(await store.count()).toEqual({ scheduled: n, inFlight: 0, dead: 0 });
    // each waits for its next attempt, with the refusal recorded
    expect(await dispatcher.dispatchDue()).toMatchObject({ sent: 0, failed: 0 });
    const first = await store.get(jobs[0]!.id);
    expect(first!.dueAt).toBeGreaterThan(nowS);

    await ch.assertQueue(lateQ, { durable: true });
    skew = 11; // their next attempt has come
    const sent = await dispatcher.dispatchDue();
    expect(sent).toMatchObject({ sent: n, failed: 0, corrupt: 0 });
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    expect((await ch.checkQueue(lateQ)).messageCount).toBe(n);
    const ids = await drainIds(lateQ, n);
    expect(ids).toHaveLength(n);
    expect(new Set(ids).size).toBe(n);
    expect(ids.sort()).toEqual(jobs.map((j) => j.id).sort());
    expect((await ch.checkQueue(lateQ)).messageCount).toBe(0);
  });
});
