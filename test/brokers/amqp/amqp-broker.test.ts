/**
 * AmqpBroker against a real RabbitMQ (TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672//).
 *
 * The test declares its own uniquely named queues/exchange (the broker never declares anything)
 * and reads every message back raw with `channel.get`, so what is asserted is exactly what a
 * Celery worker would receive (docs/protocol.md §1.3, §3.2, docs/protocol.md §6.2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import { AmqpBroker, parseAmqpUrl } from '../../../src/brokers/amqp/amqp-broker.js';
import { UnroutableError } from '../../../src/util/errors.js';
import { ConnectionError, ValidationError } from '../../../src/util/errors.js';
import { createBroker } from '../../../src/brokers/registry.js';
import { resolveTaskCall, signature, type TaskOptions } from '../../../src/job/options.js';
import { buildTaskMessage, type TaskMessage } from '../../../src/celery/message.js';
import { rabbitmq, requireService } from '../../helpers/services.js';

const url = await rabbitmq();
const skip = requireService(url, 'RabbitMQ');

const NOW = new Date();
const CELERY_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/;

function message(task: string, args: unknown[], kwargs: Record<string, unknown>, options: TaskOptions, defaultQueue: string): TaskMessage {
  const { job, dueAt } = resolveTaskCall(task, args, kwargs, options, NOW);
  return buildTaskMessage(job, { now: NOW, defaultQueue, ...(dueAt !== undefined && { dueAt }) });
}

describe('parseAmqpUrl (Celery/kombu URL rules)', () => {
  it('reads user, password, host, port and the vhost', () => {
    expect(parseAmqpUrl('amqp://u%40x:p%2Fw@rabbit:5673/prod')).toEqual({
      protocol: 'amqp',
      hostname: 'rabbit',
      port: 5673,
      username: 'u@x',
      password: 'p/w',
      vhost: 'prod',
      heartbeat: undefined,
    });
  });
  it('"//", "/%2F", "/" and no path all mean vhost "/"', () => {
    for (const u of ['amqp://h//', 'amqp://h/%2F', 'amqp://h/', 'amqp://h']) expect(parseAmqpUrl(u).vhost).toBe('/');
  });
  it('pyamqp is amqp; amqps defaults to port 5671; guest/guest by default; heartbeat from the query', () => {
    expect(parseAmqpUrl('pyamqp://h//')).toMatchObject({ protocol: 'amqp', port: 5672, username: 'guest', password: 'guest' });
    expect(parseAmqpUrl('amqps://h//?heartbeat=30')).toMatchObject({ protocol: 'amqps', port: 5671, heartbeat: 30 });
  });
  it('rejects a bad heartbeat with a ValidationError', () => {
    expect(() => parseAmqpUrl('amqp://h//?heartbeat=soon')).toThrow(ValidationError);
  });
  it('createBroker maps amqp, amqps and pyamqp to AmqpBroker with a redacted description', () => {
    for (const u of ['amqp://a:secret@h//', 'amqps://a:secret@h//', 'pyamqp://a:secret@h//']) {
      const b = createBroker(u);
      expect(b).toBeInstanceOf(AmqpBroker);
      expect(b.description).not.toContain('secret');
      expect(b.description).toContain('a:***@h');
    }
  });
});

describe.skipIf(skip)('AmqpBroker publishes what a Python producer publishes', () => {
  const tag = randomBytes(4).toString('hex');
  const plainQ = `cls-test-plain-${tag}`;
  const prioQ = `cls-test-prio-${tag}`;
  const boundQ = `cls-test-bound-${tag}`;
  const exchange = `cls-test-ex-${tag}`;
  let conn: ChannelModel;
  let ch: Channel;
  let broker: AmqpBroker;

  const getOne = async (queue: string): Promise<GetMessage> => {
    for (let i = 0; i < 50; i++) {
      const m = await ch.get(queue, { noAck: true });
      if (m) return m;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`nothing in ${queue}`);
  };

  beforeAll(async () => {
    conn = await amqp.connect(url as string);
    ch = await conn.createChannel();
    await ch.assertQueue(plainQ, { durable: true });
    await ch.assertQueue(prioQ, { durable: true, arguments: { 'x-max-priority': 10 } });
    await ch.assertQueue(boundQ, { durable: true });
    await ch.assertExchange(exchange, 'direct', { durable: true });
    await ch.bindQueue(boundQ, exchange, 'billing.reminders');
    broker = new AmqpBroker(url as string);
  });

  afterAll(async () => {
    await broker?.close();
    if (ch) {
      for (const q of [plainQ, prioQ, boundQ]) await ch.deleteQueue(q).catch(() => undefined);
      await ch.deleteExchange(exchange).catch(() => undefined);
    }
    await conn?.close();
  });

  it('writes headers, properties and body exactly as Celery does (docs/protocol.md §1.2, §1.3, docs/protocol.md §3.3)', async () => {
    const msg = message(
      'proj.add',
      [1, 'two', { three: [3] }, 1.5, true, null],
      { k: 'v', n: 42 },
      {
        taskId: `id-${tag}-1`,
        queue: prioQ,
        priority: 7,
        expires: 3600,
        timeLimit: 30,
        softTimeLimit: 20,
        countdown: 120,
        headers: { 'x-tenant': 'acme' },
        link: signature('proj.notify', ['cb']),
      },
      'celery',
    );
    expect(await broker.publish([msg])).toEqual([{ ok: true }]);
    const got = await getOne(prioQ);
    expect(got.fields).toMatchObject({ exchange: '', routingKey: prioQ });
    const h = got.properties.headers as Record<string, unknown>;
    expect(h).toEqual(msg.headers);
    expect(h).toMatchObject({ task: 'proj.add', id: `id-${tag}-1`, timelimit: [30, 20], 'x-tenant': 'acme', group: null });
    expect(h.eta).toMatch(CELERY_TIME);
    expect(h.expires).toMatch(CELERY_TIME);
    expect(got.properties).toMatchObject({
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      correlationId: `id-${tag}-1`,
      deliveryMode: 2,
      priority: 7,
      expiration: '3600000',
    });
    expect(got.properties.replyTo).toBeUndefined();
    const body = JSON.parse(got.content.toString('utf8')) as unknown;
    expect(body).toEqual([
      [1, 'two', { three: [3] }, 1.5, true, null],
      { k: 'v', n: 42 },
      { callbacks: [msg.body[2].callbacks?.[0]], errbacks: null, chain: null, chord: null },
    ]);
    expect(body).toEqual(msg.body);
  });

  it('a plain message without expires has no expiration and priority 0', async () => {
    const msg = message('proj.plain', [], {}, { taskId: `id-${tag}-2` }, plainQ);
    expect(await broker.publish([msg])).toEqual([{ ok: true }]);
    const got = await getOne(plainQ);
    expect(got.properties).toMatchObject({ deliveryMode: 2, priority: 0, correlationId: `id-${tag}-2` });
    expect(got.properties.expiration).toBeUndefined();
    expect(JSON.parse(got.content.toString('utf8'))).toEqual([[], {}, { callbacks: null, errbacks: null, chain: null, chord: null }]);
  });

  it('a batch resolves one outcome per message, in order; a missing queue comes back UnroutableError and nothing else is lost', async () => {
    const ids = [0, 1, 2, 3].map((i) => `id-${tag}-batch-${i}`);
    const msgs = [
      message('proj.a', [0], {}, { taskId: ids[0] }, plainQ),
      message('proj.a', [1], {}, { taskId: ids[1], queue: `cls-test-missing-${tag}` }, plainQ),
      message('proj.a', [2], {}, { taskId: ids[2] }, plainQ),
      message('proj.a', [3], {}, { taskId: ids[3], exchange: `cls-test-no-such-ex-${tag}`, routingKey: 'x' }, plainQ),
    ];
    const out = await broker.publish(msgs);
    expect(out.map((o) => o.ok)).toEqual([true, false, true, false]);
    expect(out[1]).toMatchObject({ ok: false, error: expect.any(UnroutableError) });
    expect(out[3]).toMatchObject({ ok: false, error: expect.any(UnroutableError) });
    const a = await getOne(plainQ);
    const b = await getOne(plainQ);
    expect([a.properties.correlationId, b.properties.correlationId]).toEqual([ids[0], ids[2]]);
    expect(await ch.get(plainQ, { noAck: true })).toBe(false);
    // the channel survived both: the next batch goes through
    expect(await broker.publish([message('proj.a', [4], {}, { taskId: `id-${tag}-after` }, plainQ)])).toEqual([{ ok: true }]);
    expect((await getOne(plainQ)).properties.correlationId).toBe(`id-${tag}-after`);
  });

  it('a named exchange routes by routing key; an unbound routing key is unroutable', async () => {
    const routed = message('proj.bill', ['r'], {}, { taskId: `id-${tag}-ex1`, exchange, routingKey: 'billing.reminders' }, 'celery');
    const lost = message('proj.bill', ['l'], {}, { taskId: `id-${tag}-ex2`, exchange, routingKey: 'nobody.listens' }, 'celery');
    const out = await broker.publish([routed, lost]);
    expect(out[0]).toEqual({ ok: true });
    expect(out[1]).toMatchObject({ ok: false, error: expect.any(UnroutableError) });
    const got = await getOne(boundQ);
    expect(got.fields).toMatchObject({ exchange, routingKey: 'billing.reminders' });
    expect(got.properties.correlationId).toBe(`id-${tag}-ex1`);
    expect(await ch.get(boundQ, { noAck: true })).toBe(false);
  });

  it('publishes a large batch through backpressure, each message once', async () => {
    // amqplib's per-channel write buffer holds 1024 frames: 3000 small messages make publish() return false
    const n = 3000;
    const pad = 'x'.repeat(200);
    const msgs = Array.from({ length: n }, (_, i) => message('proj.bulk', [i, pad], {}, { taskId: `id-${tag}-bulk-${i}` }, plainQ));
    const out = await broker.publish(msgs);
    expect(out.every((o) => o.ok)).toBe(true);
    expect(out).toHaveLength(n);
    expect((await ch.checkQueue(plainQ)).messageCount).toBe(n);
    await ch.purgeQueue(plainQ);
  });

  it('a channel that dies mid-batch costs only the message that killed it: the others arrive once each', async () => {
    const doomed = `cls-test-doomed-${tag}`;
    await ch.assertExchange(doomed, 'direct', { durable: false });
    await ch.bindQueue(boundQ, doomed, 'k');
    const viaDoomed = (i: number) => message('proj.d', [i], {}, { taskId: `id-${tag}-doomed-${i}`, exchange: doomed, routingKey: 'k' }, 'celery');
    expect(await broker.publish([viaDoomed(0)])).toEqual([{ ok: true }]); // the broker now knows the exchange exists
    await getOne(boundQ);
    await ch.deleteExchange(doomed); // gone behind its back: the publish to it gets 404 and the channel closes
    const around = (k: string) => message('proj.d', [k], {}, { taskId: `id-${tag}-mid-${k}` }, plainQ);
    const batch = [around('a'), around('b'), viaDoomed(1), around('c'), around('d')];
    const out = await broker.publish(batch);
    expect(out.map((o) => o.ok)).toEqual([true, true, false, true, true]);
    expect(out[2]).toMatchObject({ error: expect.any(UnroutableError) });
    // a and b were routed before the close (not sent again), c and d after it (sent once)
    const ids: string[] = [];
    for (let m = await ch.get(plainQ, { noAck: true }); m; m = await ch.get(plainQ, { noAck: true })) ids.push(String(m.properties.correlationId));
    expect(ids.sort()).toEqual(['a', 'b', 'c', 'd'].map((k) => `id-${tag}-mid-${k}`));
    // and the next batch finds the missing exchange up front
    expect((await broker.publish([viaDoomed(2)]))[0]).toMatchObject({ ok: false, error: expect.any(UnroutableError) });
  });

  it('close() while a batch is in flight: what RabbitMQ confirmed is ok, the rest a ConnectionError; nothing is reopened', async () => {
    const b = new AmqpBroker(url as string);
    const pad = 'y'.repeat(4000);
    const msgs = Array.from({ length: 300 }, (_, i) => message('proj.bulk', [i, pad], {}, { taskId: `id-${tag}-inflight-${i}` }, plainQ));
    const pending = b.publish(msgs);
    await new Promise((r) => setImmediate(r));
    await b.close();
    const out = await pending;
    expect(out).toHaveLength(300);
    const failed = out.filter((o) => !o.ok);
    expect(failed.every((o) => !o.ok && o.error instanceof ConnectionError)).toBe(true);
    // every message reported ok is in the queue; none is there twice
    const ids: string[] = [];
    for (let m = await ch.get(plainQ, { noAck: true }); m; m = await ch.get(plainQ, { noAck: true })) ids.push(String(m.properties.correlationId));
    expect(new Set(ids).size).toBe(ids.length);
    const okIds = msgs.filter((_, i) => out[i]?.ok).map((m) => m.properties.correlation_id);
    expect(ids.filter((id) => okIds.includes(id)).length).toBe(okIds.length);
  });

  it('an empty batch does nothing', async () => {
    expect(await broker.publish([])).toEqual([]);
  });

  it('reopens after its connection is closed under it', async () => {
    await broker.close();
    expect(await broker.publish([message('proj.a', [], {}, { taskId: `id-${tag}-reopen` }, plainQ)])).toEqual([{ ok: true }]);
    expect((await getOne(plainQ)).properties.correlationId).toBe(`id-${tag}-reopen`);
  });

  it('an unreachable broker rejects with a ConnectionError whose message hides the password', async () => {
    const down = new AmqpBroker('amqp://admin:s3cret@127.0.0.1:1//', { connectTimeout: 2 });
    const err = await down.publish([message('proj.a', [], {}, { taskId: `id-${tag}-down` }, plainQ)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toContain('RabbitMQ');
    expect((err as Error).message).toContain('amqp://admin:***@127.0.0.1:1//');
    expect((err as Error).message).not.toContain('s3cret');
    await down.close();
  });

  it('wrong credentials reject with a ConnectionError too', async () => {
    const u = new URL(url as string);
    const bad = new AmqpBroker(`amqp://guest:wrong-pw@${u.host}//`);
    const err = await bad.publish([message('proj.a', [], {}, { taskId: `id-${tag}-auth` }, plainQ)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).not.toContain('wrong-pw');
    await bad.close();
  });

  it('close() twice is fine, and so is close() on a broker never opened', async () => {
    const b = new AmqpBroker(url as string);
    expect(await b.publish([message('proj.a', [], {}, { taskId: `id-${tag}-close` }, plainQ)])).toEqual([{ ok: true }]);
    await b.close();
    await b.close();
    await new AmqpBroker(url as string).close();
    await ch.purgeQueue(plainQ);
  });
});
