/**
 * The AMQP limits mirror amqplib's encoder exactly (its own `encodeTable` is the oracle), and a job
 * past them is refused when it is scheduled, whichever broker is configured.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { amqpMessageProblem, headersBytes } from '../../src/celery/amqp-limits.js';
import { Celery } from '../../src/client/celery.js';
import { ValidationError } from '../../src/util/errors.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';

const require = createRequire(import.meta.url);
const codec = require('amqplib/lib/codec.js') as { encodeTable: (buf: Buffer, val: unknown, offset: number) => number };

/** A random JSON value of the kinds a stored entry holds. */
function randomValue(rand: () => number, depth: number): unknown {
  const r = rand();
  if (depth > 3 || r < 0.45) {
    const k = Math.floor(rand() * 9);
    const numbers = [0, 1, -1, 127, 128, -129, 32767, 32768, -32769, 2 ** 31, -(2 ** 31) - 1, 2 ** 50, 2 ** 53 + 2, 2 ** 63, 1.5, -0.25, 1e300];
    switch (k) {
      case 0:
        return null;
      case 1:
        return rand() < 0.5;
      case 2:
      case 3:
        return numbers[Math.floor(rand() * numbers.length)];
      default:
        return 'x€😀'.repeat(Math.floor(rand() * 50));
    }
  }
  if (r < 0.7) return Array.from({ length: Math.floor(rand() * 5) }, () => randomValue(rand, depth + 1));
  return Object.fromEntries(
    Array.from({ length: Math.floor(rand() * 5) }, (_, i) => [`k${i}-ü`.repeat(1 + Math.floor(rand() * 3)), randomValue(rand, depth + 1)]),
  );
}

describe('AMQP limits', () => {
  it('headersBytes is the size amqplib encodes, for 2,000 random header tables', () => {
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const buf = Buffer.alloc(1 << 20);
    for (let i = 0; i < 2000; i++) {
      const headers = randomValue(rand, 0);
      const table = headers !== null && typeof headers === 'object' && !Array.isArray(headers) ? (headers as Record<string, unknown>) : { v: headers };
      expect(headersBytes(table)).toBe(codec.encodeTable(buf, table, 0));
    }
  });

  it('names what amqplib cannot encode, without a stack overflow on deep values', () => {
    expect(headersBytes({ x: { '!': 'timestamp', value: 1 } })).toMatch(/headers\.x is an object with a "!" key/);
    expect(headersBytes({ [`${'k'.repeat(256)}`]: 1 })).toMatch(/key of 256 bytes, over AMQP's 255-byte limit/);
    expect(headersBytes({ x: -(2 ** 64) })).toMatch(/below the smallest 64-bit integer/);
    expect(headersBytes({ x: JSON.parse('['.repeat(50_000) + ']'.repeat(50_000)) as unknown })).toBeGreaterThan(50_000 * 5);
    const base = { exchange: '', routingKey: 'q', correlationId: 'id', replyTo: '', priority: 0, expiration: undefined, headers: {}, bodyBytes: 10 };
    expect(amqpMessageProblem(base)).toBeUndefined();
    expect(amqpMessageProblem({ ...base, headers: { x: 'h'.repeat(65_524) } })).toBeUndefined(); // 65,535 bytes: goes through
    expect(amqpMessageProblem({ ...base, headers: { x: 'h'.repeat(65_525) } })).toMatch(/headers take 65536 bytes encoded, over the 65535/);
    expect(amqpMessageProblem({ ...base, correlationId: 'é'.repeat(128) })).toMatch(/task id \(correlation_id\) is 256 bytes/);
    expect(amqpMessageProblem({ ...base, priority: 256 })).toMatch(/priority 256 is not a whole number from 0 to 255/);
    expect(amqpMessageProblem({ ...base, bodyBytes: 128 * 1024 * 1024 + 1 })).toMatch(/max_message_size/);
  });

  it('scheduling refuses headers no broker could carry, on any broker, and stores nothing', async () => {
    const app = new Celery({ broker: 'redis://127.0.0.1:1/0' });
    const store = new MemoryStore();
    Object.defineProperty(app, 'store', { get: () => store });
    const t = app.task('proj.t');
    await expect(t.applyAsync([], {}, { countdown: 60, headers: { big: 'h'.repeat(70_000) } })).rejects.toThrow(
      /message headers would take \d+ bytes encoded, over the 65535/,
    );
    await expect(t.applyAsync([], {}, { countdown: 60, headers: { bad: { '!': 'x', value: 1 } } })).rejects.toBeInstanceOf(ValidationError);
    const err = await app
      .sendTasks([
        { name: 'proj.t', options: { countdown: 60 } },
        { name: 'proj.t', options: { countdown: 60, headers: { big: 'h'.repeat(70_000) } } },
      ])
      .catch((e: unknown) => e);
    expect(String(err)).toMatch(/calls\[1\]: the message headers would take/);
    expect(await store.count()).toEqual({ scheduled: 0, inFlight: 0, dead: 0 });
    await t.applyAsync([], {}, { countdown: 60, headers: { fine: 'h'.repeat(60_000) } });
    expect((await store.count()).scheduled).toBe(1);
    await app.close();
  });
});
