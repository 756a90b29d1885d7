/**
 * Every error this package throws on purpose is a `SchedulerError` with a stable `code`.
 * Driver errors are wrapped (kept as `cause`), never rewritten.
 * Messages are one line: what was wrong, and what to do instead.
 */

export const ErrorCode = {
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  CONNECTION: 'CONNECTION',
  CORRUPT_ENTRY: 'CORRUPT_ENTRY',
  UNSUPPORTED_ENTRY: 'UNSUPPORTED_ENTRY',
  UNSUPPORTED_PICKLE: 'UNSUPPORTED_PICKLE',
  DUPLICATE_JOB: 'DUPLICATE_JOB',
  LOCKED: 'LOCKED',
  PUBLISH: 'PUBLISH',
  SCHEMA_VERSION: 'SCHEMA_VERSION',
  NOT_SCHEDULED: 'NOT_SCHEDULED',
  TASK_FAILED: 'TASK_FAILED',
  TASK_REVOKED: 'TASK_REVOKED',
  TIMEOUT: 'TIMEOUT',
  CLOSED: 'CLOSED',
  MESSAGE_REJECTED: 'MESSAGE_REJECTED',
  DRIVER_MISSING: 'DRIVER_MISSING',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class SchedulerError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad input from the caller. Lists every problem found, each with the fix. */
export class ValidationError extends SchedulerError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(ErrorCode.INVALID_ARGUMENT, problems.join('; '));
    this.problems = problems;
  }
}

/** How a `ConnectionError` reads when the network template ("cannot reach … check that it is running") does not fit, e.g. a file. */
export interface ConnectionErrorWording {
  /** the verb: `cannot <action> the <what> at <url>` (default `reach`) */
  action?: string;
  /** what to do, after the reason (default `check that it is running and that the URL is right`) */
  hint?: string;
}

/** A store or broker could not be reached (or a store file opened). `url` has its password redacted. */
export class ConnectionError extends SchedulerError {
  readonly url: string;
  constructor(what: string, url: string, cause?: unknown, wording: ConnectionErrorWording = {}) {
    const safe = redactUrl(url);
    const reason = cause instanceof Error ? `: ${firstLine(cause.message)}` : '';
    const action = wording.action ?? 'reach';
    const hint = wording.hint ?? 'check that it is running and that the URL is right';
    super(ErrorCode.CONNECTION, `cannot ${action} the ${what} at ${safe}${reason}; ${hint}`, { cause });
    this.url = safe;
  }
}

/** A stored entry that cannot be turned into a Celery message. */
export class CorruptEntryError extends SchedulerError {
  readonly taskId: string;
  constructor(taskId: string, reason: string, cause?: unknown) {
    super(ErrorCode.CORRUPT_ENTRY, `stored job ${quoteId(taskId)} is corrupt: ${reason}`, { cause });
    this.taskId = taskId;
  }
}

/**
 * A well-formed stored entry that asks for something this dispatcher cannot send exactly as
 * Python's `send_task` would (an unknown keyword, another serializer, a pickle outside the allowed
 * places, an impossible priority). The dispatcher makes it a dead letter with reason `unsupported`.
 */
export class UnsupportedEntryError extends CorruptEntryError {
  constructor(taskId: string, reason: string, cause?: unknown) {
    super(taskId, reason, cause);
    Object.defineProperty(this, 'code', { value: ErrorCode.UNSUPPORTED_ENTRY });
    this.message = `stored job ${quoteId(taskId)} cannot be sent as Python's send_task would send it: ${reason}`;
  }
}

/** The npm package a store or broker needs (its driver) is not installed. */
export class DriverMissingError extends SchedulerError {
  readonly driver: string;
  constructor(driver: string, what: string, cause?: unknown) {
    super(ErrorCode.DRIVER_MISSING, `the ${what} needs the npm package "${driver}", which is not installed; install it (npm install ${driver})`, { cause });
    this.driver = driver;
  }
}

/** A `__python_pickle__` value holding something other than the date/time types we decode. */
export class UnsupportedPickleError extends SchedulerError {
  constructor(reason: string) {
    super(ErrorCode.UNSUPPORTED_PICKLE, `unsupported pickled value: ${reason}`);
  }
}

/** A job with this id is already scheduled. */
export class DuplicateJobError extends SchedulerError {
  readonly taskId: string;
  constructor(taskId: string) {
    super(ErrorCode.DUPLICATE_JOB, `a job with id ${JSON.stringify(taskId)} is already scheduled; revoke it first or pass another taskId`);
    this.taskId = taskId;
  }
}

/** A scheduled job already holds this deduplication key (`addKeyed` in `reject` mode). */
export class JobKeyTakenError extends SchedulerError {
  readonly key: string;
  /** the id of the scheduled job holding the key */
  readonly taskId: string;
  constructor(key: string, taskId: string) {
    super(
      ErrorCode.DUPLICATE_JOB,
      `a job with key ${JSON.stringify(key)} is already scheduled (id ${JSON.stringify(taskId)}); pass jobKeyMode 'replace' or 'keep', or revoke it first`,
    );
    this.key = key;
    this.taskId = taskId;
  }
}

/**
 * The broker can never carry this one message as it is (over a size, depth or type limit, or it
 * made the broker close the channel). Retrying cannot help: the dispatcher makes the job a dead
 * letter at once, and the rest of its batch is sent as usual.
 */
export class MessageRejectedError extends SchedulerError {
  readonly taskId: string;
  readonly permanent = true;
  constructor(taskId: string, reason: string, options?: { cause?: unknown }) {
    super(ErrorCode.MESSAGE_REJECTED, `the broker cannot carry task ${quoteId(taskId)}: ${reason}`, options);
    this.taskId = taskId;
  }
}

/** The broker cannot route a message: no queue is bound for it. The job stays scheduled. */
export class UnroutableError extends SchedulerError {
  constructor(exchange: string, routingKey: string) {
    super(
      ErrorCode.PUBLISH,
      `exchange ${JSON.stringify(exchange)} has no queue bound for routing key ${JSON.stringify(routingKey)}; start a worker that declares the queue, or schedule with a queue instead of an exchange`,
    );
  }
}

/**
 * A database store's schema is not the version this code needs. `found` is undefined when the
 * schema was never created. Nothing is changed: migrations run only when asked for.
 */
export class SchemaVersionError extends SchedulerError {
  readonly found: number | undefined;
  readonly expected: number;
  constructor(where: string, found: number | undefined, expected: number) {
    const fix =
      found === undefined || found < expected
        ? 'run `celery-longterm-scheduler migrate-schema --backend <url>` (or start with --migrate) to bring it up to date'
        : 'upgrade celery-longterm-scheduler to a version that knows this schema';
    const state = found === undefined ? 'has no scheduler schema yet' : `has schema version ${found}`;
    super(ErrorCode.SCHEMA_VERSION, `the store ${where} ${state}, this code needs version ${expected}; ${fix}`);
    this.found = found;
    this.expected = expected;
  }
}

/** A change asked of a job that is not (or no longer) waiting in the store. */
export class NotScheduledError extends SchedulerError {
  readonly taskId: string;
  readonly state: 'claimed' | 'unknown';
  constructor(taskId: string, state: 'claimed' | 'unknown', action: string) {
    const why =
      state === 'claimed'
        ? 'a dispatcher has claimed it and is sending it to the broker now; it can no longer be changed here (revoke it in Celery if it must not run)'
        : 'it is not scheduled: the id is unknown, or the job was already sent or revoked; check the id with `list` or `show`';
    super(ErrorCode.NOT_SCHEDULED, `cannot ${action} job ${JSON.stringify(taskId)}: ${why}`);
    this.taskId = taskId;
    this.state = state;
  }
}

/** Another dispatcher holds the lock file. */
export class LockedError extends SchedulerError {
  constructor(path: string, holder?: string) {
    super(
      ErrorCode.LOCKED,
      `another dispatch run holds the lock file ${path}${holder ? ` (pid ${holder})` : ''}; wait for it to finish or remove the file if that process is gone`,
    );
  }
}

/**
 * Replaces every credential a URL can carry with `***`. Never throws.
 *
 * Drivers split the user info from the host at the *last* `@` of the authority, and a password
 * may hold `@`, `/`, `?`, `#`, `;`, quotes or spaces, so this is deliberately conservative:
 * everything from `scheme://` to the last `@` is user info (`user:***@`, or `***@` for a lone
 * token), even if that also hides a host; and the value of every query parameter whose name
 * looks secret (`password`, `sslpassword`, `token`, `secret`, `auth`, …) becomes `***`, up to the
 * next `&` or `#` (or the end). Over-redacting is a worse message; under-redacting is a leak.
 * A list of URLs (Celery's `sentinel://…;sentinel://…` form) is redacted URL by URL.
 */
export function redactUrl(url: string): string {
  const text = String(url);
  if (!text.includes('://')) {
    // `scheme:user:password@host` (no `//`): hide everything between the scheme and the last `@`
    return text.replace(/^([a-z][a-z0-9+.-]*:)(.*)@/is, (_m, scheme: string) => `${scheme}***@`);
  }
  return redactUrlsIn(text);
}

/**
 * Redacts every URL found inside free text (driver messages sometimes echo the URL). A URL runs
 * from its `scheme://` to the next URL or the end of the line, quotes and spaces included, so a
 * password holding a quote or a space does not end the URL early and leak its tail.
 */
export function redactUrlsIn(text: string): string {
  return String(text)
    .split('\n')
    .map((line) => {
      // Found by their `://` (linear; a regex matching `scheme://` from every position is
      // quadratic on a long run of letters, and messages can echo long input).
      const marks: number[] = [];
      for (let i = line.indexOf('://'); i !== -1; i = line.indexOf('://', i + 3)) {
        if (i > 0 && isSchemeChar(line.charCodeAt(i - 1))) marks.push(i);
      }
      if (marks.length === 0) return line;
      let out = '';
      let pos = 0;
      marks.forEach((mark, k) => {
        const from = mark + 3;
        const next = marks[k + 1];
        let to = line.length;
        if (next !== undefined) {
          to = next;
          while (to > from && isSchemeChar(line.charCodeAt(to - 1))) to--; // the next URL's scheme
        }
        out += line.slice(pos, from) + redactAfterScheme(line.slice(from, to));
        pos = to;
      });
      return out + line.slice(pos);
    })
    .join('\n');
}

/** `[a-zA-Z0-9+.-]`, the characters of a URL scheme. */
function isSchemeChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 43 || c === 46 || c === 45;
}

/** query parameter names that carry secrets: libpq's `password`/`sslpassword`, `?token=`, `?auth=`, … */
const SECRET_PARAM = /pass|pwd|secret|token|auth|credential|api[-_]?key|private/i;

/** What follows one URL's `scheme://`, up to where the next URL begins: secret query values, then the user info. */
function redactAfterScheme(part: string): string {
  const rest = part.replace(/([?&])([^?&#=]*)=([^&#]*)/g, (m, sep: string, name: string, value: string) => {
    if (!SECRET_PARAM.test(safeDecode(name)) || value.startsWith('***')) return m;
    return `${sep}${name}=***`;
  });
  const at = rest.lastIndexOf('@');
  if (at === -1) return rest;
  const userinfo = rest.slice(0, at);
  const colon = userinfo.indexOf(':');
  const shown = userinfo === '' ? '' : colon === -1 ? '***' : `${userinfo.slice(0, colon)}:***`;
  return `${shown}${rest.slice(at)}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/**
 * The problem with a URL whose %-escapes do not decode (a `%` not followed by two hex digits, or
 * bytes that are not UTF-8), as drivers and `decodeURIComponent` would meet it; else undefined.
 * Some drivers throw a bare "URI malformed", others quietly use a different password.
 */
export function malformedEscapeProblem(url: string, what: string): string | undefined {
  try {
    decodeURIComponent(String(url));
    return undefined;
  } catch {
    return `${what} URL ${JSON.stringify(redactUrl(url))} has a malformed %-escape (a % must start two hex digits that spell UTF-8); write a literal % as %25 and percent-encode the other special characters of the user and password`;
  }
}

/** A task id quoted for a message, cut to 80 characters (ids from other writers may be huge). */
export function quoteId(id: string): string {
  return JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}…` : id);
}

/** The message of anything thrown, for logs and summaries. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first line of a text, URLs redacted: what a one-line message or log field shows. */
export function firstLine(s: string): string {
  return redactUrlsIn(s.split('\n', 1)[0] ?? '');
}

/**
 * A task a worker ran raised an exception (its result has state FAILURE). `excType` is the
 * Python exception class name (e.g. `ValueError`), `excModule` its module when known,
 * `excMessage` the message, `traceback` the worker's formatted traceback when stored.
 */
export class TaskFailedError extends SchedulerError {
  readonly taskId: string;
  readonly excType: string;
  readonly excMessage: string;
  readonly excModule: string | undefined;
  readonly traceback: string | undefined;
  constructor(taskId: string, failure: { excType: string; excMessage: string; excModule?: string; traceback?: string }) {
    super(ErrorCode.TASK_FAILED, `task ${JSON.stringify(taskId)} failed: ${failure.excType}: ${firstLine(failure.excMessage)}`);
    this.taskId = taskId;
    this.excType = failure.excType;
    this.excMessage = failure.excMessage;
    this.excModule = failure.excModule;
    this.traceback = failure.traceback;
  }
}

/** The task was revoked (its result has state REVOKED): it did not run and will not. */
export class TaskRevokedError extends SchedulerError {
  readonly taskId: string;
  /** why, as the worker recorded it (e.g. `revoked`, `expired`), when known */
  readonly reason: string | undefined;
  constructor(taskId: string, reason?: string) {
    super(ErrorCode.TASK_REVOKED, `task ${JSON.stringify(taskId)} was revoked${reason ? ` (${firstLine(reason)})` : ''}; it did not run and will not`);
    this.taskId = taskId;
    this.reason = reason;
  }
}

/** `AsyncResult.get()` waited `timeoutMs` and the task was still not done. Nothing is changed. */
export class ResultTimeoutError extends SchedulerError {
  readonly taskId: string;
  readonly timeoutMs: number;
  /** the state when the wait ended (e.g. `SCHEDULED`, `PENDING`, `STARTED`) */
  readonly state: string;
  constructor(taskId: string, timeoutMs: number, state: string) {
    super(
      ErrorCode.TIMEOUT,
      `task ${JSON.stringify(taskId)} was not done after waiting ${timeoutMs} ms (state ${state}); wait longer (get({ timeoutMs })) or check that a dispatcher and a worker are running`,
    );
    this.taskId = taskId;
    this.timeoutMs = timeoutMs;
    this.state = state;
  }
}
