/**
 * Redis stores on fresh key prefixes for one describe block, with a raw client to look at their
 * keys: call inside `describe`; it closes the stores and deletes their keys after the block.
 */
import { afterAll, beforeAll } from 'vitest';
import { Redis } from 'ioredis';
import { RedisStore } from '../../../src/exports/stores.js';
import { uniquePrefix, type RedisService } from '../../helpers/services.js';

export function prefixedStores(service: RedisService | undefined, label: string): { raw: () => Redis; fresh: () => { store: RedisStore; prefix: string } } {
  let raw: Redis | undefined;
  const stores: RedisStore[] = [];
  const prefixes: string[] = [];
  beforeAll(() => {
    raw = new Redis((service as RedisService).urlFor(0));
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    for (const p of prefixes) {
      const keys = await (raw as Redis).keys(`${p}*`);
      if (keys.length) await (raw as Redis).del(...keys);
    }
    raw?.disconnect();
  });
  return {
    raw: () => raw as Redis,
    fresh: () => {
      const prefix = uniquePrefix(label);
      prefixes.push(prefix);
      const store = new RedisStore((service as RedisService).urlFor(0), { keyPrefix: prefix });
      stores.push(store);
      return { store, prefix };
    },
  };
}
