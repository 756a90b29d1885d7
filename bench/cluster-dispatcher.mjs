// One dispatcher in a process of its own, for bench/cluster.mjs's "separate processes" rows:
// opens the cluster store and the broker, says `ready`, waits for `go` on stdin, dispatches
// everything due, and prints how many it sent as one JSON line.
import { Dispatcher } from '../dist/exports/dispatch.js';
import { RedisBroker } from '../dist/exports/brokers.js';
import { RedisClusterStore } from '../dist/stores/redis/cluster-store.js';

const store = new RedisClusterStore(process.env.BENCH_CLUSTER_URL);
const broker = new RedisBroker(process.env.BENCH_BROKER_URL);
const dispatcher = new Dispatcher({ store, broker, batchSize: 1000 });
await store.count(); // connected, the layout read
process.stdout.write('ready\n');
process.stdin.once('data', async () => {
  const { sent } = await dispatcher.dispatchDue();
  process.stdout.write(`${JSON.stringify({ sent })}\n`);
  await broker.close();
  await store.close();
  process.exit(0);
});
