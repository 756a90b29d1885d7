/**
 * What the CLI commands share to read flags and print results: the bounds of numeric flags, and
 * plain-text tables and times for people (`--json` is for programs).
 */
import type { ScheduledJobInfo } from '../admin/scheduled-jobs.js';
import { isoOrUndefined, isRepresentableMs } from '../celery/time.js';
import { DISPATCH_LIMITS } from '../dispatch/dispatcher.js';
import { ValidationError } from '../util/errors.js';

/**
 * The bounds of the numeric flags: past them a value does harm rather than what was meant (a
 * batch or page too big for memory or one Redis script, a poll that hammers the store, a lease
 * so short that healthy dispatchers send the same job again, or so long that a dead one's jobs
 * wait for days).
 */
export const LIMITS = {
  batchSize: DISPATCH_LIMITS.batchSize,
  limit: { min: 1, max: 10_000 },
  pollIntervalMs: { min: 10, max: 86_400_000 },
  leaseMs: {
    ...DISPATCH_LIMITS.leaseMs,
    below: 'a lease that runs out between claiming a job and acknowledging it lets another dispatcher send the job again',
  },
  maxAttempts: DISPATCH_LIMITS.maxAttempts,
  retryDelayMs: DISPATCH_LIMITS.retryDelayMs,
  retryDelayMaxMs: DISPATCH_LIMITS.retryDelayMaxMs,
} as const;

/** A whole number within `range`, or a usage error saying the range (and why, when it is not obvious). */
export function bounded(text: string, flag: string, range: { min: number; max: number; below?: string }): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n))
    throw new ValidationError([`${flag} must be a whole number from ${range.min} to ${range.max}, got ${JSON.stringify(text)}`]);
  if (n < range.min && range.below) throw new ValidationError([`${flag} ${n} is below ${range.min}: ${range.below}; pass ${range.min} or more`]);
  if (n < range.min || n > range.max)
    throw new ValidationError([`${flag} must be a whole number from ${range.min} to ${range.max}, got ${JSON.stringify(text)}`]);
  return n;
}

export function portNumber(text: string, flag: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535)
    throw new ValidationError([`${flag} must be a port number from 0 to 65535, got ${JSON.stringify(text)}`]);
  return n;
}

export function seconds(text: string, flag: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new ValidationError([`${flag} ${JSON.stringify(text)} is not a number of seconds`]);
  return n;
}

/** `2026-11-24 09:00:00` (UTC, to the second): what a table needs; the raw number when out of range. */
export function humanTime(unixSeconds: number): string {
  return isoOrUndefined(unixSeconds)?.slice(0, 19).replace('T', ' ') ?? outOfRange(unixSeconds);
}

/** A stored time no Date (or Python datetime) holds, printed as it is stored. */
export function outOfRange(unixSeconds: number): string {
  return `unix ${String(unixSeconds)} (outside years 1-9999)`;
}

/** "in 3d 4h", "5m 2s ago" */
export function relative(at: Date, now: Date): string {
  if (!isRepresentableMs(at.getTime())) return 'out of range';
  const ms = at.getTime() - now.getTime();
  let s = Math.round(Math.abs(ms) / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    // the largest unit there is, then always the one below it: "1553d 0h", never "1553d 34m"
    if (parts.length > 0 || s >= size || unit === 's') {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
    if (parts.length === 2) break;
  }
  return ms >= 0 ? `in ${parts.join(' ')}` : `${parts.join(' ')} ago`;
}

export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A plain text table: a header row and left-aligned columns two spaces apart. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
  return `${[headers, ...rows].map(line).join('\n')}\n`;
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/**
 * One page of a listing: for `--json`, one JSON object per line and a last line
 * `{"next_cursor": …}` when there is another page; for people, a table and a count line naming
 * the next page's `--cursor`, or `empty` when there is nothing.
 */
export function printPage<T>(
  write: (text: string) => void,
  page: { items: readonly T[]; cursor?: string | undefined },
  o: { json: boolean; toJson: (item: T) => unknown; headers: string[]; row: (item: T) => string[]; noun: [string, string]; empty: string },
): void {
  if (o.json) {
    for (const item of page.items) write(`${JSON.stringify(o.toJson(item))}\n`);
    if (page.cursor !== undefined) write(`${JSON.stringify({ next_cursor: page.cursor })}\n`);
    return;
  }
  if (page.items.length === 0) return write(`${o.empty}\n`);
  write(table(o.headers, page.items.map(o.row)));
  const n = page.items.length;
  write(`${n} ${n === 1 ? o.noun[0] : o.noun[1]}${page.cursor === undefined ? '' : `; next page: --cursor '${page.cursor}'`}\n`);
}

/**
 * A job as JSON for programs (`list --json`, `show --json`): times as ISO strings; `dueAt` is null
 * when the stored time is outside years 1-9999 (another writer stored it), and `dueAtUnix` is always
 * the stored number.
 */
export function jobJson(j: ScheduledJobInfo): Record<string, unknown> {
  const { entry: _entry, dueAt: _dueAt, dueAtUnix, ...rest } = j;
  return { ...rest, dueAt: isoOrUndefined(dueAtUnix) ?? null, dueAtUnix };
}
