/**
 * What a dispatcher running in the same process did lately, for the dashboard's overview: its
 * send rate over the last minute, its lateness over the last five minutes (when the broker
 * accepted each job minus when it was due), totals since the dashboard started, and what the
 * daemon last saw of its store and broker. Read from its events (dispatch/events.ts), the one
 * way to observe a dispatcher; memory is bounded (at most `MAX_SAMPLES` lateness samples).
 */
import type { DispatchEvents, DispatchEventMap } from '../dispatch/events.js';
import { errorMessage, firstLine } from '../util/errors.js';
import type { DispatcherView } from './web/api-types.js';

const RATE_WINDOW_MS = 60_000;
const LATENESS_WINDOW_MS = 300_000;
const MAX_SAMPLES = 10_000;

export class DispatchStats {
  readonly #clock: () => number;
  /** per dispatch run that sent something: when it ended and how many it sent */
  #runs: { at: number; sent: number }[] = [];
  /** per sent job: when, and how late */
  #late: { at: number; seconds: number }[] = [];
  #sentTotal = 0;
  #deadTotal = 0;
  #failedTotal = 0;
  #lastRunAt: number | undefined;
  /** what the daemon last reported: an error while down, undefined while up */
  storeDown: string | undefined;
  brokerDown: string | undefined;
  readonly #off: () => void;

  constructor(events: DispatchEvents, clock: () => number = Date.now) {
    this.#clock = clock;
    this.#off = events.listen({
      run: (e) => this.#onRun(e),
      storeState: (e) => (this.storeDown = e.up ? undefined : oneLine(e.error)),
      brokerState: (e) => (this.brokerDown = e.up ? undefined : oneLine(e.error)),
    });
  }

  #onRun({ summary, detail }: DispatchEventMap['run']): void {
    const at = this.#clock();
    this.#lastRunAt = at;
    this.#sentTotal += summary.sent;
    this.#deadTotal += summary.dead;
    this.#failedTotal += summary.failed;
    if (summary.sent > 0) this.#runs.push({ at, sent: summary.sent });
    for (const seconds of detail.latenessSeconds) this.#late.push({ at, seconds });
    if (this.#late.length > MAX_SAMPLES) this.#late.splice(0, this.#late.length - MAX_SAMPLES);
    this.#prune(at);
  }

  #prune(now: number): void {
    const firstRun = this.#runs.findIndex((r) => r.at > now - RATE_WINDOW_MS);
    this.#runs.splice(0, firstRun < 0 ? this.#runs.length : firstRun);
    const firstLate = this.#late.findIndex((s) => s.at > now - LATENESS_WINDOW_MS);
    this.#late.splice(0, firstLate < 0 ? this.#late.length : firstLate);
  }

  view(): DispatcherView {
    const now = this.#clock();
    this.#prune(now);
    const sentLastMinute = this.#runs.reduce((n, r) => n + r.sent, 0);
    const late = this.#late.map((s) => s.seconds).sort((a, b) => a - b);
    const q = (p: number) => late[Math.min(late.length - 1, Math.floor(p * late.length))] as number;
    return {
      ratePerSecond: sentLastMinute / (RATE_WINDOW_MS / 1000),
      sentLastMinute,
      sentTotal: this.#sentTotal,
      deadTotal: this.#deadTotal,
      failedTotal: this.#failedTotal,
      lateness: late.length ? { p50: q(0.5), p99: q(0.99), max: late[late.length - 1] as number, samples: late.length } : null,
      lastRunAt: this.#lastRunAt === undefined ? null : new Date(this.#lastRunAt).toISOString(),
    };
  }

  /** Stops listening to the dispatcher's events. */
  close(): void {
    this.#off();
  }
}

function oneLine(err: unknown): string {
  return firstLine(errorMessage(err ?? 'the dispatcher saw it fail'));
}
