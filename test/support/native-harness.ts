/**
 * A tiny relay on the transport seam for the native transport's tests and benchmark: a plain net.Server that does
 * what the gateway's phases do around a ClientTransport (answer SSLRequest with 'S' or take a direct-TLS ClientHello,
 * accept, read the StartupMessage through session.stream, open the backend and re-send the startup packet to it,
 * then splice natively or relay in JavaScript) and nothing else: no hba, no authentication of its own.
 * `nodeTransport` here is a small reference implementation of the seam on Node's `tls`, for side-by-side tests.
 */
import { type Server, type Socket, connect, createServer } from 'node:net';
import { type Duplex, pipeline } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { opensslVerifyText } from '../../src/gateway/transport-node.js';
import type { ClientTransport, HandshakeResult, RelayStats, TlsFacts } from '../../src/gateway/transport.js';
import type { TlsMaterial } from '../../src/tls/context.js';

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const MAX_STARTUP = 10_000;

/** Node's tls behind the seam (reference and fallback shape; the gateway's own lives in src/gateway/). */
export const nodeTransport: ClientTransport = {
  name: 'node',
  accept(socket: Socket, material: TlsMaterial, initial: Buffer | undefined): Promise<HandshakeResult> {
    if (initial?.length) socket.unshift(initial);
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext: material.context,
      requestCert: material.requestCert,
      rejectUnauthorized: false,
      ALPNProtocols: ['postgresql'],
    });
    return new Promise((resolve) => {
      tls.once('secure', () => {
        const cipher = tls.getCipher();
        const eph = tls.getEphemeralKeyInfo() as { name?: string } | null;
        const peer = tls.getPeerX509Certificate();
        // the handle's verifyError(): what authorizationError reports, without rejectUnauthorized
        const handle = (tls as unknown as { ssl?: { verifyError(): Error | null } }).ssl;
        const verr = peer ? handle?.verifyError() : undefined;
        const servername = (tls as unknown as { servername?: string | false }).servername;
        const facts: TlsFacts = {
          version: tls.getProtocol() ?? '',
          cipher: cipher.name,
          // Node does not expose the cipher's bits; good enough for a reference in tests.
          bits: /AES256|AES_256|CHACHA20/.test(cipher.name) ? 256 : 128,
          ...(eph?.name ? { group: eph.name } : {}),
          ...(typeof servername === 'string' && servername ? { sni: servername } : {}),
          ...(tls.alpnProtocol ? { alpn: tls.alpnProtocol } : {}),
          ...(peer ? { peerCertificate: peer.raw } : {}),
          // OpenSSL's text, without the advice Node 24+ appends (as the gateway's transport reports it)
          ...(verr ? { peerVerifyError: opensslVerifyText(verr.message) } : {}),
        };
        resolve({ ok: true, session: { facts, stream: tls } });
      });
      tls.once('error', (err: Error & { reason?: string }) => {
        resolve({ ok: false, reason: err.reason ?? err.message });
        socket.destroy();
      });
      tls.once('close', () => resolve({ ok: false, reason: 'EOF detected' }));
    });
  },
};

export interface RelayResult {
  readonly ok: boolean;
  readonly reason?: string;
  readonly facts?: TlsFacts;
  readonly stats?: RelayStats;
  readonly spliced?: boolean;
  /** What went wrong after a successful handshake (the client left before its StartupMessage, …). */
  readonly error?: string;
}

export interface Relay {
  readonly port: number;
  readonly results: RelayResult[];
  /** Resolves with the next finished connection's result (handshake failures finish at once). */
  next(): Promise<RelayResult>;
  close(): Promise<void>;
}

/** Read exactly n bytes from a paused socket or stream; extra bytes are unshifted back. */
function readExactly(s: Duplex, n: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const timer = setTimeout(() => finish(new Error('timed out reading from the client')), timeoutMs);
    const finish = (err?: Error, buf?: Buffer) => {
      clearTimeout(timer);
      s.off('readable', onReadable);
      s.off('end', onEnd);
      s.off('error', onEnd);
      if (err) reject(err);
      else resolve(buf!);
    };
    const onEnd = () => finish(new Error('the client closed'));
    const onReadable = () => {
      for (let i = 0; i < 1000; i++) {
        const c = s.read() as Buffer | null;
        if (c === null) return;
        chunks.push(c);
        have += c.length;
        if (have >= n) {
          const all = Buffer.concat(chunks);
          if (all.length > n) s.unshift(all.subarray(n));
          finish(undefined, all.subarray(0, n));
          return;
        }
      }
    };
    s.on('readable', onReadable);
    s.on('end', onEnd);
    s.on('error', onEnd);
    onReadable();
  });
}

export interface BackendAddress {
  readonly host?: string;
  readonly port?: number;
  readonly path?: string;
}

async function serve(
  socket: Socket,
  transport: ClientTransport,
  material: TlsMaterial,
  backendAt: BackendAddress,
): Promise<RelayResult> {
  socket.pause();
  let initial: Buffer | undefined;
  // SSLRequest (GSSENCRequest refused with 'N' first, as PostgreSQL without GSSAPI does), or a direct-TLS ClientHello.
  for (let i = 0; i < 3; i++) {
    const head = await readExactly(socket, 1);
    if (head[0] === 0x16) {
      initial = head;
      break;
    }
    const rest = await readExactly(socket, 7);
    const code = rest.readInt32BE(3);
    if (code === GSSENC_REQUEST) {
      socket.write('N');
      continue;
    }
    if (code !== SSL_REQUEST) throw new Error('not an SSLRequest');
    socket.write('S');
    break;
  }
  const hs = await transport.accept(socket, material, initial);
  if (!hs.ok) return { ok: false, reason: hs.reason };
  const { session } = hs;
  const stream = session.stream;
  stream.pause();
  let len: number;
  let body: Buffer;
  try {
    len = (await readExactly(stream, 4)).readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP) throw new Error('bad startup length');
    body = await readExactly(stream, len - 4);
  } catch (err) {
    stream.destroy();
    return { ok: true, facts: session.facts, error: (err as Error).message };
  }
  const backend = backendAt.path ? connect(backendAt.path) : connect(backendAt.port!, backendAt.host ?? '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    backend.once('connect', resolve);
    backend.once('error', reject);
  });
  backend.setNoDelay?.(true);
  const startup = Buffer.alloc(4);
  startup.writeInt32BE(len);
  backend.write(Buffer.concat([startup, body]));
  const stats: RelayStats = { bytesFromClient: 0, bytesFromBackend: 0 };
  if (session.splice) {
    backend.pause();
    await session.splice(backend, stats);
    return { ok: true, facts: session.facts, stats, spliced: true };
  }
  await new Promise<void>((resolve) => {
    let n = 0;
    const done = () => {
      if (++n === 2) resolve();
    };
    stream.on('data', (d: Buffer) => {
      stats.bytesFromClient += d.length;
    });
    backend.on('data', (d: Buffer) => {
      stats.bytesFromBackend += d.length;
    });
    pipeline(stream, backend, () => done());
    pipeline(backend, stream, () => done());
    stream.resume();
  });
  return { ok: true, facts: session.facts, stats, spliced: false };
}

/** Start the relay on 127.0.0.1:0. `material` is read per connection, so a test can swap it (reload). */
export async function startRelay(
  transport: ClientTransport,
  material: () => TlsMaterial,
  backend: BackendAddress,
  listen: { port?: number } = {},
): Promise<Relay> {
  // Results are kept for tests; a long benchmark run keeps only the recent ones.
  const results: RelayResult[] = [];
  const waiters: ((r: RelayResult) => void)[] = [];
  let consumed = 0;
  const sockets = new Set<Socket>();
  const record = (r: RelayResult) => {
    if (results.length >= 10_000 && waiters.length === 0) {
      results.splice(0, results.length);
      consumed = 0;
    }
    results.push(r);
    const w = waiters.shift();
    if (w) {
      consumed++;
      w(r);
    }
  };
  const server: Server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    serve(socket, transport, material(), backend).then(record, (err: Error) => {
      socket.destroy();
      record({ ok: false, reason: `relay: ${err.message}` });
    });
  });
  await new Promise<void>((resolve) => server.listen(listen.port ?? 0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    results,
    next: () =>
      consumed < results.length ? Promise.resolve(results[consumed++]!) : new Promise((r) => waiters.push(r)),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
