/**
 * What amqplib and RabbitMQ can carry, checked before a message is written, so that one message
 * never fails its neighbours (see `src/celery/limits.ts` for the measured numbers).
 *
 * Why it matters: amqplib registers a publish's confirm callback before it encodes the message,
 * so an encoding error thrown from `publish()` leaves the channel's confirms misaligned (the next
 * message's confirm would be credited to this one); and a headers table over 64 KiB is not an
 * error at all in amqplib, it is cut short, and RabbitMQ closes the whole connection. So the
 * encoder's rules are mirrored here, exactly: the sizes come from amqplib's own table encoding
 * (`lib/codec.js`: a one-byte type tag per value; strings as 4-byte length + UTF-8; integers in
 * the smallest of 1/2/4/8 bytes; other numbers as 8-byte doubles; arrays and tables with a 4-byte
 * length), and so do the values it cannot encode.
 */
import { MAX_BODY_BYTES, MAX_HEADERS_BYTES, MAX_SHORT_STRING_BYTES, utf8Bytes } from './limits.js';

/** Why amqplib or RabbitMQ cannot carry a message with these parts, or undefined when they can. */
export function amqpMessageProblem(m: {
  exchange: string;
  routingKey: string;
  correlationId: string;
  replyTo: string;
  priority: number;
  expiration: string | undefined;
  headers: Record<string, unknown>;
  bodyBytes: number;
}): string | undefined {
  const short = (what: string, v: string) =>
    utf8Bytes(v) > MAX_SHORT_STRING_BYTES ? `its ${what} is ${utf8Bytes(v)} bytes, over AMQP's ${MAX_SHORT_STRING_BYTES}-byte short-string limit` : undefined;
  const problem =
    short('task id (correlation_id)', m.correlationId) ??
    short('reply_to', m.replyTo) ??
    short('exchange name', m.exchange) ??
    short('routing key', m.routingKey) ??
    (m.expiration !== undefined ? short('expiration', m.expiration) : undefined);
  if (problem) return problem;
  if (!Number.isInteger(m.priority) || m.priority < 0 || m.priority > 255) return `its priority ${String(m.priority)} is not a whole number from 0 to 255`;
  if (m.bodyBytes > MAX_BODY_BYTES) return `its body is ${m.bodyBytes} bytes, over RabbitMQ's default max_message_size of ${MAX_BODY_BYTES}`;
  const sized = headersBytes(m.headers);
  if (typeof sized === 'string') return sized;
  if (sized > MAX_HEADERS_BYTES)
    return `its headers take ${sized} bytes encoded, over the ${MAX_HEADERS_BYTES} amqplib can send (RabbitMQ would close the connection)`;
  return undefined;
}

/** The encoded size of an AMQP headers table as amqplib writes it, or why it cannot be encoded. */
export function headersBytes(headers: Record<string, unknown>): number | string {
  // iterative (headers may nest deeply): [value, path]; a table or array adds its length prefix when visited
  let bytes = 0;
  const stack: [unknown, string][] = [[headers, 'headers']];
  let first = true;
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (first) {
      // the top-level table: no type tag, only its length
      first = false;
      bytes += 4;
      const r = pushTable(v as Record<string, unknown>, path, stack);
      if (typeof r === 'string') return r;
      bytes += r;
      continue;
    }
    bytes += 1; // the type tag
    switch (typeof v) {
      case 'string':
        bytes += 4 + utf8Bytes(v);
        continue;
      case 'boolean':
        bytes += 1;
        continue;
      case 'number': {
        const size = numberBytes(v);
        if (typeof size === 'string') return `${path} ${size}`;
        bytes += size;
        continue;
      }
      case 'object':
        if (v === null) continue;
        bytes += 4;
        if (Array.isArray(v)) {
          for (let i = v.length - 1; i >= 0; i--) {
            if (v[i] === undefined) return `${path}[${i}] is undefined, which AMQP cannot encode`;
            stack.push([v[i], `${path}[${i}]`]);
          }
          continue;
        }
        if (Object.hasOwn(v, '!')) return `${path} is an object with a "!" key, which amqplib reads as a type tag`;
        {
          const r = pushTable(v as Record<string, unknown>, path, stack);
          if (typeof r === 'string') return r;
          bytes += r;
        }
        continue;
      default:
        return `${path} is a ${typeof v}, which AMQP cannot encode`;
    }
  }
  return bytes;
}

/** Pushes a table's values; returns the bytes of its keys (1 + UTF-8 each), or a problem. */
function pushTable(t: Record<string, unknown>, path: string, stack: [unknown, string][]): number | string {
  let bytes = 0;
  const entries = Object.entries(t).filter(([, v]) => v !== undefined); // amqplib skips undefined members
  for (let i = entries.length - 1; i >= 0; i--) {
    const [k, v] = entries[i] as [string, unknown];
    const kb = utf8Bytes(k);
    if (kb > MAX_SHORT_STRING_BYTES) return `${path} has a key of ${kb} bytes, over AMQP's ${MAX_SHORT_STRING_BYTES}-byte limit for header names`;
    bytes += 1 + kb;
    stack.push([v, `${path}.${k}`]);
  }
  return bytes;
}

/** amqplib's choice for a number: a double, or the smallest signed integer that holds it. */
function numberBytes(n: number): number | string {
  if (!Number.isFinite(n)) return `is ${n}, which AMQP cannot encode`;
  const floating = n >= 0x8000000000000000 || (Math.abs(n) < 0x4000000000000 && Math.floor(n) !== n);
  if (floating) return 8;
  if (n >= -128 && n < 128) return 1;
  if (n >= -0x8000 && n < 0x8000) return 2;
  if (n >= -0x80000000 && n < 0x80000000) return 4;
  if (n < -0x8000000000000000) return `is ${n}, below the smallest 64-bit integer amqplib can encode`;
  return 8;
}
