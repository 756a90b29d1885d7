/**
 * The protocol's vocabulary of a task call: a Celery signature as JSON, an expiry, and the
 * fields of one `send_task` call that become a message. Pure data, no domain imports.
 */

/**
 * A Celery signature as JSON (docs/protocol.md §1.4): what `link`/`linkError`, a chain's steps and a
 * chord's body carry. `subtask_type` is null for a task, `chain`/`group`/`chord` for canvas (whose
 * parts are in `kwargs`). A signature read from a stored entry is passed on as stored, so it may
 * hold keys beyond these (Celery's own `chord_size`, say).
 */
export interface Signature {
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  options: Record<string, unknown>;
  subtask_type: string | null;
  immutable: boolean;
}

/**
 * `expires` as the dispatcher needs it. `text`, when set, is the header exactly as Python's
 * `send_task` writes it for this value (`isoformat()` of a pickled datetime, keeping its offset).
 */
export type Expiry = { kind: 'absolute'; at: Date; text?: string } | { kind: 'relative'; seconds: number };

/**
 * One call of Python's `send_task` (docs/protocol.md §5), as a message is built from it: a job read back
 * from the store, or one about to be published.
 */
export interface SendTaskCall {
  id: string;
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  queue?: string;
  routingKey?: string;
  exchange?: string;
  priority?: number;
  expires?: Expiry;
  headers?: Record<string, unknown>;
  link: Signature[];
  linkError: Signature[];
  shadow?: string;
  timeLimit?: number;
  softTimeLimit?: number;
  ignoreResult?: boolean;
  // Canvas and workflow keywords (docs/protocol.md §1.2, docs/protocol.md §1.4), from the Python package or our canvas.
  /** the rest of a chain, in reverse: the last element runs next (`body[2].chain`) */
  chain?: Signature[];
  /** the chord body, on each task of a chord's header (`body[2].chord`) */
  chord?: Signature;
  /** `headers.group` */
  groupId?: string;
  /** `headers.group_index` */
  groupIndex?: number;
  /** `headers.retries` (default 0) */
  retries?: number;
  /** `headers.root_id` (default: the job's own id) */
  rootId?: string;
  /** `headers.parent_id` */
  parentId?: string;
  /** `properties.reply_to` (default '' unless the RPC result backend is used) */
  replyTo?: string;
  /** `properties.delivery_mode` (default 2, persistent) */
  deliveryMode?: 1 | 2;
  /** `headers.argsrepr` / `kwargsrepr` instead of the repr of the arguments (to keep secrets out of logs) */
  argsrepr?: string;
  kwargsrepr?: string;
}
