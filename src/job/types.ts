/**
 * The job vocabulary, in one place:
 * - `Job`: a scheduled Celery task call (a `send_task` call, protocol-side `SendTaskCall`),
 *   identified by its Celery task id; what an entry decodes to and a message is built from;
 * - `NewJob`: a validated job as a store row (id, due time, the stored entry);
 * - `StoredJob` / `ClaimedJob` (stores/store.ts): a row read back, and one a dispatcher holds;
 * - `ScheduledJobInfo` (admin/scheduled-jobs.ts): a job described for `list` and `show`.
 */
import type { Expiry, SendTaskCall, Signature } from '../celery/send-task-call.js';

export type { Expiry, Signature };

/** A scheduled Celery task call: the fields of one `send_task` call. */
export type Job = SendTaskCall;

/** A validated job ready to be stored. */
export interface NewJob {
  id: string;
  /** unix seconds */
  dueAt: number;
  /** the stored JSON string */
  entry: string;
  /** our own labels (tags.ts), kept beside the entry, never in it; each once */
  tags?: readonly string[];
}

/**
 * What a second job with a taken job key does: `reject` (throw `JobKeyTakenError`), `replace`
 * (take the scheduled one's place, atomically) or `keep` (leave it and return it).
 */
export type JobKeyMode = 'reject' | 'replace' | 'keep';
