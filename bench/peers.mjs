// The peer rows of `npm run bench` (issue 15; `BENCH_ONLY=peers` for these alone): BullMQ (npm
// `bullmq`, a dev dependency of the bench only) and this package on the same private Redis in the
// same run, N_DUE delayed jobs of the same payload (args [1, 2]) each:
// - bytes per job (used_memory before and after, over the jobs);
// - the bulk add rate (BullMQ `addBulk`, ours `store.add`, 1,000 jobs per call);
// - moving the jobs once due: BullMQ `promoteJobs` (delayed -> wait, in Redis), ours a dispatch
//   (claim, build the Celery message, LPUSH onto the broker queue, acknowledge), the broker on the
//   same server (the atomic hand-off).
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { Dispatcher } from '../dist/exports/dispatch.js';
import { RedisBroker } from '../dist/exports/brokers.js';
import { RedisStore } from '../dist/exports/stores.js';

const usedMemory = async (client) => Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1]);

/** ctx: row, smallJob, fmtRate, rate, N_DUE, url (a private Redis, flushed by `flush`), flush. */
export async function peerBenchmarks(ctx) {
  const { row, smallJob, fmtRate, N_DUE, url, flush } = ctx;
  const version = (await import('bullmq/package.json', { with: { type: 'json' } })).default.version;
  console.error(`10. peers: BullMQ ${version} and this package, ${N_DUE.toLocaleString('en-US')} delayed jobs each`);
  const admin = new Redis(`${url}/3`);

  // BullMQ: delayed jobs of the same payload, due in a day, then made due and promoted
  await flush();
  const connection = new Redis(`${url}/3`, { maxRetriesPerRequest: null });
  const queue = new Queue('bench-peer', { connection });
  await queue.waitUntilReady();
  let before = await usedMemory(admin);
  let t = performance.now();
  for (let i = 0; i < N_DUE; i += 1000) {
    const batch = [];
    for (let k = i; k < Math.min(N_DUE, i + 1000); k++) batch.push({ name: 'bench.add', data: { args: [1, 2] }, opts: { delay: 86_400_000 } });
    await queue.addBulk(batch);
  }
  const bullAddMs = performance.now() - t;
  const bullBytes = ((await usedMemory(admin)) - before) / N_DUE;
  t = performance.now();
  for (;;) {
    // promotes up to 1,000 delayed jobs per call, whatever their delay
    await queue.promoteJobs({ count: 1000 });
    if ((await queue.getDelayedCount()) === 0) break;
  }
  const bullPromoteMs = performance.now() - t;
  const waiting = await queue.getWaitingCount();
  if (waiting !== N_DUE) throw new Error(`BullMQ: ${waiting} of ${N_DUE} waiting after promoteJobs`);
  await queue.close();
  connection.disconnect();

  // ours: the same number of jobs, due in a day, then all made due and dispatched
  await flush();
  const store = new RedisStore(`${url}/3`);
  const broker = new RedisBroker(`${url}/3`);
  before = await usedMemory(admin);
  const later = Date.now() / 1000 + 86_400;
  const jobs = [];
  for (let k = 0; k < N_DUE; k++) jobs.push(smallJob(later + k / 1000));
  t = performance.now();
  for (let i = 0; i < N_DUE; i += 1000) await store.add(jobs.slice(i, i + 1000));
  const ourAddMs = performance.now() - t;
  const ourBytes = ((await usedMemory(admin)) - before) / N_DUE;
  const dispatcher = new Dispatcher({ store, broker, batchSize: 1000 });
  t = performance.now();
  const summary = await dispatcher.dispatchDue(new Date((later + N_DUE) * 1000));
  const ourDispatchMs = performance.now() - t;
  if (summary.sent !== N_DUE) throw new Error(`ours: sent ${summary.sent} of ${N_DUE}`);
  await store.close();
  await broker.close();
  admin.disconnect();
  await flush();

  row(
    `peer: bytes per delayed job (args [1, 2])`,
    `ours ${Math.round(ourBytes)} B`,
    `BullMQ ${version} ${Math.round(bullBytes)} B`,
    (ourBytes / bullBytes).toFixed(2),
    '',
  );
  row(
    `peer: bulk add of ${N_DUE.toLocaleString('en-US')} delayed jobs`,
    `ours ${fmtRate(N_DUE, ourAddMs)}`,
    `BullMQ addBulk ${fmtRate(N_DUE, bullAddMs)}`,
    (bullAddMs / ourAddMs).toFixed(2),
    '',
  );
  row(
    `peer: moving ${N_DUE.toLocaleString('en-US')} due jobs on`,
    `ours, dispatch to the broker ${fmtRate(N_DUE, ourDispatchMs)}`,
    `BullMQ promoteJobs ${fmtRate(N_DUE, bullPromoteMs)}`,
    (bullPromoteMs / ourDispatchMs).toFixed(2),
    '',
  );
}
