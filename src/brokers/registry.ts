/**
 * Turns a broker URL into a broker: the one place that knows which broker schemes exist.
 */
import type { Broker } from './broker.js';
import { RedisBroker } from './redis/redis-broker.js';
import { AmqpBroker, type AmqpBrokerOptions } from './amqp/amqp-broker.js';
import { ValidationError } from '../util/errors.js';
import { requireScheme } from '../util/url.js';
import type { KombuRedisLayout } from '../celery/kombu-redis.js';
import { isRedisScheme, type RedisConnectionOptions } from '../redis/connection.js';

export function createBroker(url: string, options: RedisConnectionOptions & { layout?: Partial<KombuRedisLayout> } & AmqpBrokerOptions = {}): Broker {
  const s = requireScheme(url, 'broker', 'redis://localhost:6379/0');
  if (isRedisScheme(s)) return new RedisBroker(url, options);
  if (s === 'amqp' || s === 'amqps' || s === 'pyamqp') {
    const { heartbeat, ca, cert, key } = options;
    const connectTimeout = options.connectTimeout ?? options.socketConnectTimeout;
    return new AmqpBroker(url, { heartbeat, ca, cert, key, connectTimeout });
  }
  throw new ValidationError([`broker URL scheme "${s}:" is not supported; use redis://, rediss://, sentinel://, amqp://, amqps:// or pyamqp://`]);
}
