/**
 * The seam between the dispatcher and a Celery broker.
 */
import type { TaskMessage } from '../celery/message.js';
import type { RedisPush, RedisServerId } from '../redis/handoff.js';

/**
 * A message for a fanout exchange, as kombu's `Mailbox` sends remote-control commands (e.g. the
 * revoke broadcast on `<control_exchange>.pidbox`). The body is serialized as JSON.
 */
export interface BroadcastMessage {
  /** the fanout exchange, e.g. `celery.pidbox` */
  exchange: string;
  /** kombu's routing key; '' for a broadcast to every bound queue (what Celery sends) */
  routingKey: string;
  body: Record<string, unknown>;
  /** message headers; kombu's pidbox sends `{ clock, expires }` */
  headers: Record<string, unknown>;
}

/** Per message: accepted by the broker, or why not. */
export type PublishOutcome = { ok: true } | { ok: false; error: Error };

export interface Broker {
  /** the broker URL with its password redacted, for messages */
  readonly description: string;
  /**
   * Publishes a batch in as few round trips as the broker allows. Resolves with one outcome per
   * message, in order; rejects only when nothing could be attempted (e.g. connection refused).
   */
  publish(messages: readonly TaskMessage[]): Promise<PublishOutcome[]>;
  /** Optional (Redis): the server identity and database, for the atomic hand-off. */
  redisLocation?(): Promise<{ server: RedisServerId; db: number }>;
  /** Optional (Redis): the LPUSHes that publishing would make, per message, or why it cannot be routed. */
  prepareRedisPushes?(messages: readonly TaskMessage[]): Promise<(RedisPush[] | Error)[]>;
  /**
   * Optional: a cheap check that the broker can be reached now (opening the connection if
   * needed), for health checks. Rejects (a `ConnectionError`) when it cannot; publishes nothing.
   */
  ping?(): Promise<void>;
  /**
   * Optional: publishes on a fanout exchange, fire-and-forget, as kombu does (Redis: `PUBLISH`
   * on the transport's fanout channel; RabbitMQ: a transient message on the fanout exchange,
   * declared as Celery declares it). Only consumers live at that moment receive it.
   * Resolves once the broker took it; rejects with a `ConnectionError` when it cannot be reached.
   */
  broadcast?(message: BroadcastMessage): Promise<void>;
  close(): Promise<void>;
}
