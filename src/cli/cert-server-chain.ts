import { closeTls, negotiate, parseEndpoint } from '../doctor/wire.js';
/**
 * The certificate chain a PostgreSQL server presents, fetched the way libpq starts TLS: an SSLRequest, the server's
 * one-byte answer ('S' to go on), then the TLS handshake on the same socket. Verification is off on purpose — the
 * point is to *see* what is presented, broken chains included — and the caller verifies with pki/verify.ts.
 *
 * The socket work is the doctor's (src/doctor/wire.ts: negotiate with `capture`), which reads the server's
 * Certificate message from the handshake bytes, so the chain comes back in the order the server sent it — Node's
 * getPeerCertificate() re-links certificates by issuer, which would hide a wrong order in ssl_cert_file. Should the
 * capture be incomplete, Node's chain is used, with a throwaway trust store so no root from Node's bundle is added.
 * Kept out of pki/ so that pki/ never opens sockets.
 */
import { PgtlsError } from '../errors.js';
import { createRootCA } from '../pki/generate.js';
import { toArrayBuffer } from '../pki/pem.js';
import { x509 } from '../pki/x509.js';

export const ERR_SERVER_CHAIN = 'PGTLS_ERR_PKI_SERVER_CHAIN';

export interface PresentedChain {
  readonly certificates: x509.X509Certificate[];
  /** True when the order is the server's own; false when Node re-linked the chain. */
  readonly asSent: boolean;
  readonly protocol: string;
  readonly cipher: string;
}

let isolatedCa: Promise<string> | undefined;
function isolatedTrust(): Promise<string> {
  isolatedCa ??= createRootCA({ subject: { CN: 'pgtls inspect (trusts nothing)' }, days: 1 }).then((ca) => ca.certPem);
  return isolatedCa;
}

function fail(spec: string, why: string): PgtlsError {
  return new PgtlsError(ERR_SERVER_CHAIN, `${spec}: ${why}`, {
    details: { hint: 'Check host and port, and that the server has ssl = on.' },
  });
}

/** Connect to HOST[:PORT], negotiate TLS with SSLRequest, return the presented certificates (leaf first). */
export async function fetchServerChain(
  spec: string,
  opts: { servername?: string; timeoutMs?: number } = {},
): Promise<PresentedChain> {
  const ep = parseEndpoint(spec);
  const r = await negotiate(
    ep,
    { capture: true, servername: opts.servername ?? ep.host, ca: await isolatedTrust() },
    opts.timeoutMs ?? 10_000,
  );
  if (r.stage === 'tcp') throw fail(spec, `connection failed (${r.message})`);
  if (r.stage === 'sslrequest') {
    const a = r.answer;
    const why =
      a.answer === 'N'
        ? 'the server refused TLS (answered N to SSLRequest)'
        : a.answer === 'E'
          ? `the server answered SSLRequest with an error: ${a.error.M ?? 'no message'}`
          : a.answer === 'closed'
            ? 'the server closed the connection after SSLRequest'
            : a.answer === 'timeout'
              ? 'no answer to SSLRequest (timed out)'
              : a.answer === 'other'
                ? `unexpected answer 0x${a.byte.toString(16)} to SSLRequest: not a PostgreSQL server?`
                : 'unexpected answer to SSLRequest';
    throw fail(spec, why);
  }
  if (r.stage === 'tls') throw fail(spec, `TLS handshake failed (${r.alert ?? r.message})`);
  closeTls(r.socket);
  return {
    certificates: r.peerCertificates.map((der) => new x509.X509Certificate(toArrayBuffer(der))),
    asSent: r.chainAsSent,
    protocol: r.protocol,
    cipher: r.cipher.name,
  };
}
