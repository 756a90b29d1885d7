/**
 * Builds Celery protocol-2 task messages (docs/protocol.md §1, docs/protocol.md §5), independent of any broker.
 *
 * The header set is the one a Python Celery 5.x producer writes (docs/protocol.md §1.2), with `timelimit` as
 * `[hard, soft]` (docs/protocol.md §1.7), times in the `…ffffff+00:00` form (docs/protocol.md §1.6), and a 3-element body (docs/protocol.md §1.4).
 */
import { hostname } from 'node:os';
import type { SendTaskCall as Job, Signature } from './send-task-call.js';
import { MAX_EXPIRATION_MS } from './limits.js';
import { pyRepr, pyTupleRepr } from './py-repr.js';
import { formatCeleryTime } from './time.js';

export interface TaskMessage {
  headers: Record<string, unknown>;
  properties: {
    correlation_id: string;
    /** the job's `reply_to` when it has one, else the context's ('' unless RPC results are used) */
    reply_to: string;
    delivery_mode: 1 | 2;
    priority: number;
    /**
     * milliseconds until `expires`, as a string: set whenever `expires` is, as Celery does, unless
     * it is further off than RabbitMQ can hold (`MAX_EXPIRATION_MS`, about 49.7 days; RabbitMQ
     * would close the channel). The worker honours the `expires` header either way.
     */
    expiration?: string;
  };
  body: [unknown[], Record<string, unknown>, Embed];
  contentType: 'application/json';
  contentEncoding: 'utf-8';
  routing: Routing;
}

export interface Embed {
  callbacks: Signature[] | null;
  errbacks: Signature[] | null;
  chain: Signature[] | null;
  chord: Signature | null;
}

/**
 * Where the message goes. `exchange: ''` is the default exchange: the routing key is the queue
 * name, as Celery itself publishes (docs/protocol.md §3.2). A named exchange routes by its bindings.
 */
export interface Routing {
  exchange: string;
  routingKey: string;
  /** the queue for the default exchange */
  queue: string;
}

export interface MessageContext {
  /** the moment of dispatch: relative `expires` counts from it */
  now: Date;
  /** the job's due time (unix seconds); written as `eta` only if it is still in the future */
  dueAt?: number;
  defaultQueue: string;
  /** `properties.reply_to`; '' unless the RPC result backend is used */
  replyTo?: string;
  /** `headers.origin`, default `gen<pid>@<hostname>` as Python writes it */
  origin?: string;
}

let defaultOrigin: string | undefined;
function originName(): string {
  defaultOrigin ??= `gen${process.pid}@${hostname()}`;
  return defaultOrigin;
}

export function routeFor(job: Pick<Job, 'queue' | 'exchange' | 'routingKey'>, defaultQueue: string): Routing {
  const queue = job.queue ?? defaultQueue;
  if (job.exchange) return { exchange: job.exchange, routingKey: job.routingKey ?? queue, queue };
  return { exchange: '', routingKey: queue, queue };
}

export function buildTaskMessage(job: Job, ctx: MessageContext): TaskMessage {
  const nowMs = ctx.now.getTime();
  let expiresAt: Date | undefined;
  if (job.expires?.kind === 'relative') expiresAt = new Date(nowMs + job.expires.seconds * 1000);
  else if (job.expires?.kind === 'absolute') expiresAt = job.expires.at;
  const eta = ctx.dueAt !== undefined && ctx.dueAt * 1000 > nowMs ? formatCeleryTime(new Date(ctx.dueAt * 1000)) : null;

  const headers: Record<string, unknown> = {
    lang: 'py',
    task: job.task,
    id: job.id,
    shadow: job.shadow ?? null,
    eta,
    // a pickled datetime keeps the text Python's isoformat() gives it (its own offset)
    expires: job.expires?.kind === 'absolute' && job.expires.text !== undefined ? job.expires.text : expiresAt ? formatCeleryTime(expiresAt) : null,
    group: job.groupId ?? null,
    group_index: job.groupIndex ?? null,
    retries: job.retries ?? 0,
    timelimit: [job.timeLimit ?? null, job.softTimeLimit ?? null],
    root_id: job.rootId ?? job.id, // as_task_v2: an empty root_id is the task's own id
    parent_id: job.parentId ?? null,
    argsrepr: job.argsrepr ?? pyTupleRepr(job.args),
    kwargsrepr: job.kwargsrepr ?? pyRepr(job.kwargs),
    origin: ctx.origin ?? originName(),
    ignore_result: job.ignoreResult ?? false,
    replaced_task_nesting: 0,
    stamped_headers: null,
    stamps: {},
    ...job.headers,
  };
  const properties: TaskMessage['properties'] = {
    correlation_id: job.id,
    reply_to: job.replyTo ?? ctx.replyTo ?? '',
    delivery_mode: job.deliveryMode ?? 2,
    priority: job.priority ?? 0,
  };
  if (expiresAt) {
    const ms = Math.max(0, expiresAt.getTime() - nowMs);
    if (ms <= MAX_EXPIRATION_MS) properties.expiration = String(ms);
  }
  return {
    headers,
    properties,
    body: [
      job.args,
      job.kwargs,
      {
        callbacks: job.link.length ? job.link : null,
        errbacks: job.linkError.length ? job.linkError : null,
        chain: job.chain ?? null,
        chord: job.chord ?? null,
      },
    ],
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    routing: routeFor(job, ctx.defaultQueue),
  };
}
