/**
 * Phase 1, negotiate: what comes before the StartupMessage — SSLRequest (answered 'S' and a TLS handshake, or 'N'),
 * direct TLS (PostgreSQL 17+: a ClientHello first, ALPN "postgresql" mandatory), GSSENCRequest ('N': no GSSAPI
 * encryption here) and CancelRequest. Mirrors ProcessSSLStartup() and the first half of ProcessStartupPacket() of
 * PostgreSQL 18. Resolves with the StartupMessage, or undefined when the connection ended here.
 */
import { isTrustedPeer } from '../../hba/proxy-trusted.js';
import { ALPN_POSTGRESQL, SSL_ACCEPT, SSL_REFUSE } from '../../protocol/constants.js';
import { looksLikeProxyHeader } from '../../protocol/proxy.js';
import { type InitialPacket, unsupportedProtocolError } from '../../protocol/startup.js';
import { issuerDn, peerSubjects } from '../client-cert.js';
import type { ClientConnection } from '../client-connection.js';
import * as refuse from '../refusals.js';
import { nodeTransport, peerCertificate } from '../transport-node.js';
import type { HandshakeResult } from '../transport.js';
import { InitialReader } from './initial-reader.js';
import { readProxyHeader } from './proxy-header.js';
import { chooseBySni } from './sni-select.js';

export type StartupPacket = Extract<InitialPacket, { kind: 'StartupMessage' }>;

export interface Negotiated {
  readonly packet: StartupPacket;
  /** Whatever the client sent right behind its StartupMessage: it goes to the backend after it, untouched. */
  readonly pipelined: Buffer;
}

export async function negotiate(c: ClientConnection): Promise<Negotiated | undefined> {
  const { record, rt, cfg } = c;
  // No TLS on a Unix socket, as PostgreSQL: SSLRequest gets 'N' and a ClientHello is not a startup packet.
  if (cfg.proxy_protocol && !c.local && isTrustedPeer(rt.proxyTrusted, c.socket.remoteAddress)) {
    if (!(await readProxyHeader(c))) return undefined;
  }
  let sslDone = false;
  let gssDone = false;
  const settle = (r: HandshakeResult, t0: bigint): boolean => {
    rt.operator.hooks.handshake(Number(process.hrtime.bigint() - t0) / 1e9, r.ok);
    if (!r.ok) {
      record.outcome = c.gone && !record.reason ? 'closed' : 'refused';
      record.reason = r.reason.startsWith('client closed') ? r.reason : `could not accept SSL connection: ${r.reason}`;
      c.destroy();
      return false;
    }
    c.useTls(r.session);
    const f = r.session.facts;
    c.live.setTls(f);
    record.tls_version = f.version;
    record.cipher = f.cipher;
    if (f.group) record.group = f.group;
    if (f.sni) record.sni = f.sni;
    if (f.alpn) record.alpn = f.alpn;
    const peer = peerCertificate(f);
    if (peer) {
      record.client_cert = {
        subject: peerSubjects(peer).dn,
        serial: peer.serialNumber.toLowerCase(),
        issuer: issuerDn(peer),
        not_after: new Date(peer.validTo).toISOString(),
      };
    }
    return true;
  };
  const handshake = async (initial: Buffer | undefined): Promise<boolean> => {
    let material = rt.tls.current();
    if (rt.sni) {
      const chosen = await chooseBySni(c, rt.sni, initial);
      if (!chosen) return false;
      material = chosen.material;
      initial = chosen.bytes;
    }
    c.material = material;
    const t0 = process.hrtime.bigint();
    return settle(await (rt.transport ?? nodeTransport).accept(c.netSocket(), material, initial), t0);
  };
  // The commonest opening — an SSLRequest alone — answered and handshaken by the transport in one step, when it can
  // and nothing else must see the first bytes (a PROXY header is read above; ssl_sni picks the material by the
  // ClientHello). Anything else comes back as bytes and takes the loop below, as it always did.
  if (rt.transport?.negotiate && cfg.ssl && !c.local && !rt.sni && !record.proxy) {
    const material = rt.tls.current();
    c.material = material;
    const t0 = process.hrtime.bigint();
    const n = await rt.transport.negotiate(c.socket, material);
    if (n.kind === 'tls') {
      sslDone = gssDone = true;
      record.negotiation = 'sslrequest';
      if (!settle(n.result, t0) || !checkPresentedCert(c)) return undefined;
    } else if (c.socket.destroyed) {
      record.reason ??= 'client closed the connection during negotiation';
      c.destroy();
      return undefined;
    } else {
      c.material = undefined;
      c.netSocket(n.bytes); // Node's again, with what the addon read in front
    }
  } else {
    c.netSocket();
  }
  let reader = new InitialReader(c.stream, cfg.ssl && !c.local && !c.tls);
  for (;;) {
    const r = await reader.next();
    if (r.status === 'eof' || r.status === 'incomplete') {
      record.reason ??= 'client closed the connection during negotiation';
      c.destroy();
      return undefined;
    }
    if (r.status === 'invalid') {
      if (cfg.proxy_protocol && !record.proxy && looksLikeProxyHeader(reader.leftover())) {
        // A PROXY header from a peer not in proxy_protocol_trusted: never believed, closed without an answer.
        record.outcome = 'refused';
        record.reason = `PROXY protocol header from ${record.client}, which is not in proxy_protocol_trusted`;
        c.destroy();
        return undefined;
      }
      c.fatal(r.error, r.reason);
      return undefined;
    }
    if (r.status === 'first-byte-tls') {
      // Direct TLS: the ClientHello is the first thing on the wire. Give it to the TLS layer.
      reader.detach();
      record.negotiation = 'direct';
      if (!(await handshake(r.data))) return undefined;
      if (c.tls?.facts.alpn !== ALPN_POSTGRESQL) {
        // PostgreSQL logs this (COMMERROR) and closes without a word to the client.
        record.outcome = 'refused';
        record.reason = 'received direct SSL connection request without ALPN protocol negotiation extension';
        c.destroy();
        return undefined;
      }
      reader = new InitialReader(c.stream, false);
      if (!checkPresentedCert(c)) return undefined;
      continue;
    }
    const p = r.packet;
    if (p.kind === 'CancelRequest') {
      record.outcome = 'cancel';
      await rt.cancel(p.pid, p.key, record);
      c.destroy();
      return undefined;
    }
    if (p.kind === 'SSLRequest' && !sslDone) {
      sslDone = true;
      if (!cfg.ssl || c.tls || c.local) {
        // 'N' when TLS is off, on a Unix socket, or after direct TLS (the session is already encrypted).
        c.stream.write(SSL_REFUSE);
        continue;
      }
      const stuffed = reader.detach();
      c.netSocket().write(SSL_ACCEPT);
      record.negotiation = 'sslrequest';
      if (!(await handshake(undefined))) return undefined;
      if (stuffed.length > 0) {
        // CVE-2021-23214: bytes sent before the handshake were not protected by it. PostgreSQL reports this over
        // the now-encrypted channel after the handshake.
        c.fatal(refuse.unencryptedAfterSSLRequest());
        return undefined;
      }
      gssDone = true;
      reader = new InitialReader(c.stream, false);
      if (!checkPresentedCert(c)) return undefined;
      continue;
    }
    if (p.kind === 'GSSENCRequest' && !gssDone) {
      gssDone = true;
      c.stream.write(SSL_REFUSE); // the gateway offers no GSSAPI encryption: 'N', and the client goes on
      if (reader.leftover().length > 0) {
        c.fatal(refuse.unencryptedAfterGSSRequest());
        return undefined;
      }
      continue;
    }
    if (p.kind !== 'StartupMessage') {
      // A repeated SSLRequest/GSSENCRequest: PostgreSQL treats it as an unknown protocol version.
      c.fatal(unsupportedProtocolError(p.kind === 'SSLRequest' ? 80877103 : 80877104));
      return undefined;
    }
    c.live.setState('startup');
    return { packet: p, pipelined: reader.detach() };
  }
}

/**
 * A presented client certificate must verify, as PostgreSQL's SSL_VERIFY_PEER makes it. A transport that can fail
 * the handshake on it (native) never gets here with an error; Node's cannot, so the gateway refuses right after.
 */
function checkPresentedCert(c: ClientConnection): boolean {
  const reason = c.tls?.facts.peerVerifyError;
  if (reason === undefined) return true;
  c.record.client_cert_error = reason;
  c.fatal(refuse.clientCertVerifyFailed(reason), `client certificate: ${reason}`);
  return false;
}
