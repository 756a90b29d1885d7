/**
 * Celery's canvas from TypeScript, scheduled for later like any task: `chain(a, b, c)`,
 * `group(a, b)`, `chord([a, b], body)`, each with `.applyAsync({ eta | countdown })`.
 *
 * Each is stored in the layout the Python package writes for the same call, so either dispatcher
 * (ours, or the package's cron) sends it:
 * - **chain**: one job, the first step, whose `chain` keyword holds the other steps in reverse
 *   (the worker pops the last element next), each frozen with its own `task_id` in its options.
 * - **group**: one job per member, each with the group's `group_id`.
 * - **chord**: one job per header task, each with `group_id`, its `group_index` and the body
 *   signature (frozen with its `task_id`) as `chord`. Celery's Redis result backend counts the
 *   header's results against the chord size key `celery-taskset-meta-<group id>.s`, which must
 *   exist when the header runs; we write it at schedule time, as Python does, but to last until
 *   the due time plus `result_expires` (Python's expires after `result_expires`, one day by
 *   default, so a chord the package schedules further ahead never runs its body).
 *
 * What we leave out of Python's layout: `reply_to` (the producer's result-consumer queue, only
 * meaningful to the RPC backend) and the chord's `eta` copied into the body's options (so a
 * chord rescheduled earlier does not have its body wait for the old time on the worker).
 *
 * A step's own options (queue, priority, countdown in a link, ...) come from `task.s(args,
 * kwargs, options)`; `task.si(...)` is an immutable signature (the parent's result is not
 * prepended to its args). Canvas nested in canvas (a group inside a chain) is not supported yet.
 */
import { randomUUID } from 'node:crypto';
import { ValidationError } from '../util/errors.js';
import { formatCeleryTime, toDate } from '../celery/time.js';
import { type Job, type Signature } from '../job/types.js';
import { checkJsonValue, collect, resolveTaskCall, type TaskOptions } from '../job/options.js';
import type { AsyncResult } from '../results/async-result.js';
import { MAX_JSON_DEPTH } from '../celery/limits.js';

/** The options a signature carries, applied by the worker when it sends that signature (Celery's names, camelCase). */
export interface SignatureOptions {
  /** the task id it will run under (default: a random UUID, chosen when the canvas is stored) */
  taskId?: string;
  queue?: string;
  routingKey?: string;
  exchange?: string;
  /** 0-255 */
  priority?: number;
  /** seconds to wait after it is sent (e.g. a link that runs an hour after its parent) */
  countdown?: number;
  /** the earliest time it runs once sent (a Date or ISO-8601 with offset) */
  eta?: Date | string;
  /**
   * seconds from when it is sent. A date is refused here: a Celery 5.0-5.2 worker sending the
   * signature would fail on a date string (an entry's own `expires` may be a date).
   */
  expires?: number;
  timeLimit?: number;
  softTimeLimit?: number;
  shadow?: string;
  ignoreResult?: boolean;
  headers?: Record<string, unknown>;
  /** true: the parent's result is not put in front of its args (Celery's `si()`) */
  immutable?: boolean;
}

/** camelCase option -> the `apply_async` keyword the worker reads from `options` */
const SIGNATURE_OPTION_KEYWORDS: Readonly<Record<Exclude<keyof SignatureOptions, 'immutable'>, string>> = {
  taskId: 'task_id',
  queue: 'queue',
  routingKey: 'routing_key',
  exchange: 'exchange',
  priority: 'priority',
  countdown: 'countdown',
  eta: 'eta',
  expires: 'expires',
  timeLimit: 'time_limit',
  softTimeLimit: 'soft_time_limit',
  shadow: 'shadow',
  ignoreResult: 'ignore_result',
  headers: 'headers',
};

/** A signature's options as stored: validated, under the keyword names the worker reads. */
export function signatureOptions(opts: SignatureOptions = {}): Record<string, unknown> {
  const problems: string[] = [];
  if (opts === null || typeof opts !== 'object') throw new ValidationError(['signature options must be an object']);
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(opts)) {
    if (value === undefined || name === 'immutable') continue;
    const keyword = (SIGNATURE_OPTION_KEYWORDS as Record<string, string>)[name];
    if (keyword === undefined) {
      problems.push(`unknown signature option ${JSON.stringify(name)}; valid ones are ${[...Object.keys(SIGNATURE_OPTION_KEYWORDS), 'immutable'].join(', ')}`);
      continue;
    }
    const number = (ok: (n: number) => boolean, what: string): void => {
      if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) problems.push(`${name} must be ${what}, got ${JSON.stringify(value)}`);
      else out[keyword] = value;
    };
    switch (name) {
      case 'priority':
        number((n) => Number.isInteger(n) && n >= 0 && n <= 255, 'a whole number from 0 to 255');
        break;
      case 'countdown':
        number((n) => n >= 0, 'a number of seconds >= 0');
        break;
      case 'expires':
        if (value instanceof Date || typeof value === 'string')
          problems.push('expires in a signature must be seconds from when it is sent: a Celery 5.0-5.2 worker cannot send a signature whose expires is a date');
        else number((n) => n >= 0, 'a number of seconds >= 0');
        break;
      case 'timeLimit':
      case 'softTimeLimit':
        number((n) => n > 0, 'a positive number of seconds');
        break;
      case 'eta':
        collect(problems, () => (out[keyword] = formatCeleryTime(toDate(value as Date | string, 'eta'))));
        break;
      case 'ignoreResult':
        if (typeof value !== 'boolean') problems.push(`ignoreResult must be true or false, got ${JSON.stringify(value)}`);
        else out[keyword] = value;
        break;
      case 'headers':
        if (value === null || typeof value !== 'object' || Array.isArray(value)) problems.push('headers must be an object');
        else out[keyword] = value;
        break;
      default: // the names: taskId, queue, routingKey, exchange, shadow
        if (typeof value !== 'string' || value === '') problems.push(`${name} must be a non-empty string, got ${JSON.stringify(value)}`);
        else out[keyword] = value;
    }
  }
  if (problems.length) throw new ValidationError(problems);
  return out;
}

// Signatures made by `app.task(name).s(...)` know their app, as Celery's do, without it showing in
// their JSON: the canvas built from them needs no app argument.
const boundApps = new WeakMap<object, CanvasApp>();

/** Marks `sig` as made by `app` (so a canvas of it can find the app); returns `sig`. */
export function bindSignature<T extends object>(sig: T, app: CanvasApp): T {
  boundApps.set(sig, app);
  return sig;
}

/** When a canvas runs: `eta` or `countdown`, as for a task. */
export interface CanvasOptions {
  eta?: Date | string;
  countdown?: number;
  /** tags for every job the canvas stores (see `TaskOptions.tags`) */
  tags?: readonly string[];
}

/** What storing a canvas gives back. */
export interface CanvasResult {
  /** Celery's result of the canvas: the last step of a chain, the body of a chord; none for a group */
  result: AsyncResult | undefined;
  /** the group id (group and chord) */
  groupId: string | undefined;
  /** a result per task the canvas runs, in order: chain steps; group members; chord header, then body */
  results: AsyncResult[];
  /** the stored jobs: revoke or reschedule these to change the whole canvas */
  scheduledIds: string[];
  dueAt: Date;
}

/** What stores a canvas: the `Celery` client (`applyCanvas`). */
export interface CanvasApp {
  applyCanvas(canvas: Plannable, options: CanvasOptions): Promise<CanvasResult>;
}

/** Anything `Celery.applyCanvas` stores: a chain, group or chord. */
export interface Plannable {
  plan(options: CanvasOptions, now: Date): CanvasPlan;
}

/** A canvas planned for storing (see `Celery.applyCanvas`). */
export interface CanvasPlan {
  /** the jobs to store, all due at `dueAt` */
  jobs: Job[];
  dueAt: number;
  /** every task id the canvas runs, in `CanvasResult.results` order */
  taskIds: string[];
  resultId: string | undefined;
  groupId: string | undefined;
  /** for a chord: the size to write under the group's counter key */
  chordSize: number | undefined;
}

abstract class Canvas {
  abstract readonly kind: 'chain' | 'group' | 'chord';
  /** Stores the canvas to run at `eta` (or after `countdown` seconds); `app` defaults to the one its signatures were made by. */
  applyAsync(options: CanvasOptions, app?: CanvasApp): Promise<CanvasResult> {
    const owner =
      app ??
      this.signatures()
        .map((s) => boundApps.get(s))
        .find((a) => a !== undefined);
    if (!owner) {
      try {
        this.plan(options, new Date()); // a canvas that is wrong anyway says so first
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.reject(
        new ValidationError([`this ${this.kind}'s signatures were not made by app.task(name).s(...), so it has no app; pass one: applyAsync(options, app)`]),
      );
    }
    return owner.applyCanvas(this, options);
  }
  /** Checks the canvas and turns it into jobs; throws `ValidationError` with every problem found. */
  abstract plan(options: CanvasOptions, now: Date): CanvasPlan;
  protected abstract signatures(): Signature[];
}

export class Chain extends Canvas {
  readonly kind = 'chain';
  constructor(readonly tasks: readonly Signature[]) {
    super();
  }
  protected signatures(): Signature[] {
    return [...this.tasks];
  }
  plan(options: CanvasOptions, now: Date): CanvasPlan {
    const problems: string[] = [];
    const dueAt = dueTime(options, now, 'chain', problems);
    if (this.tasks.length === 0) problems.push('a chain needs at least one signature');
    const [first, ...rest] = this.tasks.map((s, i) => checkedSignature(s, `chain step ${i}`, problems));
    const frozenRest: Signature[] = [];
    rest.forEach((s, i) => {
      if (!s) return;
      const frozen = freeze(s);
      checkDepth(frozen, `chain step ${i + 1}`, 3, problems); // an item of the first step's `chain` list
      frozenRest.push(frozen);
    });
    let job: Job | undefined;
    if (first && dueAt !== undefined) job = collect(problems, () => jobOf(first, 'chain step 0', dueAt, now));
    if (job && frozenRest.length) job.chain = [...frozenRest].reverse(); // the worker pops the last element next
    if (problems.length || !job || dueAt === undefined) throw new ValidationError(problems);
    const taskIds = [job.id, ...frozenRest.map(taskIdOf)];
    return { jobs: [job], dueAt, taskIds, resultId: taskIds[taskIds.length - 1], groupId: undefined, chordSize: undefined };
  }
}

export class Group extends Canvas {
  readonly kind = 'group';
  constructor(readonly tasks: readonly Signature[]) {
    super();
  }
  protected signatures(): Signature[] {
    return [...this.tasks];
  }
  plan(options: CanvasOptions, now: Date, chordBody?: Signature): CanvasPlan {
    const problems: string[] = [];
    const what = chordBody ? 'chord' : 'group';
    const dueAt = dueTime(options, now, what, problems);
    if (this.tasks.length === 0) problems.push(`a ${what} needs at least one ${chordBody ? 'header ' : ''}signature`);
    const groupId = randomUUID();
    const jobs: Job[] = [];
    this.tasks.forEach((s, i) => {
      const where = chordBody ? `chord header task ${i}` : `group member ${i}`;
      const sig = checkedSignature(s, where, problems);
      if (!sig || dueAt === undefined) return;
      const job = collect(problems, () => jobOf(sig, where, dueAt, now));
      if (!job) return;
      job.groupId = groupId;
      if (chordBody) {
        // as Celery's chord: each header task knows its place and the body to run after all
        job.groupIndex = i;
        job.chord = chordBody;
      }
      jobs.push(job);
    });
    if (problems.length || dueAt === undefined) throw new ValidationError(problems);
    const taskIds = jobs.map((j) => j.id);
    if (chordBody) taskIds.push(taskIdOf(chordBody));
    return { jobs, dueAt, taskIds, resultId: chordBody ? taskIdOf(chordBody) : undefined, groupId, chordSize: chordBody ? jobs.length : undefined };
  }
}

export class Chord extends Canvas {
  readonly kind = 'chord';
  readonly header: Group;
  constructor(
    header: Group | readonly Signature[],
    readonly body: Signature,
  ) {
    super();
    this.header = header instanceof Group ? header : new Group(header);
  }
  protected signatures(): Signature[] {
    return [...this.header.tasks, this.body];
  }
  plan(options: CanvasOptions, now: Date): CanvasPlan {
    const problems: string[] = [];
    const body = checkedSignature(this.body, 'chord body', problems);
    if (body) checkDepth(body, 'chord body', 2, problems);
    if (problems.length || !body) throw new ValidationError(problems);
    return this.header.plan(options, now, freeze(body));
  }
}

/** `chain(a, b, c)`: b runs with a's result in front of its args (unless immutable), then c. */
export function chain(...tasks: Signature[]): Chain {
  return new Chain(tasks);
}

/** `group(a, b)` or `group([a, b])`: run in parallel. */
export function group(...tasks: Array<Signature | Signature[]>): Group {
  return new Group(tasks.flat());
}

/** `chord([a, b], body)`: body runs once, with the list of the header's results, after all of it. Needs Celery's Redis result backend. */
export function chord(header: Group | readonly Signature[], body: Signature): Chord {
  return new Chord(header, body);
}

function dueTime(options: CanvasOptions, now: Date, what: string, problems: string[]): number | undefined {
  if (options === null || typeof options !== 'object') {
    problems.push(`${what}.applyAsync needs options with eta or countdown`);
    return undefined;
  }
  for (const key of Object.keys(options)) {
    if (key !== 'eta' && key !== 'countdown' && key !== 'tags')
      problems.push(
        `unknown ${what} option ${JSON.stringify(key)}; a ${what} takes eta or countdown (and tags), and each signature its own options (task.s(args, kwargs, { queue, ... }))`,
      );
  }
  if ((options.eta === undefined || options.eta === null) && options.countdown === undefined) {
    problems.push(`${what}.applyAsync needs eta or countdown: this package schedules canvas for later (send it now with Celery itself)`);
    return undefined;
  }
  // resolveTaskCall's own rules for eta and countdown (offsets, range, both given)
  const r = collect(problems, () =>
    resolveTaskCall(
      'canvas',
      [],
      {},
      { ...(options.eta !== undefined && { eta: options.eta }), ...(options.countdown !== undefined && { countdown: options.countdown }) },
      now,
    ),
  );
  return r?.dueAt;
}

/** The signature, if it is one we can store (a task, not a nested canvas); else a problem. */
function checkedSignature(sig: unknown, where: string, problems: string[]): Signature | undefined {
  if (sig instanceof Canvas) {
    problems.push(`${where} is a ${sig.kind}; canvas nested in canvas is not supported yet: give task signatures`);
    return undefined;
  }
  const s = sig as Partial<Signature> | null;
  if (!s || typeof s !== 'object' || typeof s.task !== 'string' || s.task === '') {
    problems.push(`${where} must be a signature; build one with app.task("proj.tasks.name").s([...])`);
    return undefined;
  }
  if (s.subtask_type !== null && s.subtask_type !== undefined) {
    problems.push(`${where} is a ${s.subtask_type} signature; canvas nested in canvas is not supported yet`);
    return undefined;
  }
  if (s.args !== undefined && !Array.isArray(s.args)) problems.push(`${where}.args must be an array`);
  if (s.kwargs !== undefined && (s.kwargs === null || typeof s.kwargs !== 'object' || Array.isArray(s.kwargs)))
    problems.push(`${where}.kwargs must be an object`);
  if (s.options !== undefined && (s.options === null || typeof s.options !== 'object' || Array.isArray(s.options)))
    problems.push(`${where}.options must be an object`);
  return { task: s.task, args: s.args ?? [], kwargs: s.kwargs ?? {}, options: s.options ?? {}, subtask_type: null, immutable: s.immutable ?? false };
}

/** A copy with a task id chosen now (Celery's `freeze`), so its result can be looked up before it runs. */
function freeze(sig: Signature): Signature {
  return { ...sig, options: { ...sig.options, task_id: (sig.options.task_id as string | undefined) ?? randomUUID() } };
}

function taskIdOf(sig: Signature): string {
  return sig.options.task_id as string;
}

/** A stored step's own options: each `apply_async` keyword a signature can carry -> its `TaskOptions` name. */
const STEP_OPTION_NAMES: ReadonlyMap<string, keyof TaskOptions> = new Map<string, keyof TaskOptions>([
  ...Object.entries(SIGNATURE_OPTION_KEYWORDS).map(([name, keyword]) => [keyword, name as keyof TaskOptions] as const),
  ['link', 'link'],
  ['link_error', 'linkError'],
]);

/** The stored job that runs `sig` (a chain's first step, a group member, a chord header task) at `dueAt`. */
function jobOf(sig: Signature, where: string, dueAt: number, now: Date): Job {
  const o = sig.options;
  const problems: string[] = [];
  for (const key of ['eta', 'countdown']) {
    if (o[key] !== undefined) problems.push(`${where} has its own ${key}; when it runs is the ${where.split(' ')[0]}'s eta or countdown`);
  }
  const options: Record<string, unknown> = { eta: new Date(dueAt * 1000) };
  for (const [key, value] of Object.entries(o)) {
    const name = STEP_OPTION_NAMES.get(key);
    if (name === undefined) problems.push(`${where} has the option ${JSON.stringify(key)}, which a stored task cannot take`);
    else if (name !== 'eta' && name !== 'countdown' && value !== undefined) options[name] = value;
  }
  if (problems.length) throw new ValidationError(problems);
  try {
    // resolveTaskCall checks every value's type and range, as for a task
    return resolveTaskCall(sig.task, sig.args, sig.kwargs, options as TaskOptions, now).job;
  } catch (err) {
    if (err instanceof ValidationError) throw new ValidationError(err.problems.map((p) => `${where}: ${p}`));
    throw err;
  }
}

/** A signature (or list) stored `levels` deep in the entry must leave a Python worker depth to decode. */
function checkDepth(value: unknown, what: string, levels: number, problems: string[]): void {
  checkJsonValue(value, what, problems, MAX_JSON_DEPTH - levels);
}
