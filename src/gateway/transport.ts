/**
 * The transport seam (../shared/design.md): what the connection phases need from a client connection, whoever
 * moves its bytes. Two implementations: Node's `tls` (always available, the reference) and the native addon
 * (native/, when it built and `native_data_plane` is `auto`, the default, or `on`). Everything above this interface —
 * negotiation, startup, hba, client-certificate rules, authentication, logging — is the same for both.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TlsMaterial } from '../tls/context.js';
import type { AcceptedSocket } from './accepted-socket.js';

/** What the TLS handshake established, as the log, the admin console, metrics and hba checks see it. */
export interface TlsFacts {
  /** OpenSSL's protocol name: 'TLSv1.2', 'TLSv1.3'. */
  readonly version: string;
  /** OpenSSL's cipher name: 'TLS_AES_256_GCM_SHA384', 'ECDHE-ECDSA-AES256-GCM-SHA384'. */
  readonly cipher: string;
  /** Symmetric key bits, as pg_stat_ssl.bits. */
  readonly bits: number;
  /** The key-exchange group, when known ('X25519', 'prime256v1'). */
  readonly group?: string;
  readonly sni?: string;
  readonly alpn?: string;
  /** The client's certificate (DER), when it sent one. */
  readonly peerCertificate?: Buffer;
  /** OpenSSL's verification text when a presented client certificate did not verify (undefined when it did). */
  readonly peerVerifyError?: string;
}

/** Byte counters of a relayed session. */
export interface RelayStats {
  bytesFromClient: number;
  bytesFromBackend: number;
}

/** A client connection after a successful server handshake. */
export interface TlsSession {
  readonly facts: TlsFacts;
  /** Decrypted bytes for the phases that speak the protocol (startup, authentication). */
  readonly stream: Duplex;
  /**
   * Relay natively between this session and a plain backend socket until either side closes, when the
   * transport can (the native one); undefined means the caller uses the JavaScript relay on `stream`.
   */
  readonly splice?: (backend: Socket, stats: RelayStats) => Promise<void>;
  /**
   * Relay natively between this session and a backend reached over TLS by the same transport (a native backend
   * session, ../tls/native-upstream.ts): undefined when `backend` is not one, and the caller relays otherwise.
   */
  readonly spliceTls?: (backend: Duplex, stats: RelayStats) => Promise<void> | undefined;
  /** The native transaction relay for pooled sessions (native/src/txrelay.h); undefined on Node's transport. */
  readonly txRelay?: TxRelayPort;
}

/** Why the native transaction relay gave control back (native/src/txrelay.h, lane.h). */
export const TX_BOUNDARY = 1;
export const TX_CLIENT_MSG = 2;
export const TX_CLIENT_END = 4;
export const TX_SERVER_END = 5;
/** In a lane: the client's next transaction needs a server the lane could not give (the pool's acquire runs). */
export const TX_NEED_SERVER = 6;
/** In a lane: the client waited query_wait_timeout in the lane's queue. */
export const TX_WAIT_TIMEOUT = 7;

/**
 * What the native transaction relay hands back: the reason, the bytes neither direction processed (each starting
 * at a message boundary unless `mid`), the requests still unanswered (kinds P B D E S Q C, oldest first), the last
 * ReadyForQuery status (0: none), and the bytes it read itself.
 */
export interface TxHandback {
  readonly reason: number;
  readonly clientRest: Buffer | undefined;
  readonly toServer: Buffer | undefined;
  readonly serverRest: Buffer | undefined;
  readonly queue: string;
  readonly status: number;
  readonly fromClient: number;
  readonly fromServer: number;
  readonly mid: boolean;
  /** In a lane: the server the session holds (its ServerConnection.id; 0: none), JavaScript's again from now. */
  readonly serverId: number;
  /** In a lane: transactions that ended at a boundary the lane handled itself since the stretch began. */
  readonly transactions: number;
}

/** A transaction pool's native lane (native/src/lane.h): opaque, made by LaneOps.create. */
export type LaneHandle = object & { readonly __lane: unique symbol };

/** The lane of idle servers and waiting clients the native transaction relay keeps per pool (native/src/lane.h). */
export interface LaneOps {
  /**
   * `checkDelayMs` < 0: no server_check_query. Events: 1 an idle server broke, 2 a client died holding one, 3 a
   * clean server released for the clients waiting in the pool's own queue.
   */
  create(waitTimeoutMs: number, checkDelayMs: number, onEvent: (event: number, serverId: number) => void): LaneHandle;
  /**
   * Whether the pool can open no more servers (clients may wait in the lane), whether clients wait in the pool's
   * own queue, whether the pool holds idle servers (new transactions take those).
   */
  set(lane: LaneHandle, full: boolean, jsWaiting: boolean, jsIdle: boolean): void;
  /** A server for the client waiting first in the lane (false: none waits; the server stays the pool's). */
  give(
    lane: LaneHandle,
    serverId: number,
    serverFd: number,
    lifetimeLeftMs: number,
    gucId: number,
    preparedNames: Buffer | undefined,
  ): boolean;
  /** The newest idle server leaves the lane: [id, ms idle]. */
  take(lane: LaneHandle): [number, number] | undefined;
  /** An idle server leaves the lane (false: not in it, or a client holds it). */
  remove(lane: LaneHandle, serverId: number): boolean;
  /** [idle, waiting, oldest wait ms, servers, boundaries, hand-offs, waits, then (id, ms idle) per idle server] */
  stats(lane: LaneHandle): number[];
  close(lane: LaneHandle): void;
}

/** Relays a pooled session's messages natively between transaction boundaries (src/gateway/pool/tx-relay.ts). */
export interface TxRelayPort {
  /** A duplicate of a server socket's fd for the relay (made once per server, closed with closeFd). */
  dupFd(fd: number): number;
  closeFd(fd: number): void;
  /**
   * Relay on `serverFd` starting with decrypted `clientBytes`; `done` is called once when control comes back.
   * False when the session cannot now (bytes waiting in its stream, a write pending): the caller relays in JavaScript.
   * `session`: session pooling — no transaction boundary, ParameterStatus and DISCARD pass through, the handback
   * comes at the client's Terminate (not forwarded), an end, or what the relay cannot follow (txrelay.h).
   */
  start(
    serverFd: number,
    clientBytes: Buffer,
    trackNames: boolean,
    done: (h: TxHandback) => void,
    session?: boolean,
  ): boolean;
  /**
   * start() in a pool's lane: the server joins the lane, and the session goes on relaying transaction after
   * transaction, taking servers from the lane and giving them back, until `done` (a handback).
   */
  startLane(
    lane: LaneHandle,
    serverId: number,
    serverFd: number,
    lifetimeLeftMs: number,
    gucId: number,
    clientBytes: Buffer,
    trackNames: boolean,
    /** The client's named statements as NUL-ended (name, server name) pairs, and the server's prepared names. */
    statements: Buffer | undefined,
    preparedNames: Buffer | undefined,
    done: (h: TxHandback) => void,
  ): boolean;
  /** The lane server the session holds now (0: none). */
  laneServer(): number;
  readonly lanes: LaneOps;
  /** Abandon the relay without calling `done`; in a lane, the id of the server it held (0: none). */
  stop(): number;
}

export type HandshakeResult =
  | { readonly ok: true; readonly session: TlsSession }
  /** `reason` is OpenSSL's text as PostgreSQL logs it ("no shared cipher", "wrong version number"). */
  | { readonly ok: false; readonly reason: string };

/** What a transport's negotiate() saw first on a fresh connection. */
export type Negotiation =
  /** An SSLRequest alone: 'S' was sent and the handshake ran (its result). */
  | { readonly kind: 'tls'; readonly result: HandshakeResult }
  /**
   * Anything else (another packet, bytes behind the SSLRequest, a ClientHello, EOF): the connection is Node's
   * again (a net.Socket reading on; an AcceptedSocket untouched), and `bytes` (what was read) must be read first.
   */
  | { readonly kind: 'plain'; readonly bytes: Buffer | undefined };

export interface ClientTransport {
  readonly name: 'node' | 'native';
  /**
   * Optional: read a fresh connection's first packet and, when it is an SSLRequest alone, answer 'S' and do the
   * handshake with `material` — the commonest opening without a JavaScript step between the two. The caller uses it
   * only when nothing else must see the first bytes (a PROXY header, a ClientHello for ssl_sni).
   */
  negotiate?(socket: Socket | AcceptedSocket, material: TlsMaterial): Promise<Negotiation>;
  /**
   * Perform the server TLS handshake on `socket` (paused, plaintext so far) with `material`. `initial` holds bytes
   * already read from the socket that belong to the handshake (direct TLS: the ClientHello). ALPN 'postgresql' is
   * offered on every handshake; the caller decides what a missing ALPN means.
   */
  accept(socket: Socket, material: TlsMaterial, initial: Buffer | undefined): Promise<HandshakeResult>;
}
