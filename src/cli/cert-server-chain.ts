/**
 * The certificate chain a PostgreSQL server presents, fetched the way libpq starts TLS: an SSLRequest, the
 * server's one-byte answer ('S' to go on, 'N' for no TLS), then the TLS handshake on the same socket. Verification
 * is off on purpose here — the point is to *see* what is presented, including broken chains — and the caller
 * verifies with pki/verify.ts.
 *
 * It lives with the CLI, not in pki/, so that pki/ stays free of sockets (only the CLI, client/ and gateway/ do I/O
 * on the network); src/doctor/wire.ts has a capture of the chain exactly as sent, for the doctor's deeper needs.
 *
 * Node rebuilds the peer chain from the sent certificates and may append an issuer from the context's CA store; we
 * give the context a throwaway CA so nothing from Node's bundled roots is ever mixed into what the server sent.
 */
import { type Socket, connect as netConnect } from 'node:net';
import { type PeerCertificate, connect as tlsConnect } from 'node:tls';
import { PgtlsError } from '../errors.js';
import { createRootCA } from '../pki/generate.js';
import { toArrayBuffer } from '../pki/pem.js';
import { x509 } from '../pki/x509.js';
import { SSL_ACCEPT, SSL_REFUSE, encodeSSLRequest } from '../protocol/index.js';

export const ERR_SERVER_CHAIN = 'PGTLS_ERR_PKI_SERVER_CHAIN';

export interface PresentedChain {
  readonly certificates: x509.X509Certificate[];
  readonly protocol: string | null;
  readonly cipher: string;
}

let isolatedCa: Promise<string> | undefined;
function isolatedTrust(): Promise<string> {
  isolatedCa ??= createRootCA({ subject: { CN: 'pgtls inspect (trusts nothing)' }, days: 1 }).then((ca) => ca.certPem);
  return isolatedCa;
}

function fail(host: string, port: number, why: string, cause?: unknown): PgtlsError {
  return new PgtlsError(ERR_SERVER_CHAIN, `${host}:${port}: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { host, port, hint: 'Check host and port, and that the server has ssl = on.' },
  });
}

/** Read the server's answer to SSLRequest: exactly one byte. */
function readAnswer(sock: Socket, host: string, port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      cleanup();
      // Anything after the answer byte would be a man-in-the-middle injecting plaintext (CVE-2021-23222).
      if (d.length > 1) reject(fail(host, port, 'the server sent data after its SSLRequest answer'));
      else resolve(d);
    };
    const onEnd = () => {
      cleanup();
      reject(fail(host, port, 'the server closed the connection after SSLRequest'));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(fail(host, port, `connection failed (${e.message})`, e));
    };
    const cleanup = () => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onError);
  });
}

/** Connect, negotiate TLS with SSLRequest, return the presented certificates (leaf first). */
export async function fetchServerChain(
  host: string,
  port: number,
  opts: { servername?: string; timeoutMs?: number } = {},
): Promise<PresentedChain> {
  const ca = await isolatedTrust();
  const sock = netConnect({ host, port });
  const timer = setTimeout(() => sock.destroy(new Error('timed out')), opts.timeoutMs ?? 10_000);
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', (e) => reject(fail(host, port, `connection failed (${e.message})`, e)));
    });
    sock.write(encodeSSLRequest());
    const answer = await readAnswer(sock, host, port);
    if (answer.equals(SSL_REFUSE)) throw fail(host, port, 'the server refused TLS (answered N to SSLRequest)');
    if (!answer.equals(SSL_ACCEPT)) {
      throw fail(host, port, `unexpected answer 0x${answer.toString('hex')} to SSLRequest: not a PostgreSQL server?`);
    }
    const servername = opts.servername ?? (/^[\d.:]+$/.test(host) ? undefined : host);
    const tls = tlsConnect({
      socket: sock,
      ca,
      rejectUnauthorized: false,
      ...(servername === undefined ? {} : { servername }),
      ALPNProtocols: ['postgresql'],
    });
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', (e) => reject(fail(host, port, `TLS handshake failed (${e.message})`, e)));
    });
    const certificates: x509.X509Certificate[] = [];
    let peer = tls.getPeerCertificate(true) as PeerCertificate & { issuerCertificate?: PeerCertificate };
    const seen = new Set<string>();
    for (let i = 0; i < 32 && peer?.raw && !seen.has(peer.fingerprint256); i++) {
      seen.add(peer.fingerprint256);
      certificates.push(new x509.X509Certificate(toArrayBuffer(peer.raw)));
      peer = peer.issuerCertificate as PeerCertificate & { issuerCertificate?: PeerCertificate };
    }
    const result = { certificates, protocol: tls.getProtocol(), cipher: tls.getCipher().name };
    tls.destroy();
    return result;
  } finally {
    clearTimeout(timer);
    sock.destroy();
  }
}
