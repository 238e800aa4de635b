/**
 * The transport seam (../shared/design.md): what the connection phases need from a client connection, whoever
 * moves its bytes. Two implementations: Node's `tls` (always available, the reference) and the native addon
 * (native/, when it built and `native_data_plane` is `auto`, the default, or `on`). Everything above this interface —
 * negotiation, startup, hba, client-certificate rules, authentication, logging — is the same for both.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TlsMaterial } from '../tls/context.js';

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

/** Why the native transaction relay gave control back (native/src/txrelay.h). */
export const TX_BOUNDARY = 1;

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
}

/** Relays a pooled session's messages natively between transaction boundaries (src/gateway/pool/tx-relay.ts). */
export interface TxRelayPort {
  /** A duplicate of a server socket's fd for the relay (made once per server, closed with closeFd). */
  dupFd(fd: number): number;
  closeFd(fd: number): void;
  /**
   * Relay on `serverFd` starting with decrypted `clientBytes`; `done` is called once when control comes back.
   * False when the session cannot now (bytes waiting in its stream, a write pending): the caller relays in JavaScript.
   */
  start(serverFd: number, clientBytes: Buffer, trackNames: boolean, done: (h: TxHandback) => void): boolean;
  /** Abandon the relay without calling `done` (the server went away). */
  stop(): void;
}

export type HandshakeResult =
  | { readonly ok: true; readonly session: TlsSession }
  /** `reason` is OpenSSL's text as PostgreSQL logs it ("no shared cipher", "wrong version number"). */
  | { readonly ok: false; readonly reason: string };

export interface ClientTransport {
  readonly name: 'node' | 'native';
  /**
   * Perform the server TLS handshake on `socket` (paused, plaintext so far) with `material`. `initial` holds bytes
   * already read from the socket that belong to the handshake (direct TLS: the ClientHello). ALPN 'postgresql' is
   * offered on every handshake; the caller decides what a missing ALPN means.
   */
  accept(socket: Socket, material: TlsMaterial, initial: Buffer | undefined): Promise<HandshakeResult>;
}
