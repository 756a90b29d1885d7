/**
 * Throughput on the test machine: bulk add of 100,000 jobs and claim+acknowledge in batches of
 * 500. Targets (2 cores): >= 40,000 adds/s and >= 10,000 dispatches/s. The assertions use a
 * quarter of each so a busy CI machine does not fail them; the rates are printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NewJob } from '../../../src/job/types.js';
import { migrateSchema } from '../../../src/stores/postgres/migrations.js';
import { PostgresStore } from '../../../src/stores/postgres/postgres-store.js';
import { postgres, requireService, uniqueSchema } from '../../helpers/services.js';
import { dropSchema } from '../../helpers/postgres.js';

const service = await postgres();
const skip = requireService(service, 'PostgreSQL');
afterAll(() => service?.stop());
const T0 = 1_800_000_000;
const N = 100_000;

describe.skipIf(skip)('PostgreSQL store throughput', () => {
  const url = service?.url ?? '';
  const schema = uniqueSchema('perf');
  let store: PostgresStore;
  beforeAll(async () => {
    await migrateSchema(url, { schema });
    store = new PostgresStore(url, { schema });
  });
  afterAll(async () => {
    await store?.close();
    await dropSchema(url, schema);
  });

  it('adds 100,000 jobs in one call, then dispatches them all in batches of 500', { timeout: 120_000 }, async () => {
    const jobs: NewJob[] = Array.from({ length: N }, (_, i) => {
      const id = `0b7e6f3c-${String(i).padStart(8, '0')}-4f2a-9d1e-perf`;
      // a realistic entry, about 250 bytes
      return {
        id,
        dueAt: T0 + (i % 3600) + i / N,
        entry: JSON.stringify([
          ['app.tasks.send_reminder'],
          { task_id: id, args: [i, 'user@example.com'], kwargs: { template: 'reminder', locale: 'en' }, queue: 'celery', eta: '2027-01-15T08:00:00+00:00' },
        ]),
      };
    });
    let t = performance.now();
    expect(await store.add(jobs)).toBe(N);
    const addRate = N / ((performance.now() - t) / 1000);

    t = performance.now();
    let dispatched = 0;
    let previous = -Infinity;
    let ordered = true;
    for (;;) {
      const claims = await store.claimDue({ until: T0 + 3600, now: T0, limit: 500, leaseMs: 60_000 });
      if (claims.length === 0) break;
      for (const c of claims) {
        if (c.dueAt < previous) ordered = false;
        previous = c.dueAt;
      }
      await store.acknowledge(claims);
      dispatched += claims.length;
    }
    const dispatchRate = dispatched / ((performance.now() - t) / 1000);
    console.log(`[postgres] bulk add: ${Math.round(addRate)} jobs/s; claim+ack (batches of 500): ${Math.round(dispatchRate)} jobs/s`);
    expect(dispatched).toBe(N);
    expect(ordered).toBe(true);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    expect(addRate).toBeGreaterThan(10_000);
    expect(dispatchRate).toBeGreaterThan(2_500);
  });
});
