/**
 * `workers = N | auto`: the gateway on every core. The primary process forks N workers (Node's cluster module: they
 * share the listening sockets, and the primary hands each new connection to the next worker in turn); each worker
 * runs a whole Gateway. The primary only coordinates:
 * - reload fans out to every worker and succeeds only if every worker's does (the all-or-nothing rule per worker);
 * - a CancelRequest that lands on a worker which does not own the session is passed to the others through the
 *   primary, so cancels reach the session whichever worker they land on;
 * - the admin console and the metrics listener, which run in whichever worker accepted the connection, reach every
 *   worker through the primary (./worker-ipc.ts), each wait bounded;
 * - connection ids interleave (worker k of N numbers k, k+N, …), so an id names one session gateway-wide;
 * - a worker that dies is replaced (runtime SETs replayed to it); shutdown stops them all.
 * Connection logs are written by the workers themselves, each line with its `worker` id.
 */
import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { cpus } from 'node:os';
import type { GatewayConfig } from '../config/load.js';
import type { CheckReport, Gateway } from './gateway.js';
import { answerQuery } from './worker-answers.js';
import {
  type AnswerMessage,
  type AskMessage,
  type GatheredMessage,
  Gathering,
  type QueryMessage,
  type ReloadAllMessage,
  type ReloadedAllMessage,
  WorkerLink,
  type WorkerSlot,
} from './worker-ipc.js';

/** Messages between the primary and its workers (IPC, JSON). */
type ToWorker =
  | { readonly t: 'reload'; readonly seq: number }
  | { readonly t: 'cancel'; readonly pid: number; readonly key: string }
  | { readonly t: 'stop' }
  | QueryMessage
  | GatheredMessage
  | ReloadedAllMessage;
type FromWorker =
  | { readonly t: 'ready'; readonly addresses: { host: string; port: number }[]; readonly warnings: string[] }
  | { readonly t: 'reloaded'; readonly seq: number; readonly ok: boolean; readonly detail: string[] | string }
  | { readonly t: 'cancel'; readonly pid: number; readonly key: string }
  | AskMessage
  | ReloadAllMessage
  | AnswerMessage
  | { readonly t: 'sets-cleared' };

/** `workers` as written → a count ('auto': one per CPU). */
export function workerCount(value: string): number {
  if (value === 'auto') return Math.max(1, cpus().length);
  return Number(value);
}

export const isWorker = (): boolean => cluster.isWorker && process.env.PGTLS_WORKER_ID !== undefined;
export const workerId = (): number => Number(process.env.PGTLS_WORKER_ID ?? 0);
/** How many workers the primary runs (set in each worker's environment). */
export const workerTotal = (): number => Number(process.env.PGTLS_WORKER_COUNT ?? 1);

/** In a worker: connect the Gateway to the primary's messages. */
export function serveAsWorker(gw: Gateway): void {
  const send = (m: FromWorker) => process.send?.(m) ?? false;
  const me = workerId();
  gw.forwardCancel = (pid, key) => send({ t: 'cancel', pid, key: key.toString('hex') });
  const link = new WorkerLink(me, workerTotal(), send, (q) => answerQuery(gw.operator, me, q));
  gw.operator.cluster = link;
  // Any successful reload (the primary's, or this worker's own watch_files one) drops the console's runtime SETs here;
  // the primary then stops replaying them to replacement workers.
  gw.on('reload', (e: { ok: boolean }) => {
    if (e.ok) send({ t: 'sets-cleared' });
  });
  process.on('message', (m: ToWorker) => {
    if (m.t === 'query') {
      void answerQuery(gw.operator, me, m.q).then(
        (value) => send({ t: 'answer', req: m.req, value }),
        () => send({ t: 'answer', req: m.req, value: null }),
      );
    } else if (m.t === 'gathered' || m.t === 'reloaded-all') {
      link.settle(m);
    } else if (m.t === 'reload') {
      void gw.reload().then((r) =>
        send({
          t: 'reloaded',
          seq: m.seq,
          ok: r.ok,
          detail: r.ok ? r.warnings : (r.error as Error).message,
        }),
      );
    } else if (m.t === 'cancel') {
      void gw.cancelFromPeer(m.pid, Buffer.from(m.key, 'hex'));
    } else if (m.t === 'stop') {
      void gw.close().then(() => process.exit(0));
    }
  });
  // The primary owns the signals; a worker ignores the ones a terminal sends to the whole process group.
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
  send({ t: 'ready', addresses: gw.addresses(), warnings: [...gw.report().warnings] });
}

export interface ReloadOutcome {
  readonly ok: boolean;
  readonly warnings?: string[];
  readonly error?: Error;
}

/** In the primary: the workers, presented like one gateway to `pgtls serve`. */
export class WorkerPool extends EventEmitter {
  #workers = new Map<number, Worker>();
  /** Per slot: started, restarts, listening (for SHOW WORKERS and the metrics). */
  #slots = new Map<number, { started: Date; restarts: number; up: boolean }>();
  /** Open gatherings by the primary's request number. */
  #gatherings = new Map<number, Gathering>();
  #gatherSeq = 0;
  /** Runtime SETs from the console since the last reload, replayed to a replacement worker. */
  #runtimeSets = new Map<string, string>();
  #ready: { addresses: { host: string; port: number }[]; warnings: string[] } | undefined;
  #seq = 0;
  #stopping = false;

  private constructor(
    readonly config: GatewayConfig,
    private readonly count: number,
    private readonly env: Record<string, string>,
  ) {
    super();
  }

  /** Fork `count` workers running `pgtls serve` with the same arguments; resolves once all listen. */
  static async start(config: GatewayConfig, count: number, env: Record<string, string>): Promise<WorkerPool> {
    const pool = new WorkerPool(config, count, env);
    await Promise.all(Array.from({ length: count }, (_, i) => pool.#fork(i + 1)));
    return pool;
  }

  #fork(id: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const w = cluster.fork({ ...this.env, PGTLS_WORKER_ID: String(id), PGTLS_WORKER_COUNT: String(this.count) });
      this.#workers.set(id, w);
      const prev = this.#slots.get(id);
      this.#slots.set(id, { started: new Date(), restarts: prev ? prev.restarts + 1 : 0, up: false });
      let up = false;
      w.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          up = true;
          const slot = this.#slots.get(id);
          if (slot) slot.up = true;
          this.#ready ??= { addresses: m.addresses, warnings: m.warnings };
          // A replacement gets the console's SETs still in force (the others have them already).
          for (const [key, value] of this.#runtimeSets) {
            w.send({ t: 'query', req: 0, q: { k: 'set', key, value } } satisfies QueryMessage);
          }
          resolve();
        } else if (m.t === 'ask') {
          void this.#gather(m).then((g) => {
            if (w.isConnected()) w.send(g);
          });
        } else if (m.t === 'answer') {
          this.#gatherings.get(m.req)?.answer(id, m.value);
        } else if (m.t === 'sets-cleared') {
          this.#runtimeSets.clear();
        } else if (m.t === 'reload-all') {
          void this.reload('admin').then((r) => {
            const out: ReloadedAllMessage = r.ok
              ? { t: 'reloaded-all', req: m.req, ok: true }
              : { t: 'reloaded-all', req: m.req, ok: false, error: r.error?.message ?? 'reload failed' };
            if (w.isConnected()) w.send(out);
          });
        } else if (m.t === 'cancel') {
          // Every other worker checks its own sessions; the owner forwards the cancel to the backend.
          for (const [other, ow] of this.#workers) if (other !== id) ow.send({ t: 'cancel', pid: m.pid, key: m.key });
        } else if (m.t === 'reloaded') {
          this.emit(`reloaded:${m.seq}`, id, m);
        }
      });
      w.on('exit', (code, signal) => {
        if (this.#workers.get(id) === w) this.#workers.delete(id);
        const slot = this.#slots.get(id);
        if (slot) slot.up = false;
        if (!up) {
          reject(new Error(`worker ${id} exited before listening (${signal ?? code})`));
          return;
        }
        if (this.#stopping) return;
        this.emit('warning', { msg: `worker ${id} exited (${signal ?? `code ${code}`}); starting a new one` });
        void this.#fork(id).catch((err: Error) => this.emit('warning', { msg: err.message }));
      });
    });
  }

  /** One ask from a worker: fan the query out to the listening workers (or one), wait at most GATHER_TIMEOUT_MS. */
  async #gather(m: AskMessage): Promise<GatheredMessage> {
    const expected = m.only === undefined ? Array.from({ length: this.count }, (_, i) => i + 1) : [m.only];
    const targets = expected.filter((id) => this.#slots.get(id)?.up && this.#workers.get(id)?.isConnected());
    const req = ++this.#gatherSeq;
    const g = new Gathering(targets, expected);
    this.#gatherings.set(req, g);
    if (m.q.k === 'set') this.#runtimeSets.set(m.q.key, m.q.value);
    for (const id of targets) {
      try {
        this.#workers.get(id)?.send({ t: 'query', req, q: m.q } satisfies QueryMessage);
      } catch {
        // the worker is going away: it will be reported missing
      }
    }
    const r = await g.result();
    this.#gatherings.delete(req);
    return { t: 'gathered', req: m.req, ...r, slots: this.slots() };
  }

  /** Every worker slot as the primary sees it. */
  slots(): WorkerSlot[] {
    return [...this.#slots.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([worker, s]) => ({
        worker,
        pid: this.#workers.get(worker)?.process.pid,
        state: s.up ? 'up' : 'starting',
        started_at: s.started.toISOString(),
        restarts: s.restarts,
      }));
  }

  addresses(): { host: string; port: number }[] {
    return this.#ready?.addresses ?? [];
  }

  report(): Pick<CheckReport, 'warnings'> {
    return { warnings: this.#ready?.warnings ?? [] };
  }

  get port(): number {
    return this.addresses()[0]?.port ?? 0;
  }

  get workerCount(): number {
    return this.#workers.size;
  }

  /** Reload every worker; ok only when all of them reloaded. */
  async reload(trigger: 'signal' | 'admin' = 'signal'): Promise<ReloadOutcome> {
    const seq = ++this.#seq;
    const answers = new Map<number, { ok: boolean; detail: string[] | string }>();
    const ids = [...this.#workers.keys()];
    await new Promise<void>((resolve) => {
      const onAnswer = (id: number, m: { ok: boolean; detail: string[] | string }) => {
        answers.set(id, m);
        if (answers.size === ids.length) resolve();
      };
      this.on(`reloaded:${seq}`, onAnswer);
      const t = setTimeout(resolve, 30_000);
      t.unref();
      for (const id of ids) this.#workers.get(id)?.send({ t: 'reload', seq });
    });
    this.removeAllListeners(`reloaded:${seq}`);
    const failed = [...answers.entries()].filter(([, a]) => !a.ok);
    const outcome: ReloadOutcome =
      failed.length === 0 && answers.size === ids.length
        ? { ok: true, warnings: (answers.values().next().value?.detail as string[] | undefined) ?? [] }
        : {
            ok: false,
            error: new Error(
              failed.length > 0
                ? `${failed.length} of ${ids.length} workers kept their previous configuration: ${failed[0]![1].detail as string}`
                : `only ${answers.size} of ${ids.length} workers answered the reload`,
            ),
          };
    if (outcome.ok) this.#runtimeSets.clear();
    this.emit('reload', { ...outcome, trigger });
    return outcome;
  }

  /** Stop every worker (each drains for shutdown_timeout, as a single gateway does). */
  async close(): Promise<void> {
    this.#stopping = true;
    const exits = [...this.#workers.values()].map((w) => new Promise<void>((r) => w.once('exit', () => r())));
    for (const w of this.#workers.values()) w.send({ t: 'stop' });
    await Promise.all(exits);
  }
}
