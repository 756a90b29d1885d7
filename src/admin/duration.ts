/**
 * A length of time as operators write it on the command line and in the dashboard: `90`, `90s`,
 * `30m`, `2h`, `1.5d`, `1w`, with a sign when it is a shift (`+2h`, `-30m`). Read here once, so
 * both say the same thing about a bad one.
 */
import { ValidationError } from '../util/errors.js';

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/**
 * A length of time: `90`, `90s`, `30m`, `2h`, `1.5d`, `1w`, with a sign when `signed` (`+2h`,
 * `-30m`). Seconds; a usage error naming the flag otherwise.
 */
export function duration(text: string, flag: string, signed = false): number {
  const m = /^([+-]?)(\d+(?:\.\d+)?)([smhdw]?)$/.exec(text.trim());
  if (!m || (!signed && m[1] !== ''))
    throw new ValidationError([
      `${flag} ${JSON.stringify(text)} is not a length of time; write e.g. ${signed ? '+2h, -30m, +1d' : '30m, 2h, 1d'} (s, m, h, d or w)`,
    ]);
  const n = Number(m[2]) * (UNIT[m[3] || 's'] as number) * (m[1] === '-' ? -1 : 1);
  if (n === 0) throw new ValidationError([`${flag} ${JSON.stringify(text)} is zero; pass a length of time`]);
  return n;
}
