/**
 * The job query as a form, the same on Search and Timeline. Its fields are the URL's parameters,
 * named as the CLI's flags (`task`, `tag`, `from`, `args-match`, …), so what the form asks for is
 * what the address says and what the server checks: the page does not validate, it shows the
 * server's one-line error. Tags are typed comma-separated; each args match has its own line.
 */
import { h, type Child } from './dom.js';

interface Field {
  name: string;
  label: string;
  placeholder?: string;
  /** several values, comma-separated in one input */
  list?: boolean;
}

export const FIELDS: readonly Field[] = [
  { name: 'from', label: 'Due from', placeholder: '2027-01-04T09:00:00Z' },
  { name: 'to', label: 'Due to', placeholder: '2027-01-04T18:00:00+02:00' },
  { name: 'task', label: 'Task', placeholder: 'proj.tasks.invoice' },
  { name: 'queue', label: 'Queue', placeholder: 'celery' },
  { name: 'tag', label: 'Tags (all of)', placeholder: 'tenant:42, invoice', list: true },
  { name: 'any-tag', label: 'Any tag of', placeholder: 'eu, us', list: true },
  { name: 'id-prefix', label: 'Id prefix', placeholder: '3f2c' },
  { name: 'job-key-prefix', label: 'Key prefix', placeholder: 'user:7:' },
  { name: 'args-contains', label: 'Args contain', placeholder: 'text in [args, kwargs]' },
];
const NAMES = new Set([...FIELDS.map((f) => f.name), 'args-match']);

/** Only the query's parameters of `params` (not the cursor, the unit, …). */
export function queryOf(params: URLSearchParams): URLSearchParams {
  const q = new URLSearchParams();
  for (const [k, v] of params) if (NAMES.has(k) && v !== '') q.append(k, v);
  return q;
}

/** Whether the query reads every job its other filters let through (an args filter). */
export function scans(q: URLSearchParams): boolean {
  return q.has('args-contains') || q.has('args-match');
}

/**
 * The form. `onSearch` gets the query it spells (empty fields left out); `extra` goes beside
 * the button (the chart's unit, …).
 */
export function queryForm(params: URLSearchParams, onSearch: (q: URLSearchParams, form: HTMLFormElement) => void, extra: Child[] = []): HTMLFormElement {
  const matches = h('div', { class: 'matches' });
  const addMatch = (value = '') =>
    matches.append(h('input', { name: 'args-match', value, placeholder: 'kwargs.tenant_id=42', 'aria-label': 'args match', spellcheck: 'false' }));
  const given = params.getAll('args-match');
  for (const v of given.length ? given : ['']) addMatch(v);
  const form = h(
    'form',
    { class: 'query', role: 'search' },
    h(
      'div',
      { class: 'fields' },
      FIELDS.map((f) =>
        h(
          'label',
          null,
          h('span', null, f.label),
          h('input', {
            name: f.name,
            value: f.list ? params.getAll(f.name).join(', ') : (params.get(f.name) ?? ''),
            placeholder: f.placeholder,
            spellcheck: 'false',
            autocomplete: 'off',
          }),
        ),
      ),
      h(
        'label',
        { class: 'wide' },
        h('span', null, 'Args match (path=value)'),
        matches,
        h('button', { type: 'button', class: 'link', title: 'another args match (all must hold)', onclick: () => addMatch() }, '+ match'),
      ),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search'), h('button', { type: 'reset', class: 'link' }, 'Clear'), extra),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const f of FIELDS) {
      const v = (form.elements.namedItem(f.name) as HTMLInputElement).value.trim();
      if (!v) continue;
      if (f.list)
        for (const part of v
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean))
          q.append(f.name, part);
      else q.set(f.name, v);
    }
    for (const input of matches.querySelectorAll('input')) if (input.value.trim()) q.append('args-match', input.value.trim());
    onSearch(q, form);
  });
  form.addEventListener('reset', (e) => {
    e.preventDefault();
    for (const input of form.querySelectorAll('input')) input.value = '';
  });
  return form;
}
