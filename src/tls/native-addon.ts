/**
 * The native addon as TypeScript sees it (native/src/addon.c and friends): its functions and event kinds, loading it
 * (optional: nativeUnavailableReason() says why not), the native SSL_CTX per TLS material, and taking a net.Socket's
 * fd away from Node (takeOver, releaseHandle). The transport built on it is ./native.ts; a session's stream is
 * ./native-stream.ts.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { PgtlsError } from '../errors.js';
import type { LaneHandle, LaneOps } from '../gateway/transport.js';
import { ERR_TLS_CONFIG, type TlsMaterial } from './context.js';

/** Event kinds from the addon (native/src/addon.c). */
export const EV = { handshakeOk: 1, handshakeFail: 2, data: 3, end: 4, drain: 5, close: 6, tx: 7, plain: 8 } as const;

export type NativeHandle = object & { readonly __nativeSession: unique symbol };
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
export function laneOps(addon: Addon): LaneOps {
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
export interface StreamHandle {
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
