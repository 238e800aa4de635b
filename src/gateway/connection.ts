/**
 * One client connection through its phases: negotiate (SSLRequest / direct TLS / GSSENCRequest / CancelRequest) →
 * startup (StartupMessage, hba, client certificate) → authenticate (relayed to the backend) → relay → closing.
 * Mirrors ProcessSSLStartup() + ProcessStartupPacket() + ClientAuthentication() of PostgreSQL 18.
 */
import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { HbaLine, HbaMethod } from '../hba/hba.js';
import { checkUsermap } from '../hba/ident.js';
import { matchHba, normalizeAddress } from '../hba/match.js';
import { ALPN_POSTGRESQL, SSL_ACCEPT, SSL_REFUSE } from '../protocol/constants.js';
import { type WireError, encodeErrorResponse, encodeErrorResponseV2 } from '../protocol/error-response.js';
import { parseStartupMessage, unsupportedProtocolError } from '../protocol/startup.js';
import { InitialReader } from './initial-reader.js';
import * as refuse from './refusals.js';
import type { ConnectionRecord, GatewayRuntime } from './runtime.js';
import { relayAuthentication, splice } from './session.js';
import { connectUpstream } from './upstream.js';

/** PostgreSQL truncates user and database names to NAMEDATALEN - 1 bytes (at a character boundary). */
function truncateName(name: string): string {
  const b = Buffer.from(name, 'utf8');
  if (b.length <= 63) return name;
  let s = b.subarray(0, 63).toString('utf8');
  if (s.endsWith('\uFFFD')) s = s.slice(0, -1);
  return s;
}

function peerSubjects(cert: X509Certificate): { cn: string; dn: string } {
  // Node prints the subject one attribute per line in certificate order; PostgreSQL's clientname=DN is the RFC 2253
  // form (X509_NAME_print_ex with XN_FLAG_RFC2253): most specific first, comma-separated, specials escaped.
  const parts = cert.subject.split('\n').filter(Boolean);
  const esc = (v: string) =>
    v
      .replace(/([,+"\\<>;])/g, '\\$1')
      .replace(/^([ #])/, '\\$1')
      .replace(/ $/, '\\ ');
  const dn = parts
    .map((p) => {
      const eq = p.indexOf('=');
      return `${p.slice(0, eq)}=${esc(p.slice(eq + 1))}`;
    })
    .reverse()
    .join(',');
  const cnPart = parts.filter((p) => p.startsWith('CN=')).pop();
  return { cn: cnPart ? cnPart.slice(3) : '', dn };
}

export async function handleConnection(socket: Socket, rt: GatewayRuntime): Promise<void> {
  const started = Date.now();
  // A Unix-socket client has no address: PostgreSQL calls it "[local]" and only `local` hba lines match it.
  const local = socket.remoteAddress === undefined;
  const record: ConnectionRecord = {
    client: local ? '[local]' : normalizeAddress(socket.remoteAddress ?? ''),
    client_port: socket.remotePort ?? 0,
    negotiation: 'plaintext',
    outcome: 'closed',
  };
  socket.setNoDelay(true);
  let stream: Duplex = socket;
  let tlsSocket: TLSSocket | undefined;
  let backend: Duplex | undefined;
  const cfg = rt.config; // one consistent configuration for the whole connection, even across a reload
  const timer = setTimeout(() => {
    record.outcome = 'refused';
    record.reason = 'authentication timeout';
    stream.destroy();
    backend?.destroy();
  }, cfg.authentication_timeout);
  timer.unref(); // never the reason the process stays alive (e.g. after close())
  socket.on('error', () => undefined);

  const sendFatal = (err: WireError, reason?: string, protocolMajor = 3) => {
    record.outcome = 'refused';
    record.reason = reason ?? err.message;
    record.sqlstate = err.code;
    stream.end(protocolMajor < 3 ? encodeErrorResponseV2(err) : encodeErrorResponse(err));
  };

  try {
    // No TLS on a Unix socket, as PostgreSQL: SSLRequest gets 'N' and a ClientHello is not a startup packet.
    let reader = new InitialReader(stream, cfg.ssl && !local);
    let sslDone = false;
    let gssDone = false;
    for (;;) {
      const r = await reader.next();
      if (r.status === 'eof' || r.status === 'incomplete') {
        record.reason ??= 'client closed the connection during negotiation';
        stream.destroy();
        return;
      }
      if (r.status === 'invalid') {
        sendFatal(r.error, r.reason);
        return;
      }
      if (r.status === 'first-byte-tls') {
        // Direct TLS (PostgreSQL 17+): the ClientHello is the first thing on the wire. Give it back to the socket
        // and let TLS read it; ALPN "postgresql" is then mandatory.
        reader.detach();
        socket.unshift(r.data);
        record.negotiation = 'direct';
        tlsSocket = await startTls(socket, rt, record);
        if (!tlsSocket) return;
        if (tlsSocket.alpnProtocol !== ALPN_POSTGRESQL) {
          // PostgreSQL logs this (COMMERROR) and closes without a word to the client.
          record.outcome = 'refused';
          record.reason = 'received direct SSL connection request without ALPN protocol negotiation extension';
          tlsSocket.destroy();
          return;
        }
        stream = tlsSocket;
        reader = new InitialReader(stream, false);
        if (!checkPresentedCert(tlsSocket, record, sendFatal)) return;
        continue;
      }
      const p = r.packet;
      if (p.kind === 'CancelRequest') {
        record.outcome = 'cancel';
        await rt.cancel(p.pid, p.key, record);
        stream.destroy();
        return;
      }
      if (p.kind === 'SSLRequest' && !sslDone) {
        sslDone = true;
        if (!cfg.ssl || tlsSocket || local) {
          // 'N' when TLS is off, on a Unix socket, or after direct TLS (the session is already encrypted).
          stream.write(SSL_REFUSE);
          continue;
        }
        const stuffed = reader.detach();
        socket.write(SSL_ACCEPT);
        record.negotiation = 'sslrequest';
        tlsSocket = await startTls(socket, rt, record);
        if (!tlsSocket) return;
        stream = tlsSocket;
        if (stuffed.length > 0) {
          // CVE-2021-23214: bytes sent before the handshake were not protected by it. PostgreSQL reports this over
          // the now-encrypted channel after the handshake.
          sendFatal(refuse.unencryptedAfterSSLRequest());
          return;
        }
        gssDone = true;
        reader = new InitialReader(stream, false);
        if (!checkPresentedCert(tlsSocket, record, sendFatal)) return;
        continue;
      }
      if (p.kind === 'GSSENCRequest' && !gssDone) {
        gssDone = true;
        stream.write(SSL_REFUSE); // the gateway offers no GSSAPI encryption: 'N', and the client goes on
        if (reader.leftover().length > 0) {
          sendFatal(refuse.unencryptedAfterGSSRequest());
          return;
        }
        continue;
      }
      // A StartupMessage — or a repeated SSLRequest/GSSENCRequest, which PostgreSQL treats as an unknown version.
      const code = p.kind === 'StartupMessage' ? p.code : p.kind === 'SSLRequest' ? 80877103 : 80877104;
      if (p.kind !== 'StartupMessage') {
        sendFatal(unsupportedProtocolError(code));
        return;
      }
      // Whatever the client sent right behind its StartupMessage goes to the backend after it, untouched.
      const pipelined = reader.detach();
      const parsed = parseStartupMessage(p.code, p.body);
      if (!parsed.ok) {
        sendFatal(parsed.error, undefined, p.code >>> 16);
        return;
      }
      const sp = parsed.value;
      const who: refuse.Who = {
        host: record.client,
        user: truncateName(sp.user),
        database: truncateName(sp.database),
        ssl: tlsSocket !== undefined,
        replication: sp.replication,
      };
      record.user = who.user;
      record.database = who.database;
      const app = sp.params.find(([k]) => k === 'application_name');
      if (app) record.application_name = app[1];
      if (rt.shuttingDown) {
        sendFatal(refuse.shuttingDown());
        return;
      }
      // A Unix socket never leaves the host, so it counts as secure transport (as MySQL's require_secure_transport).
      if (cfg.require_secure_transport && !tlsSocket && !local) {
        sendFatal(refuse.plaintextRefused(who, cfg.error_style), 'require_secure_transport');
        return;
      }
      const line = await matchHba(rt.hba, {
        ...(local ? {} : { address: record.client }),
        ssl: who.ssl,
        user: who.user,
        database: who.database,
        replication: sp.replication,
      });
      if (!line) {
        sendFatal(refuse.noHbaEntry(who));
        return;
      }
      record.hba = `${line.file}:${line.line}`;
      const denial = checkLine(line, who, tlsSocket, rt, record);
      if (denial) {
        sendFatal(denial, record.reason);
        return;
      }
      // authenticate: the backend runs its own authentication (trust / password methods), relayed unchanged; for
      // `cert` the gateway has authenticated the certificate and the backend must trust the gateway for that user.
      try {
        backend = await connectUpstream(rt.upstream);
      } catch (e) {
        record.upstream_error = (e as Error).message;
        sendFatal(refuse.upstreamUnavailable(), `upstream: ${(e as Error).message}`);
        return;
      }
      backend.on('error', () => undefined);
      backend.write(p.raw);
      if (pipelined.length > 0) backend.write(pipelined);
      const auth = await relayAuthentication(stream, backend);
      if (!auth.ok) {
        record.outcome = 'refused';
        record.reason = auth.error ? `backend: ${auth.error.message}` : 'backend closed the connection';
        if (auth.error) record.sqlstate = auth.error.code;
        stream.end();
        backend.destroy();
        return;
      }
      clearTimeout(timer);
      record.outcome = 'relayed';
      const unregister = auth.key ? rt.registerCancelKey(auth.key.pid, auth.key.key) : () => undefined;
      const stats = { bytesFromClient: 0, bytesFromBackend: 0 };
      const end = rt.trackSession(stream, backend);
      try {
        await splice(stream, backend, stats);
      } finally {
        unregister();
        end();
        record.bytes_from_client = stats.bytesFromClient;
        record.bytes_from_backend = stats.bytesFromBackend;
      }
      return;
    }
  } catch (err) {
    record.outcome = 'error';
    record.reason = (err as Error).message;
    try {
      stream.end(encodeErrorResponse(refuse.internalError()));
    } catch {
      stream.destroy();
    }
    backend?.destroy();
  } finally {
    clearTimeout(timer);
    record.duration_ms = Date.now() - started;
    rt.emitConnection(record);
  }
}

/**
 * OpenSSL's reason from a Node TLS error, as PostgreSQL logs it ("wrong version number", "no shared cipher"),
 * without the library's error-queue prefix ("80EC…:error:0A0000C6:SSL routines:ssl3_get_record:…:file.c:379:").
 */
function opensslReason(err: Error): string {
  const m = /SSL routines:[^:]*:([^:]+):/.exec(err.message);
  return m ? m[1]! : err.message.trim();
}

/** TLS handshake on the raw socket with the material in force now. Resolves undefined when it failed. */
function startTls(socket: Socket, rt: GatewayRuntime, record: ConnectionRecord): Promise<TLSSocket | undefined> {
  const material = rt.tls.current();
  return new Promise((resolve) => {
    const t = new TLSSocket(socket, {
      isServer: true,
      secureContext: material.context,
      requestCert: material.requestCert,
      rejectUnauthorized: false,
      // Offered on every handshake like PostgreSQL 17+: a client offering only other protocols gets a fatal
      // no_application_protocol alert; a client offering none is fine over SSLRequest.
      ALPNProtocols: [ALPN_POSTGRESQL],
    });
    const onError = (err: Error) => {
      record.outcome = 'refused';
      record.reason = `could not accept SSL connection: ${opensslReason(err)}`;
      t.destroy();
      resolve(undefined);
    };
    // A client that goes away mid-handshake may close without any TLS error: settle on 'close' too, or this
    // connection would never finish (and never be logged).
    const onClose = () => {
      record.outcome = 'refused';
      record.reason ??= 'client closed the connection during the TLS handshake';
      resolve(undefined);
    };
    t.once('error', onError);
    t.once('close', onClose);
    t.once('secure', () => {
      t.off('error', onError);
      t.off('close', onClose);
      t.on('error', () => undefined);
      t.setNoDelay?.(true);
      record.tls_version = t.getProtocol() ?? undefined;
      record.cipher = t.getCipher()?.name;
      const sni = (t as TLSSocket & { servername?: string | false }).servername;
      if (sni) record.sni = sni;
      const peer = t.getPeerX509Certificate();
      if (peer) {
        const s = peerSubjects(peer);
        record.client_cert = {
          subject: s.dn,
          serial: peer.serialNumber.toLowerCase(),
          issuer: peer.issuer.split('\n').reverse().join(','),
        };
      }
      resolve(t);
    });
  });
}

/**
 * OpenSSL's verification result for the client's certificate chain, or undefined when it verified (or none was
 * sent). Node fills `authorized`/`authorizationError` only for sockets its own tls.Server accepted; the gateway
 * accepts by hand (it must answer SSLRequest first), so it asks the TLS handle the same question Node's server asks
 * (onServerSocketSecure() in lib/_tls_wrap.js).
 */
function clientCertError(t: TLSSocket): string | undefined {
  if (!t.getPeerX509Certificate()) return undefined;
  const handle = (t as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
  const err = handle?.verifyError?.();
  return err ? err.message : undefined;
}

/** A presented client certificate must verify, as PostgreSQL's SSL_VERIFY_PEER makes it. */
function checkPresentedCert(
  t: TLSSocket,
  record: ConnectionRecord,
  send: (err: WireError, reason?: string) => void,
): boolean {
  const reason = clientCertError(t);
  if (reason === undefined) return true;
  record.client_cert_error = reason;
  send(refuse.clientCertVerifyFailed(reason), `client certificate: ${reason}`);
  return false;
}

/** clientcert=, cert method, reject: the checks ClientAuthentication() makes for the matched line. */
function checkLine(
  line: HbaLine,
  who: refuse.Who,
  tls: TLSSocket | undefined,
  rt: GatewayRuntime,
  record: ConnectionRecord,
): WireError | undefined {
  if (line.method === 'reject') return refuse.hbaRejects(who);
  if (line.clientcert === 'off') return undefined;
  if (!rt.tls.current().requestCert) return refuse.noRootStore();
  const peer = tls?.getPeerX509Certificate();
  if (!tls || !peer || clientCertError(tls) !== undefined) return refuse.clientCertRequired();
  if (line.clientcert !== 'verify-full') return undefined;
  const subj = peerSubjects(peer);
  const name = line.clientname === 'DN' ? subj.dn : subj.cn;
  const method: HbaMethod = line.method;
  if (name === '') {
    record.reason = `certificate authentication failed for user "${who.user}": client certificate contains no user name`;
    return refuse.authFailed(method, who.user);
  }
  const m = checkUsermap(rt.ident, line.map, who.user, name);
  if (!m.ok) {
    record.reason =
      method === 'cert'
        ? m.reason
        : `certificate validation (clientcert=verify-full) failed for user "${who.user}": CN mismatch`;
    return refuse.authFailed(method, who.user);
  }
  record.authenticated_as = name;
  return undefined;
}
