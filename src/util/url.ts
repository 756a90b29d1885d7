/**
 * URL schemes, read once for stores, brokers and the result backend: lower-cased, and a
 * one-line `ValidationError` (password redacted) for an empty URL, one without a scheme, or a
 * malformed %-escape.
 */
import { ValidationError, malformedEscapeProblem, redactUrl } from './errors.js';

/** A URL's scheme, lower-cased (`redis` for `REDIS://…`); undefined when it has none. */
export function urlScheme(url: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
}

/** The scheme of the `what` URL (`store`, `broker`), or a `ValidationError` that shows `example`. */
export function requireScheme(url: string, what: string, example: string): string {
  if (typeof url !== 'string' || url.trim() === '') throw new ValidationError([`the ${what} URL is empty; pass e.g. ${example}`]);
  const s = urlScheme(url);
  if (!s) throw new ValidationError([`the ${what} URL ${JSON.stringify(redactUrl(url))} has no scheme; pass e.g. ${example}`]);
  const escape = malformedEscapeProblem(url, `the ${what}`);
  if (escape) throw new ValidationError([escape]);
  return s;
}
