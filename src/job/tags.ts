/**
 * Tags: labels a caller gives a scheduled job (`tenant:42`, `invoice`) to find and steer it and
 * its like later. They are ours alone: kept in the store's own tables and keys beside the job,
 * never in the stored entry, so the Python package still reads every entry as it wrote it.
 *
 * A tag is a non-empty string of well-formed Unicode, at most `MAX_TAG_BYTES` UTF-8 bytes, with no
 * control characters and not only whitespace; a job holds at most `MAX_TAGS_PER_JOB`. The client
 * drops repeats (`normalizeTags`); a store is given each tag once.
 */
import { isWellFormed, utf8Bytes } from '../celery/limits.js';

export const MAX_TAGS_PER_JOB = 32;
export const MAX_TAG_BYTES = 128;

const CONTROL = /[\u0000-\u001f\u007f]/;

/** What is wrong with `tags` as a job's tags (`where` names them in the messages); [] when nothing. */
export function tagProblems(tags: unknown, where: string): string[] {
  if (tags === undefined) return [];
  if (!Array.isArray(tags)) return [`${where} must be an array of strings, e.g. ["tenant:42", "invoice"]`];
  const problems: string[] = [];
  if (tags.length > MAX_TAGS_PER_JOB) problems.push(`${where} holds ${tags.length} tags; a job holds at most ${MAX_TAGS_PER_JOB}`);
  const seen = new Set<string>();
  for (const [i, tag] of tags.entries()) {
    const what = `${where}[${i}]`;
    if (typeof tag !== 'string') problems.push(`${what} must be a string, got ${tag === null ? 'null' : typeof tag}`);
    else if (tag.trim() === '') problems.push(`${what} is empty or only whitespace; a tag names something, e.g. "tenant:42"`);
    else if (!isWellFormed(tag)) problems.push(`${what} is not well-formed Unicode (a lone surrogate); pass a valid string`);
    else if (CONTROL.test(tag)) problems.push(`${what} holds a control character; tags are printable text`);
    else if (utf8Bytes(tag) > MAX_TAG_BYTES) problems.push(`${what} is ${utf8Bytes(tag)} bytes; a tag is at most ${MAX_TAG_BYTES} bytes (UTF-8)`);
    else if (seen.has(tag)) problems.push(`${what} repeats the tag ${JSON.stringify(tag)}`);
    else seen.add(tag);
    if (problems.length >= 20) break;
  }
  return problems;
}

/**
 * A caller's list of tags (a job's `tags` option, or a filter's): each once, in the order first
 * given (repeats dropped), or undefined when none were given or they were bad (the problems,
 * named by `where`, added to `problems`).
 */
export function resolveTags(tags: unknown, problems: string[], where = 'tags'): string[] | undefined {
  if (tags === undefined) return undefined;
  const once = Array.isArray(tags) ? normalizeTags(tags as string[]) : tags;
  const found = tagProblems(once, where);
  problems.push(...found);
  return found.length === 0 && Array.isArray(once) && once.length > 0 ? (once as string[]) : undefined;
}

/** The tags as a store is given them: each once, in the order first given. */
export function normalizeTags(tags: readonly string[]): string[] {
  return [...new Set(tags)];
}
