// `npm run demo`: the whole life of long-term jobs in a few seconds.
//
// Jobs wait in the embedded default store, the SQLite file celery-longterm-scheduler.db in the
// working directory; the Celery broker is the Redis at REDIS_URL (default redis://127.0.0.1:6379/0).
// Schedules three tasks 1-3 s ahead, revokes one, runs the dispatcher as cron would (every
// 500 ms), and shows the other two arriving in the broker queue as protocol-2 messages. Uses a
// queue of its own and cleans up after itself.
import { Redis } from 'ioredis';
import { Celery, getScheduler, redactUrl } from '../dist/index.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const queue = `cls-demo-${process.pid}`;

const probe = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null });
probe.on('error', () => {});
try {
  await probe.connect();
} catch (err) {
  console.error(`No Redis reachable at ${redactUrl(url)} (${err.message}).`);
  console.error('Start one (e.g. `redis-server --daemonize yes`) or point REDIS_URL at yours, then run `npm run demo` again.');
  process.exit(1);
}

const app = new Celery({ broker: url }); // no store configured: the SQLite default
const scheduler = getScheduler(app);
const add = app.task('proj.tasks.add');
const t0 = Date.now();
const at = () => `+${((Date.now() - t0) / 1000).toFixed(1)}s`.padStart(6);

const jobs = [];
try {
  console.log(`store: ${app.store.description}   broker: ${redactUrl(url)}   queue: ${queue}\n`);
  for (const [i, args] of [[1, 2], [3, 4], [5, 6]].entries()) {
    const result = await add.applyAsync(args, {}, { countdown: i + 1, queue });
    jobs.push({ id: result.id, args, due: result.dueAt });
    console.log(`${at()}  scheduled add(${args.join(', ')})  id=${result.id}  due ${result.dueAt.toISOString()}`);
  }
  console.log(`${at()}  broker queue length: ${await probe.llen(queue)} (scheduling never touches the broker)`);
  const revoked = jobs[1];
  console.log(`${at()}  revoke ${revoked.id}: ${await scheduler.revoke(revoked.id)}`);

  let seen = 0;
  while (Date.now() - t0 < 4000) {
    await new Promise((r) => setTimeout(r, 500));
    const summary = await scheduler.dispatchDue();
    if (summary.sent) console.log(`${at()}  dispatch: sent ${summary.sent}, failed ${summary.failed}, ${summary.elapsedMs.toFixed(1)} ms`);
    for (const raw of (await probe.lrange(queue, 0, -1)).reverse().slice(seen)) {
      const msg = JSON.parse(raw);
      const [args, kwargs] = JSON.parse(Buffer.from(msg.body, 'base64').toString('utf8'));
      console.log(`${at()}  arrived in "${queue}": task=${msg.headers.task} id=${msg.headers.id} args=${JSON.stringify(args)} kwargs=${JSON.stringify(kwargs)}`);
      seen++;
    }
  }
  const left = (await Promise.all(jobs.map((j) => app.store.get(j.id)))).filter(Boolean).length;
  console.log(`\n${seen} messages reached the broker (the revoked one never did); ${left} of the demo's jobs left in the store.`);
  console.log('A Celery worker consuming that queue would now run them.');
} finally {
  for (const j of jobs) await app.store.remove(j.id);
  await probe.del(queue, `_kombu.binding.${queue}`);
  probe.disconnect();
  await app.close();
}
