/**
 * A store in this process's memory: for tests and for trying the library out. It keeps the
 * whole contract (see src/stores/store.ts), including leases and wake-ups, but nothing survives the
 * process and other processes cannot see it. What every store does the same (the checks, the
 * closed state, lease arithmetic, paging) is `StoreBase`'s (../base.ts); this file is the rest.
 */
import { DuplicateJobError, JobKeyTakenError } from '../../util/errors.js';
import type { NewJob } from '../../job/types.js';
import { objectName } from '../../util/object-name.js';
import { MAX_TAGS_PER_JOB } from '../../job/tags.js';
import { StoreBase, jobMatches, retagged, type ClaimQuery, type Lease, type ListRange, type ListedJob, type Position } from '../base.js';
import {
  compareDue,
  deadLetterOf,
  type Attempts,
  type Burial,
  type ClaimedJob,
  type DeadLetter,
  type JobKeyMode,
  type JobMove,
  type KeyedAddResult,
  type RetagResult,
  type Retry,
  type ReviveOutcome,
  type StoreCounts,
  type StoredJob,
} from '../store.js';

interface Leased {
  deadline: number;
  entry: string | null;
}

/** What several handles of one memory store share. */
class MemoryData {
  readonly scheduled = new Map<string, { dueAt: number; entry: string }>();
  readonly inFlight = new Map<string, Leased>();
  readonly watchers = new Set<(dueAt: number) => void>();
  readonly dead = new Map<string, DeadLetter>();
  /** failed attempts, by id, of scheduled and in-flight jobs */
  readonly attempts = new Map<string, Attempts>();
  /** deduplication key -> id of the scheduled job holding it, and back */
  readonly keyHolder = new Map<string, string>();
  readonly keyOf = new Map<string, string>();
  /** the tags of live (scheduled or in-flight) jobs, by id; a dead letter keeps its own */
  readonly tags = new Map<string, readonly string[]>();

  /** Drops the key `id` holds, if any (it was removed or claimed). */
  dropKeyOf(id: string): void {
    const key = this.keyOf.get(id);
    if (key === undefined) return;
    this.keyOf.delete(id);
    if (this.keyHolder.get(key) === id) this.keyHolder.delete(key);
  }
}

export class MemoryStore extends StoreBase {
  readonly description = 'memory://';
  readonly #data: MemoryData;
  readonly #scheduled: Map<string, { dueAt: number; entry: string }>;
  readonly #inFlight: Map<string, Leased>;
  readonly #watchers: Set<(dueAt: number) => void>;
  readonly #mine = new Set<(dueAt: number) => void>();

  constructor(data = new MemoryData()) {
    super();
    this.#data = data;
    this.#scheduled = data.scheduled;
    this.#inFlight = data.inFlight;
    this.#watchers = data.watchers;
  }

  /** Another handle on the same jobs (closing one leaves the other open), as a second process would have. */
  handle(): MemoryStore {
    return new MemoryStore(this.#data);
  }

  /** scheduled jobs in due order */
  #ordered(): StoredJob[] {
    return [...this.#scheduled].map(([id, j]) => ({ id, dueAt: j.dueAt, entry: j.entry, state: 'scheduled' as const })).sort(compareDue);
  }

  protected async doAdd(jobs: readonly NewJob[], duplicates: 'reject' | 'skip'): Promise<number> {
    return this.#addNow(jobs, duplicates);
  }

  /** `add`, synchronously: nothing else runs in between. */
  #addNow(jobs: readonly NewJob[], duplicates: 'reject' | 'skip' = 'reject'): number {
    const taken = (id: string) => this.#scheduled.has(id) || this.#inFlight.has(id);
    const fresh: NewJob[] = [];
    const seen = new Set<string>();
    for (const job of jobs) {
      if (taken(job.id) || seen.has(job.id)) {
        if (duplicates === 'skip') continue;
        throw new DuplicateJobError(job.id);
      }
      seen.add(job.id);
      fresh.push(job);
    }
    if (fresh.length === 0) return 0;
    const first = this.#ordered()[0]?.dueAt;
    const earliest = Math.min(...fresh.map((j) => j.dueAt));
    for (const job of fresh) {
      this.#scheduled.set(job.id, { dueAt: job.dueAt, entry: job.entry });
      this.#data.attempts.delete(job.id);
      if (job.tags?.length) this.#data.tags.set(job.id, [...job.tags]);
      else this.#data.tags.delete(job.id);
    }
    if (first === undefined || earliest < first) for (const w of this.#watchers) w(earliest);
    return fresh.length;
  }

  protected async doAddKeyed(job: NewJob, key: string, mode: JobKeyMode): Promise<KeyedAddResult> {
    const data = this.#data;
    const holder = data.keyHolder.get(key);
    if (holder === undefined) {
      this.#addNow([job]);
      data.keyHolder.set(key, job.id);
      data.keyOf.set(job.id, key);
      return { id: job.id, outcome: 'added' };
    }
    if (mode === 'keep') return { id: holder, outcome: 'kept' };
    if (mode !== 'replace') throw new JobKeyTakenError(key, holder);
    if (job.id !== holder && (this.#scheduled.has(job.id) || this.#inFlight.has(job.id))) throw new DuplicateJobError(job.id);
    // one synchronous step: nothing else runs between the removal and the add
    this.#scheduled.delete(holder);
    data.dropKeyOf(holder);
    data.attempts.delete(holder);
    data.tags.delete(holder);
    this.#addNow([job]);
    data.keyHolder.set(key, job.id);
    data.keyOf.set(job.id, key);
    return { id: job.id, outcome: 'replaced', replacedId: holder };
  }

  protected async doRemove(id: string): Promise<boolean> {
    if (!this.#scheduled.delete(id)) return false;
    this.#data.dropKeyOf(id);
    this.#data.attempts.delete(id);
    this.#data.tags.delete(id);
    return true;
  }

  protected async doRemoveMany(ids: readonly string[]): Promise<string[]> {
    const gone: string[] = [];
    for (const id of ids) if (await this.doRemove(id)) gone.push(id);
    return gone;
  }

  protected async doReschedule(id: string, dueAt: number, entry: string | undefined): Promise<boolean> {
    const job = this.#scheduled.get(id);
    if (!job) return false;
    const first = this.#ordered()[0]?.dueAt;
    this.#scheduled.set(id, { dueAt, entry: entry ?? job.entry });
    if (first === undefined || dueAt < first) for (const w of this.#watchers) w(dueAt);
    return true;
  }

  protected async doRescheduleMany(moves: readonly JobMove[]): Promise<string[]> {
    const moved: string[] = [];
    for (const m of moves) if (await this.doReschedule(m.id, m.dueAt, undefined)) moved.push(m.id);
    return moved;
  }

  protected async doRetagMany(ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<RetagResult> {
    const out: RetagResult = { changed: [], overLimit: [] };
    for (const id of ids) {
      if (!this.#scheduled.has(id)) continue;
      const tags = retagged(this.#data.tags.get(id), add, remove);
      if (tags.length > MAX_TAGS_PER_JOB) {
        out.overLimit.push(id);
        continue;
      }
      if (tags.length) this.#data.tags.set(id, tags);
      else this.#data.tags.delete(id);
      out.changed.push(id);
    }
    return out;
  }

  protected async doClaim(o: ClaimQuery, { token, deadline }: Lease): Promise<ClaimedJob[]> {
    const out: ClaimedJob[] = [];
    const expired = [...this.#inFlight]
      .filter(([, l]) => l.deadline <= o.now)
      .map(([id, l]) => ({ id, dueAt: l.deadline, entry: l.entry }))
      .sort(compareDue);
    const withAttempts = (c: ClaimedJob): ClaimedJob => {
      const a = this.#data.attempts.get(c.id);
      return a ? { ...c, attempts: { ...a } } : c;
    };
    for (const e of expired.slice(0, o.limit)) {
      this.#inFlight.set(e.id, { deadline, entry: e.entry });
      out.push(withAttempts({ ...e, token }));
    }
    for (const j of this.#ordered()) {
      if (out.length >= o.limit || j.dueAt > o.until) break;
      this.#scheduled.delete(j.id);
      this.#data.dropKeyOf(j.id); // a job in flight holds no key
      this.#inFlight.set(j.id, { deadline, entry: j.entry });
      out.push(withAttempts({ id: j.id, dueAt: j.dueAt, entry: j.entry, token }));
    }
    return out;
  }

  #held(c: ClaimedJob): Leased | undefined {
    const l = this.#inFlight.get(c.id);
    return l && l.deadline === Number(c.token) ? l : undefined;
  }

  protected async doRenew(claims: readonly ClaimedJob[], lease: Lease): Promise<readonly ClaimedJob[]> {
    return claims.filter((c) => {
      const l = this.#held(c);
      if (l) l.deadline = lease.deadline;
      return l !== undefined;
    });
  }

  protected async doStillHeld(claims: readonly ClaimedJob[]): Promise<readonly ClaimedJob[]> {
    return claims.filter((c) => this.#held(c) !== undefined);
  }

  protected async doAcknowledge(claims: readonly ClaimedJob[]): Promise<void> {
    for (const c of claims) {
      if (!this.#held(c)) continue;
      this.#inFlight.delete(c.id);
      this.#data.attempts.delete(c.id);
      this.#data.tags.delete(c.id);
    }
  }

  protected async doRelease(claims: readonly ClaimedJob[]): Promise<void> {
    for (const c of claims) {
      const l = this.#held(c);
      if (!l) continue;
      this.#inFlight.delete(c.id);
      if (l.entry !== null) this.#scheduled.set(c.id, { dueAt: c.dueAt, entry: l.entry });
    }
  }

  protected async doRetryLater(retries: readonly Retry[]): Promise<void> {
    for (const r of retries) {
      const l = this.#held(r.claim);
      if (!l) continue;
      this.#inFlight.delete(r.claim.id);
      this.#data.attempts.set(r.claim.id, { ...r.attempts });
      if (l.entry !== null) this.#scheduled.set(r.claim.id, { dueAt: r.retryAt, entry: l.entry });
    }
  }

  protected async doBury(burials: readonly Burial[]): Promise<void> {
    for (const b of burials) {
      const l = this.#held(b.claim);
      if (!l) continue;
      this.#inFlight.delete(b.claim.id);
      this.#data.attempts.delete(b.claim.id);
      this.#data.dead.set(b.claim.id, deadLetterOf(b, l.entry, this.#data.tags.get(b.claim.id)));
      this.#data.tags.delete(b.claim.id);
    }
  }

  protected async doDeadLetters(after: Position | undefined, read: number): Promise<readonly DeadLetter[]> {
    const byDeath = (d: DeadLetter) => ({ dueAt: d.diedAt, id: d.id });
    return [...this.#data.dead.values()]
      .sort((a, b) => compareDue(byDeath(a), byDeath(b)))
      .filter((d) => after === undefined || compareDue(byDeath(d), after) > 0)
      .slice(0, read)
      .map((d) => ({ ...d }));
  }

  protected async doGetDead(id: string): Promise<DeadLetter | undefined> {
    const d = this.#data.dead.get(id);
    return d && { ...d };
  }

  protected async doReviveDead(ids: readonly string[], dueAt: number): Promise<ReviveOutcome[]> {
    return ids.map((id): ReviveOutcome => {
      const d = this.#data.dead.get(id);
      if (!d) return 'not_dead';
      if (d.entry === null) return 'no_entry';
      if (this.#scheduled.has(id) || this.#inFlight.has(id)) return 'id_taken';
      this.#data.dead.delete(id);
      this.#addNow([{ id, dueAt, entry: d.entry, ...(d.tags && { tags: d.tags }) }]);
      return 'scheduled';
    });
  }

  protected async doPurgeDead(ids: readonly string[] | 'all'): Promise<number> {
    if (ids === 'all') {
      const n = this.#data.dead.size;
      this.#data.dead.clear();
      return n;
    }
    let n = 0;
    for (const id of ids) if (this.#data.dead.delete(id)) n++;
    return n;
  }

  protected async doGet(id: string): Promise<StoredJob | undefined> {
    const s = this.#scheduled.get(id);
    if (s) {
      const key = this.#data.keyOf.get(id);
      return { id, dueAt: s.dueAt, entry: s.entry, state: 'scheduled', ...(key !== undefined && { key }) };
    }
    const l = this.#inFlight.get(id);
    if (l && l.entry !== null) return { id, dueAt: l.deadline, entry: l.entry, state: 'in_flight' };
    return undefined;
  }

  protected async doTagsOf(ids: readonly string[]): Promise<ReadonlyMap<string, readonly string[]>> {
    const out = new Map<string, readonly string[]>();
    for (const id of ids) {
      const tags = this.#data.tags.get(id);
      if (tags) out.set(id, [...tags]);
    }
    return out;
  }

  protected async doList(r: ListRange, read: number): Promise<readonly ListedJob[]> {
    const d = this.#data;
    return this.#ordered()
      .filter((j) => jobMatches(r, { ...j, tags: d.tags.get(j.id), key: d.keyOf.get(j.id) }))
      .slice(0, read);
  }

  protected async doCount(): Promise<StoreCounts> {
    return { scheduled: this.#scheduled.size, inFlight: this.#inFlight.size, dead: this.#data.dead.size };
  }

  protected async doNextDueAt(): Promise<number | undefined> {
    const times = [...this.#scheduled.values()].map((j) => j.dueAt).concat([...this.#inFlight.values()].map((l) => l.deadline));
    return times.length ? Math.min(...times) : undefined;
  }

  async watch(onSooner: (dueAt: number) => void): Promise<() => Promise<void>> {
    this.assertOpen();
    this.#watchers.add(onSooner);
    this.#mine.add(onSooner);
    return async () => {
      this.#watchers.delete(onSooner);
      this.#mine.delete(onSooner);
    };
  }

  /** `memory:<n>`: the same for every handle on these jobs (see `handle()`), different for any other store. */
  protected async doIdentity(): Promise<string> {
    return `memory:${objectName(this.#data)}`;
  }

  protected async doClose(): Promise<void> {
    for (const w of this.#mine) this.#watchers.delete(w);
    this.#mine.clear();
  }
}
