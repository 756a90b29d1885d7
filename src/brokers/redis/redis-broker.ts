/**
 * Publishes task messages the way kombu's Redis transport does (docs/protocol.md §2): LPUSH of the
 * JSON envelope onto the queue's list for the message priority; the default exchange routes by
 * queue name; a named exchange routes through its `_kombu.binding.<exchange>` set.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { MessageRejectedError, SchedulerError, ErrorCode, UnroutableError, errorMessage, redactUrl } from '../../util/errors.js';
import type { Broker, BroadcastMessage, PublishOutcome } from '../broker.js';
import type { TaskMessage } from '../../celery/message.js';
import {
  DEFAULT_LAYOUT,
  bindingKey,
  bindingMember,
  parseBindingMember,
  queueListKey,
  toRedisEnvelope,
  type KombuRedisLayout,
} from '../../celery/kombu-redis.js';
import { Lazy, RedisConnections, isConnectionFailure, serverId, wrapRedisError, type RedisConnectionOptions } from '../../redis/connection.js';
import type { RedisPush } from '../../redis/handoff.js';

export interface RedisBrokerOptions extends RedisConnectionOptions {
  /** kombu transport options: `global_keyprefix`, `sep`, `priority_steps` */
  layout?: Partial<KombuRedisLayout>;
  /**
   * kombu's `fanout_prefix` transport option (default true): true puts `/{db}.` in front of fanout
   * channel names, a string puts that string (its `{db}` replaced by the database number), false
   * nothing. Must match the workers', or they do not hear broadcasts (e.g. revoke).
   */
  fanoutPrefix?: boolean | string;
  /** kombu's `fanout_patterns` transport option (default true): a non-empty routing key is appended as `/<routing key>`. */
  fanoutPatterns?: boolean;
}

/** Where kombu's Redis transport PUBLISHes a fanout message (docs/protocol.md §2.4, kombu `_get_publish_topic`). */
export function fanoutChannel(
  exchange: string,
  routingKey: string,
  options: { db: number; keyPrefix?: string; fanoutPrefix?: boolean | string; fanoutPatterns?: boolean },
): string {
  const fp = options.fanoutPrefix ?? true;
  const prefix = fp === true ? '/{db}.' : fp === false ? '' : fp;
  const topic = routingKey !== '' && (options.fanoutPatterns ?? true) ? `${exchange}/${routingKey}` : exchange;
  return `${options.keyPrefix ?? ''}${prefix.replaceAll('{db}', String(options.db))}${topic}`;
}

/**
 * The envelope kombu PUBLISHes for a fanout message: the same shape as a queued message (docs/protocol.md §2.1),
 * JSON body base64-encoded, transient (`delivery_mode` 1), priority 0, a fresh delivery tag.
 */
export function toFanoutEnvelope(message: BroadcastMessage): string {
  return JSON.stringify({
    body: Buffer.from(JSON.stringify(message.body), 'utf8').toString('base64'),
    'content-encoding': 'utf-8',
    'content-type': 'application/json',
    headers: message.headers,
    properties: {
      delivery_mode: 1,
      delivery_info: { exchange: message.exchange, routing_key: message.routingKey },
      priority: 0,
      body_encoding: 'base64',
      delivery_tag: randomUUID(),
    },
  });
}

export class RedisBroker implements Broker {
  readonly description: string;
  readonly layout: KombuRedisLayout;
  readonly #fanout: { fanoutPrefix: boolean | string; fanoutPatterns: boolean };
  readonly #connections: RedisConnections;
  readonly #client: Lazy<Redis>;
  readonly #location: Lazy<{ server: string; db: number }>;
  /** queues whose default binding we already declared */
  readonly #declared = new Set<string>();

  constructor(url: string, options: RedisBrokerOptions = {}) {
    this.#connections = new RedisConnections(url, 'Celery broker (Redis)', options);
    this.description = redactUrl(url);
    this.layout = { ...DEFAULT_LAYOUT, ...options.layout };
    this.#fanout = { fanoutPrefix: options.fanoutPrefix ?? true, fanoutPatterns: options.fanoutPatterns ?? true };
    this.#client = new Lazy(() => this.#connections.open());
    this.#location = new Lazy(async () => {
      const client = await this.client();
      return { server: await serverId(client), db: client.options.db ?? 0 };
    });
  }

  client(): Promise<Redis> {
    return this.#client.get();
  }

  async publish(messages: readonly TaskMessage[]): Promise<PublishOutcome[]> {
    if (messages.length === 0) return [];
    const prepared = await this.prepareRedisPushes(messages);
    const client = await this.client();
    try {
      const pipeline = client.pipeline();
      for (const p of prepared) if (!(p instanceof Error)) for (const push of p) pipeline.lpush(push.key, push.value);
      const replies = (await pipeline.exec()) ?? [];
      let r = 0;
      return prepared.map((p): PublishOutcome => {
        if (p instanceof Error) return { ok: false, error: p };
        let error: Error | undefined;
        for (let k = 0; k < p.length; k++, r++) {
          const [err] = replies[r] ?? [new Error('no reply from Redis')];
          if (err && !error) error = wrapRedisError(err, 'Celery broker (Redis)', this.#connections.url);
        }
        return error ? { ok: false, error } : { ok: true };
      });
    } catch (err) {
      throw wrapRedisError(err, 'Celery broker (Redis)', this.#connections.url);
    }
  }

  /**
   * Routes each message and builds its envelope(s): one LPUSH per target queue, or an
   * `UnroutableError`. Declares each new queue's default binding as a Python producer does.
   */
  async prepareRedisPushes(messages: readonly TaskMessage[]): Promise<(RedisPush[] | Error)[]> {
    const client = await this.client();
    try {
      const { db } = await this.redisLocation();
      const targets = await this.#resolveTargets(client, messages);
      const declare = new Set<string>();
      const out = messages.map((msg, i): RedisPush[] | Error => {
        const queues = targets[i] ?? [];
        if (queues instanceof Error) return queues;
        if (queues.length === 0) return new UnroutableError(msg.routing.exchange, msg.routing.routingKey);
        try {
          return queues.map((queue) => {
            const delivery = { exchange: msg.routing.exchange, routingKey: msg.routing.exchange === '' ? queue : msg.routing.routingKey };
            const push = { db, key: queueListKey(queue, msg.properties.priority, this.layout), value: toRedisEnvelope(msg, delivery) };
            if (msg.routing.exchange === '' && !this.#declared.has(queue)) declare.add(queue);
            return push;
          });
        } catch (err) {
          // e.g. a body JSON cannot serialize: this message alone can never be sent
          return new MessageRejectedError(msg.properties.correlation_id, `its message cannot be serialized (${errorMessage(err).split('\n', 1)[0]})`, {
            cause: err,
          });
        }
      });
      if (declare.size > 0) {
        const pipeline = client.pipeline();
        for (const queue of declare) pipeline.sadd(bindingKey(queue, this.layout), bindingMember(queue, '', queue, this.layout.sep));
        await pipeline.exec();
        for (const q of declare) this.#declared.add(q);
      }
      return out;
    } catch (err) {
      throw wrapRedisError(err, 'Celery broker (Redis)', this.#connections.url);
    }
  }

  /** PING over the broker connection (opened if needed): resolves when the server answers. */
  async ping(): Promise<void> {
    try {
      await (await this.client()).ping();
    } catch (err) {
      throw wrapRedisError(err, 'Celery broker (Redis)', this.#connections.url);
    }
  }

  /**
   * PUBLISHes a fanout message as kombu's Redis transport does: on `fanoutChannel(...)`, with the
   * layout's `global_keyprefix` in front. Only subscribers live at that moment receive it.
   */
  async broadcast(message: BroadcastMessage): Promise<void> {
    await this.broadcastCount(message);
  }

  /** `broadcast`, resolving with how many subscribers (e.g. workers' pidbox consumers) received it. */
  async broadcastCount(message: BroadcastMessage): Promise<number> {
    const client = await this.client();
    try {
      const { db } = await this.redisLocation();
      const channel = fanoutChannel(message.exchange, message.routingKey, { db, keyPrefix: this.layout.keyPrefix, ...this.#fanout });
      return await client.publish(channel, toFanoutEnvelope(message));
    } catch (err) {
      throw wrapRedisError(err, 'Celery broker (Redis)', this.#connections.url);
    }
  }

  /** This broker's Redis server identity (`run_id`) and database number. */
  redisLocation(): Promise<{ server: string; db: number }> {
    return this.#location.get();
  }

  /**
   * The queues each message goes to, or why its exchange's bindings cannot be read (e.g. the
   * binding key holds another type): that fails the messages for that exchange only.
   */
  async #resolveTargets(client: Redis, messages: readonly TaskMessage[]): Promise<(string[] | Error)[]> {
    const exchanges = [...new Set(messages.map((m) => m.routing.exchange).filter((e) => e !== ''))];
    const bindings = new Map<string, string[] | Error>();
    if (exchanges.length > 0) {
      const pipeline = client.pipeline();
      for (const ex of exchanges) pipeline.smembers(bindingKey(ex, this.layout));
      const replies = (await pipeline.exec()) ?? [];
      exchanges.forEach((ex, i) => {
        const [err, members] = replies[i] ?? [new Error('no reply from Redis')];
        if (err && isConnectionFailure(err)) throw err;
        bindings.set(
          ex,
          err
            ? new SchedulerError(
                ErrorCode.PUBLISH,
                `cannot read the bindings of exchange ${JSON.stringify(ex)} (${bindingKey(ex, this.layout)}): ${errorMessage(err)}`,
                { cause: err },
              )
            : ((members as string[]) ?? []),
        );
      });
    }
    return messages.map((m) => {
      if (m.routing.exchange === '') return [m.routing.queue];
      const b = bindings.get(m.routing.exchange) ?? [];
      return b instanceof Error ? b : matchBindings(b, m.routing.routingKey, this.layout.sep);
    });
  }

  async close(): Promise<void> {
    this.#client.reset();
    this.#location.reset();
    await this.#connections.closeAll();
  }
}

/**
 * kombu keeps exchange types in process memory only, so we infer: a binding key with `*` or `#`
 * is matched as a topic pattern (`*` one word, `#` any number of words), otherwise exactly.
 */
export function matchBindings(members: readonly string[], routingKey: string, sep: string): string[] {
  const queues = new Set<string>();
  for (const member of members) {
    const b = parseBindingMember(member, sep);
    if (!b) continue;
    const isTopic = /[*#]/.test(b.routingKey);
    if (isTopic ? topicMatches(b.routingKey, routingKey) : b.routingKey === routingKey) queues.add(b.queue);
  }
  return [...queues];
}

function topicMatches(pattern: string, key: string): boolean {
  const words = pattern.split('.').map((w) => (w === '*' ? '[^.]+' : w === '#' ? '.*?' : w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  const re = new RegExp(
    `^${words
      .join('\\.')
      .replace(/\\\.\.\*\?/g, '(?:\\..*)?')
      .replace(/^\.\*\?\\\./, '(?:.*\\.)?')}$`,
  );
  return re.test(key);
}
