/**
 * The whole gateway seen from one worker (`workers = N`): the admin console and the metrics listener run in whichever
 * worker accepted the connection, so what they show and what they do goes through the primary to every worker.
 *
 *   worker (asker) --ask--> primary --query--> every worker (the asker too) --answer--> primary --gathered--> asker
 *
 * The primary waits at most GATHER_TIMEOUT_MS for the answers and reports the workers that did not answer as missing:
 * a hung or dying worker never hangs the console or a scrape. prom-client's AggregatorRegistry is not used for the
 * transport: its request starts in the primary (which has no listener here) and fails as a whole when one worker is
 * late; its static aggregate() is used to merge the metrics (./admin/aggregate.ts).
 */
import type { Cell } from '../protocol/rows.js';
import type { StatsSnapshot } from './admin/runtime-view.js';
import type { WouldRefuseEntry } from './report-policy.js';

/** How long the primary waits for the workers' answers. */
export const GATHER_TIMEOUT_MS = 1000;
/** How long a worker waits for the primary's reply before answering alone (the primary's wait plus a margin). */
export const ASK_TIMEOUT_MS = GATHER_TIMEOUT_MS + 500;

/** What one worker is asked for (or asked to do). */
export type WorkerQuery =
  | { readonly k: 'rows'; readonly table: string }
  | { readonly k: 'stats' }
  | { readonly k: 'would_refuse' }
  | { readonly k: 'metrics' }
  | { readonly k: 'info' }
  | { readonly k: 'kill'; readonly id: number }
  | { readonly k: 'set'; readonly key: string; readonly value: string };

/** A worker's answer, JSON-safe (IPC serializes as JSON: dates travel as ISO strings). */
export type WorkerValue =
  | Cell[][]
  | SerializedStats
  | SerializedWouldRefuse[]
  | unknown[] // prom-client's getMetricsAsJSON()
  | WorkerSelf
  | boolean
  | null;

export type SerializedStats = Omit<StatsSnapshot, 'started_at'> & { readonly started_at: string };
export type SerializedWouldRefuse = Omit<WouldRefuseEntry, 'at'> & { readonly at: string };

/** What a worker says about itself for SHOW WORKERS. */
export interface WorkerSelf {
  readonly pid: number;
  readonly clients: number;
  readonly active_sessions: number;
}

/** What the primary knows of each worker slot, whether or not it answered. */
export interface WorkerSlot {
  readonly worker: number;
  /** undefined while no process holds the slot (between a crash and the replacement's fork). */
  readonly pid: number | undefined;
  /** up: listening; starting: forked, not yet listening. */
  readonly state: 'up' | 'starting';
  readonly started_at: string;
  /** Times this slot's process was replaced after exiting. */
  readonly restarts: number;
}

export interface Gathered<T = WorkerValue> {
  readonly answers: readonly { readonly worker: number; readonly value: T }[];
  /** Worker slots asked (or expected) that did not answer in time. */
  readonly missing: readonly number[];
  readonly slots: readonly WorkerSlot[];
}

/** Messages of this protocol (alongside workers.ts's reload/cancel/stop). */
export type AskMessage = { readonly t: 'ask'; readonly req: number; readonly q: WorkerQuery; readonly only?: number };
export type ReloadAllMessage = { readonly t: 'reload-all'; readonly req: number };
export type QueryMessage = { readonly t: 'query'; readonly req: number; readonly q: WorkerQuery };
export type AnswerMessage = { readonly t: 'answer'; readonly req: number; readonly value: WorkerValue };
export type GatheredMessage = { readonly t: 'gathered'; readonly req: number } & Gathered;
export type ReloadedAllMessage = {
  readonly t: 'reloaded-all';
  readonly req: number;
  readonly ok: boolean;
  readonly error?: string;
};

/** The worker's side: ask the primary, get every worker's answer (bounded). */
export class WorkerLink {
  #req = 0;
  readonly #pending = new Map<number, (m: GatheredMessage | ReloadedAllMessage | undefined) => void>();

  constructor(
    readonly worker: number,
    readonly count: number,
    private readonly send: (m: AskMessage | ReloadAllMessage) => boolean,
    /** Answer a query from this worker's own state (the fallback when the primary does not reply). */
    private readonly local: (q: WorkerQuery) => Promise<WorkerValue>,
  ) {}

  /** A reply from the primary. */
  settle(m: GatheredMessage | ReloadedAllMessage): void {
    const done = this.#pending.get(m.req);
    if (done) done(m);
  }

  #request<M extends GatheredMessage | ReloadedAllMessage>(
    build: (req: number) => AskMessage | ReloadAllMessage,
    timeoutMs: number,
  ): Promise<M | undefined> {
    const req = ++this.#req;
    return new Promise((resolve) => {
      const t = setTimeout(() => finish(undefined), timeoutMs);
      const finish = (m: GatheredMessage | ReloadedAllMessage | undefined) => {
        clearTimeout(t);
        this.#pending.delete(req);
        resolve(m as M | undefined);
      };
      this.#pending.set(req, finish);
      let sent = false;
      try {
        sent = this.send(build(req));
      } catch {
        sent = false;
      }
      if (!sent) finish(undefined);
    });
  }

  /** Every worker's answer (or only worker `only`'s). Never rejects, never waits past ASK_TIMEOUT_MS. */
  async ask<T extends WorkerValue>(q: WorkerQuery, only?: number): Promise<Gathered<T>> {
    const m = await this.#request<GatheredMessage>(
      (req) => ({ t: 'ask', req, q, ...(only === undefined ? {} : { only }) }),
      ASK_TIMEOUT_MS,
    );
    if (m) return { answers: m.answers as Gathered<T>['answers'], missing: m.missing, slots: m.slots };
    // The primary did not reply: this worker's own answer, every other worker missing.
    const others = Array.from({ length: this.count }, (_, i) => i + 1).filter((w) => w !== this.worker);
    const mine = only === undefined || only === this.worker;
    return {
      answers: mine ? [{ worker: this.worker, value: (await this.local(q)) as T }] : [],
      missing: only === undefined ? others : mine ? [] : [only],
      slots: [],
    };
  }

  /** Reload every worker, all-or-nothing per worker (the primary's WorkerPool.reload). */
  async reloadAll(): Promise<{ ok: true } | { ok: false; error: string }> {
    // A reload re-reads files in every worker: allow it the primary's own 30 s bound.
    const m = await this.#request<ReloadedAllMessage>((req) => ({ t: 'reload-all', req }), 31_000);
    if (!m) return { ok: false, error: 'the primary process did not answer the reload' };
    return m.ok ? { ok: true } : { ok: false, error: m.error ?? 'reload failed' };
  }
}

/**
 * The primary's side of one ask: send the query to the targets, collect answers until all came or the time is up.
 * `targets` are the slots that have a listening worker; `expected` every slot that should answer.
 */
export class Gathering {
  readonly #answers = new Map<number, WorkerValue>();
  readonly #done: Promise<void>;
  #resolve: () => void = () => undefined;

  constructor(
    readonly targets: readonly number[],
    readonly expected: readonly number[],
  ) {
    this.#done = new Promise<void>((r) => {
      this.#resolve = r;
    });
    if (targets.length === 0) this.#resolve();
  }

  answer(worker: number, value: WorkerValue): void {
    if (!this.targets.includes(worker)) return;
    this.#answers.set(worker, value);
    if (this.#answers.size === this.targets.length) this.#resolve();
  }

  async result(timeoutMs = GATHER_TIMEOUT_MS): Promise<Pick<Gathered, 'answers' | 'missing'>> {
    let t: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => {
      t = setTimeout(r, timeoutMs);
    });
    await Promise.race([this.#done, late]);
    clearTimeout(t);
    const answers = [...this.#answers.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([worker, value]) => ({ worker, value }));
    return { answers, missing: this.expected.filter((w) => !this.#answers.has(w)) };
  }
}
