/**
 * One logged-in backend connection owned by a pool (PgBouncer's server PgSocket): its socket, what the backend told
 * it (BackendKeyData, ParameterStatus), the GUC values known to be in effect, the statements prepared on it by the
 * transaction relay (an LRU of server-side names), and whether it may still be handed out.
 *
 * While it sits idle in a pool it is watched: a backend sends nothing unprompted to an idle session except to end it
 * (FATAL 57P01 "terminating connection due to administrator command", a restart), so any byte, an end or an error
 * marks it broken and it is discarded — never handed out.
 */
import type { Duplex } from 'node:stream';
import { decodeErrorFields } from '../../protocol/error-response.js';
import { MessageReader } from '../../protocol/framing.js';
import {
  BackendType,
  decodeCommandTag,
  decodeParameterStatus,
  encodeParameterStatus,
  encodeQuery,
} from '../../protocol/messages.js';

/** Messages from a backend are bounded like the relay's (1 GiB is PostgreSQL's own limit on a field). */
export const MAX_BACKEND_MESSAGE = 1 << 30;

export interface PoolKey {
  readonly database: string;
  readonly user: string;
}

export interface QueryOutcome {
  /** Fields of the first ErrorResponse, if the query failed. */
  readonly error?: Readonly<Record<string, string>>;
  /** Transaction status of the closing ReadyForQuery. */
  readonly status: string;
}

let nextServerId = 1;

export class ServerConnection {
  readonly id = nextServerId++;
  readonly created = Date.now();
  /** When it last went back to its pool (for server_idle_timeout and server_check_delay). */
  lastUsed = Date.now();
  /** ParameterStatus values the backend reported, by name. */
  readonly params = new Map<string, string>();
  /** The upstream host this server is on (several-host upstreams): where its CancelRequests go. */
  upstreamHost: { readonly host: string; readonly port: number } | undefined;
  /**
   * GUC values known to be in effect on this session (reported ones and the ones the pool SET), by lower-case name.
   * A name absent here has the backend's default: a client value for it is SET before the client's first query.
   */
  readonly vars = new Map<string, string>();
  /** Server-side statement names prepared on this connection, least recently used first (Map insertion order). */
  readonly prepared = new Map<string, true>();
  /** Frames what the backend sends while a pool component reads it (query(), the transaction relay). */
  readonly reader = new MessageReader(MAX_BACKEND_MESSAGE);
  #broken = false;
  #watching = false;
  /** The ParameterStatus messages for `params`, encoded once (a session-mode welcome per client). */
  #encodedParams: Buffer | undefined;
  readonly #onIdleData = () => this.#break();
  readonly #onGone = () => this.#break();

  constructor(
    readonly socket: Duplex,
    readonly key: PoolKey,
    /** BackendKeyData of the session: what a CancelRequest for it must carry. */
    readonly cancelKey: { readonly pid: number; readonly key: Buffer } | undefined,
    /** The GUCs sent in the StartupMessage: the values RESET ALL (DISCARD ALL) returns to. */
    readonly startupVars: ReadonlyMap<string, string>,
  ) {
    socket.on('error', this.#onGone);
    socket.once('close', this.#onGone);
    socket.once('end', this.#onGone);
    for (const [k, v] of startupVars) this.vars.set(k.toLowerCase(), v);
  }

  /** True once the backend connection failed, ended, or sent something while idle: it must not be used again. */
  get broken(): boolean {
    return this.#broken || this.socket.destroyed;
  }

  #break(): void {
    this.#broken = true;
    this.unwatch();
    this.socket.destroy();
  }

  /** Mark it unusable and close it. */
  discard(): void {
    this.#break();
  }

  /** Watch it while it sits in the pool (see the class comment). */
  watch(): void {
    if (this.#watching || this.broken) return;
    this.#watching = true;
    this.socket.on('data', this.#onIdleData);
    this.socket.resume();
  }

  /** Stop watching: a component is about to read the backend itself. */
  unwatch(): void {
    if (!this.#watching) return;
    this.#watching = false;
    this.socket.off('data', this.#onIdleData);
    this.socket.pause();
  }

  /** ParameterStatus for every value the backend reported, as one buffer. */
  encodedParams(): Buffer {
    this.#encodedParams ??= Buffer.concat([...this.params].map(([k, v]) => encodeParameterStatus(k, v)));
    return this.#encodedParams;
  }

  /** Record a ParameterStatus the backend sent (whoever was reading). */
  noteParameterStatus(body: Buffer): { name: string; value: string } | undefined {
    const p = decodeParameterStatus(body);
    if (!p) return undefined;
    this.#encodedParams = undefined;
    this.params.set(p.name, p.value);
    this.vars.set(p.name.toLowerCase(), p.value);
    return p;
  }

  /**
   * After DISCARD ALL / RESET ALL the session is back to its startup values; after DEALLOCATE ALL / DISCARD ALL no
   * statement is prepared. Called with every CommandComplete tag the pool sees.
   */
  noteCommand(tag: string): void {
    if (tag === 'DISCARD ALL' || tag === 'DEALLOCATE ALL') this.prepared.clear();
    if (tag === 'DISCARD ALL' || tag === 'RESET') {
      // Reported GUCs come back as ParameterStatus right after; the others return to the startup values.
      const reported = new Set([...this.params.keys()].map((k) => k.toLowerCase()));
      for (const k of [...this.vars.keys()]) if (!reported.has(k)) this.vars.delete(k);
      for (const [k, v] of this.startupVars) if (!reported.has(k.toLowerCase())) this.vars.set(k.toLowerCase(), v);
    }
  }

  /**
   * Run `sql` with the simple query protocol and read every response up to ReadyForQuery (the reset query, the
   * check query, SETs). Rejects when the backend goes away or does not answer within `timeoutMs`.
   */
  query(sql: string, timeoutMs = 30_000): Promise<QueryOutcome> {
    this.unwatch();
    return new Promise((resolve, reject) => {
      const s = this.socket;
      let error: Record<string, string> | undefined;
      let settled = false;
      const done = (err: Error | undefined, outcome?: QueryOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        s.off('data', onData);
        s.off('close', onClose);
        s.pause();
        if (err) {
          this.#break();
          reject(err);
        } else resolve(outcome!);
      };
      const onData = (d: Buffer) => {
        this.reader.push(d);
        try {
          for (let m = this.reader.next(); m; m = this.reader.next()) {
            if (m.type === BackendType.ErrorResponse) error ??= { ...decodeErrorFields(m.body) };
            else if (m.type === BackendType.ParameterStatus) this.noteParameterStatus(m.body);
            else if (m.type === BackendType.CommandComplete) this.noteCommand(decodeCommandTag(m.body));
            else if (m.type === BackendType.ReadyForQuery) {
              const status = String.fromCharCode(m.body[0] ?? 0x49);
              if (this.reader.buffered > 0) {
                done(new Error('backend sent data after ReadyForQuery'));
                return;
              }
              done(undefined, error ? { error, status } : { status });
              return;
            }
          }
        } catch (e) {
          done(e as Error);
        }
      };
      const onClose = () => done(new Error('backend closed the connection'));
      const timer = setTimeout(() => done(new Error(`no answer to "${sql}" within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      if (this.broken) {
        onClose();
        return;
      }
      s.on('data', onData);
      s.once('close', onClose);
      s.write(encodeQuery(sql));
      s.resume();
    });
  }
}
