/**
 * A small imitation of Python's `reprlib`-style `saferepr` for the `argsrepr`/`kwargsrepr`
 * headers. They are informational only (logs, events, Flower), so close is good enough, but we
 * match Python for the JSON types: `None`, `True`, `'str'`, `[1, 2]`, `{'k': 1}`, tuples for args.
 */
const MAX_REPR = 1024;

export function pyRepr(value: unknown, maxLength = MAX_REPR): string {
  return truncate(reprValue(value, 0), maxLength);
}

/** Python's repr of a tuple, used for `argsrepr`: `(1,)`, `(2, 3)`, `()`. */
export function pyTupleRepr(items: readonly unknown[], maxLength = MAX_REPR): string {
  const inner = items.map((v) => reprValue(v, 1)).join(', ');
  return truncate(items.length === 1 ? `(${inner},)` : `(${inner})`, maxLength);
}

/** Cuts to `maxLength` UTF-16 units ending in `...`, never between the two halves of a surrogate pair. */
function truncate(out: string, maxLength: number): string {
  if (out.length <= maxLength) return out;
  let end = maxLength - 3;
  const last = out.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${out.slice(0, end)}...`;
}

function reprValue(value: unknown, depth: number): string {
  if (depth > 32) return '...';
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : pyFloat(value);
  if (typeof value === 'string') return pyString(value);
  if (Array.isArray(value)) return `[${value.map((v) => reprValue(v, depth + 1)).join(', ')}]`;
  if (value instanceof Date) return pyString(value.toISOString());
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return `{${entries.map(([k, v]) => `${pyString(k)}: ${reprValue(v, depth + 1)}`).join(', ')}}`;
  }
  return String(value);
}

function pyFloat(n: number): string {
  const s = String(n);
  return /e/.test(s) ? s.replace(/e([+-])(\d)$/, 'e$10$2') : s;
}

function pyString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}
