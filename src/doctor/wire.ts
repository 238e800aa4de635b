import { Socket, isIP } from 'node:net';
/**
 * The doctor's one place that opens sockets (conventions §1): TCP, the SSLRequest exchange, a plaintext
 * StartupMessage, and TLS handshakes with precise version/cipher/group settings, for probe and scan. They look at a
 * server the way a scanner does (one question per connection, nothing beyond the handshake and the first reply),
 * whereas doctor's libpq-exact connection goes through pgtls/client.
 */
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { PgtlsError } from '../errors.js';
import {
  ALPN_POSTGRESQL,
  BackendMessage,
  type ServerErrorFields,
  decodeErrorFields,
  encodeSSLRequest,
  encodeStartupMessage,
} from '../protocol/index.js';
import { readServerFlight } from '../tls/server-flight.js';

export const ERR_TARGET = 'PGTLS_ERR_DOCTOR_TARGET';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address; the port defaults to PostgreSQL's 5432. */
export function parseEndpoint(spec: string, defaultPort = 5432): Endpoint {
  const s = spec.trim();
  let host = s;
  let port: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) {
    host = bracket[1]!;
    port = bracket[2];
  } else if (isIP(s) !== 6) {
    const at = s.lastIndexOf(':');
    if (at >= 0) {
      host = s.slice(0, at);
      port = s.slice(at + 1);
    }
  }
  const n = port === undefined ? defaultPort : Number(port);
  if (host === '' || !Number.isInteger(n) || n < 1 || n > 65535 || (port !== undefined && !/^\d+$/.test(port))) {
    throw new PgtlsError(ERR_TARGET, `invalid target "${spec}": expected HOST[:PORT]`, {
      details: { hint: 'Give the server as host, host:port or [ipv6]:port, e.g. db.example.com:5432.' },
    });
  }
  return { host, port: n };
}

export type TcpFailure = { readonly stage: 'tcp'; readonly code: string; readonly message: string };

function tcpFailure(err: unknown): TcpFailure {
  const e = err as NodeJS.ErrnoException;
  return { stage: 'tcp', code: e.code ?? 'ERROR', message: e.message };
}

/** Open a TCP connection, or describe why not (ECONNREFUSED, ENOTFOUND, ETIMEDOUT, …). */
export function openTcp(ep: Endpoint, timeoutMs: number): Promise<Socket | TcpFailure> {
  return new Promise((resolve) => {
    const sock = new Socket();
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ stage: 'tcp', code: 'ETIMEDOUT', message: `connect to ${ep.host}:${ep.port} timed out` });
    }, timeoutMs);
    sock.once('error', (err) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(tcpFailure(err));
    });
    sock.connect(ep.port, ep.host, () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      // A reset after we stopped listening (the server closing after its FATAL) must not crash the process; each
      // reader notices the close on its own.
      sock.on('error', () => undefined);
      sock.setNoDelay(true);
      resolve(sock);
    });
  });
}

/** Read `n` bytes (or until close / timeout). Extra bytes are returned too: they matter (CVE-2021-23222). */
function readSome(sock: Socket, min: number, timeoutMs: number): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.off('error', onClose);
      sock.pause();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const onData = (d: Buffer) => {
      chunks.push(d);
      total += d.length;
      if (total >= min) finish(false);
    };
    const onClose = () => finish(true);
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('data', onData);
    sock.once('close', onClose);
    sock.once('error', onClose);
    sock.resume();
  });
}

export type SslAnswer =
  /** 'S': the server will do TLS. `extraBytes`: bytes that followed the 'S' unencrypted (a man-in-the-middle sign). */
  | { readonly answer: 'S'; readonly extraBytes: number }
  | { readonly answer: 'N' }
  /** An ErrorResponse instead of a byte: a pre-7.x server, or a proxy that refuses SSLRequest. */
  | { readonly answer: 'E'; readonly error: ServerErrorFields }
  | { readonly answer: 'closed' }
  | { readonly answer: 'timeout' }
  | { readonly answer: 'other'; readonly byte: number };

/** Send SSLRequest and read the one-byte answer. */
export async function sendSSLRequest(sock: Socket, timeoutMs: number): Promise<SslAnswer> {
  sock.write(encodeSSLRequest());
  const { data, closed } = await readSome(sock, 1, timeoutMs);
  if (data.length === 0) return closed ? { answer: 'closed' } : { answer: 'timeout' };
  const b = data[0]!;
  if (b === 0x53) return { answer: 'S', extraBytes: data.length - 1 };
  if (b === 0x4e) return { answer: 'N' };
  if (b === BackendMessage.ErrorResponse) {
    const rest = data.length >= 5 ? data : Buffer.concat([data, (await readSome(sock, 5, timeoutMs)).data]);
    return { answer: 'E', error: decodeErrorFields(rest.subarray(5, 1 + rest.readInt32BE(1))) };
  }
  return { answer: 'other', byte: b };
}

export type StartupReply =
  /** AuthenticationRequest: the server accepted the session as far as authentication (`code` 0 = trust). */
  | { readonly reply: 'auth'; readonly code: number }
  | { readonly reply: 'error'; readonly error: ServerErrorFields }
  | { readonly reply: 'closed' }
  | { readonly reply: 'timeout' }
  | { readonly reply: 'other'; readonly type: string };

/** Send a StartupMessage on `sock` (plain or TLS) and read the server's first reply, without authenticating. */
export async function startupReply(
  sock: Socket | tls.TLSSocket,
  user: string,
  database: string,
  timeoutMs: number,
): Promise<StartupReply> {
  sock.write(
    encodeStartupMessage([
      ['user', user],
      ['database', database],
      ['application_name', 'pgtls-doctor'],
    ]),
  );
  let { data, closed } = await readSome(sock as Socket, 5, timeoutMs);
  if (data.length === 0) return closed ? { reply: 'closed' } : { reply: 'timeout' };
  const type = data[0]!;
  if (data.length >= 5) {
    const len = data.readInt32BE(1);
    if (len >= 4 && len < 65536 && data.length < 1 + len && !closed) {
      const more = await readSome(sock as Socket, 1 + len - data.length, timeoutMs);
      data = Buffer.concat([data, more.data]);
      closed = more.closed;
    }
    if (type === BackendMessage.Authentication && data.length >= 9) return { reply: 'auth', code: data.readInt32BE(5) };
    if (type === BackendMessage.ErrorResponse) return { reply: 'error', error: decodeErrorFields(data.subarray(5)) };
  }
  return { reply: 'other', type: String.fromCharCode(type) };
}

/** Relays a net.Socket through JavaScript so the bytes the server sends can be recorded before TLS reads them. */
class RecordingStream extends Duplex {
  readonly received: Buffer[] = [];
  private size = 0;

  constructor(
    private readonly inner: Socket,
    private readonly limit: number,
  ) {
    super();
    inner.on('data', (d: Buffer) => {
      if (this.size < this.limit) {
        this.received.push(d);
        this.size += d.length;
      }
      if (!this.push(d)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.inner.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }
}

export interface TlsAttempt {
  readonly minVersion?: tls.SecureVersion;
  readonly maxVersion?: tls.SecureVersion;
  /** OpenSSL cipher string; TLS 1.3 suite names (TLS_*) go to the TLS 1.3 list, as Node splits them. */
  readonly ciphers?: string;
  readonly groups?: string;
  /** SNI; not sent for IP addresses (RFC 6066 forbids it, and libpq does not send it either). */
  readonly servername?: string | undefined;
  readonly alpn?: readonly string[];
  /** Trust anchors (PEM); when given, `authorized` reports OpenSSL's verdict on the chain. */
  readonly ca?: string | readonly string[] | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  /** Record the server's flight (chain as sent, CertificateRequest). */
  readonly capture?: boolean;
}

export interface TlsSuccess {
  readonly ok: true;
  readonly socket: tls.TLSSocket;
  readonly protocol: string;
  readonly cipher: { readonly name: string; readonly standardName: string };
  readonly group?: { readonly type: string; readonly name?: string; readonly size: number } | undefined;
  readonly alpn: string | false;
  readonly authorized: boolean;
  readonly authorizationError?: string | undefined;
  /** DER, as sent (capture) or as Node re-linked them (no capture). */
  readonly peerCertificates: readonly Buffer[];
  readonly chainAsSent: boolean;
  readonly certificateRequested?: boolean | undefined;
}

export interface TlsFailure {
  readonly ok: false;
  /** Node/OpenSSL error code, e.g. ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION, ECONNRESET. */
  readonly code: string;
  readonly message: string;
  /** The TLS alert the server sent, when there was one ("handshake failure", "protocol version", …). */
  readonly alert?: string | undefined;
}

/** OpenSSL's alert reason text from an error message such as "…:sslv3 alert handshake failure:…". */
function alertOf(message: string): string | undefined {
  const m = /(?:sslv3|tlsv1|tlsv13|ssl\/tls) alert ([a-z0-9 ]+?)(?::|$)/i.exec(message);
  return m?.[1];
}

function peerChain(sock: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c = sock.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  const seen = new Set<string>();
  while (c?.raw && !seen.has(c.fingerprint256) && out.length < 16) {
    seen.add(c.fingerprint256);
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

/**
 * One TLS handshake over `sock` (already past SSLRequest → 'S', or fresh for direct TLS). Never throws: a failure is
 * a value. On success the caller owns `socket` and must end or destroy it.
 */
export function tlsHandshake(sock: Socket, opts: TlsAttempt, timeoutMs: number): Promise<TlsSuccess | TlsFailure> {
  return new Promise((resolve) => {
    const recorder = opts.capture ? new RecordingStream(sock, 256 * 1024) : undefined;
    const keylog: Buffer[] = [];
    let settled = false;
    const options: tls.ConnectionOptions = {
      socket: (recorder ?? sock) as Socket,
      rejectUnauthorized: false,
      // Host names are checked with libpq's rules elsewhere, never OpenSSL's or Node's.
      checkServerIdentity: () => undefined,
      ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      ...(opts.ciphers ? { ciphers: opts.ciphers } : {}),
      ...(opts.groups ? { ecdhCurve: opts.groups } : {}),
      ...(opts.servername && isIP(opts.servername) === 0 ? { servername: opts.servername } : {}),
      ...(opts.alpn ? { ALPNProtocols: [...opts.alpn] } : {}),
      ...(opts.ca !== undefined ? { ca: typeof opts.ca === 'string' ? opts.ca : [...opts.ca] } : {}),
      ...(opts.cert ? { cert: opts.cert } : {}),
      ...(opts.key ? { key: opts.key } : {}),
    };
    let t: tls.TLSSocket;
    try {
      t = tls.connect(options);
    } catch (err) {
      sock.destroy();
      const e = err as NodeJS.ErrnoException;
      resolve({ ok: false, code: e.code ?? 'ERROR', message: e.message });
      return;
    }
    if (recorder) t.on('keylog', (line: Buffer) => keylog.push(line));
    const timer = setTimeout(() => fail({ code: 'ETIMEDOUT', message: 'TLS handshake timed out' }), timeoutMs);
    function fail(e: { code?: string; message: string }) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      t.destroy();
      sock.destroy();
      const code = e.code ?? 'ERROR';
      const message =
        code === 'ECONNRESET' || /socket disconnected|before secure TLS/.test(e.message)
          ? 'the server closed the connection during the TLS handshake'
          : e.message;
      resolve({ ok: false, code, message, alert: alertOf(e.message) });
    }
    t.once('error', (err: NodeJS.ErrnoException) =>
      fail({ ...(err.code ? { code: err.code } : {}), message: err.message }),
    );
    t.once('close', () => fail({ code: 'ECONNRESET', message: 'socket disconnected' }));
    t.once('secureConnect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      t.removeAllListeners('close');
      t.removeAllListeners('error');
      t.on('error', () => undefined);
      const protocol = t.getProtocol() ?? 'unknown';
      const c = t.getCipher();
      const eph = t.getEphemeralKeyInfo() as { type?: string; name?: string; size?: number } | null;
      let certificates = peerChain(t);
      let chainAsSent = false;
      let certificateRequested: boolean | undefined;
      if (recorder) {
        const flight = readServerFlight(Buffer.concat(recorder.received), {
          tls13: protocol === 'TLSv1.3',
          suite: c.standardName,
          keylog,
        });
        if (flight.certificates.length > 0) {
          certificates = [...flight.certificates];
          chainAsSent = true;
        }
        if (flight.complete) certificateRequested = flight.certificateRequested;
      }
      resolve({
        ok: true,
        socket: t,
        protocol,
        cipher: { name: c.name, standardName: c.standardName },
        group: eph?.type ? { type: eph.type, ...(eph.name ? { name: eph.name } : {}), size: eph.size ?? 0 } : undefined,
        alpn: t.alpnProtocol ?? false,
        authorized: t.authorized,
        authorizationError: t.authorizationError ? String(t.authorizationError) : undefined,
        peerCertificates: certificates,
        chainAsSent,
        certificateRequested,
      });
    });
  });
}

export type Negotiated =
  | TcpFailure
  | { readonly stage: 'sslrequest'; readonly answer: SslAnswer }
  | ({ readonly stage: 'tls' } & TlsFailure)
  | ({ readonly stage: 'done' } & TlsSuccess);

/** TCP → SSLRequest ('S') → TLS, or TCP → TLS with ALPN "postgresql" when `direct` (PostgreSQL 17+). */
export async function negotiate(
  ep: Endpoint,
  opts: TlsAttempt & { direct?: boolean },
  timeoutMs: number,
): Promise<Negotiated> {
  const sock = await openTcp(ep, timeoutMs);
  if (!(sock instanceof Socket)) return sock;
  if (!opts.direct) {
    const answer = await sendSSLRequest(sock, timeoutMs);
    if (answer.answer !== 'S') {
      sock.destroy();
      return { stage: 'sslrequest', answer };
    }
  }
  const attempt: TlsAttempt = opts.direct ? { ...opts, alpn: [ALPN_POSTGRESQL] } : opts;
  const r = await tlsHandshake(sock, attempt, timeoutMs);
  return r.ok ? { stage: 'done', ...r } : { stage: 'tls', ...r };
}

/** End a TLS socket politely (close_notify) without waiting for the server. */
export function closeTls(s: tls.TLSSocket): void {
  s.end();
  setTimeout(() => s.destroy(), 200).unref();
}
