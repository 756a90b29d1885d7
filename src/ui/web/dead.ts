/**
 * Dead letters: jobs the dispatcher will never send as they are, oldest first, with why (reason,
 * attempts, the last error); retry (scheduled again, due now) or purge (deleted for good), one or
 * all. Purging all asks for "purge" to be typed.
 */
import { errorText, get, post } from './api.js';
import type { DeadPage, PurgeDeadView, RetryDeadView } from './api-types.js';
import { fill, h, num, plural, relative, utc } from './dom.js';
import { confirming } from './job.js';
import type { AppContext } from './context.js';

export async function deadView(root: HTMLElement, params: URLSearchParams, app: AppContext): Promise<void> {
  const p = new URLSearchParams({ limit: '50' });
  const cursor = params.get('cursor');
  if (cursor) p.set('cursor', cursor);
  const page = await get<DeadPage>('dead', p);
  const note = h('div', { class: 'note', 'aria-live': 'polite' });
  const failed = (err: unknown) => fill(note, h('p', { class: 'error' }, errorText(err)));
  const retried = (r: RetryDeadView) => {
    const left = r.idTaken.length + r.noEntry.length + r.notDead.length;
    app.flash(`Retried ${plural(r.retried.length, 'dead letter')}${left ? `; ${num(left)} left as they are (no entry, or a job holds the id)` : ''}`);
    app.reload();
  };
  const purged = (r: PurgeDeadView) => {
    app.flash(`Purged ${plural(r.purged, 'dead letter')}`);
    app.reload();
  };
  const typed = h('input', { 'aria-label': 'type purge to confirm', size: 8, placeholder: 'purge', autocomplete: 'off' });
  const purgeAll = h('button', { type: 'button', class: 'danger', disabled: true }, 'Purge all');
  typed.addEventListener('input', () => (purgeAll.disabled = typed.value.trim() !== 'purge'));
  purgeAll.addEventListener('click', () => void post<PurgeDeadView>('dead/purge', { all: true }).then(purged, failed));
  const bar =
    app.session.readOnly || !page.letters.length
      ? null
      : h(
          'div',
          { class: 'panel actions' },
          confirming('Retry all', 'Schedule every dead letter again, due now?', () => post<RetryDeadView>('dead/retry', { all: true }).then(retried, failed)),
          h('span', { class: 'muted' }, 'type purge to purge every one for good:'),
          typed,
          purgeAll,
        );
  const table = page.letters.length
    ? h(
        'table',
        { class: 'jobs dead' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['Died (UTC)', '', 'Reason', 'Attempts', 'Task', 'Last error', 'Id', ''].map((t) => h('th', null, t)),
          ),
        ),
        h(
          'tbody',
          null,
          page.letters.map((d) =>
            h(
              'tr',
              { class: 'row', 'data-id': d.id },
              h('td', { class: 'time' }, utc(d.diedAt)),
              h('td', { class: 'muted rel' }, relative(d.diedAt)),
              h('td', null, h('span', { class: 'badge bad' }, d.reason)),
              h('td', { class: 'num' }, String(d.attempts)),
              h('td', null, h('a', { href: app.href('job', new URLSearchParams({ id: d.id })) }, d.task)),
              h('td', { class: 'args', title: d.error }, d.error),
              h('td', { class: 'id' }, h('code', { title: d.id }, d.id.length > 13 ? `${d.id.slice(0, 8)}…` : d.id)),
              h(
                'td',
                { class: 'row-actions' },
                app.session.readOnly
                  ? null
                  : [
                      h(
                        'button',
                        { type: 'button', class: 'link', onclick: () => void post<RetryDeadView>('dead/retry', { ids: [d.id] }).then(retried, failed) },
                        'retry',
                      ),
                      confirming('purge', 'purge it?', () => post<PurgeDeadView>('dead/purge', { ids: [d.id] }).then(purged, failed), 'link danger'),
                    ],
              ),
            ),
          ),
        ),
      )
    : h('p', null, 'No dead letters: every job the dispatcher met could be sent.');
  const next = page.cursor ? h('a', { href: app.href('dead', new URLSearchParams({ cursor: page.cursor })), rel: 'next' }, 'Next page »') : null;
  fill(
    root,
    h('h2', null, 'Dead letters'),
    note,
    bar,
    h('div', { class: 'table-box' }, table),
    h('nav', { class: 'pager' }, cursor ? h('a', { href: app.href('dead', new URLSearchParams()) }, '« First page') : null, next),
  );
}
