import { RedisStore } from '../../src/stores/redis/redis-store.js';
import { requireService, sharedRedis, uniquePrefix } from '../helpers/services.js';
import { storeContract } from './store-contract.js';

const redis = await sharedRedis();

storeContract('redis', {
  available: redis !== undefined && !requireService(redis, 'Redis'),
  serviceName: 'Redis',
  async create() {
    const url = redis!.urlFor(0);
    const keyPrefix = uniquePrefix('contract');
    const store = new RedisStore(url, { keyPrefix });
    return {
      store,
      reopen: async () => new RedisStore(url, { keyPrefix }),
      async destroy() {
        const cleaner = new RedisStore(url, { keyPrefix });
        const client = await cleaner.client();
        const keys = await client.keys(`${keyPrefix}*`);
        if (keys.length) await client.del(...keys);
        await cleaner.close();
      },
    };
  },
});
