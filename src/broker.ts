/**
 * The seam between the dispatcher and a Celery broker.
 */
import type { TaskMessage } from './celery/message.js';

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
  close(): Promise<void>;
}
