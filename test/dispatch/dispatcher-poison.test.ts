/**
 * Poison jobs and dead letters, on the memory store with scripted brokers and an injected clock:
 * what the dispatcher does with each kind of failure. The same on real brokers and stores is in
 * test/contract/poison-campaign.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { Broker, PublishOutcome } from '../../src/brokers/broker.js';
import type { TaskMessage } from '../../src/celery/message.js';
import { Dispatcher, DISPATCH_DEFAULTS, type DispatchDetail } from '../../src/dispatch/dispatcher.js';
import { ConnectionError, MessageRejectedError, UnroutableError, ValidationError } from '../../src/util/errors.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';

const T0 = 1_800_000_000;
const entry = (id: string, queue = 'q') => JSON.stringify([['poison.task'], { args: [id], task_id: id, queue }]);

/** Refuses every message for queue `bad`, with the error `refusal()` makes; accepts the rest. */
class ScriptedBroker implements Broker {
  readonly description = 'scripted://';
  readonly accepted: string[] = [];
  calls = 0;
  constructor(private readonly refusal: (m: TaskMessage) => Error = (m) => new UnroutableError('', m.routing.queue)) {}
  async publish(messages: readonly TaskMessage[]): Promise<PublishOutcome[]> {
    this.calls++;
    return messages.map((m) => {
      if (m.routing.queue === 'bad') return { ok: false, error: this.refusal(m) };
      this.accepted.push(m.headers.id as string);
      return { ok: true };
    });
  }
  async close(): Promise<void> {}
}

function setup(broker: Broker, o: { maxAttempts?: number } = {}) {
  const store = new MemoryStore();
  let now = T0;
  const details: DispatchDetail[] = [];
  const dispatcher = new Dispatcher({
    store,
    broker,
    clock: () => new Date(now * 1000),
    retryDelayMs: 10_000,
    retryDelayMaxMs: 60_000,
    ...o,
  });
  dispatcher.events.on('run', ({ detail }) => void details.push(detail));
  return { store, dispatcher, details, at: (t: number) => (now = t) };
}

describe('poison jobs and dead letters (dispatcher)', () => {
  it('a refused job costs only itself: the rest of its batch is sent once; it waits its own backoff, doubling, capped', async () => {
    const broker = new ScriptedBroker();
    const { store, dispatcher, at } = setup(broker, { maxAttempts: 5 });
    await store.add([
      { id: 'a', dueAt: T0 - 100, entry: entry('a') },
      { id: 'p', dueAt: T0 - 100, entry: entry('p', 'bad') },
      { id: 'b', dueAt: T0 - 100, entry: entry('b') },
    ]);
    expect(await dispatcher.dispatchDue()).toMatchObject({ sent: 2, failed: 1, dead: 0 });
    expect(broker.accepted).toEqual(['a', 'b']);
    // retried from now, not from its due time: 10 s, then 20 s, 40 s, capped at 60 s
    const expected = [10, 20, 40, 60];
    let t = T0;
    for (const [i, wait] of expected.entries()) {
      const job = await store.get('p');
      expect(job).toMatchObject({ state: 'scheduled', dueAt: t + wait });
      at(t + wait - 0.001);
      expect(await dispatcher.dispatchDue()).toMatchObject({ sent: 0, failed: 0 }); // not due yet
      t += wait;
      at(t);
      const s = await dispatcher.dispatchDue();
      expect(s).toMatchObject(i < expected.length - 1 ? { failed: 1, dead: 0 } : { failed: 0, dead: 1 });
    }
    expect(broker.accepted).toEqual(['a', 'b']);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 1 });
    const dead = await store.getDead('p');
    expect(dead).toMatchObject({ reason: 'max_attempts', attempts: 5, dueAt: T0 - 100, firstFailedAt: T0, diedAt: t, entry: entry('p', 'bad') });
    expect(dead?.error).toMatch(/no queue bound/);
  });

  it('an entry asking for what we cannot send as send_task would is a dead letter "unsupported" at once, with its reason; the rest go', async () => {
    const broker = new ScriptedBroker();
    const { store, dispatcher, details } = setup(broker);
    const kw = (extra: object) => JSON.stringify([['t'], { args: [1], ...extra }]);
    await store.add([
      { id: 'unknown', dueAt: T0, entry: kw({ task_id: 'unknown', stamped_headers: ['x'] }) },
      { id: 'pickler', dueAt: T0, entry: kw({ task_id: 'pickler', serializer: 'pickle' }) },
      { id: 'prio', dueAt: T0, entry: kw({ task_id: 'prio', priority: 1000 }) },
      {
        id: 'chain',
        dueAt: T0,
        entry: kw({ task_id: 'chain', chain: [{ task: 'next', args: [], kwargs: {}, options: {}, subtask_type: null, immutable: false }] }),
      },
      { id: 'ok', dueAt: T0, entry: entry('ok') },
    ]);
    expect(await dispatcher.dispatchDue()).toMatchObject({ sent: 2, failed: 0, dead: 3, corrupt: 0 });
    expect(details[0]?.deadByReason).toEqual({ corrupt: 0, unsupported: 3, rejected: 0, max_attempts: 0 });
    expect(broker.accepted.sort()).toEqual(['chain', 'ok']);
    expect(await store.getDead('unknown')).toMatchObject({
      reason: 'unsupported',
      error: expect.stringMatching(/"stamped_headers" is not one of Celery's send_task keywords/),
    });
    expect(await store.getDead('pickler')).toMatchObject({ reason: 'unsupported', error: expect.stringMatching(/serializer "pickle"/) });
    expect(await store.getDead('prio')).toMatchObject({ reason: 'unsupported', error: expect.stringMatching(/priority 1000 is impossible/) });
  });

  it('a message the broker can never carry is a dead letter at once; a corrupt entry too; neither is tried again', async () => {
    const broker = new ScriptedBroker((m) => new MessageRejectedError(m.headers.id as string, 'too large'));
    const { store, dispatcher, details } = setup(broker);
    await store.add([
      { id: 'big', dueAt: T0, entry: entry('big', 'bad') },
      { id: 'junk', dueAt: T0, entry: 'not json' },
      { id: 'deep', dueAt: T0, entry: JSON.stringify([['t'], { args: JSON.parse('['.repeat(300) + ']'.repeat(300)) as unknown[] }]) },
      { id: 'ok', dueAt: T0, entry: entry('ok') },
    ]);
    expect(await dispatcher.dispatchDue()).toMatchObject({ sent: 1, failed: 0, dead: 3, corrupt: 2 });
    expect(details[0]?.deadByReason).toEqual({ corrupt: 2, unsupported: 0, rejected: 1, max_attempts: 0 });
    expect(await store.getDead('big')).toMatchObject({ reason: 'rejected', attempts: 1, error: expect.stringMatching(/too large/) });
    expect(await store.getDead('junk')).toMatchObject({ reason: 'corrupt', attempts: 0, error: expect.stringMatching(/not JSON/) });
    expect(await store.getDead('deep')).toMatchObject({ reason: 'corrupt', error: expect.stringMatching(/nested more than 256 levels/) });
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 3 });
  });

  it("an unreachable broker is not the jobs' fault: they go back unchanged, no attempt counted", async () => {
    const broker: Broker = {
      description: 'down://',
      publish: async () => {
        throw new ConnectionError('Celery broker', 'redis://u:secret@nowhere:1/0', new Error('ECONNREFUSED'));
      },
      close: async () => {},
    };
    const { store, dispatcher } = setup(broker, { maxAttempts: 1 });
    await store.add([{ id: 'j', dueAt: T0 - 5, entry: entry('j') }]);
    for (let i = 0; i < 3; i++) {
      const s = await dispatcher.dispatchDue();
      expect(s).toMatchObject({ sent: 0, failed: 1, dead: 0 });
      expect(s.error?.message).not.toContain('secret');
    }
    expect(await store.get('j')).toMatchObject({ state: 'scheduled', dueAt: T0 - 5 });
    const [claim] = await store.claimDue({ until: T0, now: T0, limit: 1, leaseMs: 1000 });
    expect(claim!.attempts).toBeUndefined();
  });

  it('a dead letter retried goes out at once, with its attempts cleared', async () => {
    let refuse = true;
    const broker = new ScriptedBroker();
    const { store, dispatcher } = setup(
      {
        description: 'flaky://',
        publish: (m) => (refuse ? broker.publish(m) : Promise.resolve(m.map(() => ({ ok: true as const })))),
        close: async () => {},
      },
      { maxAttempts: 1 },
    );
    await store.add([{ id: 'x', dueAt: T0, entry: entry('x', 'bad') }]);
    expect(await dispatcher.dispatchDue()).toMatchObject({ dead: 1 });
    refuse = false;
    expect(await store.reviveDead(['x'], T0)).toEqual(['scheduled']);
    expect(await dispatcher.dispatchDue()).toMatchObject({ sent: 1, dead: 0 });
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
  });

  it('refuses settings at their extremes with one ValidationError naming each', () => {
    const store = new MemoryStore();
    const broker = new ScriptedBroker();
    for (const bad of [
      { leaseMs: 1 },
      { leaseMs: 999 },
      { leaseMs: 1e12 },
      { batchSize: 0 },
      { batchSize: 1e9 },
      { maxAttempts: 0 },
      { retryDelayMs: -1 },
      { leaseMs: Number.NaN },
    ]) {
      expect(() => new Dispatcher({ store, broker, ...bad })).toThrow(ValidationError);
    }
    expect(() => new Dispatcher({ store, broker, leaseMs: 1 })).toThrow(
      /leaseMs must be a whole number from 1000 to 86400000 ms \(a lease shorter than a claim-to-acknowledge round trip/,
    );
    expect(DISPATCH_DEFAULTS).toMatchObject({ maxAttempts: 10, retryDelayMs: 10_000, retryDelayMaxMs: 3_600_000 });
  });
});
