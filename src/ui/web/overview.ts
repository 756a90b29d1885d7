/**
 * Overview: what the store holds now (scheduled, due now, overdue and how late the oldest is, in
 * flight, dead letters), store and broker health, and, when a dispatcher runs beside the
 * dashboard, its send rate and lateness. It updates live from `api/events` (server-sent events,
 * every 2 s) without reloading; below it, the load of the next 48 hours.
 */
import { get } from './api.js';
import type { Health, HistogramView, Overview } from './api-types.js';
import { barChart } from './chart.js';
import { fill, h, num, relative, span, utc } from './dom.js';
import type { AppContext } from './context.js';

export async function overviewView(root: HTMLElement, _params: URLSearchParams, app: AppContext): Promise<() => void> {
  const cards = h('div', { class: 'cards' });
  const health = h('div', { class: 'health' });
  const dispatcher = h('div');
  const live = h('span', { class: 'live muted', 'aria-live': 'off' }, 'connecting…');
  const soon = h('div');
  fill(root, h('h2', null, 'Overview ', live), cards, health, dispatcher, h('h3', null, 'Due in the next 48 hours, per hour'), soon);

  const draw = (o: Overview) => {
    const late = o.oldestLatenessSeconds;
    fill(
      cards,
      card('Scheduled', num(o.scheduled), o.nextDueAt ? `next ${relative(o.nextDueAt)}` : 'nothing waiting', app.href('search', new URLSearchParams())),
      card('Due now', num(o.dueNow), 'due and waiting to be sent', app.href('search', new URLSearchParams({ to: o.at })), o.dueNow ? 'warn' : ''),
      card(
        'Overdue',
        num(o.overdue),
        late ? `the oldest is ${span(late)} late` : `none over ${o.graceSeconds}s late`,
        app.href('search', new URLSearchParams({ to: new Date(new Date(o.at).getTime() - o.graceSeconds * 1000).toISOString() })),
        o.overdue ? 'bad' : '',
      ),
      card('In flight', num(o.inFlight), 'claimed by a dispatcher now', undefined),
      card('Dead letters', num(o.dead), 'never sent until retried', app.href('dead', new URLSearchParams()), o.dead ? 'bad' : ''),
    );
    fill(health, healthLine('Store', app.session.store, o.store), healthLine('Broker', app.session.broker, o.broker));
    const d = o.dispatcher;
    fill(
      dispatcher,
      d
        ? h(
            'div',
            { class: 'cards small' },
            card(
              'Dispatch rate',
              `${d.ratePerSecond < 10 ? d.ratePerSecond.toFixed(2) : num(Math.round(d.ratePerSecond))}/s`,
              `${num(d.sentLastMinute)} sent in the last minute`,
            ),
            card(
              'Lateness p50 / p99',
              d.lateness ? `${span(d.lateness.p50)} / ${span(d.lateness.p99)}` : '–',
              d.lateness ? `max ${span(d.lateness.max)}, ${num(d.lateness.samples)} jobs in 5 min` : 'nothing sent in 5 min',
            ),
            card('Sent', num(d.sentTotal), `since the dashboard started; ${num(d.failedTotal)} given back, ${num(d.deadTotal)} dead`),
            card('Last run', d.lastRunAt ? relative(d.lastRunAt) : '–', d.lastRunAt ? utc(d.lastRunAt) : 'not yet'),
          )
        : h('p', { class: 'muted' }, 'No dispatcher runs beside this dashboard (start it with run --ui-port to see its rate and lateness).'),
    );
    fill(live, h('span', { class: 'dot' }), ` live · ${utc(o.at).slice(11)} UTC · read in ${o.tookMs.toFixed(0)} ms`);
  };

  draw(await get<Overview>('overview'));
  const events = new EventSource('api/events');
  events.addEventListener('overview', (e) => draw(JSON.parse((e as MessageEvent<string>).data) as Overview));
  events.addEventListener('error', () => fill(live, h('span', { class: 'dot off' }), ' reconnecting…'));

  const from = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  const q = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(from + 48 * 3_600_000 - 1).toISOString(), by: 'hour' });
  get<HistogramView>('histogram', q).then(
    (v) =>
      fill(
        soon,
        barChart(v, (b) =>
          app.go('search', new URLSearchParams({ from: new Date(b.start * 1000).toISOString(), to: new Date(b.end * 1000 - 1).toISOString() })),
        ),
      ),
    () => fill(soon, h('p', { class: 'muted' }, 'the chart could not be read')),
  );
  return () => events.close();
}

function card(title: string, value: string, note: string, href?: string, tone = ''): HTMLElement {
  const body = [h('div', { class: 'card-title' }, title), h('div', { class: 'card-value' }, value), h('div', { class: 'card-note muted' }, note)];
  return href ? h('a', { class: `card ${tone}`, href }, body) : h('div', { class: `card ${tone}` }, body);
}

function healthLine(what: string, where: string, hl: Health): HTMLElement {
  const state = hl.up === null ? 'unknown' : hl.up ? 'up' : 'down';
  return h(
    'p',
    { class: `health-line ${state}` },
    h('span', { class: `badge ${hl.up === false ? 'bad' : hl.up ? 'good' : ''}` }, `${what} ${state}`),
    ' ',
    h('code', null, where),
    hl.error ? h('span', { class: 'error' }, ` ${hl.error}`) : null,
  );
}
