/** What the shell (app.ts) hands every view. */
import type { SessionInfo } from './api-types.js';

export interface AppContext {
  session: SessionInfo;
  /** the address of a view, e.g. href('job', new URLSearchParams({ id })) === '#/job?id=…' */
  href(view: string, params: URLSearchParams): string;
  /** opens a view */
  go(view: string, params: URLSearchParams): void;
  /** draws the current view again */
  reload(): void;
  /** a message above the next view drawn */
  flash(text: string, tone?: 'ok' | 'error'): void;
}
