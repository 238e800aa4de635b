/**
 * TLS on the gateway's hop to PostgreSQL done by the native addon (native/src/upstream.h): the client side of the
 * handshake on a connected socket (after SSLRequest's 'S', or at once for direct TLS), and a stream the gateway
 * speaks the protocol over until the relay, where the client's native session splices to it in C (TLS<->TLS).
 * Only the facts cross back: libpq's decisions on them (verification, host name, ALPN, the texts) stay in
 * ../client/negotiate.ts, which uses this connector when the gateway passes it and Node's tls otherwise.
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { EV, type EventCallback, type NativeContext, loadAddon, releaseHandle, takeOver } from './native-addon.js';
import { NativeTlsStream } from './native-stream.js';

/** What the client handshake is configured with: Node's tls options as negotiate.ts builds them. */
export interface UpstreamTlsOptions {
  readonly servername?: string;
  readonly minVersion: string;
  readonly maxVersion: string;
  readonly ciphers: string;
  readonly ca?: readonly string[];
  /** CRLs; when given (even empty) CRL checking is on, as Node turns it on for a `crl` option. */
  readonly crl?: readonly string[];
  readonly cert?: string;
  readonly key?: string;
}

/** The handshake's facts, as OpenSSL reports them (libpq's checks are made on these by the caller). */
export interface UpstreamTlsFacts {
  readonly version: string;
  readonly cipher: string;
  readonly standardName?: string;
  readonly alpn?: string;
  /** Leaf first; the verified chain (with the trust anchor) when the chain verified, else as the server sent it. */
  readonly peerChain: readonly Buffer[];
  /** X509_V_OK (0) or OpenSSL's verify error number, with its text in verifyError. */
  readonly verifyResult: number;
  readonly verifyError?: string;
  readonly certificateRequested: boolean;
}

export type UpstreamTlsResult =
  | { readonly ok: true; readonly stream: Duplex; readonly facts: UpstreamTlsFacts }
  /** `reason`: OpenSSL's reason text, or "EOF detected", or the errno text of a failed read or write. */
  | { readonly ok: false; readonly reason: string };

export interface UpstreamTlsConnector {
  /**
   * The client handshake on `socket` (connected, paused, nothing pending to write). Throws an Error whose message is
   * OpenSSL's reason when the material does not make a context (a key that does not match the certificate).
   */
  connect(socket: Socket, options: UpstreamTlsOptions): Promise<UpstreamTlsResult>;
}

/** How often the native path ran (tests prove which path a session took; the admin console may show them). */
export const nativeUpstreamCounters = { handshakes: 0, failures: 0, splices: 0 };

/** Contexts by content: the gateway loads its upstream material per attempt, as libpq does, but it rarely changes. */
const contexts = new Map<string, NativeContext>();
const MAX_CONTEXTS = 16;

function contextFor(o: UpstreamTlsOptions): NativeContext {
  const { addon, reason } = loadAddon();
  if (!addon) throw new Error(`native TLS is not available: ${reason}`);
  const id = createHash('sha256')
    .update(JSON.stringify([o.minVersion, o.maxVersion, o.ciphers, o.ca, o.crl, o.cert, o.key]))
    .digest('hex');
  const known = contexts.get(id);
  if (known) return known;
  const key = o.key ? Buffer.from(o.key) : undefined;
  try {
    const ctx = addon.createClientContext({
      ca: o.ca?.join('\n') ?? '',
      crl: o.crl?.join('\n') ?? '',
      crlCheck: o.crl !== undefined && o.crl.length > 0,
      cert: o.cert ?? '',
      ...(key ? { key } : {}),
      ciphers: o.ciphers,
      minVersion: o.minVersion,
      maxVersion: o.maxVersion,
    });
    if (contexts.size >= MAX_CONTEXTS) contexts.delete(contexts.keys().next().value as string);
    contexts.set(id, ctx);
    return ctx;
  } finally {
    key?.fill(0);
  }
}

function toFacts(o: Record<string, unknown>): UpstreamTlsFacts {
  return {
    version: o.version as string,
    cipher: o.cipher as string,
    ...(typeof o.standardName === 'string' ? { standardName: o.standardName } : {}),
    ...(typeof o.alpn === 'string' ? { alpn: o.alpn } : {}),
    peerChain: Array.isArray(o.peerChain) ? (o.peerChain as Buffer[]) : [],
    verifyResult: o.verifyResult as number,
    ...(typeof o.verifyError === 'string' ? { verifyError: o.verifyError } : {}),
    certificateRequested: o.certificateRequested === true,
  };
}

const connector: UpstreamTlsConnector = {
  connect(socket, options) {
    const ctx = contextFor(options);
    const { addon } = loadAddon();
    if (!addon) throw new Error('native TLS is not available');
    if (socket.destroyed) return Promise.resolve({ ok: false, reason: 'EOF detected' });
    const { fd, buffered } = takeOver(socket);
    const first = buffered.length ? Buffer.concat(buffered) : undefined;
    const stream = new NativeTlsStream(addon, socket);
    return new Promise<UpstreamTlsResult>((resolve) => {
      let settled = false;
      const fail = (reason: string) => {
        settled = true;
        nativeUpstreamCounters.failures++;
        resolve({ ok: false, reason });
      };
      const cb: EventCallback = (kind, a, b, c, d, e, f, g, h, i) => {
        if (kind === EV.handshakeOk) {
          settled = true;
          nativeUpstreamCounters.handshakes++;
          const facts = toFacts(a as Record<string, unknown>);
          // The leaf as the server sent it: tls-server-end-point hashes this certificate (RFC 5929).
          stream.upstreamPeerCertificate = (a as { peerCertificate?: Buffer }).peerCertificate;
          resolve({ ok: true, stream, facts });
          return false;
        }
        if (kind === EV.handshakeFail) {
          fail(a as string);
          return false;
        }
        if (kind === EV.close && !settled) {
          fail((c as string) || 'EOF detected');
          socket.destroy();
          return false;
        }
        return stream.event(kind, a, b, c, d, e, f, g, h, i);
      };
      const handle = addon.accept(ctx, fd, first, cb);
      addon.upstreamBegin(handle, options.servername ?? '');
      releaseHandle(socket);
      stream.attach(handle);
      socket.once('close', () => addon.destroy(handle));
    });
  },
};

/** The native connector, or undefined when the addon is not available (the caller then uses Node's tls). */
export function nativeUpstreamTls(): UpstreamTlsConnector | undefined {
  return loadAddon().addon ? connector : undefined;
}

/** Count a TLS<->TLS relay started by the gateway (src/gateway/phases/relay.ts). */
export function countNativeTlsSplice(): void {
  nativeUpstreamCounters.splices++;
}
