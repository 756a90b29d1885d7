/** The CLI's logger: one line per event on stderr, as text or JSON (`--log-format json`). */
import { redactUrlsIn } from '../errors.js';
import type { Logger } from '../logger.js';

export type LogFormat = 'text' | 'json';

export function createCliLogger(format: LogFormat, write: (line: string) => void): Logger {
  const emit = (level: string, message: string, fields: Record<string, unknown> = {}) => {
    const time = new Date().toISOString();
    if (format === 'json') {
      write(redactUrlsIn(JSON.stringify({ time, level, msg: message, ...fields })));
      return;
    }
    const extra = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
      .join(' ');
    write(redactUrlsIn(`${time} ${level.toUpperCase()} ${message}${extra ? ` ${extra}` : ''}`));
  };
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
