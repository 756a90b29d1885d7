/**
 * The dispatcher against real Redis (store and broker): what it sends, what it never loses,
 * and what it never sends twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Dispatcher } from '../../src/exports/dispatch.js';
import { RedisBroker } from '../../src/exports/brokers.js';
import { RedisStore } from '../../src/exports/stores.js';
import { type Logger } from '../../src/index.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';
import { privateRedis, requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';

const shared = await sharedRedis();
const skip = requireService(shared, 'Redis');

function job(task: string, args: unknown[], dueAt: number, options: object = {}) {
  const { job: j } = resolveTaskCall(task, args, {}, options);
  return { id: j.id, dueAt, entry: encodeEntry(j) };
}

function memoryLogger() {
  const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  const log =
    (level: string) =>
    (message: string, fields: Record<string, unknown> = {}) =>
      lines.push({ level, message, fields });
  const logger: Logger = { info: log('info'), warn: log('warn'), error: log('error') };
  return { logger, lines };
}

describe.skipIf(skip)('Dispatcher with a Redis store and a Redis broker', () => {
  const prefix = uniquePrefix('dispatch');
  const queue = `${prefix}q`;
  let url: string;
  let raw: Redis;
  const opened: { close(): Promise<void> }[] = [];
  const store = () => {
    const s = new RedisStore(url, { keyPrefix: prefix });
    opened.push(s);
    return s;
  };
  const broker = () => {
    const b = new RedisBroker(url);
    opened.push(b);
    return b;
  };
  const drain = async (): Promise<string[]> => {
    const ids: string[] = [];
    for (;;) {
      const raws = await raw.rpop(queue, 1000);
      if (!raws || raws.length === 0) return ids;
      for (const r of raws) ids.push(String(parseRedisEnvelope(r).headers.id));
    }
  };

  beforeAll(() => {
    url = (shared as RedisService).urlFor(0);
    raw = new Redis(url);
  });
  afterAll(async () => {
    await Promise.all(opened.map((o) => o.close()));
    const keys = [...(await raw.keys(`${prefix}*`)), ...(await raw.keys(`_kombu.binding.${prefix}*`))];
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });

  it('sends due jobs as Celery messages with the stored id, and removes them from the store', async () => {
    const s = store();
    const jobs = [job('t.ok', [1], 10, { queue }), job('t.ok', [2], 20, { queue }), job('t.later', [3], 1e10, { queue })];
    await s.add(jobs);
    const summary = await new Dispatcher({ store: s, broker: broker(), clock: () => new Date(30_000) }).dispatchDue();
    expect(summary).toMatchObject({ sent: 2, failed: 0, corrupt: 0 });
    const sent = await drain();
    expect(sent.sort()).toEqual([jobs[0]!.id, jobs[1]!.id].sort());
    expect(await s.get(jobs[0]!.id)).toBeUndefined();
    expect((await s.get(jobs[2]!.id))?.state).toBe('scheduled');
    await s.remove(jobs[2]!.id);
  });

  it('--timestamp semantics: sends only jobs due at or before the given time', async () => {
    const s = store();
    const early = job('t.ok', [], 100, { queue });
    const edge = job('t.ok', [], 200, { queue });
    const late = job('t.ok', [], 201, { queue });
    await s.add([early, edge, late]);
    const summary = await new Dispatcher({ store: s, broker: broker(), clock: () => new Date(150_000) }).dispatchDue(new Date(200_000));
    expect(summary.sent).toBe(2);
    const sent = await drain();
    expect(sent.sort()).toEqual([early.id, edge.id].sort());
    expect(await s.remove(late.id)).toBe(true);
  });

  it('makes corrupt entries dead letters, logs them, and still sends every other due job', async () => {
    const s = store();
    const good = [job('t.ok', [1], 5, { queue }), job('t.ok', [2], 6, { queue })];
    await s.add(good);
    const index = `${prefix}scheduled_task_id_by_time`;
    await raw.set(`${prefix}bad-json`, '{{{');
    await raw.set(`${prefix}bad-shape`, '{"task": "x"}');
    await raw.set(
      `${prefix}bad-pickle`,
      JSON.stringify([['t.x'], { args: [], task_id: 'bad-pickle', expires: '__python_pickle__gASVHwAAAAAAAACMBXBvc2l4lIwGc3lzdGVtlJOUjAR0cnVllIWUUpQu' }]),
    );
    await raw.zadd(index, 4, 'bad-json', 4, 'bad-shape', 4, 'bad-pickle', 4, 'missing-key');
    const { logger, lines } = memoryLogger();
    const summary = await new Dispatcher({ store: s, broker: broker(), logger, clock: () => new Date(10_000) }).dispatchDue();
    expect(summary).toMatchObject({ sent: 2, failed: 0, dead: 4, corrupt: 4 });
    expect((await drain()).sort()).toEqual(good.map((g) => g.id).sort());
    const dead = (await s.deadLetters({ limit: 10 })).letters;
    expect(dead.map((d) => d.id).sort()).toEqual(['bad-json', 'bad-pickle', 'bad-shape', 'missing-key']);
    expect(dead.every((d) => d.reason === 'corrupt')).toBe(true);
    expect(dead.find((d) => d.id === 'bad-pickle')?.error).toMatch(/posix\.system/);
    expect(dead.find((d) => d.id === 'bad-json')?.entry).toBe('{{{');
    expect(dead.find((d) => d.id === 'missing-key')?.entry).toBeNull();
    expect(
      lines
        .filter((l) => l.message.includes('dead letter'))
        .map((l) => l.fields.id)
        .sort(),
    ).toEqual(['bad-json', 'bad-pickle', 'bad-shape', 'missing-key']);
    expect(await s.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 4 });
    expect(await s.purgeDead('all')).toBe(4);
  });

  it('never sends a job twice when four dispatchers race over 4,000 due jobs', async () => {
    const s = store();
    const jobs = Array.from({ length: 4000 }, (_, i) => job('t.race', [i], 1 + (i % 100), { queue }));
    await s.add(jobs);
    const dispatchers = Array.from({ length: 4 }, () => new Dispatcher({ store: store(), broker: broker(), batchSize: 100, clock: () => new Date(1_000_000) }));
    const summaries = await Promise.all(dispatchers.map((d) => d.dispatchDue()));
    expect(summaries.reduce((n, x) => n + x.sent, 0)).toBe(4000);
    expect(summaries.filter((x) => x.sent > 0).length).toBeGreaterThan(1); // they really shared the work
    const sent = await drain();
    expect(sent.length).toBe(4000);
    expect(new Set(sent).size).toBe(4000);
    expect(await s.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('keeps every job when the broker is unreachable, and reports it once', async () => {
    const s = store();
    const jobs = [job('t.ok', [1], 5, { queue }), job('t.ok', [2], 5, { queue })];
    await s.add(jobs);
    const down = new RedisBroker('redis://:hunter2@127.0.0.1:1/0', { socketConnectTimeout: 1 });
    opened.push(down);
    const { logger, lines } = memoryLogger();
    const summary = await new Dispatcher({ store: s, broker: down, logger, clock: () => new Date(10_000) }).dispatchDue();
    expect(summary.sent).toBe(0);
    expect(summary.error?.message).toMatch(/cannot reach the Celery broker \(Redis\) at redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0/);
    expect(summary.error?.message).not.toContain('hunter2');
    expect(summary.failed).toBe(2);
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(0); // an outage is reported once, by the caller
    expect(await s.count()).toEqual({ scheduled: 2, inFlight: 0, dead: 0 });
    // and once the broker is back, they go out
    const again = await new Dispatcher({ store: s, broker: broker(), clock: () => new Date(10_000) }).dispatchDue();
    expect(again.sent).toBe(2);
    expect((await drain()).sort()).toEqual(jobs.map((j) => j.id).sort());
  });

  it('a dispatcher that died after claiming loses nothing: the jobs go out when the lease ends', async () => {
    const s = store();
    const jobs = [job('t.crash', [1], 5, { queue }), job('t.crash', [2], 5, { queue })];
    await s.add(jobs);
    // a dispatcher claims, then "dies" before publishing
    const claimed = await s.claimDue({ until: 10, now: 10, limit: 10, leaseMs: 60_000 });
    expect(claimed.map((c) => c.id).sort()).toEqual(jobs.map((j) => j.id).sort());
    // within the lease, nobody else sends them
    const during = await new Dispatcher({ store: s, broker: broker(), clock: () => new Date(30_000) }).dispatchDue();
    expect(during.sent).toBe(0);
    // after the lease, they are sent, each once
    const after = await new Dispatcher({ store: s, broker: broker(), clock: () => new Date(71_000) }).dispatchDue();
    expect(after.sent).toBe(2);
    const sent = await drain();
    expect(sent.sort()).toEqual(jobs.map((j) => j.id).sort());
    expect(await s.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('keeps a job for an exchange with no bound queue, instead of dropping it', async () => {
    const s = store();
    const exchange = `${prefix}ex`;
    const unbound = job('t.ex', [1], 5, { exchange, routingKey: 'a.b' });
    const bound = job('t.ex', [2], 5, { exchange, routingKey: 'reports.daily' });
    await raw.sadd(`_kombu.binding.${exchange}`, `reports.*\x06\x16\x06\x16${queue}`);
    await s.add([unbound, bound]);
    const { logger, lines } = memoryLogger();
    const summary = await new Dispatcher({ store: s, broker: broker(), logger, clock: () => new Date(10_000) }).dispatchDue();
    expect(summary).toMatchObject({ sent: 1, failed: 1 });
    expect(await drain()).toEqual([bound.id]);
    expect((await s.get(unbound.id))?.state).toBe('scheduled');
    expect(lines.find((l) => l.level === 'warn')?.fields.error).toMatch(/no queue bound for routing key "a\.b"/);
    await s.remove(unbound.id);
  });

  it('hands off atomically when store and broker are one Redis server, even in different databases', async () => {
    const s = store();
    const j = job('t.mode', [1], 5, { queue });
    await s.add([j]);
    const b = new RedisBroker((shared as RedisService).urlFor(3));
    opened.push(b);
    const d = new Dispatcher({ store: s, broker: b, clock: () => new Date(10_000) });
    expect(await d.dispatchDue()).toMatchObject({ sent: 1 });
    expect(d.mode).toBe('atomic');
    const db3 = new Redis((shared as RedisService).urlFor(3));
    const raws = await db3.lrange(queue, 0, -1);
    await db3.del(queue, `_kombu.binding.${queue}`);
    db3.disconnect();
    expect(raws.map((r) => parseRedisEnvelope(r).headers.id)).toEqual([j.id]);
    expect(await s.get(j.id)).toBeUndefined();
  });

  it('publishes then acknowledges when the broker is another server', async () => {
    const other = await privateRedis();
    if (!other) return expect(process.env.CI).not.toBe('true');
    try {
      const s = store();
      const j = job('t.mode', [2], 5, { queue });
      await s.add([j]);
      const b = new RedisBroker(other.urlFor(0));
      const d = new Dispatcher({ store: s, broker: b, clock: () => new Date(10_000) });
      expect(await d.dispatchDue()).toMatchObject({ sent: 1 });
      expect(d.mode).toBe('publish-then-ack');
      const r = new Redis(other.urlFor(0));
      expect((await r.lrange(queue, 0, -1)).map((x) => parseRedisEnvelope(x).headers.id)).toEqual([j.id]);
      r.disconnect();
      await b.close();
    } finally {
      await other.stop();
    }
  });
});
