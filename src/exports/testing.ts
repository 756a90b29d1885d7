/** `celery-longterm-scheduler/testing`: an in-memory store that keeps the store contract, for your tests. */
export { MemoryStore } from '../stores/memory/memory-store.js';
