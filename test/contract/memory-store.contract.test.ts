import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { storeContract } from './store-contract.js';

storeContract('memory', {
  available: true,
  serviceName: 'none',
  async create() {
    const store = new MemoryStore();
    return { store, reopen: async () => store.handle(), destroy: async () => {} };
  },
});
