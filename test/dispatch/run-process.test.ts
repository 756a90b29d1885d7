/**
 * `celery-longterm-scheduler run` as a real process against real Redis servers, no mocks:
 *
 * 1. SIGKILL at any moment loses nothing and duplicates nothing (store and broker on one server).
 * 2. On separate servers it is at least once: nothing lost; duplicates are counted and reported.
 * 3. SIGTERM is graceful (exit 0, nothing left in flight); a second SIGTERM exits at once (143).
 * 4. Racing daemons share the work and never send a job twice.
 * 5. A broker crash and restart while sending: every job the broker did not already hold arrives.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisStore, INDEX_KEY, IN_FLIGHT_KEY } from '../../src/stores/redis/redis-store.js';
import { encodeEntry } from '../../src/job/entry.js';
import { resolveTaskCall } from '../../src/job/options.js';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';
import { privateRedis, requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';
import { children, drainQueue, duplicates, hasLog, logSummary, sleep, spawnRun, stopRun, waitFor, type RunOptions } from '../helpers/run-process.js';

const shared = await sharedRedis();
const skip = requireService(shared, 'Redis');
// Tests 2, 3 (second signal) and 5 need servers of their own: another server, CLIENT PAUSE, a crash.
const probe = skip ? undefined : await privateRedis();
await probe?.stop();
const skipPrivate = skip || requireService(probe, 'a private redis-server');

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist/cli/main.js');
const TEST_MS = 90_000;

// ---------------------------------------------------------------------------------------------
// helpers

/** Seeds `n` jobs due a minute ago, for `queue`; returns their ids in order. */
async function seed(store: RedisStore, queue: string, n: number, label = 't.run'): Promise<string[]> {
  const dueAt = Date.now() / 1000 - 60;
  const ids: string[] = [];
  const CHUNK = 5000;
  for (let i = 0; i < n; i += CHUNK) {
    const jobs = [];
    for (let k = i; k < Math.min(n, i + CHUNK); k++) {
      const { job } = resolveTaskCall(label, [k], {}, { queue });
      jobs.push({ id: job.id, dueAt, entry: encodeEntry(job) });
      ids.push(job.id);
    }
    await store.add(jobs);
  }
  return ids;
}

/** The ids still in the store: scheduled (index) and in flight. */
async function storeIds(raw: Redis, prefix: string): Promise<{ scheduled: string[]; inFlight: string[] }> {
  const [scheduled, inFlight] = await Promise.all([raw.zrange(`${prefix}${INDEX_KEY}`, 0, -1), raw.zrange(`${prefix}${IN_FLIGHT_KEY}`, 0, -1)]);
  return { scheduled, inFlight };
}

async function storeCount(raw: Redis, prefix: string): Promise<number> {
  const [a, b] = await Promise.all([raw.zcard(`${prefix}${INDEX_KEY}`), raw.zcard(`${prefix}${IN_FLIGHT_KEY}`)]);
  return a + b;
}

/** Waits until the store is empty and the queue length did not change over two polls. */
async function waitUntilSettled(raw: Redis, prefix: string, broker: Redis, queue: string, timeoutMs = 60_000): Promise<number> {
  let last = -1;
  const settled = await waitFor(
    'the store to empty and the queue to settle',
    async () => {
      const [count, len] = [await storeCount(raw, prefix), await broker.llen(queue)];
      const done = count === 0 && len === last;
      last = len;
      return done ? { len } : false;
    },
    timeoutMs,
    250,
  );
  return settled.len;
}

/**
 * Starts `run` `kills` times and SIGKILLs it each time once the queue grew by `step` messages
 * since its start (or at once, if the store is already empty). Returns the queue length at each kill.
 */
async function killDance(o: { run: RunOptions; store: Redis; prefix: string; broker: Redis; queue: string; kills: number; step: number }): Promise<number[]> {
  const killedAt: number[] = [];
  for (let k = 0; k < o.kills; k++) {
    const base = await o.broker.llen(o.queue);
    const p = spawnRun(o.run);
    let len = base;
    const deadline = Date.now() + 30_000;
    while (len <= base + o.step && (await storeCount(o.store, o.prefix)) > 0) {
      if (!p.alive()) throw new Error(`run exited by itself: ${p.stderr()}`);
      if (Date.now() > deadline) throw new Error(`run sent nothing within 30 s: ${p.stderr()}`);
      len = await o.broker.llen(o.queue);
    }
    p.child.kill('SIGKILL');
    expect((await p.exited).signal).toBe('SIGKILL');
    killedAt.push(len);
  }
  return killedAt;
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(skip)('the run command as a process (SIGKILL, SIGTERM, racing daemons, broker restart)', () => {
  const prefixes: string[] = [];
  const newPrefix = (label: string) => {
    const p = uniquePrefix(`run-${label}`);
    prefixes.push(p);
    return p;
  };
  const privates: RedisService[] = [];
  const newPrivate = async () => {
    const s = (await privateRedis()) as RedisService;
    privates.push(s);
    return s;
  };
  /** run first in afterAll, even when a test failed half-way */
  const cleanups: (() => void)[] = [];
  const clients: Redis[] = [];
  const client = (url: string) => {
    const c = new Redis(url);
    clients.push(c);
    return c;
  };
  const stores: RedisStore[] = [];
  const newStore = (url: string, keyPrefix: string) => {
    const s = new RedisStore(url, { keyPrefix });
    stores.push(s);
    return s;
  };
  /** databases of the shared server that the tests write to */
  const BROKER_DB_OTHER = 2;
  let url0: string;
  let raw: Redis;

  beforeAll(() => {
    url0 = (shared as RedisService).urlFor(0);
    raw = client(url0);
    if (!existsSync(bin)) spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  });

  afterAll(async () => {
    for (const c of cleanups) c();
    for (const c of [...children]) c.kill('SIGKILL');
    await Promise.all(stores.map((s) => s.close()));
    for (const db of [0, BROKER_DB_OTHER]) {
      const r = new Redis((shared as RedisService).urlFor(db));
      for (const p of prefixes) {
        const keys = [...(await r.keys(`${p}*`)), ...(await r.keys(`_kombu.binding.${p}*`))];
        for (let i = 0; i < keys.length; i += 1000) await r.del(...keys.slice(i, i + 1000));
      }
      r.disconnect();
    }
    for (const c of clients) c.disconnect();
    await Promise.all(privates.map((s) => s.stop()));
    await shared?.stop();
  }, 60_000);

  it(
    'SIGKILL at any moment loses nothing and duplicates nothing when store and broker are one Redis server',
    async () => {
      const prefix = newPrefix('kill');
      const queue = `${prefix}q`;
      const brokerUrl = (shared as RedisService).urlFor(BROKER_DB_OTHER);
      const broker = client(brokerUrl);
      const t0 = Date.now();
      const ids = await seed(newStore(url0, prefix), queue, 20_000);
      const seeded = Date.now();
      const run: RunOptions = { backend: url0, broker: brokerUrl, prefix, batchSize: 200, leaseMs: 1000 };

      const killedAt = await killDance({ run, store: raw, prefix, broker, queue, kills: 3, step: 2000 });
      const last = spawnRun(run);
      const total = await waitUntilSettled(raw, prefix, broker, queue);
      await stopRun(last);
      expect(hasLog(last, (l) => l.msg === 'dispatched' && l.mode === 'atomic')).toBe(true);

      const sent = await drainQueue(broker, queue);
      console.info(
        `[kill] seeded 20000 in ${seeded - t0} ms; SIGKILLed at queue lengths ${killedAt.join(', ')}; all sent ${Date.now() - seeded} ms after seeding`,
      );
      expect(total).toBe(20_000);
      expect(sent.length).toBe(20_000);
      expect(duplicates(sent)).toBe(0);
      expect(new Set(sent)).toEqual(new Set(ids));
      expect(await storeIds(raw, prefix)).toEqual({ scheduled: [], inFlight: [] });
    },
    TEST_MS,
  );

  it.skipIf(skipPrivate)(
    'is at least once when the broker is another server: SIGKILL loses nothing',
    async () => {
      const prefix = newPrefix('kill2');
      const queue = `${prefix}q`;
      const other = await newPrivate();
      const brokerUrl = other.urlFor(0);
      const broker = client(brokerUrl);
      const ids = await seed(newStore(url0, prefix), queue, 20_000);
      const started = Date.now();
      const run: RunOptions = { backend: url0, broker: brokerUrl, prefix, batchSize: 200, leaseMs: 1000 };

      const killedAt = await killDance({ run, store: raw, prefix, broker, queue, kills: 2, step: 2000 });
      const last = spawnRun(run);
      await waitUntilSettled(raw, prefix, broker, queue);
      await stopRun(last);
      expect(hasLog(last, (l) => l.msg === 'dispatched' && l.mode === 'publish-then-ack')).toBe(true);

      const sent = await drainQueue(broker, queue);
      const received = new Set(sent);
      const missing = ids.filter((id) => !received.has(id));
      console.info(
        `[kill, separate servers] SIGKILLed at queue lengths ${killedAt.join(', ')}; ${sent.length} messages for 20000 jobs, ` +
          `${duplicates(sent)} duplicates; ${Date.now() - started} ms`,
      );
      expect(missing).toEqual([]);
      expect(received).toEqual(new Set(ids));
      expect(await storeIds(raw, prefix)).toEqual({ scheduled: [], inFlight: [] });
    },
    TEST_MS,
  );

  it(
    'SIGTERM is graceful: exit 0 within seconds, nothing left in flight, sent + scheduled = all, no duplicates',
    async () => {
      const prefix = newPrefix('term');
      const queue = `${prefix}q`;
      const ids = await seed(newStore(url0, prefix), queue, 20_000);
      const p = spawnRun({ backend: url0, broker: url0, prefix, batchSize: 200, leaseMs: 60_000 });
      await waitFor('the first messages', async () => (await raw.llen(queue)) > 0 || !p.alive(), 30_000, 1);
      expect(p.alive()).toBe(true);
      const signalled = Date.now();
      p.child.kill('SIGTERM');
      const exit = await Promise.race([p.exited, sleep(10_000).then(() => 'still running after 10 s' as const)]);
      const exitMs = Date.now() - signalled;
      if (exit === 'still running after 10 s') p.child.kill('SIGKILL');
      await waitFor('"dispatcher stopped"', () => hasLog(p, (l) => l.msg === 'dispatcher stopped'), 5000);
      expect(hasLog(p, (l) => l.msg.startsWith('stopping'))).toBe(true);

      const { scheduled, inFlight } = await storeIds(raw, prefix);
      const sent = await drainQueue(raw, queue);
      console.info(`[SIGTERM] exited ${exitMs} ms after the signal; sent ${sent.length}, still scheduled ${scheduled.length}`);
      expect(inFlight).toEqual([]);
      expect(duplicates(sent)).toBe(0);
      expect(sent.length + scheduled.length).toBe(20_000);
      expect(new Set([...sent, ...scheduled])).toEqual(new Set(ids));
      expect(scheduled.length).toBeGreaterThan(0); // it really stopped part-way
      // what stays scheduled is intact: every id still has its entry
      let withEntry = 0;
      for (let i = 0; i < scheduled.length; i += 1000) withEntry += await raw.exists(...scheduled.slice(i, i + 1000).map((id) => `${prefix}${id}`));
      expect(withEntry).toBe(scheduled.length);
      // last, so that a slow exit does not hide the checks above
      expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
      expect(exitMs).toBeLessThan(5000);
    },
    TEST_MS,
  );

  it.skipIf(skipPrivate)(
    'a second SIGTERM exits at once with 143, even while Redis holds the batch; the leases give the jobs back',
    async () => {
      const server = await newPrivate();
      const url = server.urlFor(0);
      const prefix = 'term2:'; // a private server: cleaned up with it
      const queue = `${prefix}q`;
      const r = client(url);
      const ids = await seed(newStore(url, prefix), queue, 20_000);
      const run: RunOptions = { backend: url, broker: url, prefix, batchSize: 200, leaseMs: 2000 };
      const p = spawnRun(run);
      await waitFor('the first messages', async () => (await r.llen(queue)) > 0 || !p.alive(), 30_000, 1);
      // Writes (and every script) now wait: the batch in progress cannot finish.
      await r.call('CLIENT', 'PAUSE', '20000', 'WRITE');
      try {
        p.child.kill('SIGTERM');
        await waitFor('the "stopping" log line', () => hasLog(p, (l) => l.msg.startsWith('stopping')), 5000, 5);
        await sleep(200);
        expect(p.alive()).toBe(true); // stuck finishing its batch, as it should be
        const signalled = Date.now();
        p.child.kill('SIGTERM');
        const exit = await p.exited;
        const exitMs = Date.now() - signalled;
        console.info(`[second SIGTERM] exited ${exitMs} ms after the second signal`);
        expect(exit).toEqual({ code: 143, signal: null });
        expect(exitMs).toBeLessThan(2000);
        expect(hasLog(p, (l) => l.msg.startsWith('exiting at once'))).toBe(true);
      } finally {
        await r.call('CLIENT', 'UNPAUSE');
      }
      // Whatever it had claimed comes back when its lease ends: all sent, each once.
      const again = spawnRun(run);
      await waitUntilSettled(r, prefix, r, queue);
      await stopRun(again);
      const sent = await drainQueue(r, queue);
      expect(sent.length).toBe(20_000);
      expect(new Set(sent)).toEqual(new Set(ids));
    },
    TEST_MS,
  );

  it(
    'three racing daemons share 10,000 due jobs and send each exactly once',
    async () => {
      const prefix = newPrefix('race');
      const queue = `${prefix}q`;
      const run: RunOptions = { backend: url0, broker: url0, prefix, batchSize: 100, leaseMs: 60_000 };
      const procs = [spawnRun(run), spawnRun(run), spawnRun(run)];
      await waitFor('three started dispatchers', () => procs.every((p) => hasLog(p, (l) => l.msg === 'dispatcher started')), 30_000);
      await sleep(300); // a pass or two: each has subscribed to the wake-up channel
      const started = Date.now();
      const ids = await seed(newStore(url0, prefix), queue, 10_000);
      const total = await waitUntilSettled(raw, prefix, raw, queue);
      const ms = Date.now() - started;
      await Promise.all(procs.map(stopRun));

      const sent = await drainQueue(raw, queue);
      const perProcess = procs.map((p) => p.logs.filter((l) => l.msg === 'dispatched').reduce((n, l) => n + Number(l.sent), 0));
      console.info(`[race] 3 daemons sent ${perProcess.join(' + ')} = ${total} in ${ms} ms (from the start of seeding)`);
      expect(sent.length).toBe(10_000);
      expect(duplicates(sent)).toBe(0);
      expect(new Set(sent)).toEqual(new Set(ids));
      expect(perProcess.reduce((a, b) => a + b, 0)).toBe(10_000);
      expect(procs.filter((p) => hasLog(p, (l) => l.msg === 'dispatched')).length).toBeGreaterThanOrEqual(2);
    },
    TEST_MS,
  );

  it.skipIf(skipPrivate)(
    'a broker crash and restart while sending: every job the broker did not already hold arrives after the restart',
    async () => {
      const prefix = newPrefix('restart');
      const queue = `${prefix}q`;
      const brokerServer = await newPrivate();
      const brokerUrl = brokerServer.urlFor(0);
      const store = newStore(url0, prefix);

      // The test's consumer: pops continuously for the whole test, and rides out the outage.
      const reader = new Redis(brokerUrl, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
      reader.on('error', () => {});
      clients.push(reader);
      let phase: 'before' | 'after' = 'before';
      const received: { id: string; phase: 'before' | 'after' }[] = [];
      let reading = true;
      cleanups.push(() => (reading = false));
      const readerLoop = (async () => {
        while (reading) {
          try {
            const raws = await reader.rpop(queue, 500);
            if (!raws || raws.length === 0) await sleep(2);
            else for (const m of raws) received.push({ id: String(parseRedisEnvelope(m).headers.id), phase });
          } catch {
            await sleep(20);
          }
        }
      })();

      const p = spawnRun({ backend: url0, broker: brokerUrl, prefix, batchSize: 200, leaseMs: 5000 });
      await waitFor('the dispatcher to start', () => hasLog(p, (l) => l.msg === 'dispatcher started'), 30_000);
      const first = await seed(store, queue, 5000);
      await waitFor('the first 500 messages', () => received.length >= 500, 30_000, 1);

      // Freeze the broker so that what it holds, what we read and what the store holds are one
      // consistent picture, then crash it.
      const admin = new Redis(brokerUrl);
      await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
      await sleep(100); // replies already on the wire reach the reader
      const inBroker = (await admin.lrange(queue, 0, -1)).map((m) => String(parseRedisEnvelope(m).headers.id));
      const { scheduled, inFlight } = await storeIds(raw, prefix);
      const receivedBefore = new Set(received.map((x) => x.id));
      phase = 'after';
      admin.disconnect();
      const killedWith = { received: receivedBefore.size, inBroker: inBroker.length, scheduled: scheduled.length, inFlight: inFlight.length };
      await brokerServer.kill?.();

      const second = await seed(store, queue, 1000);
      await sleep(1000);
      await brokerServer.restart?.();
      const restarted = Date.now();

      const lostWithBroker = new Set(inBroker);
      const mustArrive = [...new Set([...scheduled, ...inFlight, ...second])].filter((id) => !receivedBefore.has(id) && !lostWithBroker.has(id));
      const after = () => new Set(received.filter((x) => x.phase === 'after').map((x) => x.id));
      await waitFor('the store to empty', async () => (await storeCount(raw, prefix)) === 0, 60_000, 50);
      await waitFor('every job still in the store at the crash', () => mustArrive.every((id) => after().has(id)), 30_000, 50);
      await sleep(300); // nothing else is on its way
      reading = false;
      await readerLoop;
      await stopRun(p);

      const afterIds = after();
      const all = [...first, ...second];
      const duplicateCount = received.length - new Set(received.map((x) => x.id)).size;
      console.info(
        `[broker restart] at the crash: ${JSON.stringify(killedWith)}; after the restart ${afterIds.size} arrived in ${Date.now() - restarted} ms; ` +
          `${duplicateCount} received twice`,
      );
      expect(mustArrive.filter((id) => !afterIds.has(id))).toEqual([]);
      // Every job is accounted for: read before the crash, lost inside the crashed broker, or read after it.
      expect(all.filter((id) => !receivedBefore.has(id) && !lostWithBroker.has(id) && !afterIds.has(id))).toEqual([]);
      expect(second.every((id) => afterIds.has(id))).toBe(true);
      expect(await storeIds(raw, prefix)).toEqual({ scheduled: [], inFlight: [] });
      // The outage is reported once when it starts and once when it ends, not job by job.
      const count = (re: RegExp) => p.logs.filter((l) => re.test(l.msg)).length;
      const seen = JSON.stringify(logSummary(p));
      expect(count(/^broker unavailable/), seen).toBe(1);
      expect(count(/^broker available again/), seen).toBe(1);
      expect(count(/^broker refused a job/), seen).toBe(0);
    },
    TEST_MS,
  );
});
