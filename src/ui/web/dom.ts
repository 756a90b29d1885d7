/**
 * Building the page without a framework: `h('td', { class: 'num' }, text)` makes an element,
 * `s('rect', …)` an SVG one. Text is always set as text (never parsed as HTML), so nothing a job
 * holds can become markup; and nothing sets a `style` attribute, which the Content-Security-Policy
 * forbids (positions are set through `element.style`, which it allows).
 *
 * Also the formats every view shares: times in UTC and in the viewer's zone, "in 3d 4h",
 * numbers with separators.
 */

export type Child = Node | string | number | null | undefined | false | readonly Child[];
type Handler = (e: Event) => void;
export type Attrs = Record<string, string | number | boolean | Handler | null | undefined>;

function apply(el: Element, attrs: Attrs | null | undefined, children: readonly Child[]): void {
  append(el, children);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (k === 'value' && (el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement)) el.value = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el: Element, children: readonly Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c as readonly Child[]);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  apply(el, attrs, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  apply(el, attrs, children);
  return el;
}

/** Replaces what `el` holds. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

// --- formats ----------------------------------------------------------------------------------

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** `2027-01-04 09:00:00` in UTC. */
export function utc(iso: string | null): string {
  if (iso === null) return 'out of range';
  return iso.slice(0, 19).replace('T', ' ');
}

/** `2027-01-04 10:00:00` in the viewer's zone. */
export function local(iso: string | null): string {
  if (iso === null) return 'out of range';
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The viewer's zone, e.g. "Europe/Berlin". */
export const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local';

/** "in 3d 4h", "5m 2s ago", as the CLI says it. */
export function relative(iso: string | null, now = Date.now()): string {
  if (iso === null) return '';
  const ms = new Date(iso).getTime() - now;
  return ms >= 0 ? `in ${span(ms / 1000)}` : `${span(-ms / 1000)} ago`;
}

/** A length of time, the largest unit and the one below it: "3d 4h", "2m 5s", "0.4s". */
export function span(seconds: number): string {
  if (seconds < 10) return `${seconds < 1 ? seconds.toFixed(2) : seconds.toFixed(1)}s`;
  let rest = Math.round(seconds);
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (parts.length > 0 || rest >= size || unit === 's') {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

export function num(n: number | null | undefined): string {
  return n === null || n === undefined ? '–' : n.toLocaleString('en-US');
}

export function plural(n: number, word: string, words = `${word}s`): string {
  return `${num(n)} ${n === 1 ? word : words}`;
}

/** An ISO time as short as it is exact: without milliseconds when there are none. */
export function isoShort(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** An ISO time with its UTC offset, for an input of type datetime-local (read in the viewer's zone). */
export function fromLocalInput(value: string): string | undefined {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** The value of a datetime-local input for an ISO time. */
export function toLocalInput(iso: string | null): string {
  if (iso === null) return '';
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A time cell: UTC, with the viewer's zone and "in 3d" in its title. */
export function timeCells(iso: string | null): HTMLTableCellElement[] {
  return [h('td', { class: 'time' }, utc(iso)), h('td', { class: 'time muted' }, local(iso)), h('td', { class: 'muted rel' }, relative(iso))];
}
