/**
 * The dashboard's shell: the header (views, store, theme), the router, and the keys.
 *
 * - Views are addressed by the hash, `#/search?task=…&tag=…`, so every view (a search, a chart,
 *   a job) is a link that can be shared, and the page works under any mount path (the server
 *   sees only relative requests).
 * - Keys: `/` searches, `g o` `g t` `g s` `g d` open the overview, timeline, search and dead
 *   letters; in a table, the arrow keys move between rows and Enter opens one.
 * - Theme: the system's (prefers-color-scheme), or light or dark as chosen with the button,
 *   remembered in localStorage.
 */
import { errorText, loadSession } from './api.js';
import type { SessionInfo } from './api-types.js';
import type { AppContext } from './context.js';
import { deadView } from './dead.js';
import { fill, h } from './dom.js';
import { jobView } from './job.js';
import { overviewView } from './overview.js';
import { searchView } from './search.js';
import { timelineView } from './timeline.js';

type View = (root: HTMLElement, params: URLSearchParams, app: AppContext) => Promise<void | (() => void)>;

const VIEWS: Record<string, { title: string; view: View; nav?: boolean }> = {
  overview: { title: 'Overview', view: overviewView, nav: true },
  timeline: { title: 'Timeline', view: timelineView, nav: true },
  search: { title: 'Search', view: searchView, nav: true },
  dead: { title: 'Dead letters', view: deadView, nav: true },
  job: { title: 'Job', view: jobView },
};

const THEMES = ['auto', 'light', 'dark'] as const;
type Theme = (typeof THEMES)[number];

function applyTheme(t: Theme): void {
  if (t === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
}

function storedTheme(): Theme {
  try {
    const t = localStorage.getItem('cls-theme');
    return THEMES.includes(t as Theme) ? (t as Theme) : 'auto';
  } catch {
    return 'auto';
  }
}

function parseHash(): { name: string; params: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const name = (q < 0 ? raw : raw.slice(0, q)) || 'overview';
  return { name: Object.hasOwn(VIEWS, name) ? name : 'overview', params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

async function start(): Promise<void> {
  const main = document.getElementById('view') as HTMLElement;
  const flashBox = document.getElementById('flash') as HTMLElement;
  let session: SessionInfo;
  try {
    session = await loadSession();
  } catch (err) {
    fill(main, h('p', { class: 'error' }, `The dashboard could not start: ${errorText(err)}`));
    return;
  }
  let theme = storedTheme();
  applyTheme(theme);
  const themeButton = h('button', { type: 'button', class: 'link theme', title: 'colour theme: system, light or dark' }, `theme: ${theme}`);
  themeButton.addEventListener('click', () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length] as Theme;
    applyTheme(theme);
    fill(themeButton, `theme: ${theme}`);
    try {
      localStorage.setItem('cls-theme', theme);
    } catch {
      // private windows may refuse; the theme holds for this page
    }
  });
  const nav = h(
    'nav',
    { class: 'views', 'aria-label': 'views' },
    Object.entries(VIEWS)
      .filter(([, v]) => v.nav)
      .map(([name, v]) => h('a', { href: `#/${name}`, 'data-view': name }, v.title)),
  );
  fill(
    document.getElementById('top') as HTMLElement,
    h('a', { class: 'brand', href: '#/overview' }, 'celery-longterm-scheduler'),
    nav,
    h(
      'span',
      { class: 'where muted' },
      session.readOnly ? h('span', { class: 'badge' }, 'read-only') : null,
      h('code', { title: `store; broker ${session.broker}` }, session.store),
      themeButton,
    ),
  );

  let pending: { text: string; tone: 'ok' | 'error' } | undefined;
  let focusSearch = false;
  let cleanup: (() => void) | undefined;
  let drawing = 0;
  const ctx: AppContext = {
    session,
    href: (view, params) => `#/${view}${[...params.keys()].length ? `?${params.toString()}` : ''}`,
    go: (view, params) => {
      const next = ctx.href(view, params);
      if (location.hash === next) draw();
      else location.hash = next;
    },
    reload: () => draw(),
    flash: (text, tone = 'ok') => (pending = { text, tone }),
  };

  const draw = () => {
    const { name, params } = parseHash();
    const view = VIEWS[name] as (typeof VIEWS)[string];
    cleanup?.();
    cleanup = undefined;
    const mine = ++drawing;
    for (const a of nav.querySelectorAll('a')) a.classList.toggle('on', a.dataset.view === name);
    document.title = `${view.title} · celery-longterm-scheduler`;
    fill(flashBox, pending ? h('p', { class: pending.tone, role: 'status' }, pending.text) : null);
    pending = undefined;
    const root = h('div');
    view.view(root, params, ctx).then(
      (c) => {
        if (mine !== drawing) return c?.();
        cleanup = c ?? undefined;
        fill(main, root);
        if (focusSearch) main.querySelector<HTMLInputElement>('form.query input[name=task]')?.focus();
        focusSearch = false;
      },
      (err: unknown) => {
        if (mine === drawing) fill(main, h('h2', null, view.title), h('p', { class: 'error' }, errorText(err)));
      },
    );
  };
  window.addEventListener('hashchange', draw);
  draw();

  let lastG = 0;
  document.addEventListener('keydown', (e) => {
    const t = e.target as HTMLElement;
    if (e.ctrlKey || e.metaKey || e.altKey || t.closest('input, textarea, select')) return;
    if (e.key === '/') {
      e.preventDefault();
      const field = main.querySelector<HTMLInputElement>('form.query input[name=task]');
      if (field) field.focus();
      else {
        focusSearch = true;
        ctx.go('search', new URLSearchParams());
      }
      return;
    }
    if (e.key === 'g') {
      lastG = Date.now();
      return;
    }
    const target = { o: 'overview', t: 'timeline', s: 'search', d: 'dead' }[e.key];
    if (target && Date.now() - lastG < 1500) {
      lastG = 0;
      ctx.go(target, new URLSearchParams());
    }
  });
}

void start();
