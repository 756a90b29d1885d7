/**
 * Prometheus metrics of the dispatcher, through prom-client (the Node ecosystem's client), into
 * a registry the caller passes or one of their own.
 *
 * - What the dispatcher did is counted from its events (`listen(daemon.events)`): jobs sent,
 *   given back, made dead letters, each run's duration and each job's lateness.
 * - What the store holds is read at scrape time, once per scrape however many gauges need it:
 *   its size, the oldest overdue job, and live checks of store and broker (`health()`).
 * - Metric names, help and labels are documented in the README and stay as they are (dashboards
 *   depend on them). `run --metrics-port` adds prom-client's default process and event-loop
 *   metrics to the same registry.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Broker } from '../brokers/broker.js';
import type { DispatchEvents, DispatchEventMap } from '../dispatch/events.js';
import { errorMessage, firstLine } from '../util/errors.js';
import { DEAD_REASONS, type ScheduleStore, type StoreCounts } from '../stores/store.js';

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** A gauge read at scrape time that has no sample while what it measures cannot be read. */
class ScrapeGauge extends Gauge {
  present = true;

  override async get(): ReturnType<Gauge['get']> {
    const metric = await super.get();
    return this.present ? metric : { ...metric, values: [] };
  }
}

export const BATCH_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** Seconds; on time is milliseconds, the poll backstop is ~1 s, outages and backlogs are minutes or more. */
export const LATENESS_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600] as const;

export const DEFAULT_CHECK_TIMEOUT_MS = 1000;

/** One side of a health report; `error` is one line with URLs redacted. */
export interface ComponentHealth {
  up: boolean;
  /** why it is down */
  error?: string;
}

export interface HealthReport {
  ok: boolean;
  store: ComponentHealth;
  broker: ComponentHealth;
}

export interface DispatcherMetricsOptions {
  store: ScheduleStore;
  broker: Broker;
  /**
   * where the metrics register: prom-client's global `register` to serve them beside an app's
   * own, or any `Registry`; default a new registry of their own (two dispatchers in one process
   * cannot share one registry: their names would collide)
   */
  registry?: Registry;
  /**
   * also collect prom-client's default metrics (process CPU, memory, open handles, event-loop
   * lag, GC) into the registry, as `run --metrics-port` does; default false (an app may collect
   * them already)
   */
  processMetrics?: boolean;
  /** the current time (as the daemon's); default the system clock */
  clock?: () => Date;
  /** how long a live store or broker check at scrape/health time may take; default 1000 ms */
  checkTimeoutMs?: number;
}

/**
 * The dispatcher's metrics. `listen(daemon.events)`, and serve `render()` and `health()` (see
 * server.ts), or the registry from a server of your own.
 *
 * Store and broker are "up" when the daemon has not seen them fail (or has seen them recover)
 * AND a live check now succeeds within `checkTimeoutMs`: `store.count()` and `broker.ping()`
 * (when the broker has one). The live check catches a broker that went away while nothing was
 * due; the daemon's state catches failures the check cannot see (e.g. publishes failing).
 */
export class DispatcherMetrics {
  readonly registry: Registry;
  readonly dispatched: Counter;
  readonly failed: Counter<'reason'>;
  readonly movedAside: Counter;
  readonly dead: Counter<'reason'>;
  readonly batchSeconds: Histogram;
  readonly latenessSeconds: Histogram;
  readonly #scheduled: ScrapeGauge;
  readonly #inFlight: ScrapeGauge;
  readonly #deadLetters: ScrapeGauge;
  readonly #overdueLag: ScrapeGauge;
  readonly #storeUp: Gauge;
  readonly #brokerUp: Gauge;
  readonly #store: ScheduleStore;
  readonly #broker: Broker;
  readonly #clock: () => Date;
  readonly #timeoutMs: number;
  /** what the daemon last reported: undefined while up */
  #storeDown: { error: unknown } | undefined;
  #brokerDown: { error: unknown } | undefined;
  /** the reads of the scrape in progress, shared by every gauge it collects */
  #scrape: Promise<void> | undefined;

  constructor(o: DispatcherMetricsOptions) {
    this.#store = o.store;
    this.#broker = o.broker;
    this.#clock = o.clock ?? (() => new Date());
    this.#timeoutMs = o.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
    const registers = [(this.registry = o.registry ?? new Registry())];
    if (o.processMetrics) collectDefaultMetrics({ register: this.registry });
    const collect = () => this.#scrapeOnce();
    this.dispatched = new Counter({
      name: 'cls_jobs_dispatched_total',
      help: 'Jobs this dispatcher handed to the broker (accepted by it and removed from the store).',
      registers,
    });
    this.failed = new Counter({
      name: 'cls_jobs_failed_total',
      help: 'Jobs a dispatch run could not send and gave back to the store, by reason: refused (the broker refused the message, e.g. unroutable) or broker_unavailable (the broker could not be reached; retried with backoff, so a job counts once per attempt).',
      labelNames: ['reason'],
      registers,
    });
    this.failed.inc({ reason: 'refused' }, 0);
    this.failed.inc({ reason: 'broker_unavailable' }, 0);
    this.movedAside = new Counter({
      name: 'cls_jobs_moved_aside_total',
      help: 'Corrupt stored jobs made dead letters instead of being sent (also counted in cls_jobs_dead_total{reason="corrupt"}).',
      registers,
    });
    this.dead = new Counter({
      name: 'cls_jobs_dead_total',
      help: 'Jobs this dispatcher made dead letters, by reason: corrupt (the entry cannot become a message), unsupported (it asks for what cannot be sent exactly as Python send_task would), rejected (the broker can never carry the message) or max_attempts (refused on every attempt).',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of DEAD_REASONS) this.dead.inc({ reason }, 0);
    this.batchSeconds = new Histogram({
      name: 'cls_dispatch_batch_seconds',
      help: 'Duration of a dispatch run (claim, build, publish, acknowledge every due batch), in seconds; one observation per run that sent, gave back or made a dead letter of at least one job (runs that found nothing due are not observed).',
      buckets: [...BATCH_SECONDS_BUCKETS],
      registers,
    });
    this.latenessSeconds = new Histogram({
      name: 'cls_dispatch_lateness_seconds',
      help: 'Per sent job: when the broker accepted it minus when it was due, in seconds (a job re-claimed after a lease ran out counts from its lease deadline).',
      buckets: [...LATENESS_SECONDS_BUCKETS],
      registers,
    });
    this.#scheduled = new ScrapeGauge({
      name: 'cls_jobs_scheduled',
      help: 'Jobs waiting in the store (not claimed by any dispatcher), read at scrape time; absent when the store cannot be read.',
      registers,
      collect,
    });
    this.#inFlight = new ScrapeGauge({
      name: 'cls_jobs_in_flight',
      help: 'Jobs claimed by a dispatcher and not yet sent or given back, read at scrape time; absent when the store cannot be read.',
      registers,
      collect,
    });
    this.#deadLetters = new ScrapeGauge({
      name: 'cls_jobs_dead',
      help: 'Dead letters kept in the store (never sent until retried), read at scrape time; absent when the store cannot be read.',
      registers,
      collect,
    });
    this.#overdueLag = new ScrapeGauge({
      name: 'cls_overdue_lag_seconds',
      help: 'Now minus the due time of the earliest job still waiting in the store when that is in the past, else 0, at scrape time; absent when the store cannot be read.',
      registers,
      collect,
    });
    this.#storeUp = new Gauge({
      name: 'cls_store_up',
      help: '1 when the dispatcher can reach its store (its last pass did not fail and a live check at scrape time succeeded), else 0.',
      registers,
      collect,
    });
    this.#brokerUp = new Gauge({
      name: 'cls_broker_up',
      help: '1 when the dispatcher can reach its broker (its last send did not fail and a live check at scrape time succeeded), else 0.',
      registers,
      collect,
    });
  }

  /** Counts what a dispatcher (or daemon) does from its events; the returned function stops it. */
  listen(events: DispatchEvents): () => void {
    return events.listen({ run: (e) => this.#onRun(e), storeState: (e) => this.#onStoreState(e), brokerState: (e) => this.#onBrokerState(e) });
  }

  #onRun({ summary, detail }: DispatchEventMap['run']): void {
    this.dispatched.inc(summary.sent);
    const refused = Math.min(detail.refused, summary.failed);
    this.failed.inc({ reason: 'refused' }, refused);
    this.failed.inc({ reason: 'broker_unavailable' }, summary.failed - refused);
    this.movedAside.inc(summary.corrupt);
    for (const reason of DEAD_REASONS) this.dead.inc({ reason }, detail.deadByReason[reason]);
    if (summary.sent + summary.failed + summary.dead > 0) this.batchSeconds.observe(summary.elapsedMs / 1000);
    for (const s of detail.latenessSeconds) this.latenessSeconds.observe(s);
  }

  #onStoreState(e: DispatchEventMap['storeState']): void {
    this.#storeDown = e.up ? undefined : { error: e.error };
  }

  #onBrokerState(e: DispatchEventMap['brokerState']): void {
    this.#brokerDown = e.up ? undefined : { error: e.error };
  }

  // --- scrape time -------------------------------------------------------------------------

  /** Store and broker health: the daemon's view AND a live check, each within `checkTimeoutMs`. */
  async health(): Promise<HealthReport> {
    const [counts, ping] = await Promise.all([this.#live(this.#storeWhat, () => this.#store.count()), this.#pingBroker()]);
    return this.#report(counts, ping);
  }

  /** The registry in the text exposition format, with the store gauges and health read now. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** The reads of one scrape: every gauge's `collect` of the same scrape awaits the same reads. */
  #scrapeOnce(): Promise<void> {
    return (this.#scrape ??= this.#read().finally(() => {
      this.#scrape = undefined;
    }));
  }

  async #read(): Promise<void> {
    const [counts, ping, earliest] = await Promise.all([
      this.#live(this.#storeWhat, () => this.#store.count()),
      this.#pingBroker(),
      this.#live(this.#storeWhat, () => this.#store.list({ limit: 1 })),
    ]);
    const health = this.#report(counts, ping);
    const readable = counts.ok && earliest.ok;
    for (const g of [this.#scheduled, this.#inFlight, this.#deadLetters, this.#overdueLag]) g.present = readable;
    if (counts.ok && earliest.ok) {
      this.#scheduled.set(counts.value.scheduled);
      this.#inFlight.set(counts.value.inFlight);
      this.#deadLetters.set(counts.value.dead);
      const first = earliest.value.jobs[0];
      const now = this.#clock().getTime() / 1000;
      this.#overdueLag.set(first && first.dueAt < now ? now - first.dueAt : 0);
    }
    this.#storeUp.set(health.store.up ? 1 : 0);
    this.#brokerUp.set(health.broker.up ? 1 : 0);
  }

  get #storeWhat(): string {
    return `store at ${this.#store.description}`;
  }

  #report(counts: Live<StoreCounts>, ping: Live<void>): HealthReport {
    const store = component(this.#storeDown, counts);
    const broker = component(this.#brokerDown, ping);
    return { ok: store.up && broker.up, store, broker };
  }

  #pingBroker(): Promise<Live<void>> {
    const ping = this.#broker.ping?.bind(this.#broker);
    return ping ? this.#live(`broker at ${this.#broker.description}`, ping) : Promise.resolve({ ok: true, value: undefined });
  }

  /** Runs a check with a timeout; never rejects. */
  #live<T>(what: string, fn: () => Promise<T>): Promise<Live<T>> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ ok: false, error: new Error(`the ${what} did not answer within ${this.#timeoutMs} ms`) }), this.#timeoutMs);
      timer.unref();
      let call: Promise<T>;
      try {
        call = fn();
      } catch (err) {
        call = Promise.reject(err);
      }
      call.then(
        (value) => {
          clearTimeout(timer);
          resolve({ ok: true, value });
        },
        (error: unknown) => {
          clearTimeout(timer);
          resolve({ ok: false, error });
        },
      );
    });
  }
}

type Live<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Down when the live check fails, or when the daemon's last attempt failed even though the live
 * check works (e.g. reads work but writes fail on a full disk; publishes fail while PING works):
 * it turns up again with the daemon's next successful attempt, at most one backoff (30 s) later.
 */
function component(daemonDown: { error: unknown } | undefined, live: Live<unknown>): ComponentHealth {
  if (!live.ok) return { up: false, error: oneLine(live.error) };
  if (daemonDown) return { up: false, error: oneLine(daemonDown.error ?? 'the dispatcher saw it fail') };
  return { up: true };
}

function oneLine(err: unknown): string {
  return firstLine(errorMessage(err));
}
