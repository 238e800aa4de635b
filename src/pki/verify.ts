/**
 * Certificate path validation that gives the answer OpenSSL (and so libpq and PostgreSQL) would give, with OpenSSL's
 * error code and text, so `pgtls cert verify` and the doctor can explain a failure in the words the user will see.
 *
 * Order of work follows OpenSSL 3's verify_chain: build the path from names (trusted store first — OpenSSL's default
 * X509_V_FLAG_TRUSTED_FIRST — then the untrusted certificates the peer sent); check CA flags, path lengths and
 * purpose; check revocation; then signatures and validity periods from the root down; libpq checks the host name
 * only after all of that (verify-full).
 *
 * Where several issuers match (a cross-signed intermediate next to a self-signed root of the same name and key, the
 * Azure "alternate trust path"), OpenSSL's preferences decide: trusted before untrusted, currently valid before
 * expired, then the latest notAfter. The path so built gives the verdict; other paths are only reported.
 */
import { type CrlProblem, checkRevocation } from './crl.js';
import { EKU_NAMES, facts, isCA, likelyIssued, signatureVerifies } from './facts.js';
import { x509 } from './x509.js';

/** OpenSSL's X509_verify_cert_error_string texts (3.0 spelling: "self-signed"). */
export const VERIFY_ERRORS = {
  X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: 'unable to get issuer certificate',
  X509_V_ERR_UNABLE_TO_GET_CRL: 'unable to get certificate CRL',
  X509_V_ERR_CERT_SIGNATURE_FAILURE: 'certificate signature failure',
  X509_V_ERR_CRL_SIGNATURE_FAILURE: 'CRL signature failure',
  X509_V_ERR_CERT_NOT_YET_VALID: 'certificate is not yet valid',
  X509_V_ERR_CERT_HAS_EXPIRED: 'certificate has expired',
  X509_V_ERR_CRL_NOT_YET_VALID: 'CRL is not yet valid',
  X509_V_ERR_CRL_HAS_EXPIRED: 'CRL has expired',
  X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in certificate chain',
  X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unable to get local issuer certificate',
  X509_V_ERR_CERT_CHAIN_TOO_LONG: 'certificate chain too long',
  X509_V_ERR_CERT_REVOKED: 'certificate revoked',
  X509_V_ERR_INVALID_CA: 'invalid CA certificate',
  X509_V_ERR_PATH_LENGTH_EXCEEDED: 'path length constraint exceeded',
  X509_V_ERR_INVALID_PURPOSE: 'unsuitable certificate purpose',
  X509_V_ERR_HOSTNAME_MISMATCH: 'hostname mismatch',
} as const;
export type VerifyErrorCode = keyof typeof VERIFY_ERRORS;

/** The TLS role the leaf must be fit for: libssl sets `ssl_server` on clients and `ssl_client` on servers. */
export type VerifyPurpose = 'sslserver' | 'sslclient' | 'any';

/**
 * Checks `host` against the leaf with libpq's rules (SANs first, CN only without DNS SANs, one leading wildcard
 * label, IP SANs compared as addresses). Returns undefined on a match, else libpq's message. Supplied by the caller
 * so this module does not depend on the client's matcher (src/pki/hostname.ts).
 */
export type HostCheck = (leaf: x509.X509Certificate, host: string) => string | undefined;

export interface VerifyOptions {
  /** Trust anchors (sslrootcert / ssl_ca_file). */
  readonly roots: readonly x509.X509Certificate[];
  /** Intermediates the peer sent or the user supplied; never trusted by themselves. */
  readonly untrusted?: readonly x509.X509Certificate[];
  readonly crls?: readonly x509.X509Crl[];
  /** Default when CRLs are given: `all` — PostgreSQL and libpq set X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL. */
  readonly crlCheck?: 'none' | 'leaf' | 'all';
  readonly purpose?: VerifyPurpose;
  readonly host?: string;
  readonly checkHost?: HostCheck;
  /** Verification time (default now). */
  readonly at?: Date;
  /** OpenSSL's default verify depth is 100. */
  readonly maxDepth?: number;
}

export interface VerifyFailure {
  readonly code: VerifyErrorCode;
  /** OpenSSL's text for the code, or libpq's message for a host-name mismatch. */
  readonly reason: string;
  /** Position in the path (0 = leaf), as OpenSSL's "error N at D depth". */
  readonly depth: number;
  readonly subject: string;
  /** Extra facts: which CRL, which pathlen, which purpose, the revocation date. */
  readonly detail?: string;
}

export interface VerifyResult {
  readonly ok: boolean;
  /** The path that validated, or the first path tried when none did (leaf first). */
  readonly path: x509.X509Certificate[];
  /** Which certificates of the path came from the trust store. */
  readonly trusted: boolean[];
  readonly error?: VerifyFailure;
  /** Number of candidate paths found (> 1 when alternate trust paths exist). */
  readonly pathsTried: number;
  /** When OpenSSL's path fails: another path that would validate (see verifyCertificate). */
  readonly alternative?: { readonly path: x509.X509Certificate[]; readonly trusted: boolean[] };
}

interface Candidate {
  readonly path: x509.X509Certificate[];
  readonly trusted: boolean[];
  /** Set when the path could not be completed to a trusted self-signed root. */
  readonly buildError?: VerifyErrorCode;
}

const sameCert = (a: x509.X509Certificate, b: x509.X509Certificate) => facts(a).sha256 === facts(b).sha256;

const timeValid = (c: x509.X509Certificate, at: Date) => c.notBefore <= at && c.notAfter >= at;

/** Issuer candidates in OpenSSL's preference: time-valid ones first, then the one expiring last. */
function orderIssuers(list: x509.X509Certificate[], at: Date): x509.X509Certificate[] {
  return [...list].sort((a, b) => {
    const va = timeValid(a, at) ? 1 : 0;
    const vb = timeValid(b, at) ? 1 : 0;
    return vb - va || b.notAfter.getTime() - a.notAfter.getTime();
  });
}

/** Every path from the leaf, trusted issuers tried before untrusted ones (depth-first, bounded by maxDepth). */
function buildPaths(leaf: x509.X509Certificate, opts: VerifyOptions, at: Date): Candidate[] {
  const roots = opts.roots;
  const untrusted = opts.untrusted ?? [];
  const maxDepth = opts.maxDepth ?? 100;
  const out: Candidate[] = [];
  const limit = 64; // enough for any real cross-signing mesh; bounds a hostile bundle

  const walk = (path: x509.X509Certificate[], trusted: boolean[]): void => {
    if (out.length >= limit) return;
    const cur = path[path.length - 1]!;
    const curTrusted = trusted[trusted.length - 1]!;
    if (facts(cur).selfSigned) {
      // A self-signed certificate ends the path: trusted if it is in the store, otherwise OpenSSL's self-signed errors.
      const buildError = curTrusted
        ? undefined
        : path.length === 1
          ? 'X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT'
          : 'X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN';
      out.push({ path, trusted, ...(buildError ? { buildError } : {}) });
      return;
    }
    if (path.length > maxDepth) {
      out.push({ path, trusted, buildError: 'X509_V_ERR_CERT_CHAIN_TOO_LONG' });
      return;
    }
    const fresh = (c: x509.X509Certificate) => !path.some((p) => sameCert(p, c));
    const fromStore = orderIssuers(
      roots.filter((r) => fresh(r) && likelyIssued(r, cur)),
      at,
    );
    // Once the path has reached the trust store, OpenSSL only looks further in the store.
    const fromPeer = curTrusted
      ? []
      : orderIssuers(
          untrusted.filter((u) => fresh(u) && likelyIssued(u, cur)),
          at,
        );
    const before = out.length;
    for (const r of fromStore) walk([...path, r], [...trusted, true]);
    for (const u of fromPeer) walk([...path, u], [...trusted, false]);
    if (out.length === before) {
      const buildError = trusted.some(Boolean)
        ? 'X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT'
        : 'X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY';
      out.push({ path, trusted, buildError });
    }
  };

  // The leaf itself may be a trust anchor (a pinned self-signed server certificate).
  const leafTrusted = roots.some((r) => sameCert(r, leaf));
  walk([leaf], [leafTrusted]);
  return out;
}

function fail(
  path: x509.X509Certificate[],
  code: VerifyErrorCode,
  depth: number,
  detail?: string,
  reason?: string,
): VerifyFailure {
  return {
    code,
    reason: reason ?? VERIFY_ERRORS[code],
    depth,
    subject: path[depth]?.subject ?? '',
    ...(detail === undefined ? {} : { detail }),
  };
}

/** OpenSSL check_purpose for ssl_server / ssl_client, on the leaf and (EKU only) on intermediate CAs. */
function purposeError(cert: x509.X509Certificate, purpose: VerifyPurpose, asCA: boolean): string | undefined {
  if (purpose === 'any') return undefined;
  const f = facts(cert);
  const wanted = purpose === 'sslserver' ? '1.3.6.1.5.5.7.3.1' : '1.3.6.1.5.5.7.3.2';
  if (f.extKeyUsage && !f.extKeyUsage.includes(wanted)) {
    return `extended key usage ${f.extKeyUsage.map((o) => EKU_NAMES[o] ?? o).join(', ')} lacks ${EKU_NAMES[wanted]}`;
  }
  if (asCA || f.keyUsage === undefined) return undefined;
  const K = x509.KeyUsageFlags;
  const allowed =
    purpose === 'sslserver'
      ? K.digitalSignature | K.keyEncipherment | K.keyAgreement
      : K.digitalSignature | K.keyAgreement;
  return (f.keyUsage & allowed) === 0 ? `key usage ${f.keyUsageNames.join(', ')} does not allow TLS` : undefined;
}

/** check_extensions: CA flags, path lengths, purpose. */
function checkExtensions(c: Candidate, purpose: VerifyPurpose): VerifyFailure | undefined {
  const { path, trusted } = c;
  let plen = 0; // non-self-issued intermediates below the certificate being checked
  for (let i = 0; i < path.length; i++) {
    const cert = path[i]!;
    const f = facts(cert);
    if (i > 0 && !isCA(cert)) {
      const why = f.ca === false || f.ca === undefined ? 'no CA:TRUE basic constraint' : 'key usage lacks keyCertSign';
      return fail(path, 'X509_V_ERR_INVALID_CA', i, why);
    }
    // Trust anchors are exempt from purpose checks (their trust settings decide, and plain roots have none).
    const isAnchor = trusted[i] && i === path.length - 1;
    if (!isAnchor) {
      const p = purposeError(cert, purpose, i > 0);
      if (p) return fail(path, 'X509_V_ERR_INVALID_PURPOSE', i, `${p} (purpose ${purpose})`);
    }
    if (i > 1 && f.pathLength !== undefined && plen > f.pathLength) {
      return fail(
        path,
        'X509_V_ERR_PATH_LENGTH_EXCEEDED',
        i,
        `pathlen:${f.pathLength} but ${plen} CA certificates below it`,
      );
    }
    if (i > 0 && !f.selfIssued) plen++;
  }
  return undefined;
}

const REVOCATION_TEXT: Readonly<Record<CrlProblem['code'], VerifyErrorCode>> = {
  X509_V_ERR_UNABLE_TO_GET_CRL: 'X509_V_ERR_UNABLE_TO_GET_CRL',
  X509_V_ERR_CRL_SIGNATURE_FAILURE: 'X509_V_ERR_CRL_SIGNATURE_FAILURE',
  X509_V_ERR_CRL_NOT_YET_VALID: 'X509_V_ERR_CRL_NOT_YET_VALID',
  X509_V_ERR_CRL_HAS_EXPIRED: 'X509_V_ERR_CRL_HAS_EXPIRED',
  X509_V_ERR_CERT_REVOKED: 'X509_V_ERR_CERT_REVOKED',
};

async function checkRevocations(c: Candidate, opts: VerifyOptions, at: Date): Promise<VerifyFailure | undefined> {
  const mode = opts.crlCheck ?? (opts.crls?.length ? 'all' : 'none');
  if (mode === 'none') return undefined;
  const { path } = c;
  const last = mode === 'all' ? path.length - 1 : 0;
  for (let i = 0; i <= last; i++) {
    const cert = path[i]!;
    // The issuer of a self-signed root is itself: OpenSSL then wants the root's own CRL too.
    const issuer = path[i + 1] ?? cert;
    const problem = await checkRevocation(cert, issuer, opts.crls ?? [], at);
    if (problem) {
      const detail =
        problem.code === 'X509_V_ERR_CERT_REVOKED'
          ? `revoked on ${problem.revokedAt.toISOString()}${problem.reason === undefined ? '' : `, reason ${x509.X509CrlReason[problem.reason]}`}`
          : problem.code === 'X509_V_ERR_UNABLE_TO_GET_CRL'
            ? `no CRL from ${cert.issuer}`
            : undefined;
      return fail(path, REVOCATION_TEXT[problem.code], i, detail);
    }
  }
  return undefined;
}

/** internal_verify: from the top down, the signature by the issuer, then the validity period. */
async function checkSignaturesAndTimes(c: Candidate, at: Date): Promise<VerifyFailure | undefined> {
  const { path } = c;
  for (let i = path.length - 1; i >= 0; i--) {
    const cert = path[i]!;
    const issuer = path[i + 1];
    // The top self-signed certificate's own signature is not checked (no X509_V_FLAG_CHECK_SS_SIGNATURE).
    if (issuer && !(await signatureVerifies(issuer, cert))) {
      return fail(path, 'X509_V_ERR_CERT_SIGNATURE_FAILURE', i, `not signed by the key of ${issuer.subject}`);
    }
    if (cert.notBefore > at)
      return fail(path, 'X509_V_ERR_CERT_NOT_YET_VALID', i, `valid from ${cert.notBefore.toISOString()}`);
    if (cert.notAfter < at)
      return fail(path, 'X509_V_ERR_CERT_HAS_EXPIRED', i, `expired on ${cert.notAfter.toISOString()}`);
  }
  return undefined;
}

async function validate(c: Candidate, opts: VerifyOptions, at: Date): Promise<VerifyFailure | undefined> {
  if (c.buildError) return fail(c.path, c.buildError, c.path.length - 1);
  return (
    checkExtensions(c, opts.purpose ?? 'any') ??
    (await checkRevocations(c, opts, at)) ??
    (await checkSignaturesAndTimes(c, at))
  );
}

/**
 * Validate `leaf` (plus untrusted intermediates) against trust anchors, OpenSSL-style, then the host name.
 *
 * The verdict is that of the path OpenSSL builds — the first one of the search (at each step: trusted issuers
 * first, time-valid ones first) — because OpenSSL does not try another path once it has built one that reaches a
 * trust anchor, even if that path then fails (an expired root in the store shadows a valid cross-signed route).
 * When that path fails and another one would validate, it is returned as `alternative`: clients that search more
 * widely (Java, Go, browsers) would connect, libpq and PostgreSQL will not.
 */
export async function verifyCertificate(leaf: x509.X509Certificate, opts: VerifyOptions): Promise<VerifyResult> {
  const at = opts.at ?? new Date();
  const candidates = buildPaths(leaf, opts, at);
  const primary = candidates[0]!;
  const error = await validate(primary, opts, at);
  if (error) {
    let alternative: { path: x509.X509Certificate[]; trusted: boolean[] } | undefined;
    for (const c of candidates.slice(1)) {
      if (c.buildError) continue;
      if (!(await validate(c, opts, at))) {
        alternative = { path: c.path, trusted: c.trusted };
        break;
      }
    }
    return {
      ok: false,
      path: primary.path,
      trusted: primary.trusted,
      error,
      pathsTried: candidates.length,
      ...(alternative ? { alternative } : {}),
    };
  }
  if (opts.host !== undefined && opts.checkHost) {
    const message = opts.checkHost(leaf, opts.host);
    if (message !== undefined) {
      return {
        ok: false,
        path: primary.path,
        trusted: primary.trusted,
        error: fail(primary.path, 'X509_V_ERR_HOSTNAME_MISMATCH', 0, undefined, message),
        pathsTried: candidates.length,
      };
    }
  }
  return { ok: true, path: primary.path, trusted: primary.trusted, pathsTried: candidates.length };
}

/** Convenience for a chain file as a peer sends it: the first certificate is the leaf, the rest are untrusted. */
export async function verifyChain(chain: readonly x509.X509Certificate[], opts: VerifyOptions): Promise<VerifyResult> {
  const [leaf, ...rest] = chain;
  if (!leaf) throw new Error('verifyChain: empty chain');
  return verifyCertificate(leaf, { ...opts, untrusted: [...rest, ...(opts.untrusted ?? [])] });
}
