/**
 * The state of one client connection while it moves through the phases (./phases/): the socket, the stream the
 * phases speak the protocol on (plaintext, or decrypted TLS), the backend once attached, the log record, and the
 * two rules that keep the gateway from leaking (issue 8):
 * - nothing a client started outlives it: when the client goes away in any phase, its backend connection goes too;
 * - a FATAL ends the connection: PostgreSQL exits after sending one, so the gateway closes the socket once the
 *   bytes are flushed, whatever the client sends next (node-postgres sends Terminate and then closes).
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { GatewayConfig } from '../config/load.js';
import { normalizeAddress } from '../hba/match.js';
import { type WireError, encodeErrorResponse, encodeErrorResponseV2 } from '../protocol/error-response.js';
import type { TlsMaterial } from '../tls/context.js';
import { AcceptedSocket } from './accepted-socket.js';
import type { LiveHandle } from './admin/client-registry.js';
import type { ConnectionRecord, GatewayRuntime } from './runtime.js';
import type { TlsSession } from './transport.js';
import type { UpstreamWalk } from './upstream-walk.js';
import type { UpstreamTarget } from './upstream.js';

/** How long a refused client may take to read its FATAL before the socket is closed regardless. */
const LINGER_AFTER_FATAL_MS = 5000;

const ignore = () => undefined;

export class ClientConnection {
  readonly started = Date.now();
  /** A Unix-socket client has no address: PostgreSQL calls it "[local]" and only `local` hba lines match it. */
  readonly local: boolean;
  readonly record: ConnectionRecord;
  /** One consistent configuration for the whole connection, even across a reload. */
  readonly cfg: GatewayConfig;
  stream: Duplex;
  tls: TlsSession | undefined;
  /** The TLS material the handshake used (the main one, or a pg_hosts.conf entry's). */
  material: TlsMaterial | undefined;
  backend: Duplex | undefined;
  /** The upstream a route chose (undefined: the configured upstream); after attach, the host the session is on. */
  upstream: UpstreamTarget | undefined;
  /** The walk over the upstream's hosts (attach), kept for the target_session_attrs check after authentication. */
  upstreamWalk: UpstreamWalk | undefined;
  /** The user name the backend gets when a route rewrote it (Azure's user@servername). */
  backendUser: string | undefined;
  /** This connection in the admin console's SHOW CLIENTS (state, TLS facts, backend pid, live byte counts). */
  readonly live: LiveHandle;
  #gone = false;
  #timedOut = false;
  #closing = false;
  readonly #timer: NodeJS.Timeout;

  /** The client's connection: a net.Socket, or an AcceptedSocket until (unless) the phases need a net.Socket. */
  socket: Socket | AcceptedSocket;

  constructor(
    socket: Socket | AcceptedSocket,
    readonly rt: GatewayRuntime,
  ) {
    this.socket = socket;
    this.local = socket.remoteAddress === undefined;
    // The configuration in force with the admin console's runtime SETs (require_secure_transport, …) applied.
    this.cfg = rt.operator.connectionConfig();
    this.record = {
      id: rt.nextConnectionId(),
      client: this.local ? '[local]' : normalizeAddress(socket.remoteAddress ?? ''),
      client_port: socket.remotePort ?? 0,
      negotiation: 'plaintext',
      outcome: 'closed',
    };
    socket.setNoDelay(true);
    // Until TLS (useTls) or a net.Socket (netSocket()) the phases have no stream to speak on: an AcceptedSocket is
    // only ever negotiated by the transport first.
    this.stream = socket instanceof AcceptedSocket ? (undefined as unknown as Duplex) : socket;
    this.live = rt.operator.register(this.record, () => this.destroy());
    this.#watch(socket);
    this.#timer = setTimeout(() => this.#timeout(), this.cfg.authentication_timeout);
    this.#timer.unref(); // never the reason the process stays alive (e.g. after close())
  }

  /** True once the client's socket has closed (FIN seen, reset, or destroyed by us). */
  get gone(): boolean {
    return this.#gone;
  }

  /** True when authentication_timeout ended the connection. */
  get timedOut(): boolean {
    return this.#timedOut;
  }

  #watch(s: Duplex | AcceptedSocket): void {
    s.on('error', ignore);
    s.once('close', () => this.#clientGone());
  }

  #clientGone(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.backend?.destroy();
  }

  #timeout(): void {
    this.#timedOut = true;
    this.record.outcome = 'refused';
    this.record.reason = 'authentication timeout';
    this.destroy();
  }

  /**
   * The connection as a net.Socket, made now if it was accepted without one (the transport gave it back: it is not an
   * SSLRequest alone, or the fast path does not apply); `unread`: bytes already read from it, to be read first.
   */
  netSocket(unread?: Buffer): Socket {
    const a = this.socket;
    if (!(a instanceof AcceptedSocket)) {
      if (unread?.length) a.unshift(unread);
      return a;
    }
    const s = a.toNetSocket();
    if (unread?.length) s.unshift(unread);
    s.on('error', ignore); // its 'close' reaches #clientGone through the AcceptedSocket
    this.socket = s;
    this.stream = s;
    return s;
  }

  /** The phases now speak through `s` (the TLS session's stream). */
  useTls(session: TlsSession): void {
    this.tls = session;
    this.stream = session.stream;
    this.#watch(session.stream);
  }

  /** Keep `backend` for this connection — unless the client already left, in which case it is closed at once. */
  attachBackend(backend: Duplex): boolean {
    backend.on('error', ignore);
    if (this.#gone) {
      backend.destroy();
      return false;
    }
    this.backend = backend;
    return true;
  }

  /** The session was let through: authentication_timeout no longer applies. */
  authenticated(): void {
    clearTimeout(this.#timer);
  }

  /** Send a FATAL the gateway built and close the connection (see the class comment). */
  fatal(err: WireError, reason?: string, protocolMajor = 3): void {
    this.record.outcome = 'refused';
    this.record.reason = reason ?? err.message;
    this.record.sqlstate = err.code;
    this.closeAfter(protocolMajor < 3 ? encodeErrorResponseV2(err) : encodeErrorResponse(err));
  }

  /**
   * Write `last` (if any), then close: destroyed once the bytes are flushed, or after LINGER_AFTER_FATAL_MS if the
   * client does not read them. What the client sends meanwhile is read and dropped, so its FIN is seen.
   */
  closeAfter(last?: Buffer): void {
    if (this.#closing) return;
    this.#closing = true;
    this.backend?.destroy();
    const s = this.stream;
    if (!s || s.destroyed) {
      // (No stream: an AcceptedSocket the transport is still negotiating — nothing can be written to it yet.)
      this.destroy();
      return;
    }
    const linger = setTimeout(() => this.destroy(), LINGER_AFTER_FATAL_MS);
    linger.unref();
    s.once('close', () => clearTimeout(linger));
    s.once('finish', () => setImmediate(() => this.destroy()));
    s.on('data', ignore);
    s.resume();
    s.end(last);
  }

  /** True once closeAfter() has taken over closing the connection. */
  get closingAfterFatal(): boolean {
    return this.#closing;
  }

  /** Close everything now. */
  destroy(): void {
    this.stream?.destroy();
    this.socket.destroy();
    this.backend?.destroy();
  }

  /** Stop the timer; called once, when the connection is over. */
  finish(): void {
    clearTimeout(this.#timer);
    this.live.end();
    this.record.duration_ms = Date.now() - this.started;
  }
}
