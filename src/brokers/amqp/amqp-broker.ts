/**
 * Publishes task messages to RabbitMQ (AMQP 0-9-1) the way a Python Celery producer does
 * (docs/protocol.md §1.3, docs/protocol.md §3): the default exchange `""` with routing key = queue name, or a named
 * exchange with the message's routing key; JSON body; the headers table of docs/protocol.md §1.2; persistent.
 *
 * Design choices:
 * - **Publisher confirms.** One connection and one confirm channel (`createConfirmChannel`),
 *   opened lazily. A message counts as published only once the broker acked it; a nack is a
 *   per-message failure. A batch resolves only when every message of it is confirmed.
 * - **mandatory + basic.return instead of declares.** We never declare queues or exchanges: a
 *   declare that differs from the worker's (e.g. `x-max-priority`) closes the channel with 406,
 *   and we cannot know the worker's arguments (docs/protocol.md §3.4). Every message is published `mandatory`, so
 *   RabbitMQ hands an unroutable one back (basic.return) instead of dropping it silently. The
 *   return arrives before the ack of the same message, so a returned message is reported as
 *   `UnroutableError` even though it is acked afterwards. Returns are matched by
 *   `correlationId` (the task id).
 * - **Named exchanges are checked passively** (`checkExchange`, on a throwaway channel) before
 *   the first publish to them, because publishing to a missing exchange closes the channel with
 *   404 and would fail the whole batch. A missing one makes its messages `UnroutableError`.
 * - **Backpressure.** When `publish()` returns false the message is already buffered: we wait for
 *   'drain' before writing more and never write the same message twice (docs/protocol.md §3.5).
 * - **One poison message costs only itself.** Before anything is written, each message is checked
 *   against what amqplib and RabbitMQ can carry (`amqp-limits.ts`): one that fails is a
 *   `MessageRejectedError` for its job alone. If amqplib still throws while encoding one, that one
 *   is rejected, the confirms of those before it are awaited, and the link is replaced (the throw
 *   leaves amqplib's confirm list misaligned). If RabbitMQ closes the channel or connection in the
 *   middle of a batch (e.g. a `CC` header that is not an array: 406), the confirmed messages are
 *   sent, and the culprit is found among the unconfirmed ones without sending any of them twice:
 *   each is published again, in order, as a *probe* to a queue that does not exist (not
 *   mandatory, so RabbitMQ validates it and drops it); the first probe that closes the channel is
 *   the culprit. The messages before it were routed the first time (RabbitMQ handles a channel's
 *   frames in order), the ones after it were dropped with the channel and are sent now.
 * - **Outages.** If the connection is lost (or a close no probe explains), the messages not
 *   confirmed are reported as `ConnectionError` (the dispatcher gives them back, and they are
 *   sent again later: at least once), and the next call reopens.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import type { Broker, BroadcastMessage, PublishOutcome } from '../broker.js';
import { tlsFromCeleryQuery, type TlsSettings } from '../../util/tls.js';
import type { TaskMessage } from '../../celery/message.js';
import { ConnectionError, ErrorCode, MessageRejectedError, SchedulerError, UnroutableError, ValidationError, redactUrl } from '../../util/errors.js';
import { amqpMessageProblem } from '../../celery/amqp-limits.js';
import { loadDriver } from '../../util/drivers.js';

const WHAT = 'Celery broker (RabbitMQ)';

/**
 * AMQP reply codes with which RabbitMQ closes a channel or connection because of what a message
 * holds (content-too-large, precondition-failed, frame/syntax/command errors, internal-error);
 * other closes (connection-forced at shutdown, resource errors, access) are not the message's fault.
 */
const MESSAGE_FAULT_CODES = new Set([311, 406, 501, 502, 503, 505, 541]);

/** How long `close()` waits for RabbitMQ to acknowledge the channel's close before closing the connection. */
const CLOSE_WAIT_MS = 2000;

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
  /** amqps only: from Celery's `ssl_*` query options (see util/tls.ts) */
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
  /** marks the link dead and closes its connection (e.g. its confirm list can no longer be trusted) */
  kill: (err: Error) => void;
}

/** A message ready to publish: its body encoded and its options built once. */
interface Outgoing {
  exchange: string;
  routingKey: string;
  body: Buffer;
  options: Options.Publish;
  id: string;
}

/** What publishing a run of messages on one link came to. */
interface Attempt {
  /** outcomes known: confirmed, nacked, returned, or rejected while encoding */
  settled: Map<number, PublishOutcome>;
  /** published but not confirmed when the link died, in publish order */
  unconfirmed: number[];
  /** per index, whether RabbitMQ returned it (unroutable) before the link died */
  returned: Set<number>;
  /** not published (after the link died, or after an encoding error) */
  unsent: number[];
  /** why the link died, when it did */
  death: Error | undefined;
}

export class AmqpBroker implements Broker {
  readonly description: string;
  readonly #url: string;
  readonly #location: AmqpLocation;
  readonly #options: AmqpBrokerOptions;
  #link: Promise<Link> | undefined;
  /** the open link, once `#link` resolved (cleared when it dies) */
  #current: Link | undefined;
  /** bumped by `close()`: a publish in flight then reopens nothing (it reports what is not confirmed) */
  #generation = 0;

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
    const model = await loadDriver<typeof import('amqplib')>('amqplib').connect(connectOptions, socketOptions);
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
      kill: (err: Error) => die(err),
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
    const outcomes = new Array<PublishOutcome | undefined>(messages.length);
    const out: (Outgoing | undefined)[] = messages.map((msg, i) => {
      const prepared = outgoing(msg);
      if (prepared instanceof MessageRejectedError) outcomes[i] = { ok: false, error: prepared };
      else return prepared;
      return undefined;
    });
    let todo = out.flatMap((o, i) => (o ? [i] : []));
    let attempted = false;
    const generation = this.#generation;
    while (todo.length > 0) {
      let link: Link;
      let missing: Set<string>;
      try {
        if (attempted && generation !== this.#generation) throw this.#closedMeanwhile();
        link = await this.#open();
        // While RabbitMQ blocks us, start nothing: it would sit unconfirmed in the socket until the
        // alarm clears. Nothing is written, so this is an outage with nothing to re-send. RabbitMQ
        // announces the block only once a connection publishes under the alarm, so the batch that
        // meets it waits for its confirms until the alarm clears (nothing is re-published; the
        // dispatcher renews its leases meanwhile).
        if (link.blocked)
          throw new ConnectionError(WHAT, this.#url, new Error(`RabbitMQ blocked the connection (${link.blocked}); waiting for the alarm to clear`));
        missing = await this.#missingExchanges(
          link,
          todo.map((i) => (out[i] as Outgoing).exchange),
        );
      } catch (err) {
        if (!attempted) throw err; // nothing of this call was written: the caller's outage
        for (const i of todo) outcomes[i] = { ok: false, error: err instanceof ConnectionError ? err : new ConnectionError(WHAT, this.#url, err) };
        break;
      }
      attempted = true;
      for (const i of todo) {
        const o = out[i] as Outgoing;
        if (o.exchange !== '' && missing.has(o.exchange)) outcomes[i] = { ok: false, error: new UnroutableError(o.exchange, o.routingKey) };
      }
      const attempt = await this.#attempt(
        link,
        todo.filter((i) => outcomes[i] === undefined),
        out,
      );
      for (const [i, outcome] of attempt.settled) outcomes[i] = outcome;
      if (attempt.death && attempt.settled.size === 0 && attempt.unconfirmed.length === 0) {
        // the link died before anything went out: an outage, not something to loop on
        const error = new ConnectionError(WHAT, this.#url, attempt.death);
        for (const i of attempt.unsent) outcomes[i] = { ok: false, error };
        break;
      }
      if (!attempt.death || attempt.unconfirmed.length === 0) {
        todo = attempt.unsent;
        continue;
      }
      let rest: number[];
      try {
        if (generation !== this.#generation) throw this.#closedMeanwhile();
        rest = await this.#isolate(attempt, out, outcomes, generation);
      } catch (err) {
        // an outage while looking for the culprit: what was not confirmed goes back (at least once)
        const error = err instanceof ConnectionError ? err : new ConnectionError(WHAT, this.#url, err);
        for (const i of [...attempt.unconfirmed, ...attempt.unsent]) if (outcomes[i] === undefined) outcomes[i] = { ok: false, error };
        break;
      }
      todo = [...rest, ...attempt.unsent];
    }
    return outcomes.map((o) => o ?? { ok: false, error: new ConnectionError(WHAT, this.#url, new Error('not published')) });
  }

  /**
   * Publishes `indexes` in order on `link` and waits for their confirms. Never rejects: an
   * encoding error rejects that one message and stops (the link is then replaced); a dying link
   * stops it too, reporting what was published but not confirmed.
   */
  #attempt(link: Link, indexes: readonly number[], out: readonly (Outgoing | undefined)[]): Promise<Attempt> {
    const settled = new Map<number, PublishOutcome>();
    const returned = new Set<number>();
    const published: number[] = [];
    let unsent: number[] = [];
    let death: Error | undefined;
    let pending = 0;
    let loopDone = false;
    let poisoned = false;
    let wakeDrain: (() => void) | undefined;
    return new Promise<Attempt>((resolve) => {
      let resolved = false;
      const finish = (): void => {
        if (resolved || !loopDone || (!death && pending > 0)) return;
        resolved = true;
        link.onDeath.delete(onDeath);
        if (poisoned && !death) link.kill(new Error('replaced after a message could not be encoded'));
        resolve({ settled, unconfirmed: death ? published.filter((i) => !settled.has(i)) : [], returned, unsent, death });
      };
      const onDeath = (err: Error): void => {
        death ??= link.cause ?? err;
        wakeDrain?.();
        finish();
      };
      if (link.dead) {
        death = link.cause ?? new Error('the AMQP channel was closed');
        loopDone = true;
        unsent = [...indexes];
        return finish();
      }
      link.onDeath.add(onDeath);
      const publishAll = async (): Promise<void> => {
        for (let k = 0; k < indexes.length; k++) {
          const i = indexes[k] as number;
          if (death) {
            unsent = indexes.slice(k);
            return;
          }
          const o = out[i] as Outgoing;
          const forget = this.#expectReturn(link, o.id, () => returned.add(i));
          let writable: boolean;
          pending++;
          try {
            writable = link.channel.publish(o.exchange, o.routingKey, o.body, o.options, (err: unknown) => {
              forget();
              if (settled.has(i) || resolved) return;
              const nacked = err instanceof Error && err.message === 'message nacked';
              if (err && !nacked) {
                // the channel died with this one unconfirmed (amqplib fails every pending confirm)
                onDeath(link.cause ?? (err instanceof Error ? err : new Error(String(err))));
                return;
              }
              pending--;
              if (nacked) {
                settled.set(i, {
                  ok: false,
                  error: new SchedulerError(ErrorCode.PUBLISH, `RabbitMQ refused (nacked) task ${JSON.stringify(o.id)}; it stays scheduled and is retried`),
                });
              } else if (returned.has(i)) settled.set(i, { ok: false, error: new UnroutableError(o.exchange, o.routingKey) });
              else settled.set(i, { ok: true });
              finish();
            });
          } catch (err) {
            forget();
            pending--;
            if (err instanceof Error && err.name === 'IllegalOperationError') {
              // the channel is closing or closed (not this message's fault): it was not written
              unsent = indexes.slice(k);
              onDeath(link.cause ?? err);
              return;
            }
            // amqplib threw while encoding (before writing anything): this message alone is at fault
            settled.set(i, { ok: false, error: new MessageRejectedError(o.id, `amqplib cannot encode it (${errorText(err)})`, { cause: err }) });
            poisoned = true;
            unsent = indexes.slice(k + 1);
            return;
          }
          published.push(i);
          if (!writable && k < indexes.length - 1 && !death) {
            await new Promise<void>((r) => {
              const wake = (): void => {
                link.channel.removeListener('drain', wake);
                wakeDrain = undefined;
                r();
              };
              wakeDrain = wake;
              link.channel.once('drain', wake);
            });
          }
        }
      };
      publishAll()
        .catch((err: unknown) => {
          death ??= err instanceof Error ? err : new Error(String(err));
        })
        .finally(() => {
          loopDone = true;
          finish();
        });
    });
  }

  #closedMeanwhile(): ConnectionError {
    return new ConnectionError(WHAT, this.#url, new Error('the broker was closed while publishing'));
  }

  /** Remembers that a basic.return for `id` marks this publish; returns a function that forgets it. */
  #expectReturn(link: Link, id: string, mark: () => void): () => void {
    const waiting = link.awaitingReturn.get(id) ?? [];
    waiting.push(mark);
    link.awaitingReturn.set(id, waiting);
    return () => {
      const w = link.awaitingReturn.get(id);
      const k = w?.indexOf(mark) ?? -1;
      if (w && k !== -1) w.splice(k, 1);
      if (w && w.length === 0) link.awaitingReturn.delete(id);
    };
  }

  /**
   * After a link died with `attempt.unconfirmed` published but not confirmed: probes them in
   * order (see the module header) to find the message that made RabbitMQ close it. Settles the
   * ones before the culprit (routed the first time, or returned) and the culprit itself, and
   * returns the ones after it, to be published again. When no probe fails, the close was not a
   * message's fault: throws a `ConnectionError` (those messages go back, at least once).
   */
  async #isolate(attempt: Attempt, out: readonly (Outgoing | undefined)[], outcomes: (PublishOutcome | undefined)[], generation: number): Promise<number[]> {
    const { unconfirmed } = attempt;
    for (let k = 0; k < unconfirmed.length; k++) {
      if (generation !== this.#generation) throw this.#closedMeanwhile();
      const i = unconfirmed[k] as number;
      const o = out[i] as Outgoing;
      const verdict = await this.#probe(o);
      if (verdict === undefined) continue;
      for (const before of unconfirmed.slice(0, k)) {
        const b = out[before] as Outgoing;
        outcomes[before] = attempt.returned.has(before) ? { ok: false, error: new UnroutableError(b.exchange, b.routingKey) } : { ok: true };
      }
      outcomes[i] = { ok: false, error: verdict };
      return unconfirmed.slice(k + 1);
    }
    throw new ConnectionError(WHAT, this.#url, attempt.death);
  }

  /**
   * Publishes a copy of `o` where no queue takes it (the default exchange, a routing key no queue
   * has, not mandatory): RabbitMQ checks it as it would the real one and drops it. Resolves to
   * undefined when RabbitMQ takes it, or to the error that makes `o` the culprit: the channel or
   * connection closed by RabbitMQ with a reply code (a missing exchange is `UnroutableError`).
   */
  async #probe(o: Outgoing): Promise<Error | undefined> {
    let link = await this.#open();
    if (o.exchange !== '') {
      link.exchanges.delete(o.exchange); // look again: it may be what went missing
      const missing = await this.#missingExchanges(link, [o.exchange]);
      if (missing.has(o.exchange)) return new UnroutableError(o.exchange, o.routingKey);
      link = await this.#open();
    }
    const options: Options.Publish = { ...o.options, mandatory: false };
    return new Promise<Error | undefined>((resolve, reject) => {
      let done = false;
      const settle = (fn: () => void): void => {
        if (done) return;
        done = true;
        link.onDeath.delete(onDeath);
        fn();
      };
      const onDeath = (err: Error): void => {
        const code = (err as { code?: unknown }).code;
        // closed by RabbitMQ for the message's form: this one is the culprit; anything else is an outage
        if (typeof code === 'number' && MESSAGE_FAULT_CODES.has(code))
          settle(() => resolve(new MessageRejectedError(o.id, `RabbitMQ closed the channel for it: ${errorText(err)}`, { cause: err })));
        else settle(() => reject(new ConnectionError(WHAT, this.#url, err)));
      };
      if (link.dead) return onDeath(link.cause ?? new Error('the AMQP channel was closed'));
      link.onDeath.add(onDeath);
      try {
        link.channel.publish('', `celery-longterm-scheduler.probe.${randomUUID()}`, o.body, options, (err: unknown) => {
          if (err instanceof Error && err.message === 'message nacked')
            settle(() => resolve(undefined)); // checked and refused for room, not for form
          else if (!err) settle(() => resolve(undefined));
        });
      } catch (err) {
        link.kill(new Error('replaced after a message could not be encoded'));
        settle(() => resolve(new MessageRejectedError(o.id, `amqplib cannot encode it (${errorText(err)})`, { cause: err })));
      }
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

  /** Which of these named exchanges do not exist (passive check on a throwaway channel). */
  async #missingExchanges(link: Link, exchanges: Iterable<string>): Promise<Set<string>> {
    const missing = new Set<string>();
    const unknown = new Set([...exchanges].filter((e) => e !== '' && !link.exchanges.has(e)));
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
    this.#generation++;
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
    // The 'close' events mark the link dead and end any batch still in flight. A graceful channel
    // close lets RabbitMQ confirm what it has; it is bounded, as amqplib never settles it if the
    // connection goes first.
    await Promise.race([link.channel.close().catch(() => undefined), new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref())]);
    await link.model.close().catch(() => undefined);
  }
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n', 1)[0] ?? '';
}

/** Exchange and routing key: the default exchange routes by queue name (docs/protocol.md §3.2). */
function target(msg: TaskMessage): { exchange: string; routingKey: string } {
  const { exchange, routingKey, queue } = msg.routing;
  return exchange === '' ? { exchange: '', routingKey: queue } : { exchange, routingKey };
}

/** A message encoded and checked for publishing, or why RabbitMQ can never carry it. */
function outgoing(msg: TaskMessage): Outgoing | MessageRejectedError {
  const id = msg.properties.correlation_id;
  const { exchange, routingKey } = target(msg);
  let body: Buffer;
  try {
    body = Buffer.from(JSON.stringify(msg.body), 'utf8');
  } catch (err) {
    return new MessageRejectedError(id, `its body cannot be serialized as JSON (${errorText(err)})`, { cause: err });
  }
  const options = publishOptions(msg);
  const problem = amqpMessageProblem({
    exchange,
    routingKey,
    correlationId: id,
    replyTo: msg.properties.reply_to,
    priority: msg.properties.priority,
    expiration: msg.properties.expiration,
    headers: msg.headers,
    bodyBytes: body.length,
  });
  if (problem) return new MessageRejectedError(id, problem);
  return { exchange, routingKey, body, options, id };
}

/** The basic properties a Python producer writes (docs/protocol.md §1.3, docs/protocol.md §3.3), plus `mandatory`. */
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
