/**
 * `workers = N | auto`: the gateway on every core. The primary process forks N workers (Node's cluster module: they
 * share the listening sockets, and the primary hands each new connection to the next worker in turn); each worker
 * runs a whole Gateway. The primary only coordinates:
 * - reload fans out to every worker and succeeds only if every worker's does (the all-or-nothing rule per worker);
 * - a CancelRequest that lands on a worker which does not own the session is passed to the others through the
 *   primary, so cancels reach the session whichever worker they land on;
 * - a worker that dies is replaced; shutdown stops them all.
 * Connection logs are written by the workers themselves, each line with its `worker` id.
 */
import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { cpus } from 'node:os';
import type { GatewayConfig } from '../config/load.js';
import type { CheckReport, Gateway } from './gateway.js';

/** Messages between the primary and its workers (IPC, JSON). */
type ToWorker =
  | { readonly t: 'reload'; readonly seq: number }
  | { readonly t: 'cancel'; readonly pid: number; readonly key: string }
  | { readonly t: 'stop' };
type FromWorker =
  | { readonly t: 'ready'; readonly addresses: { host: string; port: number }[]; readonly warnings: string[] }
  | { readonly t: 'reloaded'; readonly seq: number; readonly ok: boolean; readonly detail: string[] | string }
  | { readonly t: 'cancel'; readonly pid: number; readonly key: string };

/** `workers` as written → a count ('auto': one per CPU). */
export function workerCount(value: string): number {
  if (value === 'auto') return Math.max(1, cpus().length);
  return Number(value);
}

export const isWorker = (): boolean => cluster.isWorker && process.env.PGTLS_WORKER_ID !== undefined;
export const workerId = (): number => Number(process.env.PGTLS_WORKER_ID ?? 0);

/** In a worker: connect the Gateway to the primary's messages. */
export function serveAsWorker(gw: Gateway): void {
  const send = (m: FromWorker) => process.send?.(m);
  gw.forwardCancel = (pid, key) => send({ t: 'cancel', pid, key: key.toString('hex') });
  process.on('message', (m: ToWorker) => {
    if (m.t === 'reload') {
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
      const w = cluster.fork({ ...this.env, PGTLS_WORKER_ID: String(id) });
      this.#workers.set(id, w);
      let up = false;
      w.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          up = true;
          this.#ready ??= { addresses: m.addresses, warnings: m.warnings };
          resolve();
        } else if (m.t === 'cancel') {
          // Every other worker checks its own sessions; the owner forwards the cancel to the backend.
          for (const [other, ow] of this.#workers) if (other !== id) ow.send({ t: 'cancel', pid: m.pid, key: m.key });
        } else if (m.t === 'reloaded') {
          this.emit(`reloaded:${m.seq}`, id, m);
        }
      });
      w.on('exit', (code, signal) => {
        this.#workers.delete(id);
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
  async reload(): Promise<ReloadOutcome> {
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
    this.emit('reload', { ...outcome, trigger: 'signal' });
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
