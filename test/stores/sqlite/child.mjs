// A separate dispatcher process for test/stores/sqlite/processes.test.ts: it uses the BUILT store
// (dist/, built by test/global-setup.ts) and reports on stdout, one line per committed step.
//
//   node child.mjs claim <url> <batch>   waits for "go" on stdin, then claims and acknowledges
//                                        until nothing is due; prints `claimed <ids JSON>` per batch
//   node child.mjs hold <url> <batch>    claims without acknowledging (long lease), forever
//   node child.mjs add <url> <batch>     adds batches of new jobs, forever; prints `added <n>`
//   node child.mjs keyed <url> <n> <mode>  waits for "go", then addKeyed's n jobs under the key
//                                        RACE; prints `result <KeyedAddResult JSON>` or
//                                        `taken <holder id>` (JobKeyTakenError) per call
import { SqliteStore } from '../../../dist/stores/sqlite/sqlite-store.js';

const [mode, url, batchArg] = process.argv.slice(2);
const batch = Number(batchArg);
const store = new SqliteStore(url);
const NOW = 1_800_000_000;
const say = (line) => new Promise((resolve) => process.stdout.write(`${line}\n`, resolve));

await store.count(); // open (and migrate) before the race starts
if (mode === 'claim') {
  await say('ready');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  for (;;) {
    const claims = await store.claimDue({ until: NOW, now: NOW, limit: batch, leaseMs: 600_000 });
    if (claims.length === 0) break;
    await store.acknowledge(claims);
    await say(`claimed ${JSON.stringify(claims.map((c) => c.id))}`);
  }
  await store.close();
  process.exit(0);
} else if (mode === 'hold') {
  for (;;) {
    const claims = await store.claimDue({ until: NOW, now: NOW, limit: batch, leaseMs: 600_000 });
    if (claims.length) await say(`claimed ${JSON.stringify(claims.map((c) => c.id))}`);
  }
} else if (mode === 'add') {
  for (let n = 0; ; n++) {
    const jobs = Array.from({ length: batch }, (_, i) => ({ id: `${process.pid}-${n}-${i}`, dueAt: NOW + i, entry: JSON.stringify([['t'], { n, i }]) }));
    await store.add(jobs);
    await say(`added ${n}`);
  }
} else if (mode === 'keyed') {
  await say('ready');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  for (let i = 0; i < batch; i++) {
    const id = `${process.pid}-${i}`;
    try {
      await say(`result ${JSON.stringify(await store.addKeyed({ id, dueAt: NOW + i, entry: JSON.stringify([['t'], { id }]) }, 'RACE', process.argv[5]))}`);
    } catch (err) {
      if (err?.name !== 'JobKeyTakenError') throw err;
      await say(`taken ${err.taskId}`);
    }
  }
  await store.close();
  process.exit(0);
} else {
  throw new Error(`unknown mode ${mode}`);
}
