/**
 * The seam between the dispatcher and a Celery broker.
 */
import type { TaskMessage } from './celery/message.js';
import type { RedisPush, RedisServerId } from './redis-handoff.js';

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
  close(): Promise<void>;
}
