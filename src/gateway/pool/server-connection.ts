/**
 * One logged-in backend connection owned by a pool (PgBouncer's server PgSocket): its socket, what the backend told
 * it (BackendKeyData, ParameterStatus), the GUC values known to be in effect, the statements prepared on it by the
 * transaction relay (an LRU of server-side names), and whether it may still be handed out.
 *
 * While it sits idle in a pool it is watched: a backend sends nothing unprompted to an idle session except to end it
 * (FATAL 57P01 "terminating connection due to administrator command", a restart), so any byte, an end or an error
 * marks it broken and it is discarded — never handed out.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { decodeErrorFields } from '../../protocol/error-response.js';
import { MessageReader } from '../../protocol/framing.js';
import {
  BackendType,
  decodeCommandTag,
  decodeParameterStatus,
  encodeParameterStatus,
  encodeQuery,
} from '../../protocol/messages.js';
import type { TxRelayPort } from '../transport.js';
import type { UpstreamTarget } from '../upstream.js';

/** Messages from a backend are bounded like the relay's (1 GiB is PostgreSQL's own limit on a field). */
export const MAX_BACKEND_MESSAGE = 1 << 30;

export interface PoolKey {
  readonly database: string;
  readonly user: string;
  /** The routes_file line whose upstream this pool logs in to (undefined: the configured `upstream`). */
  readonly route?: string;
}

export interface QueryOutcome {
  /** Fields of the first ErrorResponse, if the query failed. */
  readonly error?: Readonly<Record<string, string>>;
  /** Transaction status of the closing ReadyForQuery. */
  readonly status: string;
}

let nextServerId = 1;

/** The libuv handle inside a plain net.Socket (TCPWrap or PipeWrap). */
interface StreamHandle {
  fd?: number;
  reading?: boolean;
  readStop(): number;
  readStart(): number;
}

const noRead = () => 0;

/** The current reader of a server's bytes (ServerConnection.attach). */
export interface ServerSink {
  data(d: Buffer): void;
  /** The backend connection ended or failed (called once, after the server is marked broken). */
  gone(): void;
}

export class ServerConnection {
  readonly id = nextServerId++;
  readonly created = Date.now();
  /** When it last went back to its pool (for server_idle_timeout and server_check_delay). */
  lastUsed = Date.now();
  /** ParameterStatus values the backend reported, by name. */
  readonly params = new Map<string, string>();
  /** The upstream host this server is on (several-host upstreams): where its CancelRequests go. */
  upstreamHost: { readonly host: string; readonly port: number } | undefined;
  /** The route's upstream this server was opened on (undefined: the configured one). */
  target: UpstreamTarget | undefined;
  /**
   * GUC values known to be in effect on this session (reported ones and the ones the pool SET), by lower-case name.
   * A name absent here has the backend's default: a client value for it is SET before the client's first query.
   */
  readonly vars = new Map<string, string>();
  /** Server-side statement names prepared on this connection, least recently used first (Map insertion order). */
  readonly prepared = new Map<string, true>();
  /** Frames what the backend sends while a pool component reads it (query(), the transaction relay). */
  readonly reader = new MessageReader(MAX_BACKEND_MESSAGE);
  /** How the backend authenticated the gateway: trust, password, md5, scram-sha-256 or scram-sha-256-plus. */
  authMethod: string | undefined;
  #broken = false;
  /**
   * Who reads the backend now (the transaction relay, the session splice, query()); none while the server sits in
   * its pool or between owners, when any byte breaks it (see the class comment). One permanent 'data' listener
   * dispatches here: owners change every transaction, and adding/removing listeners and pausing/resuming the
   * socket each time cost more than the dispatch (measured with bench/pool.ts --callgrind).
   */
  #sink: ServerSink | undefined;
  /** The ParameterStatus messages for `params`, encoded once (a session-mode welcome per client). */
  #encodedParams: Buffer | undefined;
  readonly #onData = (d: Buffer) => {
    const sink = this.#sink;
    if (sink) sink.data(d);
    else this.#break();
  };
  readonly #onGone = () => {
    this.#break();
    const sink = this.#sink;
    this.#sink = undefined;
    sink?.gone();
    // The native relay stopped in gone() (it never outlives its sink): its fd can go now.
    if (this.#nativeFd !== undefined) this.#nativePort?.closeFd(this.#nativeFd);
    this.#nativeFd = undefined;
  };
  /** The dup of the socket's fd the native transaction relay reads and writes (made once, closed with the socket). */
  #nativeFd: number | undefined;
  #nativePort: TxRelayPort | undefined;
  #suspended: StreamHandle | undefined;
  #readStart: (() => number) | undefined;

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
    socket.on('data', this.#onData);
    socket.resume();
  }

  /** True once the backend connection failed, ended, or sent something while idle: it must not be used again. */
  get broken(): boolean {
    return this.#broken || this.socket.destroyed;
  }

  #break(): void {
    this.#broken = true;
    this.socket.destroy();
  }

  /** Mark it unusable and close it. */
  discard(): void {
    this.#break();
  }

  /**
   * Read the backend from now on (`sink` gets every chunk, and `gone()` once if the connection ends). The socket
   * may have been paused by the previous owner's backpressure: it flows again.
   */
  attach(sink: ServerSink): void {
    this.#sink = sink;
    this.laneGucId = 0; // a JavaScript owner may change its GUCs
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Stop reading: the server goes back to its pool (or to the next owner), where any byte breaks it. */
  detach(): void {
    this.#sink = undefined;
  }

  /**
   * The fd for the native transaction relay: a duplicate of the socket's, made on first use and closed when the
   * socket closes. Undefined for a TLS backend (the bytes on the fd are ciphertext) or a socket without an fd.
   */
  nativeFd(port: TxRelayPort): number | undefined {
    if (this.#nativeFd !== undefined) return this.#nativeFd;
    const s = this.socket;
    if (!(s instanceof Socket) || s instanceof TLSSocket || this.broken) return undefined;
    const fd = (s as unknown as { _handle?: StreamHandle })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return undefined;
    try {
      this.#nativeFd = port.dupFd(fd);
    } catch {
      return undefined;
    }
    this.#nativePort = port;
    return this.#nativeFd;
  }

  /**
   * Stop Node's reads while native code reads the socket (never both). False, and nothing changed, when Node holds
   * bytes of this server already (read, or waiting to be written) or the socket is paused.
   */
  suspend(): boolean {
    const s = this.socket as Socket;
    const h = (s as unknown as { _handle?: StreamHandle })._handle;
    if (!h || this.broken || this.#suspended || s.readableLength > 0 || s.writableLength > 0 || s.isPaused()) {
      return false;
    }
    if (this.reader.buffered > 0) return false;
    h.reading = false;
    h.readStop();
    // Node's stream machinery would restart reads on its own (resume(), a read(0)): not while native code reads.
    this.#readStart = h.readStart;
    h.readStart = noRead;
    this.#suspended = h;
    return true;
  }

  /**
   * In a pool's native lane (native/src/lane.h): the lane watches and relays the socket, Node's reads stay stopped
   * until it comes back (leftLane). Set by the transaction relay that lends it, cleared by whoever takes it back.
   */
  inLane = false;
  /**
   * The GUC signature of the client that last took it into the lane (its values are in effect here); 0 once a
   * JavaScript owner had it since, which may have changed them.
   */
  laneGucId = 0;
  /** The names in `prepared`, NUL-ended, for the lane (native/src/txrelay.h sset); undefined when none. */
  preparedNames(): Buffer | undefined {
    if (this.prepared.size === 0) return undefined;
    let s = '';
    for (const n of this.prepared.keys()) s += `${n}\0`;
    return Buffer.from(s);
  }

  /** The fd the native relay uses (nativeFd), if it was made. */
  get laneFd(): number | undefined {
    return this.#nativeFd;
  }

  /** Back from the lane: Node reads the socket again (a broken server is left alone). */
  leftLane(): void {
    if (!this.inLane) return;
    this.inLane = false;
    this.resumeReads();
  }

  /** Node reads the socket again (after the native relay handed back). */
  resumeReads(): void {
    const h = this.#suspended;
    if (!h) return;
    this.#suspended = undefined;
    h.readStart = this.#readStart!;
    if (!this.socket.destroyed) {
      h.reading = true;
      h.readStart();
    }
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
    return new Promise((resolve, reject) => {
      let error: Record<string, string> | undefined;
      let settled = false;
      const done = (err: Error | undefined, outcome?: QueryOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.detach();
        if (err) {
          this.#break();
          reject(err);
        } else resolve(outcome!);
      };
      const data = (d: Buffer) => {
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
      const gone = () => done(new Error('backend closed the connection'));
      const timer = setTimeout(() => done(new Error(`no answer to "${sql}" within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      if (this.broken) {
        gone();
        return;
      }
      this.attach({ data, gone });
      this.socket.write(encodeQuery(sql));
    });
  }
}
