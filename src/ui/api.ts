/**
 * The dashboard's JSON API (its types: web/api-types.ts). Each route reads its input with
 * params.ts and does its work with the admin functions the CLI uses (listJobs, countWhere,
 * histogramWhere, revokeWhere, rescheduleWhere, runNowWhere, showJob, rescheduleJob, the dead
 * letter functions), so a bad input gets the CLI's words, as a 400 `{ error }`.
 *
 * Reads (GET): session, overview, jobs (the search), count (a bulk action's dry run), histogram,
 * job, dead, dead-letter. Changes (POST, refused when read-only; server.ts checks CSRF and origin
 * first): job/revoke, job/reschedule, job/run-now, dead/retry, dead/purge, bulk.
 *
 * Nothing reads the whole store: a search is one page (an args match reads at most
 * `SCAN_BUDGET` jobs per page, then hands back a cursor), a histogram is counted by the store
 * (at most `MAX_CHART_BUCKETS` buckets), the overview is four index-backed reads.
 */
import type { IncomingMessage } from 'node:http';
import { countWhere, histogramWhere, rescheduleWhere, revokeWhere, runNowWhere, type BulkSummary, type HistogramUnit, type JobQuery } from '../admin/bulk.js';
import { listDeadLetters, purgeDeadLetters, retryDeadLetters, showDeadLetter, type DeadLetterInfo } from '../admin/dead-letters.js';
import { compileQuery } from '../admin/query.js';
import { listJobs, rescheduleJob, showJob, type ScheduledJobInfo } from '../admin/scheduled-jobs.js';
import { isoOrUndefined } from '../celery/time.js';
import type { Celery } from '../client/celery.js';
import { ErrorCode, NotScheduledError, SchedulerError, ValidationError, errorMessage, firstLine, redactUrl } from '../util/errors.js';
import type { DispatchStats } from './dispatch-stats.js';
import { bodyObject, choiceParam, intParam, moveOf, queryFromParams, stringField } from './params.js';
import type {
  BulkResult,
  CountResult,
  DeadDetail,
  DeadPage,
  DeadRow,
  Health,
  HistogramView,
  JobDetail,
  JobLookup,
  JobPage,
  JobRow,
  Overview,
  PurgeDeadView,
  ResultView,
  RetryDeadView,
  SessionInfo,
} from './web/api-types.js';

/** The most buckets a chart request counts (the CLI's histogram allows more; a chart shows no more). */
export const MAX_CHART_BUCKETS = 2000;
/** The most jobs a search page with an args match reads before it returns with a cursor. */
export const SCAN_BUDGET = 20_000;
/** A job due longer ago than this is overdue: a running dispatcher should have sent it. */
export const OVERDUE_GRACE_SECONDS = 60;
/** How long a live check of the store, broker or result backend may take. */
const CHECK_TIMEOUT_MS = 1000;
const MAX_BODY_BYTES = 64 * 1024;
const UNIT_SECONDS: Record<HistogramUnit, number> = { minute: 60, hour: 3600, day: 86_400 };
/** The range a chart covers when the query names none, per unit. */
const DEFAULT_SPAN_SECONDS: Record<HistogramUnit, number> = { minute: 6 * 3600, hour: 30 * 86_400, day: 365 * 86_400 };

export interface ApiContext {
  app: Celery;
  readOnly: boolean;
  csrfToken: string;
  confirmThreshold: number;
  stats: DispatchStats | undefined;
  /** the overview, read at most once a second however many ask (see server.ts) */
  overview: () => Promise<Overview>;
}

/** An answer: a status and a JSON body. */
export interface ApiAnswer {
  status: number;
  body: unknown;
}

type Get = (ctx: ApiContext, params: URLSearchParams) => Promise<unknown>;
type Post = (ctx: ApiContext, body: unknown, signal: AbortSignal) => Promise<unknown>;

const GETS: Record<string, Get> = {
  session: async (ctx) => session(ctx),
  overview: async (ctx) => ctx.overview(),
  jobs: searchJobs,
  count: countJobs,
  histogram,
  job: lookupJob,
  dead: deadLetters,
  'dead-letter': deadLetter,
};

const POSTS: Record<string, Post> = {
  'job/revoke': revokeOne,
  'job/reschedule': rescheduleOne,
  'job/run-now': runNowOne,
  'dead/retry': retryDead,
  'dead/purge': purgeDead,
  bulk,
};

/** Whether `route` (the path after `api/`) is a change. */
export function isMutation(route: string): boolean {
  return Object.hasOwn(POSTS, route);
}

/** Answers one API request; never throws (an error is an answer with its status). */
export async function answer(ctx: ApiContext, route: string, req: IncomingMessage, params: URLSearchParams, signal: AbortSignal): Promise<ApiAnswer> {
  try {
    const get = Object.hasOwn(GETS, route) ? GETS[route] : undefined;
    const post = Object.hasOwn(POSTS, route) ? POSTS[route] : undefined;
    if (!get && !post) return { status: 404, body: { error: `no API route ${JSON.stringify(route)}` } };
    const method = req.method ?? 'GET';
    if (get && (method === 'GET' || method === 'HEAD')) return { status: 200, body: await get(ctx, params) };
    if (post && method === 'POST') {
      if (ctx.readOnly) return { status: 403, body: { error: 'this dashboard is read-only (--read-only): it changes nothing' } };
      if ([...params.keys()].length) throw new ValidationError(['a change takes its input in the JSON body, not in the URL']);
      return { status: 200, body: await post(ctx, await readJson(req), signal) };
    }
    return { status: 405, body: { error: `${method} is not allowed here; use ${get ? 'GET' : 'POST'}` } };
  } catch (err) {
    return { status: statusOf(err), body: { error: oneLine(err) } };
  }
}

function statusOf(err: unknown): number {
  if (err instanceof NotScheduledError) return err.state === 'claimed' ? 409 : 404;
  if (err instanceof ValidationError || (err instanceof SchedulerError && err.code === ErrorCode.INVALID_ARGUMENT)) return 400;
  if (err instanceof HttpError) return err.status;
  if (err instanceof SchedulerError && (err.code === ErrorCode.CONNECTION || err.code === ErrorCode.CLOSED)) return 503;
  return 500;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** One line, every URL's password redacted: what an error shows anywhere. */
export function oneLine(err: unknown): string {
  return firstLine(errorMessage(err));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) throw new HttpError(415, 'send the request body as JSON (Content-Type: application/json)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `the request body is over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ValidationError(['the request body is not valid JSON; send a JSON object']);
  }
}

// --- reads ------------------------------------------------------------------------------------

function session(ctx: ApiContext): SessionInfo {
  const { app } = ctx;
  return {
    csrfToken: ctx.csrfToken,
    readOnly: ctx.readOnly,
    confirmThreshold: ctx.confirmThreshold,
    store: redactUrl(app.config.longtermSchedulerBackend),
    broker: redactUrl(app.config.broker),
    defaultQueue: app.config.taskDefaultQueue,
    resultBackend: app.resultBackend !== undefined,
    dispatcher: ctx.stats !== undefined,
    now: app.now().toISOString(),
  };
}

/** Reads the overview now (server.ts shares one read between the callers of a second). */
export async function readOverview(app: Celery, stats: DispatchStats | undefined): Promise<Overview> {
  const started = performance.now();
  const now = app.now();
  const nowS = now.getTime() / 1000;
  const store = app.store;
  const reads = live(async () =>
    Promise.all([store.count(), store.countWhere({ to: nowS }), store.countWhere({ to: nowS - OVERDUE_GRACE_SECONDS }), store.list({ limit: 1 })]),
  );
  const ping = app.broker.ping?.bind(app.broker);
  const [r, b] = await Promise.all([reads, ping ? live(ping) : Promise.resolve(undefined)]);
  const storeHealth: Health = r.ok ? { up: true } : { up: false, error: r.error };
  if (r.ok && stats?.storeDown !== undefined) Object.assign(storeHealth, { up: false, error: stats.storeDown });
  let broker: Health = b === undefined ? { up: null } : b.ok ? { up: true } : { up: false, error: b.error };
  if (broker.up !== false && stats?.brokerDown !== undefined) broker = { up: false, error: stats.brokerDown };
  const base = {
    at: now.toISOString(),
    graceSeconds: OVERDUE_GRACE_SECONDS,
    store: storeHealth,
    broker,
    dispatcher: stats?.view() ?? null,
  };
  if (!r.ok)
    return {
      ...base,
      scheduled: null,
      inFlight: null,
      dead: null,
      dueNow: null,
      overdue: null,
      oldestLatenessSeconds: null,
      nextDueAt: null,
      tookMs: performance.now() - started,
    };
  const [counts, dueNow, overdue, first] = r.value;
  const earliest = first.jobs[0];
  return {
    ...base,
    scheduled: counts.scheduled,
    inFlight: counts.inFlight,
    dead: counts.dead,
    dueNow,
    overdue,
    oldestLatenessSeconds: earliest && earliest.dueAt < nowS ? nowS - earliest.dueAt : 0,
    nextDueAt: earliest ? (isoOrUndefined(earliest.dueAt) ?? null) : null,
    tookMs: performance.now() - started,
  };
}

type Live<T> = { ok: true; value: T } | { ok: false; error: string };

/** Runs a check with a timeout; never rejects. */
function live<T>(fn: () => Promise<T>): Promise<Live<T>> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, error: `no answer within ${CHECK_TIMEOUT_MS} ms` }), CHECK_TIMEOUT_MS);
    timer.unref();
    let call: Promise<T>;
    try {
      call = fn();
    } catch (err) {
      call = Promise.reject(err as Error);
    }
    call.then(
      (value) => {
        clearTimeout(timer);
        resolve({ ok: true, value });
      },
      (err: unknown) => {
        clearTimeout(timer);
        resolve({ ok: false, error: oneLine(err) });
      },
    );
  });
}

async function searchJobs(ctx: ApiContext, params: URLSearchParams): Promise<JobPage> {
  const { app } = ctx;
  const query = queryFromParams(params, ['limit', 'cursor']);
  const limit = intParam(params, 'limit', { min: 1, max: 500 }, 50);
  const cursor = params.get('cursor') || undefined;
  const page = await listJobs(app.store, app.config.taskDefaultQueue, { ...query, limit, scanBudget: SCAN_BUDGET, ...(cursor !== undefined && { cursor }) });
  return {
    jobs: page.jobs.map(rowOf),
    ...(page.cursor !== undefined && { cursor: page.cursor }),
    ...(page.scanned !== undefined && { scanned: page.scanned }),
  };
}

async function countJobs(ctx: ApiContext, params: URLSearchParams): Promise<CountResult> {
  const { app } = ctx;
  const query = queryFromParams(params);
  const c = await countWhere(app.store, app.config.taskDefaultQueue, query, 5);
  return { count: c.count, sample: c.sample.map(rowOf), ...(c.scanned !== undefined && { scanned: c.scanned }) };
}

async function histogram(ctx: ApiContext, params: URLSearchParams): Promise<HistogramView> {
  const { app } = ctx;
  const query = queryFromParams(params, ['by']);
  const by = choiceParam(params, 'by', ['minute', 'hour', 'day'] as const, 'hour');
  const bucket = UNIT_SECONDS[by];
  const nowS = app.now().getTime() / 1000;
  const fromS = query.from
    ? query.from.getTime() / 1000
    : Math.floor((query.to ? query.to.getTime() / 1000 - DEFAULT_SPAN_SECONDS[by] : nowS) / bucket) * bucket;
  const toS = query.to ? query.to.getTime() / 1000 : fromS + DEFAULT_SPAN_SECONDS[by] - 1;
  const n = Math.floor(toS / bucket) - Math.floor(fromS / bucket) + 1;
  if (n > MAX_CHART_BUCKETS)
    throw new ValidationError([`the chart would have ${n} ${by}s; at most ${MAX_CHART_BUCKETS}: count by a wider unit or a shorter range`]);
  const range = { ...query, from: new Date(fromS * 1000), to: new Date(toS * 1000) };
  const h = await histogramWhere(app.store, app.config.taskDefaultQueue, range, { by });
  return {
    by,
    bucketSeconds: h.bucketSeconds,
    from: h.from.toISOString(),
    to: h.to.toISOString(),
    start: (h.buckets[0]?.start.getTime() ?? 0) / 1000,
    counts: h.buckets.map((b) => b.count),
    total: h.total,
    busiest: h.busiest.map((b) => ({ start: b.start.toISOString(), count: b.count })),
    ...(h.scanned !== undefined && { scanned: h.scanned }),
  };
}

async function lookupJob(ctx: ApiContext, params: URLSearchParams): Promise<JobLookup> {
  const { app } = ctx;
  const unknown = [...params.keys()].filter((k) => k !== 'id');
  if (unknown.length) throw new ValidationError([`unknown parameter ${JSON.stringify(unknown[0])}; pass id`]);
  const id = params.get('id');
  if (!id) throw new ValidationError(['pass the id of the job, e.g. api/job?id=3f2c…']);
  const backend = app.resultBackend;
  const info = await showJob(app.store, app.config.taskDefaultQueue, id);
  if (info) return { id, state: info.state, job: detailOf(info), ...(backend && { result: { status: 'SCHEDULED' } }) };
  const dead = await showDeadLetter(app.store, id);
  if (dead) return { id, state: 'dead', dead: deadDetailOf(dead) };
  if (!backend) return { id, state: 'unknown' };
  const meta = await live(() => backend.getMeta(id));
  if (!meta.ok) return { id, state: 'unknown', result: { error: meta.error } };
  if (!meta.value) return { id, state: 'unknown' };
  const m = meta.value;
  const result: ResultView = {
    status: m.status,
    ...(m.date_done !== undefined && { dateDone: m.date_done }),
    ...(m.result !== undefined && { result: clip(JSON.stringify(m.result) ?? 'null', 2000) }),
    ...(m.traceback !== undefined && { traceback: m.traceback === null ? null : clip(m.traceback, 4000) }),
  };
  return { id, state: 'sent', result };
}

async function deadLetters(ctx: ApiContext, params: URLSearchParams): Promise<DeadPage> {
  const unknown = [...params.keys()].filter((k) => k !== 'limit' && k !== 'cursor');
  if (unknown.length) throw new ValidationError([`unknown parameter ${JSON.stringify(unknown[0])}; pass limit and cursor`]);
  const limit = intParam(params, 'limit', { min: 1, max: 500 }, 50);
  const cursor = params.get('cursor') || undefined;
  const page = await listDeadLetters(ctx.app.store, { limit, ...(cursor !== undefined && { cursor }) });
  return { letters: page.letters.map(deadRowOf), ...(page.cursor !== undefined && { cursor: page.cursor }) };
}

async function deadLetter(ctx: ApiContext, params: URLSearchParams): Promise<DeadDetail> {
  const id = params.get('id');
  if (!id) throw new ValidationError(["pass the dead letter's id, e.g. api/dead-letter?id=3f2c…"]);
  const d = await showDeadLetter(ctx.app.store, id);
  if (!d) throw new HttpError(404, `${JSON.stringify(id)} is not a dead letter (unknown, or already retried or purged)`);
  return deadDetailOf(d);
}

// --- changes ----------------------------------------------------------------------------------

async function revokeOne(ctx: ApiContext, body: unknown): Promise<{ revoked: string }> {
  const id = stringField(bodyObject(body, ['id']), 'id');
  if (await ctx.app.store.remove(id)) return { revoked: id };
  throw await notScheduled(ctx, id, 'revoke');
}

async function rescheduleOne(ctx: ApiContext, body: unknown): Promise<{ id: string; dueAt: string }> {
  const o = bodyObject(body, ['id', 'eta', 'shift']);
  const id = stringField(o, 'id');
  const move = moveOf({ ...(o.eta !== undefined && { eta: o.eta }), ...(o.shift !== undefined && { shift: o.shift }) }, undefined);
  let to: Date;
  if ('to' in move) to = move.to;
  else {
    const job = await ctx.app.store.get(id);
    if (!job || job.state !== 'scheduled') throw new NotScheduledError(id, job ? 'claimed' : 'unknown', 'reschedule');
    to = new Date((job.dueAt + (move as { shiftSeconds: number }).shiftSeconds) * 1000);
  }
  await rescheduleJob(ctx.app.store, id, to);
  return { id, dueAt: to.toISOString() };
}

async function runNowOne(ctx: ApiContext, body: unknown): Promise<{ id: string; dueAt: string }> {
  const id = stringField(bodyObject(body, ['id']), 'id');
  const now = ctx.app.now();
  await rescheduleJob(ctx.app.store, id, now, 'run now');
  return { id, dueAt: now.toISOString() };
}

async function notScheduled(ctx: ApiContext, id: string, action: string): Promise<NotScheduledError> {
  const now = await ctx.app.store.get(id);
  return new NotScheduledError(id, now?.state === 'in_flight' ? 'claimed' : 'unknown', action);
}

function idsOrAll(body: unknown): readonly string[] | 'all' {
  const o = bodyObject(body, ['ids', 'all']);
  if ((o.ids === undefined) === (o.all === undefined)) throw new ValidationError(["pass ids (a list of dead letters' task ids) or all: true, not both"]);
  if (o.all !== undefined) {
    if (o.all !== true) throw new ValidationError(['all must be true']);
    return 'all';
  }
  if (!Array.isArray(o.ids) || o.ids.some((id) => typeof id !== 'string')) throw new ValidationError(["ids must be a list of dead letters' task ids"]);
  return o.ids as string[];
}

async function retryDead(ctx: ApiContext, body: unknown): Promise<RetryDeadView> {
  return retryDeadLetters(ctx.app.store, idsOrAll(body), ctx.app.now());
}

async function purgeDead(ctx: ApiContext, body: unknown): Promise<PurgeDeadView> {
  return purgeDeadLetters(ctx.app.store, idsOrAll(body));
}

/**
 * `{ action: revoke | reschedule | run-now, query: "<the search's query string>", move?, expected }`:
 * every job the query matches, each atomically on its own (admin/bulk.ts). `expected` is the count
 * the dry run showed and the operator confirmed: when more jobs match now, nothing is done (409),
 * so a confirmation never covers more than what was shown. An aborted request stops after the
 * page in progress (the answer then has a `cursor`).
 */
async function bulk(ctx: ApiContext, body: unknown, signal: AbortSignal): Promise<BulkResult> {
  const { app } = ctx;
  const o = bodyObject(body, ['action', 'query', 'move', 'expected']);
  const action = o.action;
  if (action !== 'revoke' && action !== 'reschedule' && action !== 'run-now') throw new ValidationError(['action must be revoke, reschedule or run-now']);
  if (typeof o.query !== 'string') throw new ValidationError(['query must be the search as a query string, e.g. "tag=tenant:42&task=app.invoice"']);
  const query: JobQuery = queryFromParams(new URLSearchParams(o.query));
  const queue = app.config.taskDefaultQueue;
  compileQuery(query, queue, true);
  if (action !== 'reschedule' && o.move !== undefined) throw new ValidationError([`${action} takes no move`]);
  const move = action === 'reschedule' ? moveOf(o.move, query) : undefined;
  const expected = o.expected;
  if (typeof expected !== 'number' || !Number.isInteger(expected) || expected < 0)
    throw new ValidationError(['expected must be the count the dry run showed (a whole number): a bulk action needs its dry run first']);
  const now = await countWhere(app.store, queue, query, 0);
  if (now.count > expected)
    throw new HttpError(
      409,
      `${now.count.toLocaleString('en-US')} jobs match now, more than the ${expected.toLocaleString('en-US')} the dry run showed; run the dry run again`,
    );
  const options = { signal };
  let s: BulkSummary;
  if (action === 'revoke') s = await revokeWhere(app.store, queue, query, options);
  else if (action === 'run-now') s = await runNowWhere(app.store, queue, query, app.now(), options);
  else s = await rescheduleWhere(app.store, queue, query, move as NonNullable<typeof move>, options);
  return {
    matched: s.matched,
    changed: s.changed,
    skipped: s.skipped,
    missing: s.missing,
    ...(s.unchanged !== undefined && { unchanged: s.unchanged }),
    elapsedMs: Math.round(s.elapsedMs * 10) / 10,
    ...(s.cursor !== undefined && { cursor: s.cursor }),
  };
}

// --- shapes -----------------------------------------------------------------------------------

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function rowOf(j: ScheduledJobInfo): JobRow {
  return {
    id: j.id,
    task: j.task,
    dueAt: isoOrUndefined(j.dueAtUnix) ?? null,
    dueAtUnix: j.dueAtUnix,
    state: j.state,
    queue: j.queue ?? null,
    tags: j.tags ?? [],
    argsPreview: clip(JSON.stringify([j.args, j.kwargs]), 160),
    ...(j.corrupt !== undefined && { corrupt: j.corrupt }),
  };
}

/** The send_task keywords stored besides the arguments and the id. */
function storedOptions(entry: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(entry) as unknown;
    const kw = Array.isArray(parsed) ? (parsed[1] as unknown) : undefined;
    if (kw === null || typeof kw !== 'object' || Array.isArray(kw)) return {};
    const { args: _a, kwargs: _k, task_id: _t, ...rest } = kw as Record<string, unknown>;
    return rest;
  } catch {
    return {};
  }
}

function detailOf(j: ScheduledJobInfo): JobDetail {
  return {
    ...rowOf(j),
    args: j.args,
    kwargs: j.kwargs,
    ...(j.exchange !== undefined && { exchange: j.exchange }),
    ...(j.routingKey !== undefined && { routingKey: j.routingKey }),
    ...(j.priority !== undefined && { priority: j.priority }),
    ...(j.canvas !== undefined && { canvas: j.canvas }),
    options: storedOptions(j.entry),
    key: j.key ?? null,
    entry: j.entry,
  };
}

function deadRowOf(d: DeadLetterInfo): DeadRow {
  return {
    id: d.id,
    task: d.task,
    reason: d.reason,
    error: firstLine(d.error),
    attempts: d.attempts,
    dueAt: isoOrUndefined(d.dueAt) ?? null,
    diedAt: isoOrUndefined(d.diedAt) ?? null,
    firstFailedAt: d.firstFailedAt === undefined ? null : (isoOrUndefined(d.firstFailedAt) ?? null),
    tags: d.tags ?? [],
  };
}

function deadDetailOf(d: DeadLetterInfo): DeadDetail {
  return { ...deadRowOf(d), entry: d.entry };
}
