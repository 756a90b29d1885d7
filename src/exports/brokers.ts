/** `celery-longterm-scheduler/brokers`: the Celery brokers, for code that publishes through one directly. */
export { createBroker } from '../brokers/registry.js';
export type { Broker, BroadcastMessage, PublishOutcome } from '../brokers/broker.js';
export { RedisBroker, fanoutChannel, type RedisBrokerOptions } from '../brokers/redis/redis-broker.js';
export { AmqpBroker, parseAmqpUrl, type AmqpBrokerOptions, type AmqpLocation } from '../brokers/amqp/amqp-broker.js';
