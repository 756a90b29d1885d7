/**
 * `celery-longterm-scheduler/protocol`: Celery's wire format as this package writes it
 * (docs/protocol.md), the result backend's keys, and the Redis store's key names.
 */
export { buildTaskMessage, type TaskMessage } from '../celery/message.js';
export { formatCeleryTime } from '../celery/time.js';
export { RedisResultBackend, resultKey, resultKeyPrefix, revokeBroadcast, revokedMeta, type RedisResultBackendOptions } from '../results/redis-backend.js';
export { INDEX_KEY, IN_FLIGHT_KEY, IN_FLIGHT_ENTRIES_KEY, CORRUPT_KEY, WAKEUP_CHANNEL } from '../stores/redis/redis-store.js';
