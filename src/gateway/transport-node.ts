/**
 * The Node `tls` implementation of the transport seam (./transport.ts): always available, and the reference the
 * native transport is tested against.
 */
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { ALPN_POSTGRESQL } from '../protocol/constants.js';
import { cipherBits } from '../tls/cipher-bits.js';
import type { TlsMaterial } from '../tls/context.js';
import type { ClientTransport, HandshakeResult, TlsFacts } from './transport.js';

/**
 * OpenSSL's reason from a Node TLS error, as PostgreSQL logs it ("wrong version number", "no shared cipher"),
 * without the library's error-queue prefix ("80EC…:error:0A0000C6:SSL routines:ssl3_get_record:…:file.c:379:").
 */
export function opensslReason(err: Error): string {
  const m = /SSL routines:[^:]*:([^:]+):/.exec(err.message);
  return m ? m[1]! : err.message.trim();
}

/**
 * OpenSSL's verification result for the client's certificate chain, or undefined when it verified (or none was
 * sent). Node fills `authorized`/`authorizationError` only for sockets its own tls.Server accepted; the gateway
 * accepts by hand (it must answer SSLRequest first), so it asks the TLS handle the same question Node's server asks
 * (onServerSocketSecure() in lib/_tls_wrap.js).
 */
function verifyError(t: TLSSocket): string | undefined {
  const handle = (t as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
  const err = handle?.verifyError?.();
  return err ? opensslVerifyText(err.message) : undefined;
}

/**
 * OpenSSL's X509_verify_cert_error_string() text, which PostgreSQL puts in its log and the gateway in its DETAIL.
 * Node 24 and later append advice for Node users to some of them ("unable to verify the first certificate; if the
 * root CA is installed locally, try running Node.js with --use-system-ca"); OpenSSL's texts contain no "; ".
 */
export function opensslVerifyText(message: string): string {
  return message.split('; ')[0]!.trim();
}

function factsOf(t: TLSSocket): TlsFacts {
  const cipher = t.getCipher()?.name ?? '';
  const sni = (t as TLSSocket & { servername?: string | false }).servername;
  const peer = t.getPeerX509Certificate();
  const peerError = peer ? verifyError(t) : undefined;
  return {
    version: t.getProtocol() ?? '',
    cipher,
    bits: cipherBits(cipher),
    ...(sni ? { sni } : {}),
    ...(t.alpnProtocol ? { alpn: t.alpnProtocol } : {}),
    ...(peer ? { peerCertificate: peer.raw } : {}),
    ...(peerError ? { peerVerifyError: peerError } : {}),
  };
}

export const nodeTransport: ClientTransport = {
  name: 'node',
  accept(socket: Socket, material: TlsMaterial, initial: Buffer | undefined): Promise<HandshakeResult> {
    if (initial && initial.length > 0) socket.unshift(initial);
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
        t.destroy();
        resolve({ ok: false, reason: opensslReason(err) });
      };
      // A client that goes away mid-handshake may close without any TLS error: settle on 'close' too, or this
      // connection would never finish (and never be logged).
      const onClose = () => resolve({ ok: false, reason: 'client closed the connection during the TLS handshake' });
      t.once('error', onError);
      t.once('close', onClose);
      t.once('secure', () => {
        t.off('error', onError);
        t.off('close', onClose);
        t.on('error', () => undefined);
        t.setNoDelay?.(true);
        resolve({ ok: true, session: { facts: factsOf(t), stream: t } });
      });
    });
  },
};

/** The X509Certificate of the client's certificate, when it sent one. */
export function peerCertificate(facts: TlsFacts | undefined): X509Certificate | undefined {
  return facts?.peerCertificate ? new X509Certificate(facts.peerCertificate) : undefined;
}
