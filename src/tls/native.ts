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
 *
 * Here: the handover and the transport; the addon itself (loading, contexts, takeOver) is ./native-addon.ts, a
 * session's decrypted stream ./native-stream.ts.
 */
import type { Socket } from 'node:net';
import { PgtlsError } from '../errors.js';
import { AcceptedSocket } from '../gateway/accepted-socket.js';
import type { ClientTransport, HandshakeResult, Negotiation, TlsFacts, TlsSession } from '../gateway/transport.js';
import { ERR_TLS_CONFIG, type TlsMaterial } from './context.js';
import {
  type Addon,
  EV,
  type EventCallback,
  type StreamHandle,
  createNativeServerContext,
  loadAddon,
  releaseHandle,
  takeOver,
} from './native-addon.js';
import { NativeTlsStream } from './native-stream.js';

export { createNativeServerContext, loadAddon, nativeUnavailableReason } from './native-addon.js';
export { NativeTlsStream } from './native-stream.js';

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
