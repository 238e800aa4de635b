import type { Socket } from 'node:net';
/**
 * PgtlsSocket: a net.Socket look-alike that drivers (node-postgres `stream`, postgres.js `socket`) use unchanged.
 * Behind it, connect() negotiates TLS exactly as libpq would; while the driver logs in, the socket watches the
 * server's first messages so that libpq's login-level fallbacks happen too:
 *
 * - sslmode=prefer: TLS accepted but the login rejected (e.g. a `hostnossl` pg_hba line) → reconnect in plaintext;
 * - sslmode=allow: plaintext login rejected (e.g. `hostssl` only) → reconnect with TLS;
 * - several hosts: a host whose login fails → the next host (libpq does this for every failed attempt).
 *
 * The retry replays the driver's StartupMessage on the new connection. It is possible only while the driver has
 * sent nothing but its StartupMessage (the server rejected it outright); once an authentication exchange began, its
 * messages cannot be replayed and the server's error goes to the driver unchanged.
 */
import { Duplex } from 'node:stream';
import { ErrorField } from '../protocol/constants.js';
import { decodeErrorFields } from '../protocol/error-response.js';
import { MessageReader } from '../protocol/framing.js';
import { ConnectionAttempts, type ConnectionFacts, type Negotiated } from './connect.js';
import { ClientError, connectError } from './errors.js';
import type { ConnectionPlan } from './resolve.js';

/** libpq's rendering of a server error during connection (default verbosity): "FATAL:  msg", DETAIL, HINT lines. */
export function formatServerError(fields: Readonly<Record<string, string>>): string {
  const lines = [`${fields[ErrorField.Severity] ?? 'FATAL'}:  ${fields[ErrorField.Message] ?? ''}`];
  if (fields[ErrorField.Detail]) lines.push(`DETAIL:  ${fields[ErrorField.Detail]}`);
  if (fields[ErrorField.Hint]) lines.push(`HINT:  ${fields[ErrorField.Hint]}`);
  return lines.join('\n');
}

export interface PgtlsSocketEvents {
  /** A connection was negotiated (also after each fallback). */
  negotiated: (facts: ConnectionFacts) => void;
  /** The login on a negotiated connection failed and pgtls moves on, as libpq would. */
  fallback: (failure: { message: string; facts: ConnectionFacts }) => void;
}

export class PgtlsSocket extends Duplex {
  readonly attempts: ConnectionAttempts;
  /** Facts of the connection in use (undefined until negotiated). */
  facts: ConnectionFacts | undefined;
  /** The error libpq would report, once every attempt failed (also emitted as 'error'). */
  failure: ClientError | undefined;
  readyState: 'opening' | 'open' | 'closed' = 'opening';
  remoteAddress: string | undefined;
  remotePort: number | undefined;

  private inner: Socket | undefined;
  private started = false;
  private loginDone = false;
  private startupPacket: Buffer | undefined;
  private sentAfterStartup = false;
  private reader = new MessageReader(1 << 24);
  private forwardedLoginBytes = false;
  private pendingWrites: { chunk: Buffer; cb: (err?: Error | null) => void }[] = [];
  private keepAlive: [boolean, number] | undefined;
  /** Every attempt failed: writes are discarded, the readable side has ended. */
  private dead = false;

  constructor(readonly plan: ConnectionPlan) {
    super({ allowHalfOpen: true });
    this.attempts = new ConnectionAttempts(plan);
  }

  /** Start negotiating; arguments are ignored (the plan says where to connect). Emits 'connect' when ready. */
  connect(..._args: unknown[]): this {
    if (this.started) return this;
    this.started = true;
    this.open().then(
      () => {
        this.readyState = 'open';
        this.emit('connect');
        this.emit('ready');
      },
      (err: unknown) => this.fatal(err),
    );
    return this;
  }

  /** Negotiate now; resolves when the socket is ready (for postgres.js, which wants a connected socket). */
  async ready(): Promise<this> {
    this.started = true;
    await this.open();
    this.readyState = 'open';
    return this;
  }

  private async open(): Promise<void> {
    const n = await this.attempts.next();
    this.attach(n);
  }

  private attach(n: Negotiated): void {
    this.inner = n.socket;
    this.facts = n.facts;
    this.remoteAddress = n.facts.address;
    this.remotePort = n.facts.port;
    this.reader = new MessageReader(1 << 24);
    const sock = n.socket;
    sock.setNoDelay?.(true);
    if (this.keepAlive) sock.setKeepAlive?.(...this.keepAlive);
    sock.on('data', (chunk: Buffer) => this.onServerData(sock, chunk));
    sock.on('error', (err) => {
      if (this.inner === sock) this.onInnerError(err);
    });
    sock.on('close', () => {
      if (this.inner === sock) this.onInnerClose();
    });
    sock.on('drain', () => this.emit('drain'));
    sock.resume();
    this.emit('negotiated', n.facts);
    const queued = this.pendingWrites;
    this.pendingWrites = [];
    for (const w of queued) sock.write(w.chunk, w.cb);
  }

  private fatal(err: unknown): void {
    if (err instanceof ClientError) this.failure = err;
    this.readyState = 'closed';
    this.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  private onServerData(sock: Socket, chunk: Buffer): void {
    if (this.loginDone) {
      if (!this.push(chunk)) sock.pause();
      return;
    }
    this.reader.push(chunk);
    let forward: Buffer[] = [];
    for (let i = 0; i < 100_000; i++) {
      const msg = this.reader.next();
      if (!msg) break;
      const frame = Buffer.from(msg.frame);
      if (msg.type === 0x45 /* 'E' ErrorResponse */) {
        const fields = decodeErrorFields(msg.body);
        const text = formatServerError(fields);
        // Replay is possible only if the driver sent nothing but its StartupMessage.
        if (this.startupPacket && !this.sentAfterStartup) {
          for (const f of forward) this.push(f);
          forward = [];
          if (!this.forwardedLoginBytes) {
            this.retryAfterLoginFailure(sock, text, frame, fields);
            return;
          }
        }
        this.attempts.fail(text, fields[ErrorField.Code]);
        forward.push(frame);
        continue;
      }
      if (msg.type === 0x52 /* 'R' */ && msg.body.length >= 4 && msg.body.readInt32BE(0) === 0) {
        const refusal = this.certModeRefusal();
        if (refusal) {
          // libpq checks sslcertmode=require when authentication succeeds, and gives up without any fallback.
          this.attempts.abort(refusal);
          for (const f of forward) this.push(f);
          this.fatal(connectError(this.attempts.failures));
          return;
        }
      }
      forward.push(frame);
      this.forwardedLoginBytes = true;
      if (msg.type === 0x5a /* 'Z' ReadyForQuery */) {
        this.loginDone = true;
        const rest = this.reader.takeRemaining();
        if (rest.length) forward.push(rest);
        break;
      }
    }
    for (const f of forward) if (!this.push(f)) sock.pause();
  }

  /**
   * sslcertmode=require at AuthenticationOk (fe-auth.c): no TLS → the server cannot have asked for a certificate;
   * TLS without a client certificate → it was accepted without one. (libpq also knows whether the server sent a
   * CertificateRequest; Node does not expose that, so a loaded certificate counts as sent.)
   */
  private certModeRefusal(): string | undefined {
    if (this.plan.ssl.certMode !== 'require') return undefined;
    const tls = this.facts?.tls;
    if (!tls) return 'server did not request an SSL certificate';
    if (!tls.clientCertificate) return 'server accepted connection without a valid SSL certificate';
    return undefined;
  }

  private retryAfterLoginFailure(
    sock: Socket,
    text: string,
    frame: Buffer,
    fields: Readonly<Record<string, string>>,
  ): void {
    const facts = this.facts!;
    this.attempts.fail(text, fields[ErrorField.Code]);
    this.emit('fallback', { message: text, facts });
    this.inner = undefined;
    sock.destroy();
    const startup = this.startupPacket!;
    // libpq goes on to the next method / address / host; if none is left its message lists every attempt.
    this.attempts.next().then(
      (n) => {
        this.attach(n);
        this.inner!.write(startup);
      },
      (err: unknown) => {
        if (err instanceof ClientError) {
          this.failure = err;
          // The driver sees the server's own ErrorResponse only if the last attempt was a login failure.
          const lastWasLogin = err.attempts[err.attempts.length - 1]?.message === text;
          if (lastWasLogin) {
            // Hand the driver the server's own error, then end the stream as the server would have.
            this.dead = true;
            this.readyState = 'closed';
            if (frame.length > 0) this.push(frame);
            this.finishReadable();
            this.emit('pgtls-error', connectError(this.attempts.failures));
            return;
          }
        }
        this.fatal(err);
      },
    );
  }

  private onInnerError(err: Error): void {
    if (!this.loginDone && this.startupPacket && !this.sentAfterStartup && !this.forwardedLoginBytes) {
      // A TLS alert after the handshake (e.g. the server refused our client certificate under TLS 1.3) is a failed
      // attempt for libpq, which then falls back like any other.
      const e = err as Error & { reason?: string };
      const text = e.reason ? `SSL error: ${e.reason}` : 'SSL SYSCALL error: EOF detected';
      this.retryAfterLoginFailure(this.inner!, text, Buffer.alloc(0), {});
      return;
    }
    this.readyState = 'closed';
    this.destroy(err);
  }

  private onInnerClose(): void {
    this.readyState = 'closed';
    // End the readable side; once the driver has read everything, tear the wrapper down ('close').
    this.finishReadable();
  }

  /** No more data from the server: end the readable side, then (once read) close like a socket would. */
  private finishReadable(): void {
    this.once('end', () => this.destroy());
    this.push(null);
  }

  /** Like net.Socket: ending twice, or after the peer closed, is not an error. */
  override end(...args: unknown[]): this {
    if (this.writableEnded || this.destroyed) {
      const cb = args.find((a) => typeof a === 'function') as (() => void) | undefined;
      if (cb) process.nextTick(cb);
      return this;
    }
    return super.end(...(args as []));
  }

  override _read(): void {
    this.inner?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.dead) {
      cb();
      return;
    }
    if (!this.loginDone) {
      if (!this.startupPacket) {
        this.startupPacket = Buffer.from(chunk);
        // A CancelRequest is not a login: nothing to watch.
        if (chunk.length >= 8 && chunk.readUInt32BE(4) === 80877102) this.loginDone = true;
      } else this.sentAfterStartup = true;
    }
    if (!this.inner) {
      this.pendingWrites.push({ chunk, cb });
      return;
    }
    this.inner.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.inner) this.inner.end(cb);
    else cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.readyState = 'closed';
    this.inner?.destroy();
    cb(err);
  }

  setNoDelay(noDelay = true): this {
    this.inner?.setNoDelay?.(noDelay);
    return this;
  }

  setKeepAlive(enable = false, initialDelay = 0): this {
    this.keepAlive = [enable, initialDelay];
    this.inner?.setKeepAlive?.(enable, initialDelay);
    return this;
  }

  setTimeout(ms: number, cb?: () => void): this {
    this.inner?.setTimeout(ms, cb);
    return this;
  }

  ref(): this {
    this.inner?.ref();
    return this;
  }

  unref(): this {
    this.inner?.unref();
    return this;
  }
}
