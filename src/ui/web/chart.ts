/**
 * The future-load chart, drawn by hand: one SVG bar per bucket (scaled to the fullest), the
 * pile-ups in the accent colour (a busiest bucket holding three times the mean of the others or more), a title on each bar (its time and count), and a few time
 * labels below. A click on a bar hands its bucket to `onPick`.
 */
import type { HistogramView } from './api-types.js';
import { h, num, s, utc } from './dom.js';

const W = 1000;
const H = 200;

export interface Bucket {
  start: number;
  end: number;
  count: number;
}

export function barChart(v: HistogramView, onPick: (b: Bucket) => void): HTMLElement {
  const max = Math.max(1, ...v.counts);
  const n = v.counts.length;
  const w = W / Math.max(1, n);
  const filled = v.counts.filter((c) => c > 0).length;
  const standsOut = (c: number) => filled > 1 && c >= (3 * (v.total - c)) / (filled - 1);
  const busiest = new Set(v.busiest.filter((b) => standsOut(b.count)).map((b) => new Date(b.start).getTime() / 1000));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart', role: 'img', 'aria-label': `jobs due per ${v.by}` });
  for (const frac of [0.25, 0.5, 0.75]) svg.append(s('line', { x1: 0, x2: W, y1: H * (1 - frac), y2: H * (1 - frac), class: 'grid' }));
  v.counts.forEach((count, i) => {
    if (count === 0) return;
    const start = v.start + i * v.bucketSeconds;
    const bh = Math.max(3, (count / max) * (H - 4)); // a bucket holding any job stays visible
    const bar = s(
      'rect',
      { x: i * w + (w > 3 ? w * 0.1 : 0), y: H - bh, width: w > 3 ? w * 0.8 : w, height: bh, class: busiest.has(start) ? 'bar hot' : 'bar' },
      s('title', null, `${utc(new Date(start * 1000).toISOString())} UTC: ${num(count)} job${count === 1 ? '' : 's'}`),
    );
    bar.addEventListener('click', () => onPick({ start, end: start + v.bucketSeconds, count }));
    svg.append(bar);
  });
  const axis = h('div', { class: 'axis' });
  const ticks = Math.min(6, n);
  for (let t = 0; t < ticks; t++) {
    const i = Math.round((t * (n - 1)) / Math.max(1, ticks - 1));
    const at = new Date((v.start + i * v.bucketSeconds) * 1000).toISOString();
    const label = h('span', null, v.by === 'day' ? at.slice(0, 10) : utc(at).slice(0, 16));
    label.style.left = `${((i + 0.5) / n) * 100}%`;
    axis.append(label);
  }
  const empty = v.total === 0 ? h('div', { class: 'chart-empty muted' }, 'nothing falls due in this range') : null;
  return h('figure', { class: 'chart-box' }, v.total ? h('div', { class: 'chart-max muted' }, `max ${num(max)}`) : null, svg, axis, empty);
}
