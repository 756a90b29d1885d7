/**
 * Turns URLs into stores and brokers. The one place that knows which schemes exist.
 */
import type { Broker } from './broker.js';
import { RedisBroker } from './brokers/redis/redis-broker.js';
import { AmqpBroker, type AmqpBrokerOptions } from './brokers/amqp/amqp-broker.js';
import { ValidationError, redactUrl } from './errors.js';
import type { KombuRedisLayout } from './celery/kombu-redis.js';
import { isRedisScheme, type RedisConnectionOptions } from './redis-connection.js';
import type { ScheduleStore } from './store.js';
import { RedisStore } from './stores/redis/redis-store.js';

function scheme(url: string, what: string, example: string): string {
  if (typeof url !== 'string' || url.trim() === '') throw new ValidationError([`the ${what} URL is empty; pass e.g. ${example}`]);
  const m = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  if (!m?.[1]) throw new ValidationError([`the ${what} URL ${JSON.stringify(redactUrl(url))} has no scheme; pass e.g. ${example}`]);
  return m[1].toLowerCase();
}

export function createStore(url: string, options: RedisConnectionOptions & { keyPrefix?: string } = {}): ScheduleStore {
  const s = scheme(url, 'store', 'redis://localhost:6379/1');
  if (isRedisScheme(s)) return new RedisStore(url, options);
  throw new ValidationError([`store URL scheme "${s}:" is not supported; use redis://, rediss:// or sentinel://`]);
}

export function createBroker(
  url: string,
  options: RedisConnectionOptions & { layout?: Partial<KombuRedisLayout> } & AmqpBrokerOptions = {},
): Broker {
  const s = scheme(url, 'broker', 'redis://localhost:6379/0');
  if (isRedisScheme(s)) return new RedisBroker(url, options);
  if (s === 'amqp' || s === 'amqps' || s === 'pyamqp') {
    const { heartbeat, ca, cert, key } = options;
    const connectTimeout = options.connectTimeout ?? options.socketConnectTimeout;
    return new AmqpBroker(url, { heartbeat, ca, cert, key, connectTimeout });
  }
  throw new ValidationError([`broker URL scheme "${s}:" is not supported; use redis://, rediss://, sentinel://, amqp://, amqps:// or pyamqp://`]);
}
