// Per-store benchmarks for `npm run bench` (SQLite and PostgreSQL; the Redis store's rows are in
// run.mjs): scheduling one at a time and in bulk, dispatch of N due jobs into the same Redis
// broker as the LPUSH floor, dispatch with 1M future jobs stored, and bytes on disk per job.
// Each store gets a fresh place of its own (a temp file, a schema) that is removed afterwards.
import { Socket } from 'node:net';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import pg from 'pg';
import Database from 'better-sqlite3';
import { Dispatcher } from '../dist/exports/dispatch.js';
import { RedisBroker } from '../dist/exports/brokers.js';
import { SqliteStore } from '../dist/stores/sqlite/sqlite-store.js';
import { PostgresStore } from '../dist/stores/postgres/postgres-store.js';

export const PG_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether something accepts TCP connections at the URL's host and port (`defaultPort` when it has none). */
export function reachable(url, defaultPort) {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('error', () => done(false));
    s.connect(Number(u.port || defaultPort), u.hostname, () => done(true));
  });
}

/** One kind of store: how to make a fresh one, and how many bytes it keeps on disk. */
export function sqliteKind(dir) {
  let n = 0;
  return {
    name: 'SQLite',
    async open() {
      const file = join(dir, `bench-${n++}.db`);
      const store = new SqliteStore(`sqlite:///${file}`);
      return {
        store,
        async bytes() {
          // after a checkpoint every page is in the main file and the WAL is empty
          await store.count();
          const db = new Database(file);
          db.pragma('wal_checkpoint(TRUNCATE)');
          db.close();
          const size = (f) => {
            try {
              return statSync(f).size;
            } catch {
              return 0;
            }
          };
          return size(file) + size(`${file}-wal`);
        },
        async drop() {
          await store.close();
        },
      };
    },
  };
}

export function postgresKind() {
  let n = 0;
  return {
    name: 'PostgreSQL',
    async open() {
      const schema = `bench_${process.pid}_${n++}`;
      const store = new PostgresStore(PG_URL, { schema, migrate: true });
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      return {
        store,
        /** after a bulk load, what autovacuum does on its own soon after: the visibility map and statistics */
        async settle() {
          await admin.query(`VACUUM ANALYZE "${schema}".jobs, "${schema}".job_tags`);
        },
        async bytes() {
          await admin.query(`VACUUM ANALYZE "${schema}".jobs`);
          const r = await admin.query(`SELECT pg_total_relation_size('"${schema}".jobs') AS b`);
          return Number(r.rows[0].b);
        },
        async drop() {
          await store.close();
          await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
          await admin.end();
        },
      };
    },
  };
}

/**
 * Runs every store row. `ctx` brings run.mjs's helpers: row(), smallJob(), fmtRate(), rate(),
 * best(), flush(), lpushFloorMs (measured in this run on the same broker), N_DUE, N_FUTURE,
 * brokerUrl, dir.
 */
export async function storeBenchmarks(ctx) {
  const { row, smallJob, fmtRate, rate, best, flush, lpushFloorMs, N_DUE, N_FUTURE, brokerUrl, dir } = ctx;
  const kinds = [sqliteKind(dir)];
  if (await reachable(PG_URL, 5432)) kinds.push(postgresKind());
  else console.error(`  skipped: PostgreSQL store (nothing listens at ${PG_URL})`);
  const results = {};

  async function seed(store, n, dueAt) {
    for (let i = 0; i < n; i += 5000) {
      const chunk = [];
      for (let k = i; k < Math.min(n, i + 5000); k++) chunk.push(smallJob(dueAt(k)));
      await store.add(chunk);
    }
  }

  async function dispatch(kind, future) {
    await flush();
    const place = await kind.open();
    try {
      if (future) {
        console.error(`  ${kind.name}: seeding ${future.toLocaleString('en-US')} future jobs…`);
        await seed(place.store, future, (k) => 4e9 + k);
      }
      await seed(place.store, N_DUE, () => 1000);
      const broker = new RedisBroker(brokerUrl);
      const dispatcher = new Dispatcher({ store: place.store, broker, batchSize: 1000 });
      const t = performance.now();
      const summary = await dispatcher.dispatchDue();
      const ms = performance.now() - t;
      await broker.close();
      if (summary.sent !== N_DUE) throw new Error(`${kind.name}: sent ${summary.sent} of ${N_DUE}`);
      return { ms };
    } finally {
      await place.drop();
    }
  }

  for (const kind of kinds) {
    console.error(`7. ${kind.name} store`);
    const r = (results[kind.name] = {});
    // scheduling: one at a time (each a durable commit), then bulk
    let place = await kind.open();
    try {
      const single = Math.round(2000 * Math.max(ctx.scale, 0.5));
      let t = performance.now();
      for (let i = 0; i < single; i++) await place.store.add([smallJob(4e9 + i)]);
      r.single = rate(single, performance.now() - t);
      const jobs = [];
      for (let i = 0; i < N_DUE; i++) jobs.push(smallJob(4e9 + 10_000 + i));
      t = performance.now();
      for (let i = 0; i < jobs.length; i += 5000) await place.store.add(jobs.slice(i, i + 5000));
      r.bulk = rate(N_DUE, performance.now() - t);
      r.bytesPerJob = (await place.bytes()) / (N_DUE + single);
    } finally {
      await place.drop();
    }
    await dispatch(kind, 0); // warm-up
    r.dispatch = await best(() => dispatch(kind, 0));
    r.crowded = await dispatch(kind, N_FUTURE);
  }

  for (const [name, r] of Object.entries(results)) {
    row(`${name}: schedule one at a time, awaited`, `${Math.round(r.single).toLocaleString('en-US')} jobs/s`, '', '', '');
    const bulkTarget =
      name === 'PostgreSQL'
        ? '>= 40,000/s'
        : name === 'SQLite' && results.PostgreSQL
          ? `>= PostgreSQL (${Math.round(results.PostgreSQL.bulk).toLocaleString('en-US')}/s)`
          : '';
    row(`${name}: schedule in bulk (5,000 per add)`, `${Math.round(r.bulk).toLocaleString('en-US')} jobs/s`, '', '', bulkTarget);
    const dispatchTarget =
      name === 'PostgreSQL'
        ? '>= 10,000/s'
        : name === 'SQLite' && results.PostgreSQL
          ? `>= PostgreSQL (${Math.round(rate(N_DUE, results.PostgreSQL.dispatch.ms)).toLocaleString('en-US')}/s)`
          : '';
    row(
      `${name}: dispatch ${N_DUE.toLocaleString('en-US')} due into Redis`,
      fmtRate(N_DUE, r.dispatch.ms),
      `LPUSH floor ${fmtRate(N_DUE, lpushFloorMs)}`,
      (rate(N_DUE, r.dispatch.ms) / rate(N_DUE, lpushFloorMs)).toFixed(2),
      dispatchTarget,
    );
    row(
      `${name}: dispatch with ${N_FUTURE.toLocaleString('en-US')} future stored`,
      fmtRate(N_DUE, r.crowded.ms),
      `no future stored ${fmtRate(N_DUE, r.dispatch.ms)}`,
      (rate(N_DUE, r.crowded.ms) / rate(N_DUE, r.dispatch.ms)).toFixed(2),
      '',
    );
    row(`${name}: bytes on disk per job (args [1, 2])`, `${Math.round(r.bytesPerJob)} B`, '', '', '');
  }
}
