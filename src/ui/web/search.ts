/**
 * Search: the query form, the matches a page at a time (cursor paging; the query and the cursor
 * are in the address, so a view can be shared), due times in UTC and in the viewer's zone, and
 * the bulk actions on every match. Rows are focusable: Enter (or a click) opens the job, the
 * arrow keys move between rows.
 */
import { errorText, get } from './api.js';
import type { CountResult, JobPage, JobRow } from './api-types.js';
import { bulkPanel } from './bulk.js';
import { ZONE, fill, h, num, plural, timeCells } from './dom.js';
import { queryForm, queryOf, scans } from './query.js';
import type { AppContext } from './context.js';

export async function searchView(root: HTMLElement, params: URLSearchParams, app: AppContext): Promise<void> {
  const query = queryOf(params);
  const limit = params.get('limit') ?? '50';
  const form = queryForm(params, (q) => app.go('search', q));
  const status = h('p', { class: 'status muted', 'aria-live': 'polite' }, 'loading…');
  const table = h('div', { class: 'table-box' });
  const pager = h('nav', { class: 'pager' });
  const bulk = h('div');
  fill(root, h('h2', null, 'Search'), form, status, table, pager, bulk);

  const load = async () => {
    const p = new URLSearchParams(query);
    const cursor = params.get('cursor');
    if (cursor) p.set('cursor', cursor);
    p.set('limit', limit);
    let page: JobPage;
    try {
      page = await get<JobPage>('jobs', p);
    } catch (err) {
      fill(status, h('span', { class: 'error' }, errorText(err)));
      fill(table);
      return;
    }
    fill(table, jobTable(page.jobs, app));
    const parts: (string | HTMLElement)[] = [page.jobs.length ? `${plural(page.jobs.length, 'job')} on this page` : 'No scheduled job matches'];
    if (page.scanned !== undefined) parts.push(` (read ${num(page.scanned)} to find them: an args filter reads every job the other filters let through)`);
    fill(status, parts);
    if (!scans(query))
      get<CountResult>('count', query).then(
        (c) => status.append(h('span', null, ` · ${plural(c.count, 'match', 'matches')} in all`)),
        () => undefined,
      );
    const next = new URLSearchParams(query);
    if (page.cursor) next.set('cursor', page.cursor);
    fill(
      pager,
      cursor ? h('a', { href: app.href('search', query) }, '« First page') : null,
      page.cursor ? h('a', { href: app.href('search', next), rel: 'next' }, 'Next page »') : null,
    );
  };
  await load();
  if (!app.session.readOnly && [...query.keys()].length)
    fill(
      bulk,
      bulkPanel(app.session, query, () => void load()),
    );
  else if (!app.session.readOnly) fill(bulk, h('p', { class: 'muted' }, 'Bulk actions need a query: filter by something first.'));
}

export function jobTable(jobs: readonly JobRow[], app: AppContext): HTMLElement {
  if (!jobs.length) return h('div');
  const rows = jobs.map((j) => {
    const tr = h(
      'tr',
      { tabindex: 0, class: j.state === 'claimed' ? 'row claimed' : 'row', 'data-id': j.id },
      timeCells(j.dueAt),
      h('td', null, h('a', { href: app.href('job', new URLSearchParams({ id: j.id })), tabindex: -1 }, j.task)),
      h('td', null, j.queue ?? '–'),
      h(
        'td',
        { class: 'tags' },
        j.tags.map((t) => h('span', { class: 'tag' }, t)),
      ),
      h('td', { class: 'args', title: j.argsPreview }, h('code', null, j.argsPreview)),
      h('td', { class: 'id' }, h('code', { title: j.id }, j.id.length > 13 ? `${j.id.slice(0, 8)}…` : j.id)),
      h('td', null, j.state === 'claimed' ? h('span', { class: 'badge warn' }, 'claimed') : j.corrupt ? h('span', { class: 'badge bad' }, 'corrupt') : ''),
    );
    tr.addEventListener('click', (e) => {
      if ((e.target as HTMLElement).closest('a')) return;
      app.go('job', new URLSearchParams({ id: j.id }));
    });
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') app.go('job', new URLSearchParams({ id: j.id }));
      const sibling = e.key === 'ArrowDown' ? tr.nextElementSibling : e.key === 'ArrowUp' ? tr.previousElementSibling : null;
      if (sibling instanceof HTMLElement) {
        e.preventDefault();
        sibling.focus();
      }
    });
    return tr;
  });
  return h(
    'table',
    { class: 'jobs' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, 'Due (UTC)'),
        h('th', null, `Due (${ZONE})`),
        h('th', null, ''),
        h('th', null, 'Task'),
        h('th', null, 'Queue'),
        h('th', null, 'Tags'),
        h('th', null, 'Args, kwargs'),
        h('th', null, 'Id'),
        h('th', null, ''),
      ),
    ),
    h('tbody', null, rows),
  );
}
