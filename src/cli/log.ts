/** The CLI's logger: one line per event on stderr, as text or JSON (`--log-format json`). */
import { redactUrlsIn } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

export type LogFormat = 'text' | 'json';

export function createCliLogger(format: LogFormat, write: (line: string) => void): Logger {
  const emit = (level: string, message: string, fields: Record<string, unknown> = {}) => {
    const time = new Date().toISOString();
    // Redacted value by value, before formatting: a URL's end is then the end of its string, and
    // the JSON line stays valid JSON whatever the password holds.
    const msg = redactUrlsIn(message);
    const safe = redact(fields) as Record<string, unknown>;
    if (format === 'json') {
      write(JSON.stringify({ time, level, msg, ...safe }));
      return;
    }
    const extra = Object.entries(safe)
      .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
      .join(' ');
    write(`${time} ${level.toUpperCase()} ${msg}${extra ? ` ${extra}` : ''}`);
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/** Every string inside a log field, redacted (fields are small: a few levels at most). */
function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactUrlsIn(value);
  if (value instanceof Error) return redactUrlsIn(value.message);
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, depth + 1)]));
}
