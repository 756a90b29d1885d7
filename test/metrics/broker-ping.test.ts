/**
 * `Broker.ping()`, the live check behind /healthz: resolves against a running broker, rejects
 * with a `ConnectionError` (password redacted) when nothing listens.
 */
import { describe, expect, it } from 'vitest';
import { AmqpBroker } from '../../src/brokers/amqp/amqp-broker.js';
import { RedisBroker } from '../../src/brokers/redis/redis-broker.js';
import { ConnectionError } from '../../src/util/errors.js';
import { freePort, rabbitmq, requireService, sharedRedis, type RedisService } from '../helpers/services.js';

const redis = await sharedRedis();
const amqpUrl = await rabbitmq();

describe.skipIf(requireService(redis, 'Redis'))('RedisBroker.ping', () => {
  it('resolves against a running server', async () => {
    const broker = new RedisBroker((redis as RedisService).urlFor(0));
    try {
      await expect(broker.ping()).resolves.toBeUndefined();
    } finally {
      await broker.close();
    }
  });
});

describe('RedisBroker.ping with nothing listening', () => {
  it('rejects with a ConnectionError naming the redacted URL', async () => {
    const port = await freePort();
    const broker = new RedisBroker(`redis://:hunter2@127.0.0.1:${port}/0`, { socketConnectTimeout: 1 });
    try {
      const err = await broker.ping().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as Error).message).toContain(`redis://:***@127.0.0.1:${port}/0`);
      expect((err as Error).message).not.toContain('hunter2');
    } finally {
      await broker.close();
    }
  });
});

describe.skipIf(requireService(amqpUrl, 'RabbitMQ'))('AmqpBroker.ping', () => {
  it('resolves against a running RabbitMQ and opens the connection once', async () => {
    const broker = new AmqpBroker(amqpUrl as string);
    try {
      await expect(broker.ping()).resolves.toBeUndefined();
      await expect(broker.ping()).resolves.toBeUndefined();
    } finally {
      await broker.close();
    }
  });
});

describe('AmqpBroker.ping with nothing listening', () => {
  it('rejects with a ConnectionError naming the redacted URL', async () => {
    const port = await freePort();
    const broker = new AmqpBroker(`amqp://guest:hunter2@127.0.0.1:${port}//`, { connectTimeout: 1 });
    try {
      const err = await broker.ping().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as Error).message).toContain(`amqp://guest:***@127.0.0.1:${port}//`);
      expect((err as Error).message).not.toContain('hunter2');
    } finally {
      await broker.close();
    }
  });
});
