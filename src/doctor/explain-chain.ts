/**
 * Explanations of a failed certificate verification: pki/verify's path and OpenSSL's verdict, the trust store's
 * content (root, pinned intermediate, pinned server certificate) and the chain's shape (missing intermediate).
 */
import type { ConnectionPlan } from '../client/resolve.js';
import { knownRootFor, toX509 } from './chain.js';
import { type Diagnosis, d } from './diagnosis.js';
import type { Observed } from './doctor.js';

export async function certificateProblem(
  plan: ConnectionPlan,
  o: Observed,
  message: string,
  reason?: string,
): Promise<Diagnosis> {
  const v = o.storeVerdict;
  const chain = o.chain;
  // pki/verify explains the path; OpenSSL's own verdict (pgtls/client reports it as "text (CODE)") is used when pki
  // found nothing wrong, and always for security-level refusals (weak keys and digests), which pki does not model.
  const opensslCode = reason ? /\(([A-Z0-9_]{6,})\)\s*$/.exec(reason)?.[1] : undefined;
  const weak =
    opensslCode === 'EE_KEY_TOO_SMALL' || opensslCode === 'CA_KEY_TOO_SMALL' || opensslCode === 'CA_MD_TOO_WEAK';
  const code = weak ? opensslCode : (v?.error?.code?.replace(/^X509_V_ERR_/, '') ?? opensslCode);
  if (code === 'EE_KEY_TOO_SMALL' || code === 'CA_KEY_TOO_SMALL' || code === 'CA_MD_TOO_WEAK') {
    return d(
      'weak-certificate',
      'chain',
      `OpenSSL refuses the server's chain as too weak (${reason ?? code}): ${code === 'CA_MD_TOO_WEAK' ? 'a signature uses MD5 or SHA-1' : 'an RSA key is shorter than 2048 bits'}`,
      'reissue the certificate(s) with RSA 2048+ or ECDSA keys and SHA-256 signatures',
      [`chain sent: ${chain?.certificates.map((c) => c.subject).join(' ← ') ?? ''}`],
    );
  }
  const rootLabel =
    plan.ssl.rootCert === 'system' ? 'the system store (sslrootcert=system)' : `sslrootcert "${plan.ssl.rootCert}"`;
  const subjects = chain?.certificates.map((c) => c.subject) ?? [];
  const evidence = [
    `chain sent: ${subjects.join(' ← ') || '(none)'}`,
    `${rootLabel}: ${o.store?.certificates.map((c) => c.subject).join('; ') || '(no certificates)'}`,
  ];
  if (plan.ssl.rootCertDefault && ['allow', 'prefer', 'require'].includes(plan.ssl.mode)) {
    evidence.push(
      `sslmode=${plan.ssl.mode} verifies the chain only because the default root file "${plan.ssl.rootCert}" exists (libpq then behaves as verify-ca)`,
    );
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    const bad = chain?.certificates.find(
      (c) => c.status === (code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not-yet-valid'),
    );
    const who = bad
      ? `"${bad.subject}"${bad.index === 0 ? ' (the server certificate)' : ''}`
      : `"${v?.error?.subject ?? 'a certificate'}"`;
    return code === 'CERT_HAS_EXPIRED'
      ? d(
          'certificate-expired',
          'chain',
          `the certificate ${who} expired on ${(bad?.notAfter ?? '').slice(0, 10) || 'an earlier date'}`,
          'renew it on the server (ssl_cert_file) and reload PostgreSQL (SELECT pg_reload_conf())',
          evidence,
        )
      : d(
          'certificate-not-yet-valid',
          'chain',
          `the certificate ${who} is not valid before ${(bad?.notBefore ?? '').slice(0, 10)}`,
          "check the client's and server's clocks, or reissue the certificate with a start date in the past",
          evidence,
        );
  }
  const content = v?.content;
  if (content?.kind === 'pinned-intermediate') {
    const pinned = o.store?.certificates.find((c) => c.subject === content.subject);
    const known = pinned ? await knownRootFor(pinned) : undefined;
    if (known) {
      evidence.push(
        `"${known.subject}" is in this machine's trust store (SHA-256 ${known.sha256})${known.file ? `, ${known.file}` : ''}: sslrootcert=system also works`,
      );
    }
    return d(
      'pinned-intermediate',
      'chain',
      `${rootLabel} holds the intermediate CA "${content.subject}" instead of a root (certificate pinning): OpenSSL needs the self-signed root at the top`,
      `put the root CA "${content.issuer}" (the issuer of "${content.subject}") in sslrootcert instead`,
      evidence,
    );
  }
  if (content?.kind === 'pinned-leaf') {
    const issuer = chain?.certificates[0]?.issuer ?? 'its issuer';
    return d(
      'pinned-server-certificate',
      'chain',
      `${rootLabel} holds the server's own certificate "${content.subject}" (certificate pinning), not the root CA that issued it`,
      `put the root CA at the top of the server's chain (above "${issuer}") in sslrootcert instead; pinned server certificates break at every renewal`,
      evidence,
    );
  }
  if (code === 'DEPTH_ZERO_SELF_SIGNED_CERT') {
    return d(
      'self-signed-server-certificate',
      'chain',
      `the server's certificate "${subjects[0] ?? ''}" is self-signed and is not in ${rootLabel}`,
      'issue the server certificate from a CA and give clients that CA in sslrootcert (or, for a test server, put this certificate in sslrootcert)',
      evidence,
    );
  }
  if (chain?.endsAtLeaf && content?.kind !== 'has-root' && (o.store?.certificates.length ?? 0) > 0) {
    return d(
      'missing-intermediate',
      'chain',
      `the server sends only its own certificate, whose issuer "${chain.topIssuer ?? ''}" is not in ${rootLabel}: the server is not sending its intermediate CA`,
      `on the server, append the intermediate certificate "${chain.topIssuer ?? ''}" to ssl_cert_file after the server certificate and reload (if "${chain.topIssuer ?? ''}" is in fact your root, put it in sslrootcert instead)`,
      evidence,
    );
  }
  if (
    content?.kind === 'has-root' &&
    (code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || code === 'UNABLE_TO_GET_ISSUER_CERT')
  ) {
    return d(
      'missing-intermediate',
      'chain',
      `${rootLabel} has the root, but the server does not send the intermediate between it and "${subjects[subjects.length - 1] ?? ''}"`,
      'on the server, append the missing intermediate certificate(s) to ssl_cert_file (leaf first, then each issuer) and reload',
      evidence,
    );
  }
  if (
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT' ||
    code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'
  ) {
    const top =
      chain?.topIssuer ?? chain?.certificates[chain.certificates.length - 1]?.subject ?? "the server's root CA";
    const last = o.chainDer?.[o.chainDer.length - 1];
    const known = last ? await knownRootFor(toX509(last)) : undefined;
    if (known) {
      evidence.push(
        `"${known.subject}" is in this machine's trust store (SHA-256 ${known.sha256}): sslrootcert=system would use it`,
      );
    }
    return d(
      'root-not-trusted',
      'chain',
      `${rootLabel} does not contain the root CA the server's chain leads to ("${top}")`,
      plan.ssl.rootCert === 'system'
        ? `"${top}" is not a public CA in the system store: point sslrootcert at a file holding that root instead of "system"`
        : `add the root certificate "${top}" to sslrootcert (for Azure: DigiCert Global Root G2, Microsoft RSA Root Certificate Authority 2017 and DigiCert Global Root CA), or use sslrootcert=system if it is a public CA`,
      evidence,
    );
  }
  if (code === 'CERT_REVOKED') {
    return d(
      'certificate-revoked',
      'chain',
      `a certificate in the server's chain is revoked (${v?.error?.subject ?? ''})`,
      'issue a new server certificate; remove stale CRLs only if the revocation was a mistake',
      evidence,
    );
  }
  if (code === 'INVALID_CA' || code === 'PATH_LENGTH_EXCEEDED') {
    const who = v?.error?.subject ?? 'a certificate of the chain';
    return d(
      code === 'INVALID_CA' ? 'issuer-not-ca' : 'path-length-exceeded',
      'chain',
      code === 'INVALID_CA'
        ? `"${who}" signs part of the chain but is not a CA certificate (basicConstraints CA:FALSE, or keyUsage without keyCertSign)`
        : `the chain is longer than "${who}" allows (basicConstraints pathlen)`,
      code === 'INVALID_CA'
        ? 'reissue that intermediate as a CA (basicConstraints CA:TRUE, keyUsage keyCertSign) and the certificates under it'
        : 'reissue the intermediate with a larger pathlen, or shorten the chain',
      evidence,
    );
  }
  if (code === 'INVALID_PURPOSE') {
    return d(
      'certificate-purpose',
      'chain',
      `the server certificate "${subjects[0] ?? ''}" is not for TLS servers (extendedKeyUsage lacks serverAuth)`,
      'reissue it with extendedKeyUsage serverAuth',
      evidence,
    );
  }
  return d(
    'certificate-verify-failed',
    'chain',
    `the server's chain does not verify against ${rootLabel}: ${v?.error?.reason ?? message}`,
    'check the chain with `pgtls probe HOST --rootcert FILE`, which shows each certificate and trust store',
    evidence,
  );
}
