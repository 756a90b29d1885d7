// `npm run bench`: throughput, memory and lateness, each next to a floor measured in the same run.
//
// Runs against a private redis-server on a free port (so memory figures and FLUSHDB are safe),
// never the shared one. Absolute numbers on these machines are noisy; read the ratios.
// Set BENCH_SCALE=0.1 for a quick run (fewer jobs; the 1M-job rows use 100k). Set BENCH_ONLY=stores
// to run only the SQLite and PostgreSQL store rows (bench/stores.mjs) beside the LPUSH floor, or
// BENCH_ONLY=search for only the search rows (bench/search.mjs: pages by tag on every store), or
// BENCH_ONLY=ui for only the dashboard's requests (bench/ui.mjs: each view's request on 1M SQLite jobs),
// BENCH_ONLY=cluster for only the Redis Cluster store's rows (bench/cluster.mjs: a private 3-master
// cluster, 10M future jobs at scale 1, BENCH_CLUSTER_FUTURE to change that alone), BENCH_ONLY=peers
// for the peer rows (bench/peers.mjs: BullMQ and ours on the same Redis, 100k delayed jobs each).
// `npm run bench` runs Node with --max-semi-space-size=64, as the CLI's shebang does: the
// dispatcher allocates many short-lived strings, and a larger young generation spends ~20% less
// time in garbage collection. Floors and our code run in the same process, under the same flag.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import { AmqpBroker, RedisBroker } from '../dist/exports/brokers.js';
import { Celery, getScheduler } from '../dist/index.js';
import { Dispatcher } from '../dist/exports/dispatch.js';
import { RedisStore } from '../dist/exports/stores.js';
import { buildTaskMessage } from '../dist/exports/protocol.js';
import { encodeEntry } from '../dist/job/entry.js';
import { resolveTaskCall } from '../dist/job/options.js';
import { queueListKey, toRedisEnvelope, parseRedisEnvelope } from '../dist/celery/kombu-redis.js';
import { publishOptions } from '../dist/brokers/amqp/amqp-broker.js';
import { PG_URL, postgresKind, reachable, sqliteKind, storeBenchmarks } from './stores.mjs';
import { searchBenchmarks } from './search.mjs';
import { uiBenchmarks } from './ui.mjs';
import { clusterBenchmarks } from './cluster.mjs';
import { peerBenchmarks } from './peers.mjs';

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const N_DUE = Math.round(100_000 * SCALE);
const N_FUTURE = Math.round(1_000_000 * SCALE);
const QUEUE = 'bench';
const root = fileURLToPath(new URL('..', import.meta.url));
const rows = [];
const row = (name, value, reference, ratio, target) => {
  rows.push({ name, value, reference, ratio, target });
  console.error(`  ${name}: ${value}${reference ? `  (ref ${reference})` : ''}${ratio ? `  ratio ${ratio}` : ''}`);
};
const fmtRate = (n, ms) => `${Math.round((n / ms) * 1000).toLocaleString('en-US')} jobs/s`;
const rate = (n, ms) => (n / ms) * 1000;

// --- a private Redis --------------------------------------------------------------------------
const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'cls-bench-'));
// --hz 100 and DEBUG (local connections only) let `settle()` wait for Redis to finish resizing
// its hash tables after a million inserts, so runs compare steady states (see settle()).
const REDIS_ARGS = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--hz', '100', '--enable-debug-command', 'local'];
const server = spawn('redis-server', ['--port', String(port), ...REDIS_ARGS], { stdio: 'ignore' });
process.on('exit', () => server.kill('SIGKILL'));
const url = `redis://127.0.0.1:${port}`;
const port2 = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const server2 = spawn('redis-server', ['--port', String(port2), ...REDIS_ARGS], { stdio: 'ignore' });
process.on('exit', () => server2.kill('SIGKILL'));
const url2 = `redis://127.0.0.1:${port2}`;
const admin = new Redis(`${url}/0`);
admin.on('error', () => {}); // the server may still be starting: the ping loop below waits for it
for (let i = 0; i < 100; i++) {
  try {
    await admin.ping();
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 50));
  }
}
const redisVersion = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1];
console.error(`bench: private Redis ${redisVersion} on port ${port}, scale ${SCALE}`);

const smallJob = (dueAt, task = 'bench.add') => {
  const { job } = resolveTaskCall(task, [1, 2], {}, { queue: QUEUE });
  return { id: job.id, dueAt, entry: encodeEntry(job) };
};
async function seed(store, n, dueAt) {
  for (let i = 0; i < n; i += 5000) {
    const chunk = [];
    for (let k = i; k < Math.min(n, i + 5000); k++) chunk.push(smallJob(typeof dueAt === 'function' ? dueAt(k) : dueAt));
    await store.add(chunk);
  }
}
async function flush() {
  await admin.flushall();
}

// --- 1. dispatch rate vs the LPUSH floor ----------------------------------------------------------
async function dispatchRate(futureCount, label, brokerUrl = `${url}/0`) {
  await flush();
  const store = new RedisStore(`${url}/1`);
  const broker = new RedisBroker(brokerUrl);
  if (futureCount) {
    console.error(`  seeding ${futureCount.toLocaleString('en-US')} future jobs…`);
    await seed(store, futureCount, (k) => 4e9 + k);
  }
  await seed(store, N_DUE, 1000);
  await settle(1);
  const dispatcher = new Dispatcher({ store, broker, batchSize: 1000 });
  const t = performance.now();
  const summary = await dispatcher.dispatchDue();
  const ms = performance.now() - t;
  if (summary.sent !== N_DUE) throw new Error(`${label}: sent ${summary.sent} of ${N_DUE}`);
  const mode = dispatcher.mode;
  await store.close();
  await broker.close();
  if (brokerUrl !== `${url}/0`) {
    const other = new Redis(brokerUrl);
    await other.flushall();
    other.disconnect();
  }
  return { ms, mode };
}

/**
 * Waits until Redis has finished growing the keyspace's hash table. After crossing a power of two
 * of keys, Redis rehashes incrementally for many seconds, and every lookup meanwhile probes two
 * tables: a transient of the seeding, not a cost of dispatch. Both sides of every ratio are
 * measured in this steady state. (A sorted set's own table is only rehashed when that key is
 * used, not in the background, so waiting for it would wait forever; it is left as it is.)
 */
async function settle(db) {
  const client = new Redis(`${url}/${db}`);
  const rehashing = async () => (String(await client.call('DEBUG', 'HTSTATS', String(db))).match(/table size/g) ?? []).length > 1;
  const deadline = Date.now() + 120_000;
  while ((await rehashing()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  client.disconnect();
}

/** The better of two runs after a warm-up: these machines are noisy and the JIT warms up. */
async function best(fn) {
  const a = await fn();
  const b = await fn();
  return (a.ms ?? a) <= (b.ms ?? b) ? a : b;
}

async function lpushFloor(target = `${url}/0`) {
  await flush();
  const messages = [];
  for (let i = 0; i < N_DUE; i++) {
    const { job } = resolveTaskCall('bench.add', [1, 2], {}, { queue: QUEUE });
    const msg = buildTaskMessage(job, { now: new Date(), defaultQueue: 'celery' });
    messages.push(toRedisEnvelope(msg, { exchange: '', routingKey: QUEUE }));
  }
  const client = new Redis(target);
  const key = queueListKey(QUEUE, 0);
  const t = performance.now();
  for (let i = 0; i < messages.length; i += 1000) {
    const p = client.pipeline();
    for (const m of messages.slice(i, i + 1000)) p.lpush(key, m);
    await p.exec();
  }
  const ms = performance.now() - t;
  await client.del(key);
  client.disconnect();
  return ms;
}

// --- 1b. dispatch to RabbitMQ vs amqplib with confirms --------------------------------------------
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672//';
const amqpReachable = () => reachable(AMQP_URL, 5672);

/** A fresh durable queue for one run; `use(queue, channel)` runs against it, then it is deleted. */
async function withFreshQueue(use) {
  const conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  const queue = `cls-bench-${randomUUID()}`;
  await ch.assertQueue(queue, { durable: true });
  try {
    return await use(queue, ch);
  } finally {
    await ch.purgeQueue(queue).catch(() => undefined);
    await ch.deleteQueue(queue).catch(() => undefined);
    await conn.close();
  }
}

/**
 * The floor: amqplib alone publishing the same prebuilt messages (JSON body, the same headers and
 * properties the broker writes, mandatory) on a confirm channel, waiting for confirms every
 * 1,000 and for 'drain' whenever publish() says its buffer is full.
 */
async function amqpFloor() {
  return withFreshQueue(async (queue, ch) => {
    const prebuilt = [];
    for (let i = 0; i < N_DUE; i++) {
      const { job } = resolveTaskCall('bench.add', [1, 2], {}, { queue });
      const msg = buildTaskMessage(job, { now: new Date(), defaultQueue: 'celery' });
      prebuilt.push({ body: Buffer.from(JSON.stringify(msg.body), 'utf8'), options: publishOptions(msg) });
    }
    const conn = await amqp.connect(AMQP_URL);
    const confirm = await conn.createConfirmChannel();
    const t = performance.now();
    for (let i = 0; i < prebuilt.length; i++) {
      const m = prebuilt[i];
      if (!confirm.publish('', queue, m.body, m.options)) await new Promise((r) => confirm.once('drain', r));
      if ((i + 1) % 1000 === 0) await confirm.waitForConfirms();
    }
    await confirm.waitForConfirms();
    const ms = performance.now() - t;
    await conn.close();
    const { messageCount } = await ch.checkQueue(queue);
    if (messageCount !== N_DUE) throw new Error(`amqplib floor: ${messageCount} of ${N_DUE} in the queue`);
    return ms;
  });
}

/** Ours: a Dispatcher over a RedisStore (the private Redis) publishing through AmqpBroker. */
async function amqpDispatchRate() {
  return withFreshQueue(async (queue, ch) => {
    await flush();
    const store = new RedisStore(`${url}/1`);
    for (let i = 0; i < N_DUE; i += 5000) {
      const chunk = [];
      for (let k = i; k < Math.min(N_DUE, i + 5000); k++) {
        const { job } = resolveTaskCall('bench.add', [1, 2], {}, { queue });
        chunk.push({ id: job.id, dueAt: 1000, entry: encodeEntry(job) });
      }
      await store.add(chunk);
    }
    // no settle(): RabbitMQ's confirm round trips dominate, and settle() can wait out its whole
    // 120 s deadline when the index's own hash table is mid-rehash (it only advances on access)
    const broker = new AmqpBroker(AMQP_URL);
    const dispatcher = new Dispatcher({ store, broker, batchSize: 1000 });
    const t = performance.now();
    const summary = await dispatcher.dispatchDue();
    const ms = performance.now() - t;
    await store.close();
    await broker.close();
    if (summary.sent !== N_DUE) throw new Error(`RabbitMQ dispatch: sent ${summary.sent} of ${N_DUE}${summary.error ? ` (${summary.error.message})` : ''}`);
    const { messageCount } = await ch.checkQueue(queue);
    if (messageCount !== N_DUE) throw new Error(`RabbitMQ dispatch: ${messageCount} of ${N_DUE} in the queue`);
    return ms;
  });
}

// --- 3. an empty pass with many jobs stored -------------------------------------------------------
async function emptyPass() {
  // reuses the 1M future jobs seeded by the previous step: nothing is due now
  const store = new RedisStore(`${url}/1`);
  const broker = new RedisBroker(`${url}/0`);
  const dispatcher = new Dispatcher({ store, broker });
  await dispatcher.dispatchDue();
  const times = [];
  for (let i = 0; i < 300; i++) {
    const t = performance.now();
    await dispatcher.dispatchDue();
    await store.nextDueAt(); // what the daemon does after every pass
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const stored = (await store.count()).scheduled;
  await store.close();
  await broker.close();
  return { p50: times[150], p99: times[297], stored };
}

// --- 4. scheduling rate -----------------------------------------------------------------------------
async function schedulingRates() {
  await flush();
  const app = new Celery({ broker: `${url}/0`, longtermSchedulerBackend: `${url}/1` });
  const add = app.task('bench.add');
  const out = {};
  let n = Math.round(5000 * Math.max(SCALE, 0.2));
  let t = performance.now();
  for (let i = 0; i < n; i++) await add.applyAsync([1, 2], {}, { countdown: 3600 });
  out.single = rate(n, performance.now() - t);

  n = Math.round(50_000 * Math.max(SCALE, 0.2));
  t = performance.now();
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: 100 }, () => add.applyAsync([1, 2], {}, { countdown: 3600 })));
  }
  out.concurrent = rate(n, performance.now() - t);

  n = N_DUE;
  t = performance.now();
  for (let i = 0; i < n; i += 1000) {
    await app.sendTasks(Array.from({ length: 1000 }, () => ({ name: 'bench.add', args: [1, 2], options: { countdown: 3600 } })));
  }
  out.bulk = rate(n, performance.now() - t);

  // the floor for one-at-a-time: an awaited raw SET + ZADD pair in MULTI
  const raw = new Redis(`${url}/2`);
  n = Math.round(5000 * Math.max(SCALE, 0.2));
  t = performance.now();
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    await raw.multi().set(id, `[["bench.add"],{"args":[1,2],"task_id":"${id}"}]`).zadd('scheduled_task_id_by_time', 4e9, id).exec();
  }
  out.rawSingle = rate(n, performance.now() - t);
  raw.disconnect();
  await app.close();
  return out;
}

// --- 5. memory per stored job -------------------------------------------------------------------------
async function memoryPerJob() {
  const n = N_DUE;
  await flush();
  const used = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
  const base = await used();
  const app = new Celery({ broker: `${url}/0`, longtermSchedulerBackend: `${url}/0` });
  for (let i = 0; i < n; i += 1000) {
    await app.sendTasks(Array.from({ length: 1000 }, () => ({ name: 'bench.add', args: [1, 2], options: { countdown: 3600 } })));
  }
  const ours = ((await used()) - base) / n;
  await app.close();
  await flush();
  const base2 = await used();
  const raw = new Redis(`${url}/0`);
  for (let i = 0; i < n; i += 1000) {
    const p = raw.pipeline();
    for (let k = 0; k < 1000; k++) {
      const id = randomUUID();
      p.set(id, `[["bench.add"],{"args":[1,2],"task_id":"${id}"}]`).zadd('scheduled_task_id_by_time', 4e9 + i + k, id);
    }
    await p.exec();
  }
  const floor = ((await used()) - base2) / n;
  raw.disconnect();
  return { ours, floor };
}

// --- 6. lateness of `run` ----------------------------------------------------------------------------------
async function lateness() {
  await flush();
  const n = Math.round(10_000 * Math.max(SCALE, 0.1));
  const spreadMs = 10_000;
  const app = new Celery({ broker: `${url}/0`, longtermSchedulerBackend: `${url}/1` });
  const start = Date.now() + 2000; // time for the daemon to start
  const due = new Map();
  for (let i = 0; i < n; i += 1000) {
    const calls = [];
    for (let k = i; k < Math.min(n, i + 1000); k++)
      calls.push({ name: 'bench.add', args: [k], options: { eta: new Date(start + (k * spreadMs) / n), queue: QUEUE } });
    const results = await app.sendTasks(calls);
    for (const r of results) due.set(r.id, r.dueAt.getTime());
  }
  await app.close();
  const child = spawn(process.execPath, ['--max-semi-space-size=64', join(root, 'dist/cli/main.js'), '--backend', `${url}/1`, '--broker', `${url}/0`, 'run'], {
    stdio: 'ignore',
  });
  const reader = new Redis(`${url}/0`);
  const late = [];
  const deadline = start + spreadMs + 15_000;
  while (late.length < n && Date.now() < deadline) {
    const got = await reader.brpop(QUEUE, 1);
    if (!got) continue;
    const arrived = Date.now();
    late.push(arrived - due.get(String(parseRedisEnvelope(got[1]).headers.id)));
  }
  child.kill('SIGTERM');
  reader.disconnect();
  late.sort((a, b) => a - b);
  const q = (p) => late[Math.min(late.length - 1, Math.floor(p * late.length))];
  return { n, received: late.length, p50: q(0.5), p99: q(0.99), max: late[late.length - 1] };
}

// --- run them all -------------------------------------------------------------------------------------------
const ONLY = process.env.BENCH_ONLY;
if (ONLY !== undefined && !['stores', 'search', 'ui', 'peers', 'cluster'].includes(ONLY))
  throw new Error(`BENCH_ONLY=${ONLY}: the subsets are 'stores', 'search', 'ui', 'peers' and 'cluster'`);
let floorMs;
// the LPUSH floor: a reference of the main rows and of the store rows
if (ONLY === undefined || ONLY === 'stores') {
  console.error('1. dispatch rate vs the raw LPUSH floor (warm-up, then the better of two runs each)');
  await dispatchRate(0, 'warm-up');
  floorMs = await best(() => lpushFloor());
}
if (ONLY === undefined) {
  const atomic = await best(() => dispatchRate(0, 'no future jobs'));
  row(
    `dispatch ${N_DUE.toLocaleString('en-US')} due (${atomic.mode}, same server)`,
    fmtRate(N_DUE, atomic.ms),
    `LPUSH floor ${fmtRate(N_DUE, floorMs)}`,
    (rate(N_DUE, atomic.ms) / rate(N_DUE, floorMs)).toFixed(2),
    '>= 0.50',
  );

  const floor2Ms = await best(() => lpushFloor(`${url2}/0`));
  const separate = await best(() => dispatchRate(0, 'separate broker', `${url2}/0`));
  row(
    `dispatch ${N_DUE.toLocaleString('en-US')} due (${separate.mode}, broker on another server)`,
    fmtRate(N_DUE, separate.ms),
    `LPUSH floor ${fmtRate(N_DUE, floor2Ms)}`,
    (rate(N_DUE, separate.ms) / rate(N_DUE, floor2Ms)).toFixed(2),
    '',
  );

  if (await amqpReachable()) {
    const amqpFloorMs = await best(() => amqpFloor());
    const amqpMs = await best(() => amqpDispatchRate());
    row(
      `dispatch ${N_DUE.toLocaleString('en-US')} due to RabbitMQ (confirms)`,
      fmtRate(N_DUE, amqpMs),
      `amqplib confirms floor ${fmtRate(N_DUE, amqpFloorMs)}`,
      (rate(N_DUE, amqpMs) / rate(N_DUE, amqpFloorMs)).toFixed(2),
      '>= 0.50',
    );
  } else {
    console.error(`  skipped: dispatch to RabbitMQ (nothing listens at ${AMQP_URL.replace(/:[^:@/]*@/, ':***@')})`);
  }

  console.error('2. dispatch with many future jobs stored');
  const crowded = await best(() => dispatchRate(N_FUTURE, 'with future jobs'));
  row(
    `dispatch with ${N_FUTURE.toLocaleString('en-US')} future stored`,
    fmtRate(N_DUE, crowded.ms),
    `no future stored ${fmtRate(N_DUE, atomic.ms)}`,
    (rate(N_DUE, crowded.ms) / rate(N_DUE, atomic.ms)).toFixed(2),
    '>= 0.90',
  );

  console.error('3. empty pass');
  const empty = await emptyPass();
  row(`empty pass, ${empty.stored.toLocaleString('en-US')} stored (p50 / p99)`, `${empty.p50.toFixed(2)} / ${empty.p99.toFixed(2)} ms`, '', '', '< 2 ms');

  console.error('4. scheduling');
  const sched = await schedulingRates();
  row(
    'schedule one at a time, awaited',
    `${Math.round(sched.single).toLocaleString('en-US')} jobs/s`,
    `raw MULTI SET+ZADD ${Math.round(sched.rawSingle).toLocaleString('en-US')}/s`,
    (sched.single / sched.rawSingle).toFixed(2),
    '',
  );
  row('schedule 100 concurrent', `${Math.round(sched.concurrent).toLocaleString('en-US')} jobs/s`, '', '', '');
  row('schedule in bulk (sendTasks, 1,000 per call)', `${Math.round(sched.bulk).toLocaleString('en-US')} jobs/s`, '', '', '');

  console.error('5. memory');
  const mem = await memoryPerJob();
  row(
    'Redis memory per stored job (args [1, 2])',
    `${Math.round(mem.ours)} B`,
    `raw SET+ZADD ${Math.round(mem.floor)} B`,
    (mem.ours / mem.floor).toFixed(3),
    '<= 1.10',
  );

  console.error('6. lateness of `run`');
  const lat = await lateness();
  row(
    `lateness of run, ${lat.n.toLocaleString('en-US')} jobs over 10 s (p50 / p99 / max)`,
    `${lat.p50} / ${lat.p99} / ${lat.max} ms`,
    `${lat.received} received`,
    '',
    'p99 < 20 ms',
  );
}

if (ONLY === undefined || ONLY === 'stores')
  await storeBenchmarks({ row, smallJob, fmtRate, rate, best, flush, lpushFloorMs: floorMs, N_DUE, N_FUTURE, brokerUrl: `${url}/0`, dir, scale: SCALE });

if (ONLY === undefined || ONLY === 'search') {
  const redisKind = {
    name: 'Redis',
    async open() {
      await flush();
      const store = new RedisStore(`${url}/2`);
      return {
        store,
        drop: async () => {
          await store.close();
          await flush();
        },
      };
    },
  };
  const kinds = [sqliteKind(dir), redisKind];
  if (await reachable(PG_URL, 5432)) kinds.splice(1, 0, postgresKind());
  await searchBenchmarks({ row, smallJob, N_FUTURE, kinds, rate });
}

if (ONLY === undefined || ONLY === 'ui') await uiBenchmarks({ row, smallJob, N_FUTURE, dir, brokerUrl: `${url}/0` });

if (ONLY === undefined || ONLY === 'peers') await peerBenchmarks({ row, smallJob, fmtRate, rate, N_DUE, url, flush });

if (ONLY === undefined || ONLY === 'cluster')
  await clusterBenchmarks({ row, smallJob, fmtRate, rate, N_DUE, brokerUrl: `${url}/0`, otherUrl: url2, scale: SCALE });

admin.disconnect();
server.kill('SIGTERM');
server2.kill('SIGTERM');
rmSync(dir, { recursive: true, force: true });

// --- the table ---------------------------------------------------------------------------------------------------
const headers = ['benchmark', 'result', 'same-run reference', 'ratio', 'target'];
const table = rows.map((r) => [r.name, r.value, r.reference, r.ratio, r.target]);
const widths = headers.map((h, i) => Math.max(h.length, ...table.map((t) => String(t[i]).length)));
const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(`\nMachine: ${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, Redis ${redisVersion}\n`);
console.log(line(headers));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const t of table) console.log(line(t));
