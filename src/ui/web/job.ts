/**
 * One job: everything stored (entry, options, tags, state: scheduled, claimed, dead or sent), the
 * Celery result state when a result backend is configured, and its actions: revoke, reschedule
 * (a date picker in the viewer's zone, or a shift of -1h, +1h, +1d, +1w), run now; for a dead
 * letter, retry and purge. Each action asks once more in place before it changes anything.
 */
import { errorText, get, post } from './api.js';
import type { DeadDetail, JobDetail, JobLookup, ResultView } from './api-types.js';
import { ZONE, fill, fromLocalInput, h, local, relative, toLocalInput, utc, type Child } from './dom.js';
import type { AppContext } from './context.js';

export async function jobView(root: HTMLElement, params: URLSearchParams, app: AppContext): Promise<void> {
  const id = params.get('id') ?? '';
  const note = h('div', { class: 'note', 'aria-live': 'polite' });
  const l = await get<JobLookup>('job', new URLSearchParams({ id }));
  const title = h('h2', null, 'Job ', h('code', { class: 'job-id' }, id), ' ', h('span', { class: `badge state-${l.state}` }, l.state));
  const again = () => app.reload();
  const done = (text: string) => {
    app.flash(text);
    again();
  };
  const failed = (err: unknown) => fill(note, h('p', { class: 'error' }, errorText(err)));
  if (l.job) return fill(root, title, note, jobActions(l.job, app, done, failed), jobTable(l.job), resultOf(l.result));
  if (l.dead) return fill(root, title, note, deadActions(l.dead, app, done, failed), deadTable(l.dead));
  fill(
    root,
    title,
    h(
      'p',
      null,
      l.state === 'sent'
        ? 'The store no longer holds it: it was sent. Its result, from the result backend:'
        : 'The store does not hold it: never scheduled, already sent, or revoked.',
    ),
    resultOf(l.result),
  );
}

/** A button that asks once more, in place, before it acts. */
export function confirming(label: string, question: string, act: () => Promise<unknown>, tone = ''): HTMLElement {
  const box = h('span', { class: 'confirm' });
  const first = h('button', { type: 'button', class: tone }, label);
  first.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: tone || 'primary' }, question);
    const no = h('button', { type: 'button', class: 'link' }, 'cancel');
    yes.addEventListener('click', () => {
      yes.disabled = true;
      void act().finally(() => fill(box, first));
    });
    no.addEventListener('click', () => fill(box, first));
    fill(box, yes, no);
    yes.focus();
  });
  box.append(first);
  return box;
}

function jobActions(j: JobDetail, app: AppContext, done: (t: string) => void, failed: (e: unknown) => void): HTMLElement | null {
  if (app.session.readOnly) return null;
  if (j.state === 'claimed') return h('p', { class: 'muted' }, 'A dispatcher is sending it now: it can no longer be changed here.');
  const picker = h('input', { type: 'datetime-local', value: toLocalInput(j.dueAt), 'aria-label': `new due time (${ZONE})`, step: 60 });
  const shown = h('span', { class: 'muted' });
  const showUtc = () => fill(shown, picker.value ? `= ${utc(fromLocalInput(picker.value) ?? null)} UTC` : '');
  picker.addEventListener('input', showUtc);
  showUtc();
  const reschedule = (body: Record<string, unknown>, what: string) =>
    post<{ dueAt: string }>('job/reschedule', { id: j.id, ...body }).then((r) => done(`${what}: now due ${utc(r.dueAt)} UTC (${relative(r.dueAt)})`), failed);
  return h(
    'section',
    { class: 'panel job-actions' },
    h(
      'div',
      { class: 'actions' },
      h('label', { class: 'inline' }, `Reschedule to (${ZONE}) `, picker),
      shown,
      h(
        'button',
        {
          type: 'button',
          class: 'primary',
          onclick: () => {
            const eta = fromLocalInput(picker.value);
            if (eta) void reschedule({ eta }, 'Rescheduled');
          },
        },
        'Reschedule',
      ),
      ['-1h', '+1h', '+1d', '+1w'].map((shift) =>
        h('button', { type: 'button', class: 'shift', title: `move it ${shift}`, onclick: () => void reschedule({ shift }, `Shifted ${shift}`) }, shift),
      ),
    ),
    h(
      'div',
      { class: 'actions' },
      confirming('Run now', 'Make it due now?', () =>
        post<{ dueAt: string }>('job/run-now', { id: j.id }).then(() => done('Due now: a running dispatcher sends it at once'), failed),
      ),
      confirming('Revoke', 'Revoke it for good?', () => post('job/revoke', { id: j.id }).then(() => done(`Revoked ${j.id}`), failed), 'danger'),
    ),
  );
}

function deadActions(d: DeadDetail, app: AppContext, done: (t: string) => void, failed: (e: unknown) => void): HTMLElement | null {
  if (app.session.readOnly) return null;
  return h(
    'section',
    { class: 'panel actions' },
    confirming('Retry', 'Schedule it again, due now?', () =>
      post<{ retried: string[]; idTaken: string[]; noEntry: string[] }>('dead/retry', { ids: [d.id] }).then(
        (r) =>
          r.retried.length
            ? done('Scheduled again, due now')
            : failed(new Error(r.noEntry.length ? 'it has no entry to schedule (purge it)' : 'a job holds its id now; the dead letter stays')),
        failed,
      ),
    ),
    confirming('Purge', 'Delete it for good?', () => post('dead/purge', { ids: [d.id] }).then(() => done(`Purged ${d.id}`), failed), 'danger'),
  );
}

function rows(pairs: [string, Child][]): HTMLElement {
  return h(
    'table',
    { class: 'kv' },
    h(
      'tbody',
      null,
      pairs.map(([k, v]) => h('tr', null, h('th', null, k), h('td', null, v))),
    ),
  );
}

const pretty = (v: unknown) => h('pre', null, JSON.stringify(v, null, 2));
const when = (iso: string | null) => [utc(iso), ' UTC ', h('span', { class: 'muted' }, `· ${local(iso)} ${ZONE} · ${relative(iso)}`)];

function jobTable(j: JobDetail): HTMLElement {
  const pairs: [string, Child][] = [
    ['state', j.state === 'claimed' ? 'claimed (a dispatcher is sending it now; the time is its lease deadline)' : 'scheduled'],
    [j.state === 'claimed' ? 'lease ends' : 'due', when(j.dueAt)],
    ['task', h('code', null, j.task)],
    ['queue', j.queue ?? '–'],
  ];
  if (j.exchange !== undefined) pairs.push(['exchange', j.exchange]);
  if (j.routingKey !== undefined) pairs.push(['routing key', j.routingKey]);
  if (j.priority !== undefined) pairs.push(['priority', String(j.priority)]);
  pairs.push(['key', j.key !== null ? h('code', null, j.key) : '–']);
  pairs.push(['tags', j.tags.length ? j.tags.map((t) => h('span', { class: 'tag' }, t)) : '–']);
  if (j.canvas?.chain) pairs.push(['then', j.canvas.chain.join(' → ')]);
  if (j.canvas?.groupId !== undefined)
    pairs.push(['group', `${j.canvas.groupId}${j.canvas.groupIndex !== undefined ? ` (index ${j.canvas.groupIndex})` : ''}`]);
  if (j.canvas?.chordBody !== undefined) pairs.push(['chord body', j.canvas.chordBody]);
  if (j.corrupt !== undefined) pairs.push(['corrupt', h('span', { class: 'error' }, j.corrupt)]);
  pairs.push(['args', pretty(j.args)], ['kwargs', pretty(j.kwargs)]);
  if (Object.keys(j.options).length) pairs.push(['options', pretty(j.options)]);
  pairs.push([
    'stored entry',
    h('details', null, h('summary', null, `${j.entry.length} characters, exactly as stored`), h('pre', { class: 'entry' }, j.entry)),
  ]);
  return rows(pairs);
}

function deadTable(d: DeadDetail): HTMLElement {
  return rows([
    ['reason', h('span', { class: 'badge bad' }, d.reason)],
    ['error', h('span', { class: 'error' }, d.error)],
    ['attempts', String(d.attempts)],
    ['task', h('code', null, d.task)],
    ['was due', when(d.dueAt)],
    ['first failed', d.firstFailedAt ? when(d.firstFailedAt) : '–'],
    ['died', when(d.diedAt)],
    ['tags', d.tags.length ? d.tags.map((t) => h('span', { class: 'tag' }, t)) : '–'],
    ['stored entry', d.entry === null ? h('span', { class: 'muted' }, 'none (its key was missing when it died)') : h('pre', { class: 'entry' }, d.entry)],
  ]);
}

function resultOf(r: JobLookup['result']): HTMLElement | null {
  if (!r) return null;
  if ('error' in r) return h('p', { class: 'error' }, `The result backend could not be read: ${r.error}`);
  const v: ResultView = r;
  const pairs: [string, Child][] = [['status', h('span', { class: `badge result-${v.status.toLowerCase()}` }, v.status)]];
  if (v.dateDone) pairs.push(['done', v.dateDone]);
  if (v.result !== undefined) pairs.push(['result', h('pre', null, v.result)]);
  if (v.traceback) pairs.push(['traceback', h('pre', null, v.traceback)]);
  return h('section', null, h('h3', null, 'Result (Celery result backend)'), rows(pairs));
}
