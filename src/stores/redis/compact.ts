/**
 * The compact tier of a cluster store's shard (issue 15): where a job due later than the hot
 * window is kept, in about a third of the bytes of the Redis layout. Python's package cannot read
 * it (the README says so); the cluster layout is ours alone anyway.
 *
 *   <cp>cold_chunks      ZSET chunk number -> the least due time it covers
 *   <cp>cold:<chunk>     ZSET task id -> due time, at most 120 jobs
 *   <cp>cold_bucket:<b>  HASH task id -> '<due time>|<compact entry>'
 *   <cp>cold_seq         the last chunk number given
 *
 * (<cp>: the shard's prefix, then `celery_longterm_scheduler:`.) Redis keeps a small sorted set or
 * hash as one listpack, a few bytes of overhead per member, where the index's skiplist costs
 * about 110 bytes a member and a key of its own about 70 more: so the time index is cut into
 * chunks of consecutive due times (split when one passes 120 members, between two due times) and
 * the entries are spread over `buckets` hashes by their id's hash (about 38 each at 10M jobs
 * over 2^18 buckets; a bucket past 128 members, or holding a value past 64 bytes, is still right,
 * only larger: Redis converts it to a hash table).
 *
 * A compact entry is the entry with common JSON fragments (`[["`, `"],{"args":`, the task id
 * keyword with the job's own id, ...) each written as one control byte, which valid JSON never
 * holds raw: `[["bench.add"],{"args":[1,2],"task_id":"<id>","queue":"bench"}]` (88 bytes) is
 * 24. It is exact: expanding gives back the same bytes, whoever wrote the entry.
 *
 * The scripts' half of this is lua/includes/cold.lua (the same bucket hash and fragments; a test
 * checks both agree). Which jobs go to the tier, and how every operation sees it, is
 * ./cluster-store.ts's `Shard`.
 */

/** `[byte, fragment]`; the id fragments (4, 6) are the task id keyword holding the job's own id. */
const FRAGMENTS: readonly (readonly [number, string])[] = [
  [3, '"], {"args": '],
  [2, '"],{"args":'],
  [7, ', "queue": "'],
  [5, ',"queue":"'],
  [12, ', "kwargs": '],
  [11, ',"kwargs":'],
  [1, '[["'],
  [8, '"}]'],
  [14, '}]'],
];

/** Bytes a valid JSON text never holds raw (the fragments' codes among them), and NUL. */
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f]/;

/** Redis keeps a hash a listpack while each field and value is at most this long (`hash-max-listpack-value`). */
export const LISTPACK_VALUE_BYTES = 64;

const utf8 = new TextEncoder();

/**
 * The bucket value `'<due>|<compact entry>'` of a job, or undefined when the job is not worth
 * keeping compact: an id or entry holding a raw control byte (not valid JSON), or an id or value
 * too long for a listpack (it would turn its whole bucket or chunk into a hash table).
 */
export function coldValue(id: string, dueAt: number, entry: string): string | undefined {
  if (CONTROL.test(entry) || CONTROL.test(id) || utf8.encode(id).length > LISTPACK_VALUE_BYTES) return undefined;
  let out = entry;
  // only an id JSON writes as itself can be found written in the entry
  if (JSON.stringify(id) === `"${id}"`) out = out.replaceAll(`, "task_id": "${id}"`, '\x06').replaceAll(`,"task_id":"${id}"`, '\x04');
  for (const [code, fragment] of FRAGMENTS) out = out.replaceAll(fragment, String.fromCharCode(code));
  const value = `${String(dueAt)}|${out}`;
  return utf8.encode(value).length <= LISTPACK_VALUE_BYTES ? value : undefined;
}

const BY_CODE = new Map(FRAGMENTS.map(([code, fragment]) => [String.fromCharCode(code), fragment]));

/** The entry a compact one stands for (the inverse of `coldValue`'s). */
export function expandEntry(id: string, compact: string): string {
  return compact.replace(/[\x01-\x08\x0b\x0c\x0e-\x1f]/g, (c) =>
    c === '\x04' ? `,"task_id":"${id}"` : c === '\x06' ? `, "task_id": "${id}"` : (BY_CODE.get(c) ?? ''),
  );
}

/** The bucket number of an id: FNV-1a of its UTF-8 bytes, scaled to `buckets` by its high bits. */
export function coldBucket(id: string, buckets: number): number {
  let h = 0x811c9dc5;
  for (const b of utf8.encode(id)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return Math.floor((h * buckets) / 2 ** 32);
}

/** A bucket value `'<due>|<compact>'` as its job's due time and entry. */
export function readColdValue(id: string, value: string): { dueAt: number; entry: string } {
  const sep = value.indexOf('|');
  return { dueAt: Number(value.slice(0, sep)), entry: expandEntry(id, value.slice(sep + 1)) };
}
