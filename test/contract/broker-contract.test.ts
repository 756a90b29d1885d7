/**
 * The broker contract: ONE suite, run unchanged against the Redis broker and the RabbitMQ broker.
 *
 * Each broker gets a "wire adapter" (defined below) that creates the broker, prepares a
 * destination queue (and, when asked, a named exchange bound to it), and reads one published
 * message back RAW from the queue, normalized to a common shape (`WireMessage`). The cases then
 * assert the same thing for both: what a Celery worker would receive for every task option
 * (docs/protocol.md §1.2, §1.3, §2, docs/protocol.md §3).
 *
 * Where the wire genuinely differs, the adapter normalizes and says so in a comment:
 * - Redis envelopes carry `delivery_tag`, `body_encoding` and `delivery_info` in their
 *   properties (kombu transport details, docs/protocol.md §2.1): checked by the adapter, then dropped.
 * - RabbitMQ omits `reply_to` when it is empty (a Python producer does the same, docs/protocol.md §3.3): read as ''.
 * - Priority: Redis has no priority property on the wire that a worker uses; kombu routes by
 *   list (docs/protocol.md §2.3), so the Redis adapter additionally asserts which list the message landed on.
 * - "A queue that does not exist" is unroutable only on RabbitMQ (kombu's Redis lists are created
 *   on demand), so the common unroutable cases use named exchanges; the missing-queue case is in
 *   test/brokers/amqp/amqp-broker.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import type { Broker } from '../../src/brokers/broker.js';
import { AmqpBroker } from '../../src/brokers/amqp/amqp-broker.js';
import { RedisBroker } from '../../src/brokers/redis/redis-broker.js';
import { DEFAULT_LAYOUT, bindingKey, bindingMember, parseRedisEnvelope, queueListKey } from '../../src/celery/kombu-redis.js';
import { buildTaskMessage, type TaskMessage } from '../../src/celery/message.js';
import { formatCeleryTime } from '../../src/celery/time.js';
import { UnroutableError } from '../../src/util/errors.js';
import { resolveTaskCall, signature, type TaskOptions } from '../../src/job/options.js';
import { rabbitmq, requireService, sharedRedis, uniquePrefix } from '../helpers/services.js';

const redis = await sharedRedis();
const amqpUrl = await rabbitmq();
const skipRedis = requireService(redis, 'Redis');
const skipAmqp = requireService(amqpUrl, 'RabbitMQ');

const NOW = new Date();
const CELERY_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What a worker receives, the same for both brokers. */
interface WireMessage {
  headers: Record<string, unknown>;
  properties: {
    correlation_id: string;
    reply_to: string;
    delivery_mode: number;
    priority: number;
    expiration?: string;
    content_type: string;
    content_encoding: string;
  };
  body: [unknown[], Record<string, unknown>, Record<string, unknown>];
  exchange: string;
  routingKey: string;
}

/** A read-back message with the adapter's raw view kept for adapter-specific checks. */
interface Received {
  wire: WireMessage;
  /** Redis: the list it was popped from; RabbitMQ: undefined */
  list?: string;
}

/** A queue prepared for one case, optionally behind a named exchange. */
interface Destination {
  queue: string;
  /** set when the case publishes through a named exchange */
  exchange?: string;
}

interface WireAdapter {
  name: string;
  skip: boolean;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  broker(): Broker;
  /** A fresh queue; with `exchange`, a named direct exchange bound to it by `routingKey` unless `bind` is false. */
  prepare(opts?: { exchange?: { routingKey: string; bind: boolean } }): Promise<Destination>;
  /** Reads (and removes) one message from the queue, failing when none arrives. */
  readOne(dest: Destination): Promise<Received>;
  /** Messages waiting in the queue (all priorities). */
  count(dest: Destination): Promise<number>;
  /** The adapter-specific part of "priority p was honoured". */
  checkPriority(got: Received, dest: Destination, priority: number): void;
}

/** Redis: kombu's layout on the shared server, every key under a unique prefix. */
function redisAdapter(): WireAdapter {
  const prefix = uniquePrefix('contract');
  let raw: Redis;
  let broker: RedisBroker;
  let n = 0;
  const lists = (queue: string): string[] => DEFAULT_LAYOUT.prioritySteps.map((p) => queueListKey(queue, p));
  return {
    name: 'Redis',
    skip: skipRedis,
    async setup() {
      const url = redis?.urlFor(0) ?? '';
      raw = new Redis(url);
      broker = new RedisBroker(url);
    },
    async teardown() {
      await broker?.close();
      if (!raw) return;
      const keys = [...(await raw.keys(`${prefix}*`)), ...(await raw.keys(`_kombu.binding.${prefix}*`))];
      if (keys.length) await raw.del(...keys);
      raw.disconnect();
    },
    broker: () => broker,
    async prepare(opts) {
      // lists are created by the first LPUSH; only a named exchange needs its binding set (docs/protocol.md §2.4)
      const queue = `${prefix}q${++n}`;
      if (!opts?.exchange) return { queue };
      const exchange = `${prefix}ex${n}`;
      if (opts.exchange.bind) await raw.sadd(bindingKey(exchange), bindingMember(opts.exchange.routingKey, '', queue));
      return { queue, exchange };
    },
    async readOne(dest) {
      // kombu's worker BRPOPs the lists in priority order: the list with step 0 first (docs/protocol.md §2.3)
      for (const list of lists(dest.queue)) {
        const popped = await raw.rpop(list);
        if (popped === null) continue;
        const env = parseRedisEnvelope(popped);
        const { delivery_info, body_encoding, delivery_tag, ...props } = env.properties;
        // transport-only fields (docs/protocol.md §2.1): checked here, not part of the common shape
        expect(body_encoding).toBe('base64');
        expect(delivery_tag).toMatch(UUID);
        const wire: WireMessage = {
          headers: env.headers,
          properties: {
            ...(props as Omit<WireMessage['properties'], 'content_type' | 'content_encoding'>),
            content_type: env.contentType,
            content_encoding: env.contentEncoding,
          },
          body: env.body as WireMessage['body'],
          exchange: delivery_info.exchange,
          routingKey: delivery_info.routing_key,
        };
        return { wire, list };
      }
      throw new Error(`nothing in ${dest.queue}`);
    },
    async count(dest) {
      let total = 0;
      for (const list of lists(dest.queue)) total += await raw.llen(list);
      return total;
    },
    checkPriority(got, dest, priority) {
      // kombu priority steps [0, 3, 6, 9]: the largest step <= priority (docs/protocol.md §2.3)
      expect(got.list).toBe(queueListKey(dest.queue, priority));
    },
  };
}

/** RabbitMQ: unique durable queues with x-max-priority 10, read back with basic.get. */
function amqpAdapter(): WireAdapter {
  const tag = randomBytes(4).toString('hex');
  let conn: ChannelModel;
  let ch: Channel;
  let broker: AmqpBroker;
  let n = 0;
  const queues: string[] = [];
  const exchanges: string[] = [];
  return {
    name: 'RabbitMQ',
    skip: skipAmqp,
    async setup() {
      conn = await amqp.connect(amqpUrl ?? '');
      ch = await conn.createChannel();
      broker = new AmqpBroker(amqpUrl ?? '');
    },
    async teardown() {
      await broker?.close();
      if (!ch) return;
      for (const q of queues) await ch.deleteQueue(q).catch(() => undefined);
      for (const e of exchanges) await ch.deleteExchange(e).catch(() => undefined);
      await conn.close();
    },
    broker: () => broker,
    async prepare(opts) {
      const queue = `cls-test-contract-${tag}-q${++n}`;
      await ch.assertQueue(queue, { durable: true, arguments: { 'x-max-priority': 10 } });
      queues.push(queue);
      if (!opts?.exchange) return { queue };
      const exchange = `cls-test-contract-${tag}-ex${n}`;
      await ch.assertExchange(exchange, 'direct', { durable: true });
      exchanges.push(exchange);
      if (opts.exchange.bind) await ch.bindQueue(queue, exchange, opts.exchange.routingKey);
      return { queue, exchange };
    },
    async readOne(dest) {
      let got: GetMessage | false = false;
      for (let i = 0; i < 50 && !got; i++) {
        got = await ch.get(dest.queue, { noAck: true });
        if (!got) await new Promise((r) => setTimeout(r, 20));
      }
      if (!got) throw new Error(`nothing in ${dest.queue}`);
      const p = got.properties;
      const wire: WireMessage = {
        headers: p.headers as Record<string, unknown>,
        properties: {
          correlation_id: p.correlationId as string,
          // absent on the wire when empty, as a Python producer writes it (docs/protocol.md §3.3)
          reply_to: (p.replyTo as string | undefined) ?? '',
          delivery_mode: p.deliveryMode as number,
          priority: p.priority as number,
          ...(p.expiration !== undefined && { expiration: p.expiration as string }),
          content_type: p.contentType as string,
          content_encoding: p.contentEncoding as string,
        },
        body: JSON.parse(got.content.toString('utf8')) as WireMessage['body'],
        exchange: got.fields.exchange,
        routingKey: got.fields.routingKey,
      };
      return { wire };
    },
    async count(dest) {
      return (await ch.checkQueue(dest.queue)).messageCount;
    },
    checkPriority(got, _dest, priority) {
      // the priority property is what RabbitMQ orders by (x-max-priority queue, docs/protocol.md §3.3)
      expect(got.wire.properties.priority).toBe(priority);
    },
  };
}

const adapters: WireAdapter[] = [redisAdapter(), amqpAdapter()];

/** A message as the public API builds it (resolveTaskCall + buildTaskMessage). */
function message(dest: Destination, options: TaskOptions = {}, args: unknown[] = [], kwargs: Record<string, unknown> = {}): TaskMessage {
  const taskId = `contract-${randomBytes(6).toString('hex')}`;
  const { job, dueAt } = resolveTaskCall('proj.tasks.add', args, kwargs, { taskId, queue: dest.queue, ...options }, NOW);
  return buildTaskMessage(job, { now: NOW, defaultQueue: 'celery', ...(dueAt !== undefined && { dueAt }) });
}

const NO_EMBED = { callbacks: null, errbacks: null, chain: null, chord: null };

describe.each(adapters)('the $name broker honours the contract', (adapter) => {
  describe.skipIf(adapter.skip)('publishing one message per task option', () => {
    beforeAll(() => adapter.setup());
    afterAll(() => adapter.teardown());

    /** Publishes one message, reads it back, and checks that exactly one arrived. */
    const roundTrip = async (dest: Destination, msg: TaskMessage): Promise<Received> => {
      expect(await adapter.broker().publish([msg])).toEqual([{ ok: true }]);
      const got = await adapter.readOne(dest);
      expect(await adapter.count(dest)).toBe(0);
      return got;
    };

    it('a minimal call arrives with the full protocol-2 header set, properties and body', async () => {
      const dest = await adapter.prepare();
      const msg = message(dest);
      const { wire } = await roundTrip(dest, msg);
      const id = msg.properties.correlation_id;
      expect(wire.headers).toEqual({
        lang: 'py',
        task: 'proj.tasks.add',
        id,
        shadow: null,
        eta: null,
        expires: null,
        group: null,
        group_index: null,
        retries: 0,
        timelimit: [null, null],
        root_id: id,
        parent_id: null,
        argsrepr: '()',
        kwargsrepr: '{}',
        origin: msg.headers.origin,
        ignore_result: false,
        replaced_task_nesting: 0,
        stamped_headers: null,
        stamps: {},
      });
      expect(wire.properties).toEqual({
        correlation_id: id,
        reply_to: '',
        delivery_mode: 2,
        priority: 0,
        content_type: 'application/json',
        content_encoding: 'utf-8',
      });
      expect(wire.body).toEqual([[], {}, NO_EMBED]);
      expect(wire.exchange).toBe('');
      expect(wire.routingKey).toBe(dest.queue);
    });

    it('args and kwargs keep unicode and nesting, and their reprs are in the headers', async () => {
      const dest = await adapter.prepare();
      const args = ['héllo wörld ✓ 日本語 🎉', { nested: { list: [1, [2, [3]], null], ключ: true } }, -7, 1.5];
      const kwargs = { naïve: 'café', deep: { a: [{ b: { c: '𝄞' } }] }, none: null };
      const { wire } = await roundTrip(dest, message(dest, {}, args, kwargs));
      expect(wire.body).toEqual([args, kwargs, NO_EMBED]);
      expect(wire.headers.argsrepr).toContain('héllo wörld ✓ 日本語 🎉');
      expect(wire.headers.kwargsrepr).toContain("'naïve': 'café'");
    });

    it('a queue option routes through the default exchange with the queue name as routing key', async () => {
      const dest = await adapter.prepare();
      const { wire } = await roundTrip(dest, message(dest, { queue: dest.queue }));
      expect(wire.exchange).toBe('');
      expect(wire.routingKey).toBe(dest.queue);
    });

    it.each([0, 3, 7, 9])('priority %i is carried in the properties and honoured by the broker', async (priority) => {
      const dest = await adapter.prepare();
      const got = await roundTrip(dest, message(dest, { priority }));
      expect(got.wire.properties.priority).toBe(priority);
      adapter.checkPriority(got, dest, priority);
    });

    it('relative expires becomes an absolute expires header and an expiration of 3600000 ms', async () => {
      const dest = await adapter.prepare();
      const { wire } = await roundTrip(dest, message(dest, { expires: 3600 }));
      expect(wire.headers.expires).toBe(formatCeleryTime(new Date(NOW.getTime() + 3_600_000)));
      expect(Number(wire.properties.expiration)).toBeCloseTo(3_600_000, -3);
      expect(typeof wire.properties.expiration).toBe('string');
    });

    it('absolute expires is written as given, with the milliseconds left as expiration', async () => {
      const dest = await adapter.prepare();
      const at = new Date(NOW.getTime() + 90 * 60_000);
      const { wire } = await roundTrip(dest, message(dest, { expires: at }));
      expect(wire.headers.expires).toBe(formatCeleryTime(at));
      expect(wire.headers.expires).toMatch(CELERY_TIME);
      expect(wire.properties.expiration).toBe(String(90 * 60_000));
    });

    it('a due time still in the future is written as the eta header', async () => {
      const dest = await adapter.prepare();
      const msg = message(dest, { countdown: 300 });
      const { wire } = await roundTrip(dest, msg);
      expect(wire.headers.eta).toBe(formatCeleryTime(new Date(NOW.getTime() + 300_000)));
      expect(wire.headers.eta).toMatch(CELERY_TIME);
    });

    it('custom headers are merged on top of the Celery headers', async () => {
      const dest = await adapter.prepare();
      const { wire } = await roundTrip(dest, message(dest, { headers: { 'x-tenant': 'acmé', 'x-trace': { span: [1, 2] }, retries: 2 } }));
      expect(wire.headers).toMatchObject({ 'x-tenant': 'acmé', 'x-trace': { span: [1, 2] }, retries: 2, task: 'proj.tasks.add', lang: 'py' });
    });

    it('link and linkError arrive as callback and errback signature lists in the body', async () => {
      const dest = await adapter.prepare();
      const cb = signature('proj.tasks.notify', ['done ✓'], { to: 'ops' });
      const eb1 = signature('proj.tasks.alert', [], {}, { immutable: true });
      const eb2 = signature('proj.tasks.log', [1]);
      const { wire } = await roundTrip(dest, message(dest, { link: cb, linkError: [eb1, eb2] }));
      expect(wire.body[2]).toEqual({ callbacks: [cb], errbacks: [eb1, eb2], chain: null, chord: null });
    });

    it('shadow names the task in the shadow header', async () => {
      const dest = await adapter.prepare();
      const { wire } = await roundTrip(dest, message(dest, { shadow: 'proj.tasks.add[billing]' }));
      expect(wire.headers).toMatchObject({ shadow: 'proj.tasks.add[billing]', task: 'proj.tasks.add' });
    });

    it('timeLimit and softTimeLimit become timelimit [hard, soft]', async () => {
      const dest = await adapter.prepare();
      const both = await roundTrip(dest, message(dest, { timeLimit: 30, softTimeLimit: 20 }));
      expect(both.wire.headers.timelimit).toEqual([30, 20]);
      const softOnly = await roundTrip(dest, message(dest, { softTimeLimit: 5 }));
      expect(softOnly.wire.headers.timelimit).toEqual([null, 5]);
    });

    it('ignoreResult sets ignore_result', async () => {
      const dest = await adapter.prepare();
      const { wire } = await roundTrip(dest, message(dest, { ignoreResult: true }));
      expect(wire.headers.ignore_result).toBe(true);
    });

    it('a named exchange delivers by its binding, with the exchange and routing key on the message', async () => {
      const dest = await adapter.prepare({ exchange: { routingKey: 'billing.reminders', bind: true } });
      const msg = message(dest, { exchange: dest.exchange, routingKey: 'billing.reminders' });
      const { wire } = await roundTrip(dest, msg);
      expect(wire.exchange).toBe(dest.exchange);
      expect(wire.routingKey).toBe('billing.reminders');
      expect(wire.headers.id).toBe(msg.properties.correlation_id);
    });

    it('a named exchange with no binding for the routing key is unroutable and delivers nothing', async () => {
      const dest = await adapter.prepare({ exchange: { routingKey: 'billing.reminders', bind: false } });
      const out = await adapter.broker().publish([message(dest, { exchange: dest.exchange, routingKey: 'billing.reminders' })]);
      expect(out).toEqual([{ ok: false, error: expect.any(UnroutableError) }]);
      expect(await adapter.count(dest)).toBe(0);
    });

    it('an exchange nobody declared is unroutable, and the rest of the batch still goes through', async () => {
      const dest = await adapter.prepare();
      const ok = message(dest);
      const lost = message(dest, { exchange: `cls-test-contract-nobody-${randomBytes(4).toString('hex')}`, routingKey: 'x' });
      const out = await adapter.broker().publish([lost, ok]);
      expect(out).toEqual([{ ok: false, error: expect.any(UnroutableError) }, { ok: true }]);
      expect((await adapter.readOne(dest)).wire.headers.id).toBe(ok.properties.correlation_id);
      expect(await adapter.count(dest)).toBe(0);
    });
  });
});
