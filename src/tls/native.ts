/**
 * The native transport (issue 11): the client's TLS handshake and the relay to the backend done by the C addon in
 * native/, driven from Node's own event loop, behind the same seam as Node's `tls` (../gateway/transport.ts).
 * TypeScript keeps every decision: which material, what the facts mean, when to splice. The addon is optional:
 * loadNativeTransport() says undefined (and why, nativeUnavailableReason()) when it did not build or load.
 *
 * Handing a socket to native code: the addon takes a dup() of the net.Socket's fd and Node's handle is closed right
 * after, so a native session holds one descriptor per socket, as PgBouncer does. Bytes Node had already read but
 * nobody consumed are fed to OpenSSL first. The JavaScript Socket object stays open without its handle (the fd is
 * gone from Node, so no read, write or FIN can ever reach the connection through it) and stands for the native
 * session: when the native side closes, the socket is destroyed ('close' is emitted as the caller expects, and the
 * server's connection count drops then); when the caller destroys the socket, the native side closes its fd at once.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { PgtlsError } from '../errors.js';
import { AcceptedSocket } from '../gateway/accepted-socket.js';
import type {
  ClientTransport,
  HandshakeResult,
  LaneHandle,
  LaneOps,
  Negotiation,
  RelayStats,
  TlsFacts,
  TlsSession,
  TxHandback,
  TxRelayPort,
} from '../gateway/transport.js';
import { ERR_TLS_CONFIG, type TlsMaterial } from './context.js';

/** Event kinds from the addon (native/src/addon.c). */
export const EV = { handshakeOk: 1, handshakeFail: 2, data: 3, end: 4, drain: 5, close: 6, tx: 7, plain: 8 } as const;

type NativeHandle = object & { readonly __nativeSession: unique symbol };
export type NativeContext = object & { readonly __nativeContext: unique symbol };
/** Up to nine arguments after the kind (EV_TX has the most); named, so that no event allocates an array. */
export type EventCallback = (
  kind: number,
  a?: unknown,
  b?: unknown,
  c?: unknown,
  d?: unknown,
  e?: unknown,
  f?: unknown,
  g?: unknown,
  h?: unknown,
  i?: unknown,
  j?: unknown,
  k?: unknown,
) => boolean | undefined;

export interface Addon {
  readonly openssl: string;
  createContext(options: NativeContextOptions): NativeContext;
  /** negotiate: answer an SSLRequest alone with 'S' first, and give anything else back (EV.plain). */
  accept(
    ctx: NativeContext,
    fd: number,
    initial: Buffer | undefined,
    cb: EventCallback,
    negotiate?: boolean,
  ): NativeHandle;
  write(s: NativeHandle, data: Buffer): boolean;
  setReading(s: NativeHandle, on: boolean): void;
  end(s: NativeHandle): void;
  splice(s: NativeHandle, backendFd: number, toBackend: Buffer | undefined, toClient: Buffer | undefined): void;
  destroy(s: NativeHandle): void;
  txRelay(
    s: NativeHandle,
    serverFd: number,
    clientBytes: Buffer | undefined,
    trackNames: boolean,
    sessionMode: boolean,
  ): void;
  txStop(s: NativeHandle): number | undefined;
  txLane(
    s: NativeHandle,
    lane: LaneHandle,
    serverId: number,
    serverFd: number,
    lifetimeLeftMs: number,
    gucId: number,
    clientBytes: Buffer | undefined,
    trackNames: boolean,
    statements: Buffer | undefined,
    preparedNames: Buffer | undefined,
  ): void;
  txServer(s: NativeHandle): number;
  createLane(waitTimeoutMs: number, checkDelayMs: number, cb: (event: number, serverId: number) => void): LaneHandle;
  laneSet(lane: LaneHandle, full: boolean, jsWaiting: boolean, jsIdle: boolean): void;
  laneGive(
    lane: LaneHandle,
    serverId: number,
    serverFd: number,
    lifetimeLeftMs: number,
    gucId: number,
    preparedNames: Buffer | undefined,
  ): boolean;
  laneTake(lane: LaneHandle): [number, number] | undefined;
  laneRemove(lane: LaneHandle, serverId: number): boolean;
  laneStats(lane: LaneHandle): number[];
  laneClose(lane: LaneHandle): void;
  dupFd(fd: number): number;
  closeFd(fd: number): void;
  /** TLS to the backend (native/src/upstream.h; used by ./native-upstream.ts). */
  createClientContext(options: object): NativeContext;
  upstreamBegin(s: NativeHandle, servername: string): void;
  spliceTls(s: NativeHandle, backend: NativeHandle, toBackend: Buffer | undefined, toClient: Buffer | undefined): void;
}

interface NativeContextOptions {
  certChain: string;
  key: Buffer;
  caFile: string;
  crlFile: string;
  crlDir: string;
  ciphers: string;
  tls13Ciphers: string;
  groups: string;
  dhParams: string;
  preferServerCiphers: boolean;
  minVersion: string;
  maxVersion: string;
}

/** The addon's lane functions as LaneOps (one object per addon: every session's port shares it). */
const laneOpsByAddon = new WeakMap<Addon, LaneOps>();
function laneOps(addon: Addon): LaneOps {
  let ops = laneOpsByAddon.get(addon);
  if (!ops) {
    ops = {
      create: (waitTimeoutMs, checkDelayMs, onEvent) => addon.createLane(waitTimeoutMs, checkDelayMs, onEvent),
      set: (lane, full, jsWaiting, jsIdle) => addon.laneSet(lane, full, jsWaiting, jsIdle),
      give: (lane, id, fd, lifetimeLeftMs, gucId, names) => addon.laneGive(lane, id, fd, lifetimeLeftMs, gucId, names),
      take: (lane) => addon.laneTake(lane),
      remove: (lane, id) => addon.laneRemove(lane, id),
      stats: (lane) => addon.laneStats(lane),
      close: (lane) => addon.laneClose(lane),
    };
    laneOpsByAddon.set(addon, ops);
  }
  return ops;
}

/** The libuv handle inside a net.Socket (TCPWrap or PipeWrap): the only way to its fd. */
interface StreamHandle {
  fd?: number;
  reading?: boolean;
  readStop(): number;
  readStart(): number;
}

let loaded: { addon?: Addon; reason?: string } | undefined;

function addonPath(): string {
  // dist/src/tls/native.js -> <package>/native/build/Release; PGTLS_NATIVE_ADDON picks another build (ASan).
  return (
    process.env.PGTLS_NATIVE_ADDON ??
    fileURLToPath(new URL('../../../native/build/Release/pgtls_native.node', import.meta.url))
  );
}

function tryLoad(): { addon?: Addon; reason?: string } {
  if (process.platform === 'win32') return { reason: 'the native data plane supports POSIX systems only' };
  try {
    const addon = createRequire(import.meta.url)(addonPath()) as Addon;
    // The addon uses the OpenSSL inside this Node binary (its exported symbols), never a second copy.
    if (!addon.openssl.startsWith(`OpenSSL ${process.versions.openssl} `)) {
      return { reason: `the native addon runs ${addon.openssl}, Node carries OpenSSL ${process.versions.openssl}` };
    }
    return { addon };
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    return {
      reason:
        code === 'MODULE_NOT_FOUND'
          ? 'the native addon was not built (npm run build:native)'
          : `the native addon could not be loaded: ${(cause as Error).message.split('\n')[0]}`,
    };
  }
}

export function loadAddon(): { addon?: Addon; reason?: string } {
  loaded ??= tryLoad();
  return loaded;
}

/** Why loadNativeTransport() returned undefined, or undefined when it did not. */
export function nativeUnavailableReason(): string | undefined {
  return loadAddon().reason;
}

const contexts = new WeakMap<TlsMaterial, NativeContext>();

/**
 * The native SSL_CTX for a TlsMaterial, built once per material: a reload makes a new material and so a new
 * context, while sessions keep the one they started with (each SSL holds a reference to its SSL_CTX).
 * CA and CRL are loaded by path, as PostgreSQL does (ssl_crl_dir is a hashed directory consulted per verification).
 */
export function createNativeServerContext(material: TlsMaterial): NativeContext {
  const known = contexts.get(material);
  if (known) return known;
  const { addon, reason } = loadAddon();
  if (!addon) throw new PgtlsError(ERR_TLS_CONFIG, `native TLS is not available: ${reason}`);
  const s = material.settings;
  // The decrypted key crosses into C as PEM in memory only, and the copy is wiped right after.
  const key = Buffer.from(material.key.export({ type: 'pkcs8', format: 'pem' }) as string);
  try {
    const ctx = addon.createContext({
      // The chain loaded with the material (a file changed since is the next reload's business, as with Node's).
      certChain: material.chainPem,
      key,
      caFile: s.ssl_ca_file,
      crlFile: s.ssl_crl_file,
      crlDir: s.ssl_crl_dir,
      ciphers: s.ssl_ciphers,
      tls13Ciphers: s.ssl_tls13_ciphers,
      groups: s.ssl_groups,
      dhParams: s.ssl_dh_params_file === '' ? '' : readFileSync(s.ssl_dh_params_file, 'utf8'),
      preferServerCiphers: s.ssl_prefer_server_ciphers,
      minVersion: s.ssl_min_protocol_version,
      maxVersion: s.ssl_max_protocol_version,
    });
    contexts.set(material, ctx);
    return ctx;
  } catch (cause) {
    throw new PgtlsError(ERR_TLS_CONFIG, `could not create the native TLS context: ${(cause as Error).message}`, {
      cause,
    });
  } finally {
    key.fill(0);
  }
}

/** Stop Node from ever reading this socket again and return its fd with the bytes it had read but not delivered. */
export function takeOver(socket: Socket): { fd: number; buffered: Buffer[] } {
  const handle = (socket as unknown as { _handle?: StreamHandle })._handle;
  const fd = handle?.fd;
  if (!handle || typeof fd !== 'number' || fd < 0) {
    throw new PgtlsError(ERR_TLS_CONFIG, 'native TLS needs a socket with a file descriptor');
  }
  socket.pause();
  handle.reading = false;
  handle.readStop();
  handle.readStart = () => 0;
  const buffered: Buffer[] = [];
  for (let i = 0; i < 1024; i++) {
    const chunk = socket.read() as Buffer | null;
    if (chunk === null) break;
    buffered.push(chunk);
  }
  return { fd, buffered };
}

/**
 * Close Node's handle on a socket whose fd the addon now holds a dup of, and keep the Socket object open without it
 * (Node's own destroy() then emits 'close' without a handle to close). libuv removes the fd from its epoll set before
 * closing it, so the dup's registration is untouched. The peer's address is read first: Node caches it on first use,
 * so the log, hba and the admin console still see it. (The local address is never read by the gateway: no
 * getsockname() per connection for it.)
 */
export function releaseHandle(socket: Socket): void {
  void socket.remoteAddress;
  void socket.remotePort;
  const s = socket as unknown as { _handle: (StreamHandle & { close(): void }) | null };
  const handle = s._handle;
  if (!handle) return;
  s._handle = null;
  handle.close();
}

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

function toFacts(o: Record<string, unknown>): TlsFacts {
  // Assigned one by one, in this order, rather than spread from conditional literals: the same object, built
  // without V8's generic copy of each spread (once per connection).
  const f: { -readonly [K in keyof TlsFacts]: TlsFacts[K] } = {
    version: o.version as string,
    cipher: o.cipher as string,
    bits: o.bits as number,
  };
  if (typeof o.group === 'string') f.group = o.group;
  if (typeof o.sni === 'string') f.sni = o.sni;
  if (typeof o.alpn === 'string') f.alpn = o.alpn;
  if (Buffer.isBuffer(o.peerCertificate)) f.peerCertificate = o.peerCertificate;
  if (typeof o.peerVerifyError === 'string') f.peerVerifyError = o.peerVerifyError;
  return f;
}

/** A connection the addon is given: its fd, bytes Node read but did not deliver, and Node's side of the handover. */
interface Handover {
  readonly fd: number;
  readonly buffered: Buffer[];
  /** Close Node's handle (the addon holds a dup of the fd). */
  release(): void;
  /** Negotiation gave the connection back: Node reads it again. */
  restore(): void;
}

/** A net.Socket handed over: Node's reads stopped (takeOver), its handle closed later or its reads restarted. */
function socketHandover(socket: Socket): Handover {
  const handle0 = (socket as unknown as { _handle?: StreamHandle })._handle;
  const readStart = handle0?.readStart;
  const { fd, buffered } = takeOver(socket);
  return {
    fd,
    buffered,
    release: () => releaseHandle(socket),
    restore: () => {
      if (!handle0 || !readStart) return;
      // The stream asked for data once (its read is still outstanding, so it will not ask again): the handle reads
      // on its own, as it did before the addon took a look.
      handle0.readStart = readStart;
      handle0.reading = true;
      handle0.readStart();
    },
  };
}

/** An accepted handle that never had a net.Socket (../gateway/accepted-socket.ts): nothing was read from it. */
function acceptedHandover(socket: AcceptedSocket): Handover {
  const fd = socket.handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new PgtlsError(ERR_TLS_CONFIG, 'native TLS needs a file descriptor');
  return { fd, buffered: [], release: () => socket.release(), restore: () => undefined };
}

/**
 * Start a native session on a connection and settle with the handshake's outcome — or, with `negotiate`, with the
 * bytes of a connection that did not open with an SSLRequest alone (Node's side restored, nothing else touched).
 * Node's handle is closed once the native side owns the connection.
 */
function startSession(
  addon: Addon,
  socket: Socket | AcceptedSocket,
  material: TlsMaterial,
  initial: Buffer | undefined,
  negotiate: boolean,
): Promise<HandshakeResult | { plain: Buffer | undefined }> {
  const ctx = createNativeServerContext(material);
  const h = socket instanceof AcceptedSocket ? acceptedHandover(socket) : socketHandover(socket);
  const { fd, buffered } = h;
  const first = buffered.length === 0 ? initial : Buffer.concat(initial ? [initial, ...buffered] : buffered);
  const stream = new NativeTlsStream(addon, socket);
  return new Promise((resolve) => {
    let settled = false;
    let ignored = false;
    const cb: EventCallback = (kind, a, b, c, d, e, f, g, hh, i, j, k) => {
      if (ignored) return false;
      if (kind === EV.plain) {
        // Node reads the connection again, starting with what the addon read (its own fd closes right after).
        settled = ignored = true;
        h.restore();
        resolve({ plain: a as Buffer | undefined });
        return false;
      }
      if (kind === EV.close && !settled && negotiate && socket.destroyed) {
        // Closed by the gateway itself before the connection said what it is (authentication_timeout, shutdown):
        // nothing to report as a handshake failure.
        settled = ignored = true;
        resolve({ plain: undefined });
        return false;
      }
      if (!settled && negotiate) h.release();
      if (kind === EV.handshakeOk) {
        settled = true;
        const session: TlsSession = {
          facts: toFacts(a as Record<string, unknown>),
          stream,
          splice: (backend, stats) => stream.splice(backend, stats),
          spliceTls: (backend, stats) =>
            backend instanceof NativeTlsStream ? stream.spliceTls(backend, stats) : undefined,
          txRelay: stream.txPort,
        };
        resolve({ ok: true, session });
        return false;
      }
      if (kind === EV.handshakeFail) {
        settled = true;
        resolve({ ok: false, reason: a as string });
        return false;
      }
      if (kind === EV.close && !settled) {
        settled = true;
        resolve({ ok: false, reason: (c as string) || 'EOF detected' });
        socket.destroy();
        return false;
      }
      return stream.event(kind, a, b, c, d, e, f, g, hh, i, j, k);
    };
    const handle = addon.accept(ctx, fd, first?.length ? first : undefined, cb, negotiate);
    // Negotiating, Node's handle stays (read-stopped) until the addon says whose the connection is.
    if (!negotiate) h.release();
    stream.attach(handle);
    const onClose = () => {
      if (!ignored) addon.destroy(handle);
    };
    socket.once('close', onClose);
  });
}

function makeTransport(addon: Addon): ClientTransport {
  return {
    name: 'native',
    accept(socket: Socket, material: TlsMaterial, initial: Buffer | undefined): Promise<HandshakeResult> {
      if (socket.destroyed) return Promise.resolve({ ok: false, reason: 'EOF detected' });
      return startSession(addon, socket, material, initial, false) as Promise<HandshakeResult>;
    },
    async negotiate(socket: Socket | AcceptedSocket, material: TlsMaterial): Promise<Negotiation> {
      if (socket.destroyed) return { kind: 'plain', bytes: undefined };
      const r = await startSession(addon, socket, material, undefined, true);
      return 'plain' in r ? { kind: 'plain', bytes: r.plain } : { kind: 'tls', result: r };
    },
  };
}

let transport: ClientTransport | undefined;

/** The native transport, or undefined when the addon is missing or unusable (see nativeUnavailableReason()). */
export function loadNativeTransport(): ClientTransport | undefined {
  if (transport) return transport;
  const { addon } = loadAddon();
  if (!addon) return undefined;
  transport = makeTransport(addon);
  return transport;
}
