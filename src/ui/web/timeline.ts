/**
 * Timeline: how many jobs fall due per minute, hour or day over a range, for any query, as a bar
 * chart; the fullest buckets named, each with "search these" and "spread these" (a bulk
 * reschedule over a window starting at the bucket, after its dry run). A click on a bar searches
 * its bucket. With no range the server charts from now: 6 hours by minute, 30 days by hour, a
 * year by day.
 */
import { errorText, get } from './api.js';
import type { HistogramView } from './api-types.js';
import { bulkPanel } from './bulk.js';
import { barChart, type Bucket } from './chart.js';
import { fill, h, isoShort, local, num, plural, utc, ZONE } from './dom.js';
import { queryForm, queryOf } from './query.js';
import type { AppContext } from './context.js';

const SPREAD_DEFAULT: Record<string, string> = { minute: '10m', hour: '3h', day: '3d' };

export async function timelineView(root: HTMLElement, params: URLSearchParams, app: AppContext): Promise<void> {
  const query = queryOf(params);
  const by = params.get('by') ?? 'hour';
  const unit = h(
    'select',
    { name: 'by', 'aria-label': 'bucket', value: by },
    ['minute', 'hour', 'day'].map((u) => h('option', { value: u }, `per ${u}`)),
  );
  const spans: [string, number, string][] = [
    ['next 6 h', 6 * 3600, 'minute'],
    ['next 2 d', 2 * 86_400, 'hour'],
    ['next 30 d', 30 * 86_400, 'hour'],
    ['next year', 365 * 86_400, 'day'],
  ];
  const quick = h(
    'span',
    { class: 'quick' },
    spans.map(([label, seconds, u]) =>
      h(
        'button',
        {
          type: 'button',
          class: 'link',
          onclick: () => {
            const q = new URLSearchParams(query);
            const now = Math.floor(Date.now() / 60_000) * 60_000;
            q.set('from', isoShort(now));
            q.set('to', isoShort(now + seconds * 1000 - 1000));
            q.set('by', u);
            app.go('timeline', q);
          },
        },
        label,
      ),
    ),
  );
  const form = queryForm(
    params,
    (q) => {
      q.set('by', unit.value);
      app.go('timeline', q);
    },
    [unit, quick],
  );
  const status = h('p', { class: 'status muted', 'aria-live': 'polite' }, 'counting…');
  const chart = h('div');
  const top = h('div');
  const action = h('div');
  fill(root, h('h2', null, 'Timeline: the future load'), form, status, chart, top, action);

  const p = new URLSearchParams(query);
  p.set('by', by);
  let v: HistogramView;
  try {
    v = await get<HistogramView>('histogram', p);
  } catch (err) {
    fill(status, h('span', { class: 'error' }, errorText(err)));
    return;
  }
  const bucketQuery = (b: Bucket) => {
    const q = new URLSearchParams(query);
    q.set('from', isoShort(b.start * 1000));
    q.set('to', isoShort(b.end * 1000 - 1));
    return q;
  };
  fill(
    status,
    `${plural(v.total, 'job')} due from ${utc(v.from)} to ${utc(v.to)} UTC, per ${v.by}`,
    v.scanned !== undefined ? ` (read ${num(v.scanned)}: an args filter reads every job the other filters let through)` : '',
  );
  fill(
    chart,
    barChart(v, (b) => app.go('search', bucketQuery(b))),
  );
  if (!v.busiest.length) return;
  const spread = (b: Bucket) => {
    fill(
      action,
      bulkPanel(
        app.session,
        bucketQuery(b),
        (summary) => {
          app.flash(summary);
          app.reload();
        },
        {
          action: 'spread',
          length: SPREAD_DEFAULT[v.by] ?? '3h',
          title: `Spread the ${plural(b.count, 'job')} due ${utc(new Date(b.start * 1000).toISOString())} UTC (this ${v.by})`,
        },
      ),
    );
    action.querySelector<HTMLButtonElement>('button')?.focus();
  };
  fill(
    top,
    h('h3', null, 'Busiest'),
    h(
      'table',
      { class: 'busiest' },
      h('thead', null, h('tr', null, h('th', null, `${v.by} (UTC)`), h('th', null, ZONE), h('th', { class: 'num' }, 'jobs'), h('th', null, ''))),
      h(
        'tbody',
        null,
        v.busiest.map((b) => {
          const start = new Date(b.start).getTime() / 1000;
          const bucket = { start, end: start + v.bucketSeconds, count: b.count };
          return h(
            'tr',
            null,
            h('td', { class: 'time' }, utc(b.start)),
            h('td', { class: 'time muted' }, local(b.start)),
            h('td', { class: 'num' }, num(b.count)),
            h(
              'td',
              { class: 'row-actions' },
              h('a', { href: app.href('search', bucketQuery(bucket)) }, 'search these'),
              app.session.readOnly ? null : h('button', { type: 'button', class: 'link', onclick: () => spread(bucket) }, 'spread these'),
            ),
          );
        }),
      ),
    ),
  );
}
