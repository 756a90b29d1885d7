import { afterAll } from 'vitest';
import { migrateSchema } from '../../src/stores/postgres/migrations.js';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { dropSchema } from '../helpers/postgres.js';
import { postgres, requireService, uniqueSchema } from '../helpers/services.js';
import { storeContract } from './store-contract.js';

const service = await postgres();
afterAll(() => service?.stop());

storeContract('postgres', {
  available: service !== undefined && !requireService(service, 'PostgreSQL'),
  serviceName: 'PostgreSQL',
  async create() {
    const url = service!.url;
    const schema = uniqueSchema('contract');
    await migrateSchema(url, { schema });
    return {
      store: new PostgresStore(url, { schema }),
      reopen: async () => new PostgresStore(url, { schema }),
      destroy: () => dropSchema(url, schema).then(() => undefined),
    };
  },
});
