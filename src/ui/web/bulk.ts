/**
 * A bulk action on every job a query matches: revoke, shift, spread, move to a time, or run now.
 * It goes in three steps, so nothing changes by surprise: a dry run counts the matches (and shows
 * the first), then a confirmation (above the server's threshold the count must be typed), then the
 * change, sent with the count the dry run showed. The server refuses it when more jobs match by
 * then (admin/bulk.ts changes each job atomically on its own).
 */
import { errorText, get, post } from './api.js';
import type { BulkResult, CountResult, SessionInfo } from './api-types.js';
import { fill, fromLocalInput, h, num, plural, utc } from './dom.js';

type Action = 'revoke' | 'shift' | 'spread' | 'eta' | 'run-now';

const LABELS: Record<Action, string> = {
  revoke: 'Revoke (delete for good)',
  shift: 'Shift by',
  spread: 'Spread over',
  eta: 'Move to',
  'run-now': 'Run now',
};

export interface BulkPreset {
  action?: Action;
  /** the spread's or shift's length, e.g. "3h" */
  length?: string;
  title?: string;
}

/** `onDone` is told what was done, in a sentence, once the change is made. */
export function bulkPanel(session: SessionInfo, query: URLSearchParams, onDone: (summary: string) => void, preset: BulkPreset = {}): HTMLElement {
  const action = h(
    'select',
    { name: 'action', 'aria-label': 'bulk action', value: preset.action ?? 'revoke' },
    (Object.keys(LABELS) as Action[]).map((a) => h('option', { value: a }, LABELS[a])),
  );
  const length = h('input', { name: 'length', value: preset.length ?? '+1h', size: 6, 'aria-label': 'length of time', spellcheck: 'false' });
  const eta = h('input', { name: 'eta', type: 'datetime-local', 'aria-label': 'new due time (your time zone)' });
  const jitter = h('input', { name: 'jitter', type: 'checkbox' });
  const jitterLabel = h('label', { class: 'inline' }, jitter, ' at random times');
  const out = h('div', { class: 'bulk-out', 'aria-live': 'polite' });
  const dry = h('button', { type: 'button' }, 'Dry run');

  const shape = () => {
    const a = action.value as Action;
    length.hidden = a !== 'shift' && a !== 'spread';
    eta.hidden = a !== 'eta';
    jitterLabel.hidden = a !== 'spread';
    if (a === 'shift' && !/^[+-]/.test(length.value)) length.value = `+${length.value.replace(/^[+-]/, '') || '1h'}`;
    if (a === 'spread') length.value = length.value.replace(/^[+-]/, '') || '30m';
    fill(out);
  };
  for (const el of [action, length, eta, jitter]) el.addEventListener('change', () => (el === action ? shape() : fill(out)));
  shape();

  const move = (): { body: Record<string, unknown>; verb: string } => {
    const a = action.value as Action;
    if (a === 'revoke') return { body: { action: 'revoke' }, verb: 'Revoke' };
    if (a === 'run-now') return { body: { action: 'run-now' }, verb: 'Run now' };
    if (a === 'shift') return { body: { action: 'reschedule', move: { shift: length.value.trim() } }, verb: `Shift ${length.value.trim()}` };
    if (a === 'spread')
      return {
        body: { action: 'reschedule', move: { spread: length.value.trim(), ...(jitter.checked && { jitter: true }) } },
        verb: `Spread over ${length.value.trim()}`,
      };
    return { body: { action: 'reschedule', move: { eta: fromLocalInput(eta.value) ?? eta.value } }, verb: `Move to ${eta.value.replace('T', ' ')}` };
  };

  dry.addEventListener('click', () => {
    fill(out, h('span', { class: 'muted' }, 'counting…'));
    get<CountResult>('count', query).then(
      (c) => showCount(c),
      (err: unknown) => fill(out, h('p', { class: 'error' }, errorText(err))),
    );
  });

  const showCount = (c: CountResult) => {
    if (c.count === 0) return fill(out, h('p', null, 'No scheduled job matches: nothing to do.'));
    const { body, verb } = move();
    const label = `${verb}: ${plural(c.count, 'job')}`;
    const go = h('button', { type: 'button', class: 'danger', 'data-count': c.count }, label);
    const typed = h('input', { 'aria-label': 'type the count to confirm', size: 10, inputmode: 'numeric', autocomplete: 'off' });
    const needsTyping = c.count > session.confirmThreshold;
    go.disabled = needsTyping;
    typed.addEventListener('input', () => (go.disabled = typed.value.replace(/[,\s]/g, '') !== String(c.count)));
    go.addEventListener('click', () => {
      go.disabled = true;
      fill(result, h('span', { class: 'muted' }, 'working…'));
      post<BulkResult>('bulk', { ...body, query: query.toString(), expected: c.count }).then(
        (r) => {
          const parts = [`${num(r.changed)} changed`];
          if (r.unchanged) parts.push(`${num(r.unchanged)} already there`);
          if (r.skipped) parts.push(`${num(r.skipped)} skipped (a dispatcher had claimed them)`);
          if (r.missing) parts.push(`${num(r.missing)} gone meanwhile`);
          const summary = `Done: ${parts.join(', ')}, of ${plural(r.matched, 'match', 'matches')}, in ${r.elapsedMs} ms.`;
          fill(result, h('p', { class: 'ok', role: 'status' }, summary));
          onDone(summary);
        },
        (err: unknown) => {
          go.disabled = false;
          fill(result, h('p', { class: 'error' }, errorText(err)));
        },
      );
    });
    const result = h('div');
    fill(
      out,
      h(
        'p',
        null,
        h('strong', { class: 'count' }, num(c.count)),
        ` scheduled job${c.count === 1 ? '' : 's'} match`,
        c.scanned !== undefined ? ` (read ${num(c.scanned)} to count)` : '',
        '; the first:',
      ),
      h(
        'ul',
        { class: 'sample' },
        c.sample.map((j) => h('li', null, h('code', null, j.id), ' ', utc(j.dueAt), ' UTC ', h('span', { class: 'muted' }, j.task))),
      ),
      needsTyping ? h('p', null, `That is over ${num(session.confirmThreshold)}: type ${c.count} to confirm: `, typed) : null,
      h('div', { class: 'actions' }, go, h('button', { type: 'button', class: 'link', onclick: () => fill(out) }, 'Cancel')),
      result,
    );
  };

  return h(
    'section',
    { class: 'bulk panel' },
    h('h3', null, preset.title ?? 'Bulk action on every match'),
    h('div', { class: 'actions' }, action, length, eta, jitterLabel, dry),
    out,
  );
}
