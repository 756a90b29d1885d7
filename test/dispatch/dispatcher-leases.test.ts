/**
 * The dispatcher keeps its claims leased while a broker stalls (a slow confirm, a RabbitMQ memory
 * alarm), so another dispatcher never re-claims and re-sends them. Memory store, fake broker:
 * the real-RabbitMQ version of this is in test/brokers/amqp/amqp-private.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { Broker, PublishOutcome } from '../../src/brokers/broker.js';
import type { TaskMessage } from '../../src/celery/message.js';
import { Dispatcher } from '../../src/dispatch/dispatcher.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';

/** A broker that holds every publish until `open()` is called. */
class StalledBroker implements Broker {
  readonly description = 'stalled://';
  readonly published: TaskMessage[] = [];
  #gate!: () => void;
  readonly #opened = new Promise<void>((r) => (this.#gate = r));
  open(): void {
    this.#gate();
  }
  async publish(messages: readonly TaskMessage[]): Promise<PublishOutcome[]> {
    await this.#opened;
    this.published.push(...messages);
    return messages.map(() => ({ ok: true }));
  }
  async close(): Promise<void> {}
}

const entry = (id: string) => JSON.stringify([['lease.task'], { args: [id], task_id: id }]);

describe('lease renewal while the broker stalls', () => {
  it('a stall three times the lease: nobody else can claim the jobs, and each is sent once', async () => {
    // 20 jobs in batches of 10: one batch stalls in publish while the next waits, claimed, behind it
    const store = new MemoryStore();
    const now = Date.now() / 1000;
    await store.add(Array.from({ length: 20 }, (_, i) => ({ id: `j${i}`, dueAt: now - 1, entry: entry(`j${i}`) })));
    const broker = new StalledBroker();
    const leaseMs = 1000; // the floor: a shorter lease is refused
    const run = new Dispatcher({ store, broker, leaseMs, batchSize: 10 }).dispatchDue();

    const rival = store.handle();
    const stolen: string[] = [];
    for (let i = 0; i < 9; i++) {
      await new Promise((r) => setTimeout(r, leaseMs / 3));
      const got = await rival.claimDue({ until: Date.now() / 1000, now: Date.now() / 1000, limit: 100, leaseMs });
      stolen.push(...got.map((c) => c.id));
    }
    broker.open();
    const summary = await run;

    expect(stolen).toEqual([]);
    expect(summary).toMatchObject({ sent: 20, failed: 0 });
    expect(broker.published.length).toBe(20);
    expect(new Set(broker.published.map((m) => m.headers.id)).size).toBe(20);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });
});
