/**
 * One connection attempt's building blocks, as libpq's PQconnectPoll performs them: TCP connect (with libpq's
 * errno texts and hints), SSLRequest and its one-byte answer, and the TLS handshake with libpq's verification order
 * (chain by OpenSSL against the roots libpq would load, then libpq's own host-name rules, then ALPN for direct TLS).
 * The only place in pgtls/client that opens sockets and upgrades them to TLS (conventions §1).
 */
import { X509Certificate } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { appendFileSync } from 'node:fs';
import { type Socket, connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { type PeerCertificate, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { keyUsageAllowsTls, verifyHostName } from '../pki/hostname.js';
import { encodeSSLRequest } from '../protocol/startup.js';
import type { UpstreamTlsConnector } from '../tls/native-upstream.js';
import { CertificateRequestTap } from './cert-request.js';
import type { AttemptFailure } from './errors.js';
import { type ConnectionPlan, DEFAULT_PORT, type HostTarget, sniSuppressed } from './resolve.js';
import type { TlsMaterial } from './tls-files.js';
import { VERIFY_CODES, describeVerifyError } from './verify-codes.js';

export type Method = 'plain' | 'ssl' | 'direct';

export interface TlsFacts {
  readonly protocol: string | null;
  readonly cipher: string;
  readonly alpn: string | false;
  /** SNI sent, or undefined when libpq would not send one (IP literal, sslsni=0). */
  readonly servername?: string;
  /** The server's chain as OpenSSL built it, leaf first (with the trust anchor when it came from the root file). */
  readonly peerChain: readonly X509Certificate[];
  /** What was checked: nothing, the chain, or the chain and the host name. */
  readonly verified: 'none' | 'chain' | 'chain+host';
  readonly rootSource?: string;
  readonly crlSources: readonly string[];
  readonly clientCertificate?: string;
  /** Whether the server sent a CertificateRequest (known only with sslcertmode=require, where libpq needs it). */
  readonly certificateRequested?: boolean;
}

export interface ConnectionFacts {
  readonly host: string;
  readonly hostaddr: string;
  readonly address: string;
  readonly port: number;
  readonly method: Method;
  /** The server's one-byte answer to SSLRequest, when one was sent. */
  readonly sslResponse?: 'S' | 'N';
  readonly tls?: TlsFacts;
  /** Attempts that failed before this one, with libpq's messages (what psql would have shown had all failed). */
  readonly fallbacks: readonly AttemptFailure[];
  /** The libpq "connection to server … failed: " prefix for errors on this connection. */
  readonly prefix: string;
}

/** `S`: a Duplex only for the gateway's native TLS to its backend (ConnectionAttempts' `native` connector). */
export interface Negotiated<S extends Duplex = Socket | TLSSocket> {
  readonly socket: S;
  readonly facts: ConnectionFacts;
}

export interface Candidate {
  readonly target: HostTarget;
  readonly address: string;
  readonly family: number;
  readonly port: number;
  readonly prefix: string;
  readonly path?: string;
}

const STRERROR: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'Connection refused',
  ENOENT: 'No such file or directory',
  ETIMEDOUT: 'Connection timed out',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
  EACCES: 'Permission denied',
  ECONNRESET: 'Connection reset by peer',
  EADDRNOTAVAIL: 'Cannot assign requested address',
  EPIPE: 'Broken pipe',
};

const CLOSED_UNEXPECTEDLY =
  'server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.';

/** OpenSSL reasons after which libpq adds its protocol-version hint (open_client_SSL). */
const VERSION_REASONS = new Set([
  'no protocols available',
  'unsupported protocol',
  'bad protocol version number',
  'unknown protocol',
  'unknown ssl version',
  'unsupported ssl version',
  'wrong ssl version',
  'wrong version number',
  'tlsv1 alert protocol version',
  'version too high',
  'version too low',
]);

export class AttemptError extends Error {
  constructor(
    message: string,
    readonly reason?: string,
    /**
     * What libpq does next: `method` — the next encryption method on a new connection (CONNECTION_FAILED);
     * `address` — the next address or host (TCP failures, timeouts); `stop` — give up (error_return).
     */
    readonly then: 'method' | 'address' | 'stop' = 'method',
  ) {
    super(message);
  }
}

export function prefixFor(target: HostTarget, address: string, port: string, path?: string): string {
  if (path !== undefined) return `connection to server on socket "${path}" failed: `;
  const displayed = target.kind === 'address' ? target.hostaddr : target.host;
  const p = port === '' ? DEFAULT_PORT : port;
  if (target.kind !== 'address' && address !== '' && displayed !== address) {
    return `connection to server at "${displayed}" (${address}), port ${p} failed: `;
  }
  return `connection to server at "${displayed}", port ${p} failed: `;
}

function once<T>(emitter: EventEmitter, ok: string, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const cleanup = () => {
      emitter.off(ok, onOk);
      emitter.off('error', onErr);
      if (timer) clearTimeout(timer);
    };
    const onOk = (v: T) => {
      cleanup();
      resolve(v);
    };
    const onErr = (e: Error) => {
      cleanup();
      reject(e);
    };
    emitter.once(ok, onOk);
    emitter.once('error', onErr);
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        cleanup();
        reject(onTimeout());
      }, timeoutMs);
    }
  });
}

export function tcpConnect(c: Candidate, timeoutMs: number, plan?: ConnectionPlan): Promise<Socket> {
  const socket =
    c.path !== undefined
      ? netConnect({ path: c.path })
      : netConnect({ host: c.address, port: c.port, family: c.family, noDelay: true });
  return once<void>(socket, 'connect', timeoutMs, () => new Error('timeout expired'))
    .then(() => {
      // libpq turns TCP keepalives on unless keepalives=0; keepalives_idle is the delay in seconds.
      if (c.path === undefined && plan && plan.params.keepalives !== '0') {
        const idle = Number(plan.params.keepalives_idle ?? '0');
        socket.setKeepAlive(true, Number.isFinite(idle) && idle > 0 ? idle * 1000 : 0);
      }
      return socket;
    })
    .catch((err: NodeJS.ErrnoException) => {
      socket.destroy();
      if (err.message === 'timeout expired') throw new AttemptError('timeout expired', undefined, 'address');
      const text = STRERROR[err.code ?? ''] ?? err.message;
      const hint =
        c.path !== undefined
          ? '\tIs the server running locally and accepting connections on that socket?'
          : '\tIs the server running on that host and accepting TCP/IP connections?';
      throw new AttemptError(`${text}\n${hint}`, err.code, 'address');
    });
}

/**
 * Send SSLRequest and read the one-byte answer. Bytes that came with an 'S' were not encrypted (CVE-2021-23222):
 * like libpq, we report them only once the handshake has succeeded (`extra`), so a handshake failure still wins.
 */
export function sslRequest(socket: Socket, timeoutMs: number): Promise<{ answer: 'S' | 'N'; extra: boolean }> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (fn: () => void) => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (timer) clearTimeout(timer);
      fn();
    };
    const onData = (chunk: Buffer) => {
      socket.pause();
      const c = String.fromCharCode(chunk[0]!);
      if (c === 'S' || c === 'N') return done(() => resolve({ answer: c, extra: chunk.length > 1 }));
      if (c === 'E')
        return done(() =>
          reject(new AttemptError('server sent an error response during SSL exchange', undefined, 'stop')),
        );
      done(() => reject(new AttemptError(`received invalid response to SSL negotiation: ${c}`, undefined, 'stop')));
    };
    const onError = (err: NodeJS.ErrnoException) =>
      done(() =>
        reject(
          new AttemptError(
            err.code === 'ECONNRESET' ? CLOSED_UNEXPECTEDLY : `could not send SSL negotiation packet: ${err.message}`,
            err.code,
            'stop',
          ),
        ),
      );
    const onClose = () => done(() => reject(new AttemptError(CLOSED_UNEXPECTEDLY, undefined, 'stop')));
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    if (timeoutMs > 0)
      timer = setTimeout(
        () => done(() => reject(new AttemptError('timeout expired', undefined, 'address'))),
        timeoutMs,
      );
    socket.write(encodeSSLRequest());
  });
}

function versionHint(plan: ConnectionPlan): string {
  const min = plan.params.ssl_min_protocol_version ?? 'TLSv1';
  const max = plan.params.ssl_max_protocol_version ?? 'TLSv1.3';
  return `This may indicate that the server does not support any SSL protocol version between ${min} and ${max}.`;
}

/** libpq's message for a failed SSL_connect(), from the error Node reports. */
function handshakeFailure(plan: ConnectionPlan, err: NodeJS.ErrnoException & { reason?: string }): AttemptError {
  const reason = err.reason;
  if (reason) {
    const text = `SSL error: ${reason}`;
    if (VERSION_REASONS.has(reason)) return new AttemptError(`${text}\n${versionHint(plan)}`, err.message);
    return new AttemptError(text, err.message);
  }
  if (err.code === 'ECONNRESET' || /socket disconnected|socket hang up/i.test(err.message)) {
    return new AttemptError('SSL SYSCALL error: EOF detected', err.message);
  }
  if (err.code && STRERROR[err.code]) return new AttemptError(`SSL SYSCALL error: ${STRERROR[err.code]}`, err.message);
  return new AttemptError(`SSL error: ${err.message}`, err.message);
}

function chainOf(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let cert: PeerCertificate & { issuerCertificate?: PeerCertificate } = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  for (let i = 0; i < 16 && cert?.raw && !seen.has(cert.fingerprint256); i++) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
    if (!cert.issuerCertificate || cert.issuerCertificate === cert) break;
    cert = cert.issuerCertificate;
  }
  return chain;
}

/** What a handshake gave, whichever TLS did it: libpq's checks are made on this (verdict). */
interface Handshook {
  readonly chain: X509Certificate[];
  readonly authorized: boolean;
  /** Node's verify error code (UNABLE_TO_GET_ISSUER_CERT_LOCALLY) or OpenSSL's text. */
  readonly authorizationError: string;
  readonly alpn: string | false;
  readonly protocol: string | null;
  readonly cipher: string;
  readonly requested: boolean | undefined;
}

/**
 * The TLS handshake of one attempt, with libpq's checks after it. `native`: the gateway's connector for TLS done by
 * its addon (../tls/native-upstream.ts); the client library and doctor pass none and get Node's tls, which also
 * stays the path for sslkeylogfile (Node's 'keylog' event).
 */
export async function tlsHandshake(
  plan: ConnectionPlan,
  c: Candidate,
  socket: Socket,
  material: TlsMaterial,
  direct: boolean,
  timeoutMs: number,
  native?: UpstreamTlsConnector,
): Promise<{ socket: TLSSocket | Duplex; tls: TlsFacts }> {
  const host = c.target.host;
  const servername = plan.ssl.sni && c.target.kind !== 'socket' && host && !sniSuppressed(host) ? host : undefined;
  const minVersion = (plan.ssl.minVersion || 'TLSv1') as 'TLSv1';
  const maxVersion = (plan.ssl.maxVersion || 'TLSv1.3') as 'TLSv1.3';
  // libpq sets no cipher list: OpenSSL's DEFAULT applies (Node's own default is narrower). TLS 1.0/1.1 also
  // need security level 0 in OpenSSL 3, which libpq's users get only by asking for those versions explicitly.
  const ciphers = minVersion === 'TLSv1' || (minVersion as string) === 'TLSv1.1' ? 'DEFAULT:@SECLEVEL=0' : 'DEFAULT';
  if (native && !plan.ssl.keyLogFile) {
    const opts = { servername, minVersion, maxVersion, ciphers };
    return nativeHandshake(plan, c, socket, material, direct, timeoutMs, native, opts);
  }
  let tlsSocket: TLSSocket;
  // sslcertmode=require needs to know whether the server asked for a certificate: read its handshake flight.
  const tap = plan.ssl.certMode === 'require' ? new CertificateRequestTap(socket) : undefined;
  try {
    tlsSocket = tlsConnect({
      socket: tap ?? socket,
      ...(servername ? { servername } : { servername: '' }),
      ALPNProtocols: ['postgresql'],
      minVersion,
      maxVersion,
      ciphers,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      ...(material.ca ? { ca: material.ca } : {}),
      ...(material.crl && material.crl.length > 0 ? { crl: material.crl } : {}),
      ...(material.cert ? { cert: material.cert } : {}),
      ...(material.key ? { key: material.key } : {}),
    });
  } catch (err) {
    throw contextFailure(material, err as Error & { reason?: string });
  }
  if (tap) tlsSocket.on('keylog', (line: Buffer) => tap.keylog(line));
  if (plan.ssl.keyLogFile) {
    // sslkeylogfile (libpq 18): NSS key log lines for Wireshark; failures to write are ignored, as libpq only warns.
    const file = plan.ssl.keyLogFile;
    tlsSocket.on('keylog', (line: Buffer) => {
      try {
        appendFileSync(file, line, { mode: 0o600 });
      } catch {
        // unwritable key log: the connection goes on
      }
    });
  }
  try {
    await once<void>(tlsSocket, 'secureConnect', timeoutMs, () => new Error('timeout expired'));
  } catch (err) {
    tlsSocket.destroy();
    if ((err as Error).message === 'timeout expired') throw new AttemptError('timeout expired', undefined, 'address');
    throw handshakeFailure(plan, err as NodeJS.ErrnoException);
  }
  const cipher = tlsSocket.getCipher();
  const requested = tap?.certificateRequested(tlsSocket.getProtocol(), cipher.standardName);
  tap?.release();
  const got: Handshook = {
    chain: chainOf(tlsSocket),
    authorized: tlsSocket.authorized,
    authorizationError: String(tlsSocket.authorizationError ?? 'unknown'),
    alpn: tlsSocket.alpnProtocol ?? false,
    protocol: tlsSocket.getProtocol(),
    cipher: cipher.standardName ?? cipher.name,
    requested,
  };
  return { socket: tlsSocket, tls: verdict(plan, material, direct, host, servername, got, () => tlsSocket.destroy()) };
}

/** A context that cannot be built from the material: libpq's text for a key that does not match, else OpenSSL's. */
function contextFailure(material: TlsMaterial, e: Error & { reason?: string }): AttemptError {
  if (material.cert && /key values mismatch/i.test(e.message)) {
    return new AttemptError(
      `certificate does not match private key file "${material.keyFile}": key values mismatch`,
      e.message,
    );
  }
  return new AttemptError(`could not establish SSL connection: ${e.reason ?? e.message}`, e.message);
}

/** libpq's checks after a completed handshake (open_client_SSL, then the host name); throws libpq's texts. */
function verdict(
  plan: ConnectionPlan,
  material: TlsMaterial,
  direct: boolean,
  host: string,
  servername: string | undefined,
  got: Handshook,
  destroy: () => void,
): TlsFacts {
  const fail = (e: AttemptError) => {
    destroy();
    return e;
  };
  const chain = got.chain;
  let verified: TlsFacts['verified'] = 'none';
  if (material.verify) {
    // CRL checking on with no CRL loaded (an empty sslcrldir): OpenSSL fails every certificate.
    const crlMissing = material.crl !== undefined && material.crl.length === 0;
    if (!got.authorized || crlMissing) {
      const why = crlMissing ? 'unable to get certificate CRL' : got.authorizationError;
      throw fail(new AttemptError('SSL error: certificate verify failed', describeVerifyError(why)));
    }
    // OpenSSL 1.1 (libpq's) also applies the ssl_server purpose to a leaf that is itself a trust anchor; Node's
    // OpenSSL 3 does not. A leaf whose keyUsage allows no TLS use is refused, as libpq refuses it.
    const leaf = chain[0];
    if (leaf && !keyUsageAllowsTls(leaf.raw)) {
      throw fail(new AttemptError('SSL error: certificate verify failed', 'unsupported certificate purpose'));
    }
    verified = 'chain';
  }
  const peer = chain[0];
  if (!peer) throw fail(new AttemptError('certificate could not be obtained: no peer certificate'));
  if (plan.ssl.mode === 'verify-full') {
    const r = verifyHostName(peer, host);
    if (!r.ok) throw fail(new AttemptError(r.message, `certificate names: ${r.names.join(', ') || '(none)'}`));
    verified = 'chain+host';
  }
  const alpn = got.alpn;
  if (direct) {
    if (!alpn)
      throw fail(new AttemptError('direct SSL connection was established without ALPN protocol negotiation extension'));
    if (alpn !== 'postgresql')
      throw fail(new AttemptError('SSL connection was established with unexpected ALPN protocol'));
  }
  return Object.freeze({
    ...(got.requested === undefined ? {} : { certificateRequested: got.requested }),
    protocol: got.protocol,
    cipher: got.cipher,
    alpn,
    ...(servername ? { servername } : {}),
    peerChain: Object.freeze(chain),
    verified,
    ...(material.rootSource ? { rootSource: material.rootSource } : {}),
    crlSources: material.crlSources,
    ...(material.certFile ? { clientCertificate: material.certFile } : {}),
  });
}

/** The native connector's handshake (the gateway's TLS to its backend), with the same checks and texts. */
async function nativeHandshake(
  plan: ConnectionPlan,
  c: Candidate,
  socket: Socket,
  material: TlsMaterial,
  direct: boolean,
  timeoutMs: number,
  native: UpstreamTlsConnector,
  opts: { servername: string | undefined; minVersion: string; maxVersion: string; ciphers: string },
): Promise<{ socket: Duplex; tls: TlsFacts }> {
  let timer: NodeJS.Timeout | undefined;
  let r: Awaited<ReturnType<UpstreamTlsConnector['connect']>>;
  try {
    const pending = native.connect(socket, {
      ...(opts.servername ? { servername: opts.servername } : {}),
      minVersion: opts.minVersion,
      maxVersion: opts.maxVersion,
      ciphers: opts.ciphers,
      ...(material.ca ? { ca: material.ca } : {}),
      ...(material.crl && material.crl.length > 0 ? { crl: material.crl } : {}),
      ...(material.cert ? { cert: material.cert } : {}),
      ...(material.key ? { key: material.key } : {}),
    });
    const expired = new Promise<never>((_, reject) => {
      if (timeoutMs > 0) timer = setTimeout(() => reject(new Error('timeout expired')), timeoutMs);
    });
    r = await Promise.race([pending, expired]);
  } catch (err) {
    socket.destroy();
    if ((err as Error).message === 'timeout expired') throw new AttemptError('timeout expired', undefined, 'address');
    throw contextFailure(material, err as Error);
  } finally {
    if (timer) clearTimeout(timer);
  }
  if (!r.ok) throw nativeFailure(plan, r.reason);
  const f = r.facts;
  const stream = r.stream;
  const got: Handshook = {
    chain: f.peerChain.map((d) => new X509Certificate(d)),
    authorized: f.verifyResult === 0 && f.peerChain.length > 0,
    authorizationError: VERIFY_CODES[f.verifyResult] ?? f.verifyError ?? 'unknown',
    alpn: f.alpn ?? false,
    protocol: f.version,
    cipher: f.standardName ?? f.cipher,
    requested: plan.ssl.certMode === 'require' ? f.certificateRequested : undefined,
  };
  return {
    socket: stream,
    tls: verdict(plan, material, direct, c.target.host, opts.servername, got, () => stream.destroy()),
  };
}

/** libpq's message for a failed SSL_connect() on the native path: OpenSSL's reason, or the syscall's. */
function nativeFailure(plan: ConnectionPlan, reason: string): AttemptError {
  if (reason === 'EOF detected' || reason === STRERROR.ECONNRESET) {
    return new AttemptError('SSL SYSCALL error: EOF detected', reason);
  }
  if (Object.values(STRERROR).includes(reason)) return new AttemptError(`SSL SYSCALL error: ${reason}`, reason);
  const text = `SSL error: ${reason}`;
  return new AttemptError(VERSION_REASONS.has(reason) ? `${text}\n${versionHint(plan)}` : text, reason);
}
