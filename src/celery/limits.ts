/**
 * What a job must fit so that every broker we send to, and every Python Celery worker that reads
 * it, can carry it. A job due in a year may well be sent by another broker than the one it was
 * scheduled for (a store outlives its broker), so these hold whichever broker is configured:
 * refused when scheduling (a `ValidationError`), and a stored job past them (written by another
 * tool) becomes a dead letter instead of a message that fails, or worse, fails its neighbours.
 *
 * The numbers were measured against RabbitMQ 3.10 with amqplib 0.10 and Python Celery 5.2:
 * - AMQP short strings (the task id as `correlation_id`, header names, `reply_to`) hold at most
 *   255 bytes; amqplib throws for more.
 * - amqplib encodes the headers table into one 64 KiB scratch buffer: a table of 65,535 bytes
 *   goes through; a larger one is silently cut, and RabbitMQ closes the whole connection
 *   (541 INTERNAL_ERROR), failing every message in flight on it.
 * - RabbitMQ closes the channel (406 `invalid expiration`) for an `expiration` it cannot hold;
 *   2^32-1 ms is the documented bound, so a longer one is left out (the worker still honours the
 *   `expires` header).
 * - RabbitMQ refuses bodies over `max_message_size` (128 MiB by default).
 * - Python's JSON decoder recurses once per nesting level (about 1,000 deep before
 *   RecursionError), and so do `JSON.stringify` and our `repr`; 256 levels is far past any real
 *   arguments and far below both.
 */

/** AMQP short strings: task ids, queue, exchange and routing key names, header names. */
export const MAX_SHORT_STRING_BYTES = 255;
/** The encoded AMQP headers table (`encodedHeadersBytes`). */
export const MAX_HEADERS_BYTES = 65_535;
/** RabbitMQ's per-message TTL (`expiration`), in milliseconds. */
export const MAX_EXPIRATION_MS = 2 ** 32 - 1;
/** RabbitMQ's default `max_message_size`: the serialized body. */
export const MAX_BODY_BYTES = 128 * 1024 * 1024;
/** Nesting of arrays and objects in a stored entry, counted from its root. */
export const MAX_JSON_DEPTH = 256;

/**
 * True when `value` nests arrays/objects more than `max` levels deep (a scalar is depth 0, `[]`
 * is 1). Iterative, so a value nested 100,000 deep is measured without a stack overflow.
 */
export function nestedDeeperThan(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** False for a string holding a lone UTF-16 surrogate, which no store, broker or worker can round-trip. */
export function isWellFormed(s: string): boolean {
  return s.isWellFormed();
}

/** UTF-8 bytes of a string. */
export function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}
