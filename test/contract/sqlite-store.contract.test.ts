import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/stores/sqlite/sqlite-store.js';
import { storeContract } from './store-contract.js';

storeContract('sqlite', {
  available: true,
  serviceName: 'none',
  async create() {
    const dir = mkdtempSync(join(tmpdir(), 'cls-sqlite-contract-'));
    const url = `sqlite:///${join(dir, 'store.db')}`;
    return {
      store: new SqliteStore(url),
      reopen: async () => new SqliteStore(url),
      destroy: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
});
