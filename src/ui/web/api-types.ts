/**
 * The dashboard's JSON API, as types: what the server (../api.ts) sends and what the page (the
 * other files of this folder) reads. Types only, so the page and the server share the contract
 * without sharing code. Times are ISO-8601 strings in UTC (null when the stored time is outside
 * years 1-9999, which another writer may have stored) beside the stored unix seconds.
 *
 * Every error is `{ "error": "one line" }` with a 4xx or 5xx status.
 */

/** `GET api/session`: what the page needs before it draws anything. */
export interface SessionInfo {
  /** send it back as the `X-CSRF-Token` header of every POST */
  csrfToken: string;
  /** mutations are refused (403) and the page hides every action */
  readOnly: boolean;
  /** above this many jobs a bulk action asks for the count to be typed */
  confirmThreshold: number;
  /** the store and broker, passwords redacted */
  store: string;
  broker: string;
  defaultQueue: string;
  /** whether a result backend is configured (the job page then shows Celery's result state) */
  resultBackend: boolean;
  /** whether a dispatcher runs in this process (the overview then shows its rate and lateness) */
  dispatcher: boolean;
  /** the server's clock */
  now: string;
}

export interface Health {
  /** null when it cannot be told (a broker without a ping) */
  up: boolean | null;
  /** why it is down, one line, passwords redacted */
  error?: string;
}

/** What a dispatcher running beside the dashboard did lately (`run --ui-port`). */
export interface DispatcherView {
  /** jobs sent in the last 60 s, per second */
  ratePerSecond: number;
  sentLastMinute: number;
  /** since the dashboard started */
  sentTotal: number;
  deadTotal: number;
  /** given back or refused, since the dashboard started */
  failedTotal: number;
  /** when the broker accepted each job minus when it was due, over the last 5 minutes; null when none was sent */
  lateness: { p50: number; p99: number; max: number; samples: number } | null;
  /** the end of the last dispatch run, or null before the first */
  lastRunAt: string | null;
}

/** `GET api/overview`, and each `overview` event of `GET api/events`. */
export interface Overview {
  at: string;
  /** null when the store cannot be read */
  scheduled: number | null;
  inFlight: number | null;
  dead: number | null;
  /** scheduled jobs whose due time has come (at or before now): a dispatcher should be sending them */
  dueNow: number | null;
  /** of those, the ones more than `graceSeconds` late */
  overdue: number | null;
  graceSeconds: number;
  /** how long the earliest waiting job is past due, in seconds (0 when none is) */
  oldestLatenessSeconds: number | null;
  /** the earliest due time of a waiting job */
  nextDueAt: string | null;
  store: Health;
  broker: Health;
  dispatcher: DispatcherView | null;
  /** how long the server took to read all this, ms */
  tookMs: number;
}

/** One scheduled job in a list. */
export interface JobRow {
  id: string;
  task: string;
  dueAt: string | null;
  dueAtUnix: number;
  state: 'scheduled' | 'claimed';
  queue: string | null;
  tags: readonly string[];
  /** `[args, kwargs]` as JSON, cut to 160 characters */
  argsPreview: string;
  corrupt?: string;
}

/** `GET api/jobs?QUERY&limit&cursor`: a page of the search. */
export interface JobPage {
  jobs: JobRow[];
  /** pass back as `cursor` for the next page; absent at the end */
  cursor?: string;
  /** with an args match: how many jobs this page read (it stops early, with a cursor, after a budget) */
  scanned?: number;
}

/** `GET api/count?QUERY`: what a bulk action would touch (its dry run). */
export interface CountResult {
  count: number;
  sample: JobRow[];
  scanned?: number;
}

/** `GET api/histogram?QUERY&by`: the future load. */
export interface HistogramView {
  by: 'minute' | 'hour' | 'day';
  bucketSeconds: number;
  from: string;
  to: string;
  /** the first bucket's start, unix seconds; bucket i starts at start + i * bucketSeconds */
  start: number;
  counts: number[];
  total: number;
  /** the fullest buckets, most first (at most 5) */
  busiest: { start: string; count: number }[];
  scanned?: number;
}

/** Everything stored for one scheduled job. */
export interface JobDetail extends JobRow {
  args: unknown[];
  kwargs: Record<string, unknown>;
  exchange?: string;
  routingKey?: string;
  priority?: number;
  canvas?: { chain?: string[]; groupId?: string; groupIndex?: number; chordBody?: string };
  /** the send_task keyword arguments stored besides args and kwargs (eta, expires, headers, link, ...) */
  options: Record<string, unknown>;
  /** the deduplication key it holds (schedule --key), or null */
  key: string | null;
  /** the stored entry, exactly */
  entry: string;
}

export interface DeadRow {
  id: string;
  task: string;
  reason: string;
  error: string;
  attempts: number;
  dueAt: string | null;
  diedAt: string | null;
  firstFailedAt: string | null;
  tags: readonly string[];
}

export interface DeadDetail extends DeadRow {
  /** the stored entry byte for byte; null when the job's key was missing when it died */
  entry: string | null;
}

/** `GET api/dead?limit&cursor`: dead letters, oldest first. */
export interface DeadPage {
  letters: DeadRow[];
  cursor?: string;
}

/** Celery's record of a task in the result backend. */
export interface ResultView {
  status: string;
  dateDone?: string | null;
  /** the result (or exception) as JSON, cut to 2000 characters */
  result?: string;
  traceback?: string | null;
}

/** `GET api/job?id=ID`. */
export interface JobLookup {
  id: string;
  /** `sent`: the store no longer holds it and the result backend has a record of it */
  state: 'scheduled' | 'claimed' | 'dead' | 'sent' | 'unknown';
  job?: JobDetail;
  dead?: DeadDetail;
  /** with a result backend: SCHEDULED while stored, else Celery's record, or an error reading it */
  result?: ResultView | { error: string };
}

/** What a bulk action did (`POST api/bulk`). */
export interface BulkResult {
  matched: number;
  changed: number;
  skipped: number;
  missing: number;
  unchanged?: number;
  elapsedMs: number;
  /** set when it stopped early (the request was aborted) */
  cursor?: string;
}

export interface RetryDeadView {
  retried: string[];
  notDead: string[];
  idTaken: string[];
  noEntry: string[];
}

export interface PurgeDeadView {
  purged: number;
  notDead: string[];
}
