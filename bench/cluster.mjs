// The Redis Cluster store's rows for `npm run bench` (issue 15; `BENCH_ONLY=cluster` for these
// alone): a private cluster of 3 masters (no replicas: a bench measures the store, not
// replication), started here from the machine's redis-server and stopped at the end.
// - memory per job of N_CLUSTER future jobs (10,000,000 at scale 1), summed over the masters, beside
//   the single-Redis layout's bytes per job measured the same way in this run;
// - the empty pass (a dispatcher finding nothing due) with them stored, p50 / p99;
// - dispatch of N_DUE due jobs with them stored, as a ratio to the same dispatch from an empty
//   cluster, and the single-Redis layout's rate for the same jobs with its broker on another
//   server (publish-then-ack too, as the cluster's always is);
// - 1, 2 and 4 dispatchers at once on one cluster, in this one process (they share its core), and
//   each in a process of its own (bench/cluster-dispatcher.mjs; the machine's two cores are shared
//   with the three Redis servers).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Dispatcher } from '../dist/exports/dispatch.js';
import { RedisBroker } from '../dist/exports/brokers.js';
import { RedisStore } from '../dist/exports/stores.js';
import { RedisClusterStore } from '../dist/stores/redis/cluster-store.js';

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });

async function startCluster(masters) {
  const dir = mkdtempSync(join(tmpdir(), 'cls-bench-cluster-'));
  const ports = [];
  while (ports.length < masters) {
    const p = await freePort();
    if (p < 55_000 && !ports.includes(p)) ports.push(p);
  }
  const children = ports.map((port) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        '15000',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ],
      { stdio: ['ignore', openSync(join(dir, `redis-${port}.log`), 'a'), 'inherit'] },
    ),
  );
  process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
  // ioredis reconnects on its own every 50 ms until the server listens (a second connect() would
  // only be refused as "already connecting"), so each client is awaited until it is ready
  const clients = ports.map((port) => new Redis({ port, retryStrategy: () => 50 }));
  for (const c of clients) c.on('error', () => undefined);
  for (let i = 0; !clients.every((c) => c.status === 'ready'); i++) {
    if (i > 200) {
      const logs = ports.map((p) =>
        readFileSync(join(dir, `redis-${p}.log`), 'utf8')
          .split('\n')
          .slice(-4)
          .join('\n'),
      );
      throw new Error(`a cluster node did not start:\n${logs.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const out = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
    encoding: 'utf8',
  });
  if (out.status !== 0) throw new Error(`redis-cli --cluster create failed: ${out.stdout}${out.stderr}`);
  for (let i = 0; !(await clients[0].cluster('INFO')).includes('cluster_state:ok'); i++) {
    if (i > 200) throw new Error('the bench cluster did not come up');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    async used() {
      let sum = 0;
      for (const c of clients) sum += Number(/used_memory:(\d+)/.exec(await c.info('memory'))[1]);
      return sum;
    },
    async flush() {
      for (const c of clients) await c.flushall();
    },
    async stop() {
      for (const c of clients) c.disconnect();
      for (const c of children) c.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Dispatches everything due with `k` dispatchers, each in a child process (bench/cluster-dispatcher.mjs), timed from `go`. */
async function dispatchInProcesses(k, clusterUrl, brokerUrl) {
  const children = Array.from({ length: k }, () =>
    spawn(process.execPath, [new URL('./cluster-dispatcher.mjs', import.meta.url).pathname], {
      env: { ...process.env, BENCH_CLUSTER_URL: clusterUrl, BENCH_BROKER_URL: brokerUrl },
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
  );
  const lines = children.map((c) => {
    const queue = [];
    let wake;
    let buffer = '';
    c.stdout.on('data', (d) => {
      buffer += d;
      for (let i; (i = buffer.indexOf('\n')) >= 0; buffer = buffer.slice(i + 1)) {
        queue.push(buffer.slice(0, i));
        wake?.();
      }
    });
    return async () => {
      while (queue.length === 0) await new Promise((r) => (wake = r));
      return queue.shift();
    };
  });
  for (const next of lines) if ((await next()) !== 'ready') throw new Error('a dispatcher process did not start');
  const t = performance.now();
  for (const c of children) c.stdin.write('go\n');
  const results = await Promise.all(lines.map(async (next) => JSON.parse(await next())));
  const ms = performance.now() - t;
  return { ms, sent: results.reduce((a, r) => a + r.sent, 0) };
}

const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

/**
 * ctx: row, smallJob, fmtRate, rate, best, N_DUE, brokerUrl (a private Redis), otherUrl (another
 * private Redis, for the single-Redis store whose broker is elsewhere), scale.
 */
export async function clusterBenchmarks(ctx) {
  const { row, smallJob, fmtRate, rate, N_DUE, brokerUrl, otherUrl, scale } = ctx;
  const N_CLUSTER = Number(process.env.BENCH_CLUSTER_FUTURE ?? Math.round(10_000_000 * scale));
  const cluster = await startCluster(3);
  const brokerAdmin = new Redis(brokerUrl);
  const seed = async (store, n, dueAt, label) => {
    const started = performance.now();
    for (let i = 0; i < n; i += 5000) {
      const chunk = [];
      for (let k = i; k < Math.min(n, i + 5000); k++) chunk.push(smallJob(typeof dueAt === 'function' ? dueAt(k) : dueAt));
      await store.add(chunk);
      if (label && i % 1_000_000 === 0 && i > 0) console.error(`  ${label}: ${i.toLocaleString('en-US')} of ${n.toLocaleString('en-US')}…`);
    }
    return performance.now() - started;
  };
  const dispatchAll = async (store, dispatchers = 1) => {
    const brokers = Array.from({ length: dispatchers }, () => new RedisBroker(brokerUrl));
    const t = performance.now();
    const sums = await Promise.all(brokers.map((broker) => new Dispatcher({ store, broker, batchSize: 1000 }).dispatchDue()));
    const ms = performance.now() - t;
    const sent = sums.reduce((a, s) => a + s.sent, 0);
    for (const b of brokers) await b.close();
    await brokerAdmin.flushall();
    return { ms, sent };
  };
  try {
    console.error(`9. Redis Cluster (3 masters): ${N_CLUSTER.toLocaleString('en-US')} future jobs`);
    // the same dispatch from an empty cluster, and from one Redis with its broker elsewhere
    // each the better of two runs: the first also warms the JIT up
    let empty;
    for (let run = 0; run < 2; run++) {
      const fresh = new RedisClusterStore(cluster.url);
      await seed(fresh, N_DUE, 1000);
      const r = await dispatchAll(fresh);
      if (r.sent !== N_DUE) throw new Error(`cluster: sent ${r.sent} of ${N_DUE}`);
      if (!empty || r.ms < empty.ms) empty = r;
      await fresh.close();
      await cluster.flush();
    }
    const single = new RedisStore(`${otherUrl}/5`);
    let one;
    for (let run = 0; run < 2; run++) {
      await seed(single, N_DUE, 1000);
      const r = await dispatchAll(single);
      if (r.sent !== N_DUE) throw new Error(`single Redis: sent ${r.sent} of ${N_DUE}`);
      if (!one || r.ms < one.ms) one = r;
    }
    // the single layout's bytes per job, measured as the cluster's is
    const otherAdmin = new Redis(`${otherUrl}/5`);
    const before1 = Number(/used_memory:(\d+)/.exec(await otherAdmin.info('memory'))[1]);
    const N_MEM = Math.min(N_CLUSTER, 200_000);
    await seed(single, N_MEM, (k) => 4e9 + k);
    const singleBytes = (Number(/used_memory:(\d+)/.exec(await otherAdmin.info('memory'))[1]) - before1) / N_MEM;
    await otherAdmin.flushdb();
    otherAdmin.disconnect();
    await single.close();

    const store = new RedisClusterStore(cluster.url);
    const before = await cluster.used();
    const seedMs = await seed(store, N_CLUSTER, (k) => 4e9 + k, 'seeding');
    const bytes = ((await cluster.used()) - before) / N_CLUSTER;
    row(`cluster: bulk add of ${N_CLUSTER.toLocaleString('en-US')} jobs`, fmtRate(N_CLUSTER, seedMs), '', '', '');
    row(
      `cluster: memory per job, ${N_CLUSTER.toLocaleString('en-US')} stored (3 masters)`,
      `${Math.round(bytes)} B`,
      `single Redis layout ${Math.round(singleBytes)} B`,
      (bytes / singleBytes).toFixed(2),
      '<= 0.50',
    );

    const dispatcher = new Dispatcher({ store, broker: new RedisBroker(brokerUrl), batchSize: 1000 });
    const times = [];
    for (let i = 0; i < 20; i++) await dispatcher.dispatchDue();
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await dispatcher.dispatchDue();
      times.push(performance.now() - t);
    }
    row(
      `cluster: empty pass, ${N_CLUSTER.toLocaleString('en-US')} stored (p50 / p99)`,
      `${percentile(times, 0.5).toFixed(2)} / ${percentile(times, 0.99).toFixed(2)} ms`,
      '',
      '',
      '< 2 ms',
    );

    // the better of two runs, as the empty cluster's
    let crowded;
    for (let run = 0; run < 2; run++) {
      await seed(store, N_DUE, 1000);
      const r = await dispatchAll(store);
      if (r.sent !== N_DUE) throw new Error(`cluster, crowded: sent ${r.sent} of ${N_DUE}`);
      if (!crowded || r.ms < crowded.ms) crowded = r;
    }
    row(
      `cluster: dispatch ${N_DUE.toLocaleString('en-US')} due, ${N_CLUSTER.toLocaleString('en-US')} future stored`,
      fmtRate(N_DUE, crowded.ms),
      `empty cluster ${fmtRate(N_DUE, empty.ms)}`,
      (rate(N_DUE, crowded.ms) / rate(N_DUE, empty.ms)).toFixed(2),
      '>= 0.90',
    );
    row(
      `cluster: the same, against one Redis (broker elsewhere)`,
      fmtRate(N_DUE, crowded.ms),
      `single Redis layout ${fmtRate(N_DUE, one.ms)}`,
      (rate(N_DUE, crowded.ms) / rate(N_DUE, one.ms)).toFixed(2),
      '',
    );
    await store.close();
    await cluster.flush();

    for (const k of [1, 2, 4]) {
      const s = new RedisClusterStore(cluster.url);
      await seed(s, N_DUE, 1000);
      const r = await dispatchAll(s, k);
      if (r.sent !== N_DUE) throw new Error(`cluster, ${k} dispatchers: sent ${r.sent} of ${N_DUE}`);
      row(`cluster: ${k} dispatcher${k > 1 ? 's' : ''} at once (one process)`, fmtRate(N_DUE, r.ms), '', '', '');
      await s.close();
      await cluster.flush();
    }
    // the same in separate processes: each its own event loop, all on this machine's two cores
    let solo;
    for (const k of [1, 2, 4]) {
      const s = new RedisClusterStore(cluster.url);
      await seed(s, N_DUE, 1000);
      await s.close();
      const r = await dispatchInProcesses(k, cluster.url, brokerUrl);
      await brokerAdmin.flushall();
      if (r.sent !== N_DUE) throw new Error(`cluster, ${k} dispatcher processes: sent ${r.sent} of ${N_DUE}`);
      solo ??= r;
      row(
        `cluster: ${k} dispatcher${k > 1 ? 's' : ''}, one process each`,
        fmtRate(N_DUE, r.ms),
        k > 1 ? `1 process ${fmtRate(N_DUE, solo.ms)}` : '',
        k > 1 ? (rate(N_DUE, r.ms) / rate(N_DUE, solo.ms)).toFixed(2) : '',
        '',
      );
      await cluster.flush();
    }
  } finally {
    brokerAdmin.disconnect();
    await cluster.stop();
  }
}
