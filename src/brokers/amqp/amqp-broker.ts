/**
 * Publishes task messages to RabbitMQ (AMQP 0-9-1) the way a Python Celery producer does
 * (protocol doc §1.3, §3): the default exchange `""` with routing key = queue name, or a named
 * exchange with the message's routing key; JSON body; the headers table of §1.2; persistent.
 *
 * Design choices:
 * - **Publisher confirms.** One connection and one confirm channel (`createConfirmChannel`),
 *   opened lazily. A message counts as published only once the broker acked it; a nack is a
 *   per-message failure. A batch resolves only when every message of it is confirmed.
 * - **mandatory + basic.return instead of declares.** We never declare queues or exchanges: a
 *   declare that differs from the worker's (e.g. `x-max-priority`) closes the channel with 406,
 *   and we cannot know the worker's arguments (§3.4). Every message is published `mandatory`, so
 *   RabbitMQ hands an unroutable one back (basic.return) instead of dropping it silently. The
 *   return arrives before the ack of the same message, so a returned message is reported as
 *   `UnroutableError` even though it is acked afterwards. Returns are matched by
 *   `correlationId` (the task id).
 * - **Named exchanges are checked passively** (`checkExchange`, on a throwaway channel) before
 *   the first publish to them, because publishing to a missing exchange closes the channel with
 *   404 and would fail the whole batch. A missing one makes its messages `UnroutableError`.
 * - **Backpressure.** When `publish()` returns false the message is already buffered: we wait for
 *   'drain' before writing more and never write the same message twice (§3.5).
 * - **Outages.** If the channel or connection dies while a batch is in flight, `publish` rejects
 *   with a `ConnectionError` (the dispatcher treats that as an outage; nothing is acked in the
 *   store), and the next call reopens.
 */
import { readFileSync } from 'node:fs';
import amqp from 'amqplib';
import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import type { Broker, BroadcastMessage, PublishOutcome } from '../../broker.js';
import { tlsFromCeleryQuery, type TlsSettings } from '../../tls.js';
import type { TaskMessage } from '../../celery/message.js';
import { ConnectionError, ErrorCode, SchedulerError, UnroutableError, ValidationError, redactUrl } from '../../errors.js';

const WHAT = 'Celery broker (RabbitMQ)';

export interface AmqpBrokerOptions {
  /** heartbeat in seconds; overrides a `?heartbeat=` in the URL */
  heartbeat?: number;
  /** seconds to wait for the TCP/TLS connection; default 10 */
  connectTimeout?: number;
  /** amqps: file path of the CA bundle (PEM); overrides the URL's `ssl_ca_certs` */
  ca?: string;
  /** amqps: file path of the client certificate (PEM); overrides the URL's `ssl_certfile` */
  cert?: string;
  /** amqps: file path of the client key (PEM); overrides the URL's `ssl_keyfile` */
  key?: string;
}

/** What an AMQP URL means, with Celery's (kombu's) reading of the vhost. */
export interface AmqpLocation {
  protocol: 'amqp' | 'amqps';
  hostname: string;
  port: number;
  username: string;
  password: string;
  vhost: string;
  heartbeat: number | undefined;
  /** amqps only: from Celery's `ssl_*` query options (see tls.ts) */
  tls: TlsSettings | undefined;
}

/**
 * Parses `amqp://`, `amqps://` and `pyamqp://` (an alias of amqp) URLs. User and password default
 * to guest/guest; the vhost is the path without its leading `/`, percent-decoded, so `//` and
 * `/%2F` mean `/`, and an empty path means `/` too.
 */
export function parseAmqpUrl(url: string): AmqpLocation {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ValidationError([`broker URL ${JSON.stringify(redactUrl(url))} is not a valid URL; pass e.g. amqp://guest:guest@localhost:5672//`]);
  }
  const scheme = u.protocol.slice(0, -1).toLowerCase();
  if (scheme !== 'amqp' && scheme !== 'amqps' && scheme !== 'pyamqp') {
    throw new ValidationError([`broker URL scheme "${scheme}:" is not AMQP; use amqp://, amqps:// or pyamqp://`]);
  }
  const protocol = scheme === 'amqps' ? 'amqps' : 'amqp';
  const problems: string[] = [];
  const port = u.port === '' ? (protocol === 'amqps' ? 5671 : 5672) : Number(u.port);
  if (u.hostname === '') problems.push(`broker URL ${redactUrl(url)} has no host; pass e.g. amqp://guest:guest@localhost:5672//`);
  let vhost = '/';
  let username = 'guest';
  let password = 'guest';
  try {
    if (u.pathname.length > 1) vhost = decodeURIComponent(u.pathname.slice(1));
    if (u.username !== '' || u.password !== '') {
      username = decodeURIComponent(u.username);
      password = decodeURIComponent(u.password);
    }
  } catch {
    problems.push(`broker URL ${redactUrl(url)} has a malformed %-escape`);
  }
  let heartbeat: number | undefined;
  const hb = u.searchParams.get('heartbeat');
  if (hb !== null) {
    heartbeat = Number(hb);
    if (!Number.isInteger(heartbeat) || heartbeat < 0) problems.push(`broker URL heartbeat=${hb} must be a whole number of seconds >= 0`);
  }
  const tls = protocol === 'amqps' ? tlsFromCeleryQuery(u, 'broker', problems) : undefined;
  if (problems.length > 0) throw new ValidationError(problems);
  return { protocol, hostname: u.hostname.replace(/^\[|\]$/g, ''), port, username, password, vhost, heartbeat, tls };
}

/** One open connection with its confirm channel. `dead` once either closed or failed. */
interface Link {
  model: ChannelModel;
  channel: ConfirmChannel;
  dead: boolean;
  /** why it died, if known */
  cause: Error | undefined;
  /** called once when the link dies */
  onDeath: Set<(err: Error) => void>;
  /** per correlation id, the in-flight publishes (oldest first) that a basic.return would match */
  awaitingReturn: Map<string, Array<() => void>>;
  /** named exchanges known to exist on this link */
  exchanges: Set<string>;
  /** why RabbitMQ blocked this connection (a memory or disk alarm), while it is blocked */
  blocked: string | undefined;
}

export class AmqpBroker implements Broker {
  readonly description: string;
  readonly #url: string;
  readonly #location: AmqpLocation;
  readonly #options: AmqpBrokerOptions;
  #link: Promise<Link> | undefined;
  /** the open link, once `#link` resolved (cleared when it dies) */
  #current: Link | undefined;

  constructor(url: string, options: AmqpBrokerOptions = {}) {
    this.#location = parseAmqpUrl(url);
    if (options.heartbeat !== undefined && (!Number.isInteger(options.heartbeat) || options.heartbeat < 0)) {
      throw new ValidationError([`heartbeat ${options.heartbeat} must be a whole number of seconds >= 0`]);
    }
    this.#url = url;
    this.#options = options;
    this.description = redactUrl(url);
  }

  /** Opens (once) the connection and its confirm channel. Failures become `ConnectionError`. */
  #open(): Promise<Link> {
    const opening = (this.#link ??= this.#connect().catch((err: unknown) => {
      if (this.#link === opening) this.#link = undefined;
      throw err instanceof ConnectionError ? err : new ConnectionError(WHAT, this.#url, err);
    }));
    return opening;
  }

  async #connect(): Promise<Link> {
    const loc = this.#location;
    const connectOptions: Options.Connect = {
      protocol: loc.protocol,
      hostname: loc.hostname,
      port: loc.port,
      username: loc.username,
      password: loc.password,
      vhost: loc.vhost,
    };
    const heartbeat = this.#options.heartbeat ?? loc.heartbeat;
    if (heartbeat !== undefined) connectOptions.heartbeat = heartbeat;
    // amqplib's socket options are passed through to net/tls.connect (untyped there).
    const socketOptions: Record<string, unknown> = { timeout: (this.#options.connectTimeout ?? 10) * 1000 };
    if (loc.tls) {
      Object.assign(socketOptions, loc.tls);
      if (this.#options.ca) socketOptions.ca = [readFileSync(this.#options.ca)];
      if (this.#options.cert) socketOptions.cert = readFileSync(this.#options.cert);
      if (this.#options.key) socketOptions.key = readFileSync(this.#options.key);
    }
    const model = await amqp.connect(connectOptions, socketOptions);
    let channel: ConfirmChannel;
    try {
      channel = await model.createConfirmChannel();
    } catch (err) {
      await model.close().catch(() => undefined);
      throw err;
    }
    const link: Link = {
      model,
      channel,
      dead: false,
      cause: undefined,
      onDeath: new Set(),
      awaitingReturn: new Map(),
      exchanges: new Set(),
      blocked: undefined,
    };
    const die = (err?: Error): void => {
      if (err && !link.cause) link.cause = err;
      if (link.dead) return;
      link.dead = true;
      if (this.#current === link) {
        this.#current = undefined;
        this.#link = undefined;
      }
      const cause = link.cause ?? new Error('the AMQP channel was closed');
      for (const f of link.onDeath) f(cause);
      link.onDeath.clear();
      // A channel-level error (e.g. 404) leaves the connection open: do not leak it.
      model.close().catch(() => undefined);
    };
    // 'error' listeners are required: an unhandled 'error' event would crash the process.
    model.on('error', (err: Error) => die(err));
    model.on('close', (err?: Error) => die(err));
    channel.on('error', (err: Error) => die(err));
    channel.on('close', () => die());
    // A resource alarm blocks every publishing connection: RabbitMQ stops reading from it.
    model.connection.on('blocked', (reason: string) => {
      link.blocked = reason || 'resource alarm';
    });
    model.connection.on('unblocked', () => {
      link.blocked = undefined;
    });
    channel.on('return', (msg: Message) => {
      const id: unknown = msg.properties.correlationId;
      if (typeof id !== 'string') return;
      const waiting = link.awaitingReturn.get(id);
      const mark = waiting?.shift();
      if (waiting && waiting.length === 0) link.awaitingReturn.delete(id);
      mark?.();
    });
    this.#current = link;
    return link;
  }

  async publish(messages: readonly TaskMessage[]): Promise<PublishOutcome[]> {
    if (messages.length === 0) return [];
    const link = await this.#open();
    // While RabbitMQ blocks us, start nothing: it would sit unconfirmed in the socket until the
    // alarm clears. Nothing is written, so this is an outage with nothing to re-send. RabbitMQ
    // announces the block only once a connection publishes under the alarm, so the batch that
    // meets it waits for its confirms until the alarm clears (nothing is re-published). An alarm
    // longer than the job lease could let another dispatcher claim those jobs: extending leases
    // while waiting is still to do.
    if (link.blocked) {
      throw new ConnectionError(WHAT, this.#url, new Error(`RabbitMQ blocked the connection (${link.blocked}); waiting for the alarm to clear`));
    }
    const missing = await this.#missingExchanges(link, messages);

    return new Promise<PublishOutcome[]>((resolve, reject) => {
      const outcomes = new Array<PublishOutcome | undefined>(messages.length);
      let settled = false;
      let remaining = messages.length;
      let drainWaiter: (() => void) | undefined;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        link.onDeath.delete(fail);
        drainWaiter?.();
        reject(err instanceof ConnectionError ? err : new ConnectionError(WHAT, this.#url, err));
      };
      const done = (i: number, outcome: PublishOutcome): void => {
        if (settled || outcomes[i]) return;
        outcomes[i] = outcome;
        if (--remaining === 0) {
          settled = true;
          link.onDeath.delete(fail);
          resolve(outcomes as PublishOutcome[]);
        }
      };
      if (link.dead) return fail(link.cause ?? new Error('the AMQP channel was closed'));
      link.onDeath.add(fail);

      const publishAll = async (): Promise<void> => {
        for (let i = 0; i < messages.length; i++) {
          if (settled) return;
          const msg = messages[i] as TaskMessage;
          const { exchange, routingKey } = target(msg);
          if (exchange !== '' && missing.has(exchange)) {
            done(i, { ok: false, error: new UnroutableError(exchange, routingKey) });
            continue;
          }
          const id = msg.properties.correlation_id;
          let returned = false;
          const markReturned = (): void => {
            returned = true;
          };
          const waiting = link.awaitingReturn.get(id) ?? [];
          waiting.push(markReturned);
          link.awaitingReturn.set(id, waiting);
          const forget = (): void => {
            const w = link.awaitingReturn.get(id);
            const k = w?.indexOf(markReturned) ?? -1;
            if (w && k !== -1) w.splice(k, 1);
            if (w && w.length === 0) link.awaitingReturn.delete(id);
          };
          const body = Buffer.from(JSON.stringify(msg.body), 'utf8');
          let writable: boolean;
          try {
            writable = link.channel.publish(exchange, routingKey, body, publishOptions(msg), (err: unknown) => {
              forget();
              if (err) {
                // amqplib reports a nack as 'message nacked'; anything else means the channel died.
                if (err instanceof Error && err.message === 'message nacked') {
                  done(i, { ok: false, error: new SchedulerError(ErrorCode.PUBLISH, `RabbitMQ refused (nacked) task ${JSON.stringify(id)}; it stays scheduled and is retried`) });
                } else fail(err);
              } else if (returned) done(i, { ok: false, error: new UnroutableError(exchange, routingKey) });
              else done(i, { ok: true });
            });
          } catch (err) {
            forget();
            return fail(err);
          }
          if (!writable && i < messages.length - 1) {
            await new Promise<void>((r) => {
              const wake = (): void => {
                link.channel.removeListener('drain', wake);
                drainWaiter = undefined;
                r();
              };
              drainWaiter = wake;
              link.channel.once('drain', wake);
            });
          }
        }
      };
      publishAll().catch(fail);
    });
  }

  /**
   * Publishes a broadcast as kombu's `Mailbox` does: declares the fanout exchange as Celery's
   * workers declare it (`durable: false, autoDelete: false`, on a throwaway channel, so a
   * conflicting declaration closes only that one), then publishes a transient JSON message with
   * routing key `message.routingKey` on the confirm channel and waits for the broker's ack.
   * Not `mandatory`: a broadcast no worker hears is not an error (Celery does the same).
   */
  async broadcast(message: BroadcastMessage): Promise<void> {
    const link = await this.#open();
    if (link.blocked) {
      throw new ConnectionError(WHAT, this.#url, new Error(`RabbitMQ blocked the connection (${link.blocked}); waiting for the alarm to clear`));
    }
    const { exchange, routingKey } = message;
    if (!link.exchanges.has(exchange)) {
      let probe;
      try {
        probe = await link.model.createChannel();
      } catch (err) {
        throw new ConnectionError(WHAT, this.#url, err);
      }
      probe.on('error', () => undefined); // a 406 closes the probe channel; reported below
      try {
        await probe.assertExchange(exchange, 'fanout', { durable: false, autoDelete: false });
        link.exchanges.add(exchange);
        await probe.close().catch(() => undefined);
      } catch (err) {
        if (link.dead) throw new ConnectionError(WHAT, this.#url, err);
        throw new SchedulerError(
          ErrorCode.PUBLISH,
          `cannot declare the fanout exchange ${JSON.stringify(exchange)} as Celery does (${errorText(err)}); check that it is a non-durable fanout exchange`,
          { cause: err },
        );
      }
    }
    const body = Buffer.from(JSON.stringify(message.body), 'utf8');
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        link.onDeath.delete(fail);
        reject(err instanceof ConnectionError ? err : new ConnectionError(WHAT, this.#url, err));
      };
      if (link.dead) return fail(link.cause ?? new Error('the AMQP channel was closed'));
      link.onDeath.add(fail);
      try {
        link.channel.publish(
          exchange,
          routingKey,
          body,
          { contentType: 'application/json', contentEncoding: 'utf-8', headers: message.headers, deliveryMode: 1, priority: 0 },
          (err: unknown) => {
            if (settled) return;
            if (err && !(err instanceof Error && err.message === 'message nacked')) return fail(err);
            settled = true;
            link.onDeath.delete(fail);
            if (err) reject(new SchedulerError(ErrorCode.PUBLISH, `RabbitMQ refused (nacked) the broadcast on ${JSON.stringify(exchange)}; try again`));
            else resolve();
          },
        );
      } catch (err) {
        fail(err);
      }
    });
  }

  /** Named exchanges of the batch that do not exist (passive check on a throwaway channel). */
  async #missingExchanges(link: Link, messages: readonly TaskMessage[]): Promise<Set<string>> {
    const missing = new Set<string>();
    const unknown = new Set(messages.map((m) => m.routing.exchange).filter((e) => e !== '' && !link.exchanges.has(e)));
    for (const exchange of unknown) {
      let probe;
      try {
        probe = await link.model.createChannel();
      } catch (err) {
        throw new ConnectionError(WHAT, this.#url, err);
      }
      probe.on('error', () => undefined); // a 404 closes the probe channel; that is the answer
      try {
        await probe.checkExchange(exchange);
        link.exchanges.add(exchange);
        await probe.close().catch(() => undefined);
      } catch (err) {
        if (link.dead) throw new ConnectionError(WHAT, this.#url, err);
        if (err instanceof Error && /NOT_FOUND|404/.test(err.message)) missing.add(exchange);
        else throw new ConnectionError(WHAT, this.#url, err);
      }
    }
    return missing;
  }

  /**
   * Opens the connection and confirm channel if none is open (a dead one is replaced), and fails
   * while RabbitMQ blocks it (a memory or disk alarm): publishes would stall then.
   */
  async ping(): Promise<void> {
    const link = await this.#open();
    if (link.dead) throw new ConnectionError(WHAT, this.#url, link.cause ?? new Error('the AMQP channel was closed'));
    if (link.blocked) throw new ConnectionError(WHAT, this.#url, new Error(`RabbitMQ blocked the connection (${link.blocked})`));
  }

  /** Closes the channel and the connection. Idempotent; a later `publish` reopens. */
  async close(): Promise<void> {
    const opening = this.#link;
    this.#link = undefined;
    this.#current = undefined;
    if (!opening) return;
    let link: Link;
    try {
      link = await opening;
    } catch {
      return;
    }
    if (link.dead) return;
    // the 'close' events mark the link dead and fail any batch still in flight
    await link.channel.close().catch(() => undefined);
    await link.model.close().catch(() => undefined);
  }
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n', 1)[0] ?? '';
}

/** Exchange and routing key: the default exchange routes by queue name (§3.2). */
function target(msg: TaskMessage): { exchange: string; routingKey: string } {
  const { exchange, routingKey, queue } = msg.routing;
  return exchange === '' ? { exchange: '', routingKey: queue } : { exchange, routingKey };
}

/** The basic properties a Python producer writes (§1.3, §3.3), plus `mandatory`. */
export function publishOptions(msg: TaskMessage): Options.Publish {
  const p = msg.properties;
  const options: Options.Publish = {
    contentType: msg.contentType,
    contentEncoding: msg.contentEncoding,
    headers: msg.headers,
    correlationId: p.correlation_id,
    deliveryMode: p.delivery_mode,
    priority: p.priority,
    mandatory: true,
  };
  if (p.reply_to !== '') options.replyTo = p.reply_to;
  if (p.expiration !== undefined) options.expiration = p.expiration;
  return options;
}
