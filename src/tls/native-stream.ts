/**
 * A native TLS session's decrypted side as a Duplex (startup, authentication, the admin console speak on it), and
 * what it can hand to the addon: the splice to a plain backend socket, the TLS<->TLS splice, the transaction relay.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { LaneOps, RelayStats, TxHandback, TxRelayPort } from '../gateway/transport.js';
import { type Addon, EV, type NativeHandle, laneOps, releaseHandle, takeOver } from './native-addon.js';

/** Decrypted bytes for the startup and authentication phases, and the splice after. */
export class NativeTlsStream extends Duplex {
  readonly #addon: Addon;
  #handle: NativeHandle | undefined;
  #spliced = false;
  #closed = false;
  #pendingWrite: ((err?: Error | null) => void) | undefined;
  #onClose: ((fromClient: number, fromBackend: number, reason: string) => void) | undefined;
  #txDone: ((h: TxHandback) => void) | undefined;
  /** Moved into a client session's TLS<->TLS relay (spliceTls): its close is the relay's, not this stream's. */
  #handedOver = false;
  /** What stands for the connection in JavaScript (a net.Socket without its handle, or an AcceptedSocket). */
  readonly #socket: { destroy(): unknown };
  /** A backend session's server certificate (DER), for SCRAM channel binding (../gateway/backend-scram.ts). */
  upstreamPeerCertificate: Buffer | undefined;

  constructor(addon: Addon, socket: { destroy(): unknown }) {
    super({ allowHalfOpen: false });
    this.#addon = addon;
    this.#socket = socket;
    (this.txPort as { lanes: LaneOps }).lanes = laneOps(addon);
  }

  attach(handle: NativeHandle): void {
    this.#handle = handle;
  }

  /** The addon's events after the handshake. Returns whether more decrypted bytes are wanted now. */
  event(
    kind: number,
    a: unknown,
    b: unknown,
    c: unknown,
    d?: unknown,
    e?: unknown,
    f?: unknown,
    g?: unknown,
    h?: unknown,
    i?: unknown,
    j?: unknown,
    k?: unknown,
  ): boolean {
    switch (kind) {
      case EV.data:
        return this.push(a as Buffer);
      case EV.end:
        this.push(null);
        return false;
      case EV.drain: {
        const cb = this.#pendingWrite;
        this.#pendingWrite = undefined;
        cb?.();
        return false;
      }
      case EV.tx: {
        const cb = this.#txDone;
        this.#txDone = undefined;
        cb?.({
          reason: a as number,
          clientRest: b as Buffer | undefined,
          toServer: c as Buffer | undefined,
          serverRest: d as Buffer | undefined,
          queue: e as string,
          status: f as number,
          fromClient: g as number,
          fromServer: h as number,
          mid: i as boolean,
          serverId: (j as number | undefined) ?? 0,
          transactions: (k as number | undefined) ?? 0,
        });
        return false;
      }
      case EV.close: {
        this.#closed = true;
        if (this.#handedOver) return false;
        this.#txDone = undefined;
        const cb = this.#pendingWrite;
        this.#pendingWrite = undefined;
        cb?.(new Error('the TLS connection closed'));
        this.#onClose?.(a as number, b as number, c as string);
        this.#socket.destroy();
        if (!this.destroyed) this.destroy();
        return false;
      }
      default:
        return false;
    }
  }

  override _read(): void {
    if (this.#handle && !this.#spliced && !this.#closed) this.#addon.setReading(this.#handle, true);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.#handle || this.#closed || this.#spliced) {
      cb(new Error('the TLS connection is closed'));
      return;
    }
    try {
      if (this.#addon.write(this.#handle, chunk)) cb();
      else this.#pendingWrite = cb;
    } catch (err) {
      cb(err as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#handle && !this.#closed && !this.#spliced) this.#addon.end(this.#handle);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.#handle && !this.#closed && !this.#spliced) this.#addon.destroy(this.#handle);
    cb(err);
  }

  /** The transaction relay port of this session (TlsSession.txRelay). */
  readonly txPort: TxRelayPort = {
    dupFd: (fd) => this.#addon.dupFd(fd),
    closeFd: (fd) => this.#addon.closeFd(fd),
    start: (serverFd, clientBytes, trackNames, done, session = false) => {
      const handle = this.#handle;
      // Decrypted bytes waiting in this stream, a write waiting for drain or a paused reader: the JavaScript relay.
      // (A session relay may start paused: its JavaScript reads nothing until a handback, and then resumes.)
      if (!handle || this.#closed || this.#spliced || this.#txDone || this.#pendingWrite) return false;
      if (this.readableLength > 0 || (!session && this.isPaused()) || this.readableEnded || this.writableEnded)
        return false;
      try {
        this.#addon.txRelay(handle, serverFd, clientBytes, trackNames, session);
      } catch {
        return false;
      }
      this.#txDone = done;
      return true;
    },
    startLane: (lane, serverId, serverFd, lifetimeLeftMs, gucId, clientBytes, trackNames, stmts, names, done) => {
      const handle = this.#handle;
      if (!handle || this.#closed || this.#spliced || this.#txDone || this.#pendingWrite) return false;
      if (this.readableLength > 0 || this.isPaused() || this.readableEnded || this.writableEnded) return false;
      try {
        const a = this.#addon;
        a.txLane(handle, lane, serverId, serverFd, lifetimeLeftMs, gucId, clientBytes, trackNames, stmts, names);
      } catch {
        return false;
      }
      this.#txDone = done;
      return true;
    },
    laneServer: () => (this.#handle && !this.#closed ? this.#addon.txServer(this.#handle) : 0),
    lanes: undefined as unknown as LaneOps, // set in the constructor (field initializers run before it)
    stop: () => {
      this.#txDone = undefined;
      if (this.#handle && !this.#closed) return this.#addon.txStop(this.#handle) ?? 0;
      return 0;
    },
  };

  /**
   * Relay natively between this client session and a native backend session (TLS on both hops, no JavaScript per
   * message): as splice(), with the backend's decrypted but unread bytes going to the client first.
   */
  async spliceTls(backend: NativeTlsStream, stats: RelayStats): Promise<void> {
    const handle = this.#handle;
    const other = backend.#handle;
    if (!handle || !other || this.#closed || this.#spliced || backend.#closed || backend.#spliced) {
      throw new Error('the TLS connection is closed');
    }
    this.#spliced = true;
    backend.#spliced = true;
    this.#addon.setReading(handle, false);
    this.#addon.setReading(other, false);
    // Out of any native callback first (this often runs in the microtasks of the backend's last EV_DATA, while the
    // addon is inside that session's run), and with no write waiting for a drain that would never come.
    for (let i = 0; i < 100 && !this.#closed && !backend.#closed; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (!backend.#pendingWrite && !this.#pendingWrite) break;
    }
    if (this.#closed || backend.#closed) throw new Error('the TLS connection is closed');
    const drain = (s: Duplex) => {
      const out: Buffer[] = [];
      for (let chunk = s.read() as Buffer | null, i = 0; chunk !== null && i < 1024; chunk = s.read(), i++)
        out.push(chunk);
      return out.length ? Buffer.concat(out) : undefined;
    };
    const done = new Promise<void>((resolve) => {
      this.#onClose = (fromClient, fromBackend) => {
        stats.bytesFromClient += fromClient;
        stats.bytesFromBackend += fromBackend;
        backend.#socket.destroy();
        if (!backend.destroyed) backend.destroy();
        resolve();
      };
    });
    backend.#handedOver = true;
    backend.once('close', () => {
      if (!this.#closed) this.#addon.destroy(handle);
    });
    this.#addon.spliceTls(handle, other, drain(this), drain(backend));
    return done;
  }

  /** Relay natively until either side closes; see TlsSession.splice. */
  async splice(backend: Socket, stats: RelayStats): Promise<void> {
    const handle = this.#handle;
    if (!handle || this.#closed || this.#spliced) throw new Error('the TLS connection is closed');
    this.#spliced = true;
    this.#addon.setReading(handle, false);
    // Decrypted bytes already in this stream that the caller did not read belong to the backend.
    const toBackend: Buffer[] = [];
    for (let i = 0; i < 1024; i++) {
      const chunk = this.read() as Buffer | null;
      if (chunk === null) break;
      toBackend.push(chunk);
    }
    // Whatever the caller wrote to the backend must be out before native writes to the same fd.
    for (let i = 0; i < 100 && backend.writableLength > 0 && !backend.destroyed; i++) {
      await new Promise((resolve) => backend.once('drain', resolve));
    }
    if (this.#closed) throw new Error('the TLS connection is closed');
    const { fd, buffered } = takeOver(backend);
    const done = new Promise<void>((resolve) => {
      this.#onClose = (fromClient, fromBackend) => {
        stats.bytesFromClient += fromClient;
        stats.bytesFromBackend += fromBackend;
        backend.destroy();
        resolve();
      };
    });
    backend.once('close', () => {
      if (!this.#closed) this.#addon.destroy(handle);
    });
    this.#addon.splice(
      handle,
      fd,
      toBackend.length ? Buffer.concat(toBackend) : undefined,
      buffered.length ? Buffer.concat(buffered) : undefined,
    );
    releaseHandle(backend);
    return done;
  }
}
