/**
 * What operators do with dead letters, on every store: list them, show one, retry (schedule
 * again, due now, attempts cleared) or purge (delete for good), by id or all of them.
 *
 * A dead letter is a job the dispatcher will never send as it is: its entry is corrupt, the broker
 * can never carry its message, or the broker refused it on every attempt (see the dispatcher).
 */
import { ValidationError } from '../util/errors.js';
import { taskNameOf } from '../job/entry.js';
import { checkLimit, type DeadLetter, type ReviveOutcome, type ScheduleStore } from '../stores/store.js';

/** A dead letter with its task name read from the entry ('?' when it cannot be read). */
export interface DeadLetterInfo extends DeadLetter {
  task: string;
}

export interface DeadLetterListing {
  letters: DeadLetterInfo[];
  /** pass as `cursor` for the next page; absent when there is none */
  cursor?: string;
}

export interface RetryDeadResult {
  /** scheduled again, due now */
  retried: string[];
  /** not dead letters (unknown, or already retried or purged) */
  notDead: string[];
  /** a job holds the id now (it was scheduled again meanwhile); the dead letter stays */
  idTaken: string[];
  /** no entry to schedule (its key was missing when it died); the dead letter stays: purge it */
  noEntry: string[];
}

export interface PurgeDeadResult {
  purged: number;
  /** ids that were not dead letters */
  notDead: string[];
}

const PAGE = 500;

/** Dead letters, oldest first, a page at a time (default 50 per page). */
export async function listDeadLetters(store: ScheduleStore, o: { limit?: number; cursor?: string } = {}): Promise<DeadLetterListing> {
  const limit = o.limit ?? 50;
  checkLimit(limit);
  const page = await store.deadLetters({ limit, ...(o.cursor !== undefined && { cursor: o.cursor }) });
  return { letters: page.letters.map(describeDead), ...(page.cursor !== undefined && { cursor: page.cursor }) };
}

export async function showDeadLetter(store: ScheduleStore, id: string): Promise<DeadLetterInfo | undefined> {
  const d = await store.getDead(id);
  return d && describeDead(d);
}

/** Schedules dead letters again, due at `now`, by id or all of them (`'all'`). */
export async function retryDeadLetters(store: ScheduleStore, ids: readonly string[] | 'all', now: Date): Promise<RetryDeadResult> {
  const result: RetryDeadResult = { retried: [], notDead: [], idTaken: [], noEntry: [] };
  const dueAt = now.getTime() / 1000;
  const record = (batch: readonly string[], outcomes: readonly ReviveOutcome[]) =>
    batch.forEach((id, i) => {
      const o = outcomes[i];
      if (o === 'scheduled') result.retried.push(id);
      else if (o === 'id_taken') result.idTaken.push(id);
      else if (o === 'no_entry') result.noEntry.push(id);
      else result.notDead.push(id);
    });
  if (ids !== 'all') {
    checkIds(ids);
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += PAGE) {
      const batch = unique.slice(i, i + PAGE);
      record(batch, await store.reviveDead(batch, dueAt));
    }
    return result;
  }
  // revived letters leave the list; the ones that stay are passed by the cursor
  let cursor: string | undefined;
  do {
    const page = await store.deadLetters({ limit: PAGE, ...(cursor !== undefined && { cursor }) });
    const batch = page.letters.map((d) => d.id);
    if (batch.length) record(batch, await store.reviveDead(batch, dueAt));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return result;
}

/** Deletes dead letters for good, by id or all of them (`'all'`). */
export async function purgeDeadLetters(store: ScheduleStore, ids: readonly string[] | 'all'): Promise<PurgeDeadResult> {
  if (ids === 'all') return { purged: await store.purgeDead('all'), notDead: [] };
  checkIds(ids);
  const unique = [...new Set(ids)];
  const found: string[] = [];
  const notDead: string[] = [];
  for (const id of unique) ((await store.getDead(id)) ? found : notDead).push(id);
  const purged = found.length ? await store.purgeDead(found) : 0;
  return { purged, notDead };
}

function checkIds(ids: readonly string[]): void {
  if (!Array.isArray(ids) || ids.length === 0 || ids.some((id) => typeof id !== 'string' || id === '')) {
    throw new ValidationError(["pass one or more dead letters' task ids, or 'all'"]);
  }
}

function describeDead(d: DeadLetter): DeadLetterInfo {
  return { ...d, task: taskNameOf(d.entry) };
}
