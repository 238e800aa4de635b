import { X509Certificate, randomInt } from 'node:crypto';
/**
 * connect(): libpq's connection state machine up to the point where the StartupMessage is sent — host by host,
 * address by address, encryption method by encryption method (PQconnectPoll in fe-connect.c, PostgreSQL 17/18) —
 * returning the negotiated socket (TLS or plain) and the facts of how it was obtained.
 *
 * The single place in pgtls/client that opens sockets and upgrades them to TLS (conventions §1). Chain verification
 * is OpenSSL's (Node's), against exactly the roots libpq would load; host-name verification is libpq's own rules
 * (src/pki/hostname.ts), never Node's checkServerIdentity.
 */
import { lookup } from 'node:dns/promises';
import type { EventEmitter } from 'node:events';
import { type Socket, connect as netConnect } from 'node:net';
import { type PeerCertificate, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { keyUsageAllowsTls, verifyHostName } from '../pki/hostname.js';
import { encodeSSLRequest } from '../protocol/startup.js';
import { type AttemptFailure, connectError } from './errors.js';
import { type ConnectionPlan, DEFAULT_PORT, type HostTarget, parseIntParam, sniSuppressed } from './resolve.js';
import { type TlsMaterial, loadTlsMaterial } from './tls-files.js';

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

export interface Negotiated {
  readonly socket: Socket | TLSSocket;
  readonly facts: ConnectionFacts;
}

interface Candidate {
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

class AttemptError extends Error {
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

function prefixFor(target: HostTarget, address: string, port: string, path?: string): string {
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

function tcpConnect(c: Candidate, timeoutMs: number): Promise<Socket> {
  const socket =
    c.path !== undefined
      ? netConnect({ path: c.path })
      : netConnect({ host: c.address, port: c.port, family: c.family, noDelay: true });
  return once<void>(socket, 'connect', timeoutMs, () => new Error('timeout expired'))
    .then(() => socket)
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
function sslRequest(socket: Socket, timeoutMs: number): Promise<{ answer: 'S' | 'N'; extra: boolean }> {
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

async function tlsHandshake(
  plan: ConnectionPlan,
  c: Candidate,
  socket: Socket,
  material: TlsMaterial,
  direct: boolean,
  timeoutMs: number,
): Promise<{ socket: TLSSocket; tls: TlsFacts }> {
  const host = c.target.host;
  const servername = plan.ssl.sni && c.target.kind !== 'socket' && host && !sniSuppressed(host) ? host : undefined;
  const minVersion = (plan.ssl.minVersion || 'TLSv1') as 'TLSv1';
  const maxVersion = (plan.ssl.maxVersion || 'TLSv1.3') as 'TLSv1.3';
  let tlsSocket: TLSSocket;
  try {
    tlsSocket = tlsConnect({
      socket,
      ...(servername ? { servername } : { servername: '' }),
      ALPNProtocols: ['postgresql'],
      minVersion,
      maxVersion,
      // libpq sets no cipher list: OpenSSL's DEFAULT applies (Node's own default is narrower). TLS 1.0/1.1 also
      // need security level 0 in OpenSSL 3, which libpq's users get only by asking for those versions explicitly.
      ciphers: minVersion === 'TLSv1' || (minVersion as string) === 'TLSv1.1' ? 'DEFAULT:@SECLEVEL=0' : 'DEFAULT',
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      ...(material.ca ? { ca: material.ca } : {}),
      ...(material.crl && material.crl.length > 0 ? { crl: material.crl } : {}),
      ...(material.cert ? { cert: material.cert } : {}),
      ...(material.key ? { key: material.key } : {}),
    });
  } catch (err) {
    const e = err as Error & { reason?: string };
    if (material.cert && /key values mismatch/i.test(e.message)) {
      throw new AttemptError(
        `certificate does not match private key file "${material.keyFile}": key values mismatch`,
        e.message,
      );
    }
    throw new AttemptError(`could not establish SSL connection: ${e.reason ?? e.message}`, e.message);
  }
  try {
    await once<void>(tlsSocket, 'secureConnect', timeoutMs, () => new Error('timeout expired'));
  } catch (err) {
    tlsSocket.destroy();
    if ((err as Error).message === 'timeout expired') throw new AttemptError('timeout expired', undefined, 'address');
    throw handshakeFailure(plan, err as NodeJS.ErrnoException);
  }
  const fail = (e: AttemptError) => {
    tlsSocket.destroy();
    return e;
  };
  const chain = chainOf(tlsSocket);
  let verified: TlsFacts['verified'] = 'none';
  if (material.verify) {
    // CRL checking on with no CRL loaded (an empty sslcrldir): OpenSSL fails every certificate.
    const crlMissing = material.crl !== undefined && material.crl.length === 0;
    if (!tlsSocket.authorized || crlMissing) {
      const why = crlMissing ? 'unable to get certificate CRL' : String(tlsSocket.authorizationError ?? 'unknown');
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
  const alpn = tlsSocket.alpnProtocol ?? false;
  if (direct) {
    if (!alpn)
      throw fail(new AttemptError('direct SSL connection was established without ALPN protocol negotiation extension'));
    if (alpn !== 'postgresql')
      throw fail(new AttemptError('SSL connection was established with unexpected ALPN protocol'));
  }
  return {
    socket: tlsSocket,
    tls: Object.freeze({
      protocol: tlsSocket.getProtocol(),
      cipher: tlsSocket.getCipher().standardName ?? tlsSocket.getCipher().name,
      alpn,
      ...(servername ? { servername } : {}),
      peerChain: Object.freeze(chain),
      verified,
      ...(material.rootSource ? { rootSource: material.rootSource } : {}),
      crlSources: material.crlSources,
      ...(material.certFile ? { clientCertificate: material.certFile } : {}),
    }),
  };
}

/** Node's verify error code → OpenSSL's text (X509_verify_cert_error_string), the reason libpq does not show. */
function describeVerifyError(code: string): string {
  const texts: Record<string, string> = {
    CERT_HAS_EXPIRED: 'certificate has expired',
    CERT_NOT_YET_VALID: 'certificate is not yet valid',
    DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
    SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in certificate chain',
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unable to get local issuer certificate',
    UNABLE_TO_GET_ISSUER_CERT: 'unable to get issuer certificate',
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unable to verify the first certificate',
    CERT_REVOKED: 'certificate revoked',
    UNABLE_TO_GET_CRL: 'unable to get certificate CRL',
    CRL_HAS_EXPIRED: 'CRL has expired',
    CERT_SIGNATURE_FAILURE: 'certificate signature failure',
    INVALID_CA: 'invalid CA certificate',
    INVALID_PURPOSE: 'unsupported certificate purpose',
    PATH_LENGTH_EXCEEDED: 'path length constraint exceeded',
  };
  return texts[code] ? `${texts[code]} (${code})` : code;
}

/**
 * Walks libpq's attempts in order. `next()` yields the next negotiated socket; after a login failure on it, call
 * `fail(message)` so the next `next()` continues exactly where libpq would (next encryption method, address, host).
 */
export class ConnectionAttempts {
  readonly failures: AttemptFailure[] = [];
  private hostIndex = 0;
  private candidates: Candidate[] | undefined;
  private candidateIndex = 0;
  private methodIndex = 0;
  private current: { candidate: Candidate; method: Method } | undefined;

  private readonly hosts: readonly HostTarget[];

  constructor(readonly plan: ConnectionPlan) {
    // load_balance_hosts=random: libpq shuffles the hosts (and each host's addresses) once per connection.
    this.hosts = plan.params.load_balance_hosts === 'random' ? shuffle(plan.hosts) : plan.hosts;
  }

  /**
   * Record that the connection returned by the last next() failed after negotiation (the login was rejected).
   * As libpq: SQLSTATE 57P03 (cannot connect now) moves on to the next host; anything else tries the next encryption
   * method on the same address, and when there is none the whole connection fails (`exhausted` becomes true).
   */
  fail(message: string, sqlstate?: string): void {
    const cur = this.current;
    if (!cur) return;
    this.failures.push(this.failure(cur.candidate, cur.method, message));
    this.current = undefined;
    if (sqlstate === '57P03') {
      this.candidates = undefined;
      this.hostIndex++;
      return;
    }
    this.methodIndex++;
    const methods = cur.candidate.path !== undefined ? ['plain'] : this.plan.methods;
    if (!methods[this.methodIndex]) this.exhausted = true;
  }

  /** True once libpq would have given up (no further attempt after a failed login). */
  exhausted = false;

  /** prefer-standby's second pass (no standby found): any server will do. */
  private secondPass = false;

  /** What the session must be for target_session_attrs, for the attempt in progress. */
  targetCheck(): string {
    const mode = this.plan.targetSessionAttrs;
    return mode === 'prefer-standby' && this.secondPass ? 'any' : mode;
  }

  /**
   * The server in use does not satisfy target_session_attrs: record libpq's message and move on to the next host
   * (not the next address of this one). prefer-standby starts over accepting any server when none was a standby.
   */
  failHost(message: string): void {
    const cur = this.current;
    if (cur) this.failures.push(this.failure(cur.candidate, cur.method, message));
    this.current = undefined;
    this.candidates = undefined;
    this.hostIndex++;
    if (this.hostIndex >= this.hosts.length && this.plan.targetSessionAttrs === 'prefer-standby' && !this.secondPass) {
      this.secondPass = true;
      this.hostIndex = 0;
    }
  }

  /** A failure after which libpq gives up at once (error_return), whatever attempts remain. */
  abort(message: string): void {
    const cur = this.current;
    if (cur) this.failures.push(this.failure(cur.candidate, cur.method, message));
    this.current = undefined;
    this.exhausted = true;
  }

  private failure(c: Candidate, method: Method, message: string, reason?: string, prefix = c.prefix): AttemptFailure {
    return Object.freeze({
      host: c.target.host,
      ...(c.address ? { address: c.address } : {}),
      port: String(c.port),
      method,
      message,
      ...(reason === undefined ? {} : { reason }),
      prefix,
    });
  }

  private async loadCandidates(target: HostTarget): Promise<Candidate[]> {
    let port: number;
    if (target.port === '') port = 5432;
    else {
      port = parseIntParam(target.port, 'port');
      if (port < 1 || port > 65535) throw new AttemptError(`invalid port number: "${target.port}"`);
    }
    if (target.kind === 'socket') {
      const path = `${target.host.replace(/\/$/, '')}/.s.PGSQL.${port}`;
      return [{ target, address: '', family: 0, port, path, prefix: prefixFor(target, '', String(port), path) }];
    }
    if (target.kind === 'address') {
      const { isIP } = await import('node:net');
      const family = isIP(target.hostaddr);
      if (!family)
        throw new AttemptError(`could not parse network address "${target.hostaddr}": Name or service not known`);
      return [
        { target, address: target.hostaddr, family, port, prefix: prefixFor(target, target.hostaddr, String(port)) },
      ];
    }
    let addrs: { address: string; family: number }[];
    try {
      addrs = await lookup(target.host, { all: true, verbatim: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const text = code === 'EAI_AGAIN' ? 'Temporary failure in name resolution' : 'Name or service not known';
      throw new AttemptError(`could not translate host name "${target.host}" to address: ${text}`);
    }
    if (this.plan.params.load_balance_hosts === 'random') addrs = shuffle(addrs);
    return addrs.map((a) => ({
      target,
      address: a.address,
      family: a.family,
      port,
      prefix: prefixFor(target, a.address, String(port)),
    }));
  }

  /** The next negotiated connection, or a ClientError carrying every attempt's message once all have failed. */
  async next(): Promise<Negotiated> {
    const plan = this.plan;
    if (this.exhausted) throw connectError(this.failures);
    const timeoutMs = plan.connectTimeoutSeconds * 1000;
    for (let guard = 0; guard < 10_000; guard++) {
      if (this.candidates === undefined) {
        const target = this.hosts[this.hostIndex];
        if (!target) throw connectError(this.failures);
        try {
          this.candidates = await this.loadCandidates(target);
        } catch (err) {
          if (!(err instanceof AttemptError)) throw err;
          this.failures.push(
            Object.freeze({
              host: target.host,
              port: target.port || DEFAULT_PORT,
              method: 'plain',
              message: err.message,
              prefix: '',
            }),
          );
          this.hostIndex++;
          continue;
        }
        this.candidateIndex = 0;
        this.methodIndex = 0;
      }
      const candidate = this.candidates[this.candidateIndex];
      if (!candidate) {
        this.candidates = undefined;
        this.hostIndex++;
        continue;
      }
      // No TLS over Unix-domain sockets, whatever sslmode says (libpq does the same).
      const methods: readonly Method[] = candidate.path !== undefined ? ['plain'] : plan.methods;
      const method = methods[this.methodIndex];
      if (!method) {
        this.candidateIndex++;
        this.methodIndex = 0;
        continue;
      }
      try {
        const result = await this.attempt(candidate, method, methods, timeoutMs);
        return result;
      } catch (err) {
        if (!(err instanceof AttemptError)) throw err;
        this.failures.push(this.failure(candidate, method, err.message, err.reason));
        if (err.then === 'stop') throw connectError(this.failures);
        if (err.then === 'method') {
          // libpq (CONNECTION_FAILED): the next encryption method on a new connection, or give up — a TLS or
          // negotiation failure does not move on to other addresses or hosts.
          this.methodIndex++;
          if (!methods[this.methodIndex]) throw connectError(this.failures);
        } else {
          this.candidateIndex++;
          this.methodIndex = 0;
        }
      }
    }
    throw connectError(this.failures);
  }

  private async attempt(
    c: Candidate,
    method: Method,
    methods: readonly Method[],
    timeoutMs: number,
  ): Promise<Negotiated> {
    const plan = this.plan;
    let material: TlsMaterial | undefined;
    if (method === 'direct') {
      // Direct TLS: the files are read before anything is sent.
      const m = loadTlsMaterial(plan);
      if (!m.ok) {
        // libpq connects first, then fails initialising SSL.
        const s = await tcpConnect(c, timeoutMs);
        s.destroy();
        throw new AttemptError(m.message, m.reason);
      }
      material = m.value;
    }
    const socket = await tcpConnect(c, timeoutMs);
    const base = {
      host: c.target.host,
      hostaddr: c.target.hostaddr,
      address: c.address || (c.path ?? ''),
      port: c.port,
      prefix: c.prefix,
    };
    try {
      if (method === 'plain') {
        this.current = { candidate: c, method };
        return { socket, facts: Object.freeze({ ...base, method, fallbacks: Object.freeze([...this.failures]) }) };
      }
      if (method === 'direct') {
        const { socket: tlsSocket, tls } = await tlsHandshake(plan, c, socket, material!, true, timeoutMs);
        this.current = { candidate: c, method };
        return {
          socket: tlsSocket,
          facts: Object.freeze({ ...base, method, tls, fallbacks: Object.freeze([...this.failures]) }),
        };
      }
      const { answer, extra } = await sslRequest(socket, timeoutMs);
      if (answer === 'N') {
        if (plan.ssl.mode === 'require' || plan.ssl.mode === 'verify-ca' || plan.ssl.mode === 'verify-full') {
          throw new AttemptError('server does not support SSL, but SSL was required', undefined, 'stop');
        }
        // prefer: go on in plaintext on the same connection.
        socket.resume();
        const plainIndex = methods.indexOf('plain');
        this.methodIndex = plainIndex >= 0 ? plainIndex : this.methodIndex;
        this.current = { candidate: c, method: 'plain' };
        return {
          socket,
          facts: Object.freeze({
            ...base,
            method: 'plain',
            sslResponse: 'N',
            fallbacks: Object.freeze([...this.failures]),
          }),
        };
      }
      const m = loadTlsMaterial(plan);
      if (!m.ok) throw new AttemptError(m.message, m.reason);
      material = m.value;
      const { socket: tlsSocket, tls } = await tlsHandshake(plan, c, socket, material, false, timeoutMs);
      if (extra) {
        tlsSocket.destroy();
        throw new AttemptError('received unencrypted data after SSL response', undefined, 'stop');
      }
      this.current = { candidate: c, method };
      return {
        socket: tlsSocket,
        facts: Object.freeze({ ...base, method, sslResponse: 'S', tls, fallbacks: Object.freeze([...this.failures]) }),
      };
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }
}

function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Negotiate one connection for `plan` (TLS or plaintext, as libpq would), trying hosts and fallbacks in order. */
export function connect(plan: ConnectionPlan): Promise<Negotiated> {
  return new ConnectionAttempts(plan).next();
}
