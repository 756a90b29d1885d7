/**
 * Prometheus metrics of the dispatcher, in the text exposition format 0.0.4, with no dependency.
 *
 * - `MetricsRegistry`: counters, gauges and fixed-bucket histograms, rendered as `# HELP` /
 *   `# TYPE` lines and samples (label values escaped, histogram buckets cumulative up to `+Inf`).
 * - `DispatcherMetrics`: the dispatcher's metrics. Pass it as the daemon's `observer` (it counts
 *   what each run did and tracks store/broker outages); at scrape time it reads the store's size
 *   and the oldest overdue job, and checks store and broker live (`health()`).
 */
import type { Broker } from '../brokers/broker.js';
import type { DispatchDetail, DispatchObserver, DispatchSummary } from '../dispatch/dispatcher.js';
import { errorMessage, firstLine } from '../util/errors.js';
import { DEAD_REASONS, type ScheduleStore, type StoreCounts } from '../stores/store.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A sample value as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, or the number. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Escapes HELP text: backslash and line feed. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const pairs = Object.entries(labels);
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return '';
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
}

/** One value per label set; the key is the label values in `labelNames` order. */
abstract class Family<T> {
  readonly #series = new Map<string, { labels: Labels; value: T }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    for (const l of labelNames) if (!LABEL.test(l) || l.startsWith('__') || l === 'le') throw new Error(`invalid label name ${JSON.stringify(l)}`);
  }
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  protected abstract initial(): T;
  protected abstract samples(labels: Labels, value: T): string[];

  protected series(labels: Labels = {}): { labels: Labels; value: T } {
    const names = Object.keys(labels);
    if (names.length !== this.labelNames.length || this.labelNames.some((n) => !(n in labels))) {
      throw new Error(`${this.name} takes the labels [${this.labelNames.join(', ')}], got [${names.join(', ')}]`);
    }
    const key = JSON.stringify(this.labelNames.map((n) => labels[n]));
    let s = this.#series.get(key);
    if (!s) {
      const ordered = Object.fromEntries(this.labelNames.map((n) => [n, labels[n] as string]));
      s = { labels: ordered, value: this.initial() };
      this.#series.set(key, s);
    }
    return s;
  }

  protected forget(labels: Labels = {}): void {
    this.#series.delete(JSON.stringify(this.labelNames.map((n) => labels[n])));
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.#series.values()) lines.push(...this.samples(labels, value));
    return `${lines.join('\n')}\n`;
  }
}

export class Counter extends Family<{ v: number }> {
  readonly type = 'counter';
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    if (!name.endsWith('_total')) throw new Error(`counter ${JSON.stringify(name)} must end in _total`);
    super(name, help, labelNames);
    if (labelNames.length === 0) this.series(); // an unlabelled counter reads 0 from the start
  }
  protected initial() {
    return { v: 0 };
  }
  /** Adds `by` (>= 0); with labels, creates the series at 0 when `by` is 0. */
  inc(by = 1, labels?: Labels): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up, got ${by}`);
    this.series(labels).value.v += by;
  }
  get(labels?: Labels): number {
    return this.series(labels).value.v;
  }
  protected samples(labels: Labels, value: { v: number }): string[] {
    return [`${this.name}${labelText(labels)} ${formatValue(value.v)}`];
  }
}

export class Gauge extends Family<{ v: number }> {
  readonly type = 'gauge';
  protected initial() {
    return { v: 0 };
  }
  set(v: number, labels?: Labels): void {
    this.series(labels).value.v = v;
  }
  /** Drops the series: nothing is exposed for it until the next `set` (e.g. the value is unknown). */
  unset(labels?: Labels): void {
    this.forget(labels);
  }
  protected samples(labels: Labels, value: { v: number }): string[] {
    return [`${this.name}${labelText(labels)} ${formatValue(value.v)}`];
  }
}

interface HistogramValue {
  /** per bucket (not cumulative); the last one is +Inf */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Family<HistogramValue> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []) {
    super(name, help, labelNames);
    const sorted = [...buckets].filter((b) => b !== Infinity).sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) {
      throw new Error(`${name}: buckets must be distinct finite numbers`);
    }
    this.buckets = sorted;
    if (labelNames.length === 0) this.series();
  }
  protected initial(): HistogramValue {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }
  observe(v: number, labels?: Labels): void {
    if (Number.isNaN(v)) return;
    const h = this.series(labels).value;
    let i = 0;
    while (i < this.buckets.length && v > (this.buckets[i] as number)) i++;
    h.counts[i] = (h.counts[i] ?? 0) + 1;
    h.sum += v;
    h.count++;
  }
  protected samples(labels: Labels, h: HistogramValue): string[] {
    const out: string[] = [];
    let cumulative = 0;
    this.buckets.forEach((le, i) => {
      cumulative += h.counts[i] ?? 0;
      out.push(`${this.name}_bucket${labelText(labels, ['le', formatValue(le)])} ${cumulative}`);
    });
    out.push(`${this.name}_bucket${labelText(labels, ['le', '+Inf'])} ${h.count}`);
    out.push(`${this.name}_sum${labelText(labels)} ${formatValue(h.sum)}`);
    out.push(`${this.name}_count${labelText(labels)} ${h.count}`);
    return out;
  }
}

/** The metrics of one process, rendered in registration order. */
export class MetricsRegistry {
  readonly #families = new Map<string, { name: string; render(): string }>();

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames));
  }
  histogram(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []): Histogram {
    return this.#add(new Histogram(name, help, buckets, labelNames));
  }

  /** The text exposition format 0.0.4. */
  render(): string {
    return [...this.#families.values()].map((f) => f.render()).join('');
  }

  #add<F extends { name: string; render(): string }>(family: F): F {
    if (this.#families.has(family.name)) throw new Error(`metric ${family.name} is registered twice`);
    this.#families.set(family.name, family);
    return family;
  }
}

/** Seconds; from a fast local run to a slow remote broker. */
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
  /** the current time (as the daemon's); default the system clock */
  clock?: () => Date;
  /** how long a live store or broker check at scrape/health time may take; default 1000 ms */
  checkTimeoutMs?: number;
}

/**
 * The dispatcher's metrics. Use it as the daemon's `observer`, and serve `render()` and
 * `health()` (see server.ts).
 *
 * Store and broker are "up" when the daemon has not seen them fail (or has seen them recover)
 * AND a live check now succeeds within `checkTimeoutMs`: `store.count()` and `broker.ping()`
 * (when the broker has one). The live check catches a broker that went away while nothing was
 * due; the daemon's state catches failures the check cannot see (e.g. publishes failing).
 */
export class DispatcherMetrics implements DispatchObserver {
  readonly registry = new MetricsRegistry();
  readonly dispatched: Counter;
  readonly failed: Counter;
  readonly movedAside: Counter;
  readonly dead: Counter;
  readonly batchSeconds: Histogram;
  readonly latenessSeconds: Histogram;
  readonly #scheduled: Gauge;
  readonly #inFlight: Gauge;
  readonly #deadLetters: Gauge;
  readonly #overdueLag: Gauge;
  readonly #storeUp: Gauge;
  readonly #brokerUp: Gauge;
  readonly #store: ScheduleStore;
  readonly #broker: Broker;
  readonly #clock: () => Date;
  readonly #timeoutMs: number;
  /** what the daemon last reported: undefined while up */
  #storeDown: { error: unknown } | undefined;
  #brokerDown: { error: unknown } | undefined;

  constructor(o: DispatcherMetricsOptions) {
    this.#store = o.store;
    this.#broker = o.broker;
    this.#clock = o.clock ?? (() => new Date());
    this.#timeoutMs = o.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
    const r = this.registry;
    this.dispatched = r.counter('cls_jobs_dispatched_total', 'Jobs this dispatcher handed to the broker (accepted by it and removed from the store).');
    this.failed = r.counter(
      'cls_jobs_failed_total',
      'Jobs a dispatch run could not send and gave back to the store, by reason: refused (the broker refused the message, e.g. unroutable) or broker_unavailable (the broker could not be reached; retried with backoff, so a job counts once per attempt).',
      ['reason'],
    );
    this.failed.inc(0, { reason: 'refused' });
    this.failed.inc(0, { reason: 'broker_unavailable' });
    this.movedAside = r.counter(
      'cls_jobs_moved_aside_total',
      'Corrupt stored jobs made dead letters instead of being sent (also counted in cls_jobs_dead_total{reason="corrupt"}).',
    );
    this.dead = r.counter(
      'cls_jobs_dead_total',
      'Jobs this dispatcher made dead letters, by reason: corrupt (the entry cannot become a message), unsupported (it asks for what cannot be sent exactly as Python send_task would), rejected (the broker can never carry the message) or max_attempts (refused on every attempt).',
      ['reason'],
    );
    for (const reason of DEAD_REASONS) this.dead.inc(0, { reason });
    this.batchSeconds = r.histogram(
      'cls_dispatch_batch_seconds',
      'Duration of a dispatch run (claim, build, publish, acknowledge every due batch), in seconds; one observation per run that sent, gave back or made a dead letter of at least one job (runs that found nothing due are not observed).',
      BATCH_SECONDS_BUCKETS,
    );
    this.latenessSeconds = r.histogram(
      'cls_dispatch_lateness_seconds',
      'Per sent job: when the broker accepted it minus when it was due, in seconds (a job re-claimed after a lease ran out counts from its lease deadline).',
      LATENESS_SECONDS_BUCKETS,
    );
    this.#scheduled = r.gauge(
      'cls_jobs_scheduled',
      'Jobs waiting in the store (not claimed by any dispatcher), read at scrape time; absent when the store cannot be read.',
    );
    this.#inFlight = r.gauge(
      'cls_jobs_in_flight',
      'Jobs claimed by a dispatcher and not yet sent or given back, read at scrape time; absent when the store cannot be read.',
    );
    this.#deadLetters = r.gauge(
      'cls_jobs_dead',
      'Dead letters kept in the store (never sent until retried), read at scrape time; absent when the store cannot be read.',
    );
    this.#overdueLag = r.gauge(
      'cls_overdue_lag_seconds',
      'Now minus the due time of the earliest job still waiting in the store when that is in the past, else 0, at scrape time; absent when the store cannot be read.',
    );
    this.#storeUp = r.gauge(
      'cls_store_up',
      '1 when the dispatcher can reach its store (its last pass did not fail and a live check at scrape time succeeded), else 0.',
    );
    this.#brokerUp = r.gauge(
      'cls_broker_up',
      '1 when the dispatcher can reach its broker (its last send did not fail and a live check at scrape time succeeded), else 0.',
    );
  }

  // --- DispatchObserver --------------------------------------------------------------------

  onDispatched(summary: DispatchSummary, detail: DispatchDetail): void {
    this.dispatched.inc(summary.sent);
    const refused = Math.min(detail.refused, summary.failed);
    this.failed.inc(refused, { reason: 'refused' });
    this.failed.inc(summary.failed - refused, { reason: 'broker_unavailable' });
    this.movedAside.inc(summary.corrupt);
    for (const reason of DEAD_REASONS) this.dead.inc(detail.deadByReason[reason], { reason });
    if (summary.sent + summary.failed + summary.dead > 0) this.batchSeconds.observe(summary.elapsedMs / 1000);
    for (const s of detail.latenessSeconds) this.latenessSeconds.observe(s);
  }

  onStoreState(up: boolean, error?: unknown): void {
    this.#storeDown = up ? undefined : { error };
  }

  onBrokerState(up: boolean, error?: unknown): void {
    this.#brokerDown = up ? undefined : { error };
  }

  // --- scrape time -------------------------------------------------------------------------

  /** Store and broker health: the daemon's view AND a live check, each within `checkTimeoutMs`. */
  async health(): Promise<HealthReport> {
    const [counts, ping] = await Promise.all([this.#live(this.#storeWhat, () => this.#store.count()), this.#pingBroker()]);
    return this.#report(counts, ping);
  }

  /** Every metric in the text exposition format, with the store gauges and health read now. */
  async render(): Promise<string> {
    const [counts, ping, earliest] = await Promise.all([
      this.#live(this.#storeWhat, () => this.#store.count()),
      this.#pingBroker(),
      this.#live(this.#storeWhat, () => this.#store.list({ limit: 1 })),
    ]);
    const health = this.#report(counts, ping);
    if (counts.ok && earliest.ok) {
      this.#scheduled.set(counts.value.scheduled);
      this.#inFlight.set(counts.value.inFlight);
      this.#deadLetters.set(counts.value.dead);
      const first = earliest.value.jobs[0];
      const now = this.#clock().getTime() / 1000;
      this.#overdueLag.set(first && first.dueAt < now ? now - first.dueAt : 0);
    } else {
      this.#scheduled.unset();
      this.#inFlight.unset();
      this.#deadLetters.unset();
      this.#overdueLag.unset();
    }
    this.#storeUp.set(health.store.up ? 1 : 0);
    this.#brokerUp.set(health.broker.up ? 1 : 0);
    return this.registry.render();
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

/** Down when the live check failed (its error) or the daemon saw it fail (the daemon's error). */
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
