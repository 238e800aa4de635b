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
import { DriverExchange, SelfAuthentication, startupUser } from './auth.js';
import { ConnectionAttempts, type ConnectionFacts, type Negotiated } from './connect.js';
import { ClientError, connectError } from './errors.js';
import { certModeRefusal, formatServerError, targetRejection } from './login-rules.js';
import type { ConnectionPlan } from './resolve.js';

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
  private reader = new MessageReader(1 << 24);
  /** AuthenticationOk seen on the connection in use. */
  private authOk = false;
  /** Any authentication request seen on the connection in use. */
  private authSeen = false;
  /** What the driver did in its authentication exchange (replayed for it on a fallback connection). */
  private exchange = new DriverExchange();
  /** On a fallback connection: authenticate ourselves until AuthenticationOk. */
  private selfAuth = false;
  private selfAuthenticator: SelfAuthentication | undefined;
  /**
   * False when the driver has no password to answer with (set by the adapters): a password request then ends the
   * login with libpq's `fe_sendauth: no password supplied` instead of the driver's own complaint.
   */
  driverHasPassword = true;
  /** The server asked the driver for a password on this connection. */
  passwordRequested = false;
  /** Frames held back after AuthenticationOk while target_session_attrs is checked. */
  private held: Buffer[] | undefined;
  private reported: { in_hot_standby?: string; default_transaction_read_only?: string } = {};
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
    this.authSeen = false;
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
    if (!this.authSeen && this.reader.buffered === 0 && chunk.length > 0) {
      // libpq looks at the message type before its length: a non-PostgreSQL peer is named at its first byte.
      const t = chunk[0]!;
      if (t !== 0x52 && t !== 0x45 && t !== 0x76) {
        this.giveUp(`expected authentication request from server, but received ${String.fromCharCode(t)}`);
        return;
      }
    }
    this.reader.push(chunk);
    const forward: Buffer[] = [];
    const flush = () => {
      for (const f of forward.splice(0)) if (!this.push(f)) sock.pause();
    };
    for (let i = 0; i < 100_000; i++) {
      let msg: ReturnType<MessageReader['next']>;
      try {
        msg = this.reader.next();
      } catch (err) {
        // A length libpq would not accept either: before any authentication request, libpq has already refused the
        // message type; afterwards it reports the bad length.
        const type = String((err as { details?: { type?: string } }).details?.type ?? '?');
        flush();
        this.giveUp(
          this.authSeen
            ? `invalid message length ${(err as { details?: { length?: number } }).details?.length ?? ''}`.trim()
            : `expected authentication request from server, but received ${type}`,
        );
        return;
      }
      if (!msg) break;
      const frame = Buffer.from(msg.frame);
      if (!this.authSeen) {
        // CONNECTION_AWAITING_RESPONSE: only an authentication request, an error or NegotiateProtocolVersion.
        if (msg.type !== 0x52 && msg.type !== 0x45 && msg.type !== 0x76) {
          flush();
          this.giveUp(`expected authentication request from server, but received ${String.fromCharCode(msg.type)}`);
          return;
        }
        if (msg.type === 0x52) this.authSeen = true;
      }
      if (msg.type === 0x45 /* 'E' ErrorResponse */) {
        flush();
        this.onLoginError(sock, frame, decodeErrorFields(msg.body));
        return;
      }
      if (msg.type === 0x52 /* 'R' */ && msg.body.length >= 4) {
        const code = msg.body.readInt32BE(0);
        if (this.selfAuth && code !== 0) {
          // A fallback connection: we answer the server ourselves; the driver already answered the first one.
          const refusal = this.answerAuth(sock, code, msg.body);
          if (refusal) {
            flush();
            this.giveUp(refusal);
            return;
          }
          continue;
        }
        if (code === 0) {
          const refusal = this.certModeRefusal();
          if (refusal) {
            // libpq checks sslcertmode=require when authentication succeeds, and gives up without any fallback.
            flush();
            this.giveUp(refusal);
            return;
          }
          if (this.selfAuth) {
            this.selfAuth = false;
            const final = this.exchange.serverFinalFor(this.password());
            if (final) forward.push(final);
          }
          this.authOk = true;
          // target_session_attrs: hold what follows AuthenticationOk until ReadyForQuery, then decide (libpq's
          // CONNECTION_CHECK_TARGET); a rejected server is left for the next host and the driver never sees it.
          if (this.attempts.targetCheck() !== 'any') {
            this.held = forward.splice(0);
            this.reported = {};
          }
        } else {
          if ((code === 3 || code === 5 || code === 10) && this.exchange.awaiting === 'first') {
            this.passwordRequested = true;
            if (!this.driverHasPassword) {
              flush();
              this.giveUp('fe_sendauth: no password supplied');
              return;
            }
          }
          this.exchange.serverRequest(code, msg.body);
        }
      }
      if (this.selfAuth) continue; // notices etc. of the fallback connection before its AuthenticationOk
      if (this.held) {
        this.held.push(frame);
        if (msg.type === 0x53 /* 'S' ParameterStatus */) {
          const [name, value] = msg.body.toString('utf8').split('\0');
          if (name === 'in_hot_standby' || name === 'default_transaction_read_only') this.reported[name] = value ?? '';
        }
        if (msg.type !== 0x5a) continue;
        const rejection = this.targetRejection();
        if (rejection) {
          this.rejectTarget(sock, rejection);
          return;
        }
        forward.push(...this.held);
        this.held = undefined;
        this.loginDone = true;
        this.emit('login', this.facts);
        const rest = this.reader.takeRemaining();
        if (rest.length) forward.push(rest);
        break;
      }
      forward.push(frame);
      if (msg.type === 0x5a /* 'Z' ReadyForQuery */) {
        this.loginDone = true;
        this.emit('login', this.facts);
        const rest = this.reader.takeRemaining();
        if (rest.length) forward.push(rest);
        break;
      }
    }
    flush();
  }

  /** libpq's verdict on the session for target_session_attrs (from the ParameterStatus the server reported). */
  private targetRejection(): string | undefined {
    return targetRejection(this.attempts.targetCheck(), this.reported);
  }

  /** Close the session politely (Terminate) and go on with the next host, as libpq does. */
  private rejectTarget(sock: Socket, message: string): void {
    this.held = undefined;
    this.inner = undefined;
    sock.end(Buffer.from([0x58, 0, 0, 0, 4]));
    this.attempts.failHost(message);
    this.emit('fallback', { message, facts: this.facts! });
    const startup = this.startupPacket!;
    this.attempts.next().then(
      (n) => this.continueOn(n, startup),
      (err: unknown) => this.fatal(err),
    );
  }

  /** The password for the host in use: the plan's (password parameter, PGPASSWORD or ~/.pgpass), else what the
   * driver sent in cleartext. */
  private password(): string | undefined {
    const facts = this.facts;
    const host = this.plan.hosts.find((h) => h.host === facts?.host && h.hostaddr === facts?.hostaddr);
    return host?.password ?? this.plan.params.password ?? this.exchange.cleartext;
  }

  /** Answer an authentication request on a fallback connection. Returns libpq's message if we cannot. */
  private answerAuth(sock: Socket, code: number, body: Buffer): string | undefined {
    this.selfAuthenticator ??= new SelfAuthentication(startupUser(this.startupPacket), this.password());
    const reply = this.selfAuthenticator.answer(code, body);
    if (reply === undefined) return undefined;
    if (Buffer.isBuffer(reply)) {
      sock.write(reply);
      return undefined;
    }
    return reply.refusal;
  }

  /** Can libpq's retry be reproduced? Only from states where the driver is waiting for something we can supply. */
  private retryable(): boolean {
    if (!this.startupPacket || this.authOk) return false;
    const awaiting = this.exchange.awaiting;
    if (awaiting === 'first') return true;
    if (awaiting === 'ok' || awaiting === 'sasl-final') return this.password() !== undefined;
    return false;
  }

  /** An ErrorResponse during login: before AuthenticationOk libpq tries its next attempt, after it gives up. */
  private onLoginError(sock: Socket, frame: Buffer, fields: Readonly<Record<string, string>>): void {
    const text = formatServerError(fields);
    if (this.authOk || !this.retryable()) {
      this.attempts.abort(text);
      this.failure = connectError(this.attempts.failures);
      this.selfAuth = false;
      this.push(frame);
      return;
    }
    this.retryAfterLoginFailure(sock, text, frame, fields);
  }

  /** libpq gives up: the driver gets an error now (also returned, for adapters that raise it themselves). */
  giveUp(message: string): ClientError {
    this.attempts.abort(message);
    const err = connectError(this.attempts.failures);
    this.fatal(err);
    return err;
  }

  /** sslcertmode=require, checked at AuthenticationOk (see login-rules.ts). */
  private certModeRefusal(): string | undefined {
    return certModeRefusal(this.plan.ssl.certMode, this.facts?.tls);
  }

  /**
   * Continue on the next attempt libpq would make: replay the driver's StartupMessage there; if the driver had already
   * answered an authentication request, the stream answers the new server's requests itself.
   */
  private continueOn(n: Negotiated, startup: Buffer): void {
    this.attach(n);
    this.authOk = false;
    this.selfAuthenticator = undefined;
    this.selfAuth = this.exchange.awaiting !== 'first';
    this.inner!.write(startup);
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
      (n) => this.continueOn(n, startup),
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
    if (!this.loginDone && this.inner && this.retryable()) {
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
    if (!this.loginDone && !this.failure && this.startupPacket) {
      // EOF while logging in: libpq reports it and gives up (pqReadData → error_return).
      this.attempts.abort(
        'server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.',
      );
      this.failure = connectError(this.attempts.failures);
    }
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
      } else this.exchange.clientBytes(chunk);
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
