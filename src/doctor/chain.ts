/**
 * What a server's certificate chain looks like as sent, and what is wrong with its shape: summaries (subject, issuer,
 * validity, SANs, key, fingerprint), linkage (who signed whom), completeness and order, and the trust-store
 * questions doctor asks (does this root file hold a root, an intermediate, or the server certificate itself?).
 *
 * LOCAL: written before src/pki/inspect.ts / src/pki/verify.ts landed. When they do, certificate summaries and
 * linkage should come from pki/inspect (chain summaries) and path building from pki/verify (reasons); this file should
 * keep only the doctor-specific judgements (missing intermediate, pinning).
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

export interface CertificateSummary {
  /** Position in the chain as sent (0 = first certificate, which must be the server's own). */
  readonly index: number;
  readonly subject: string;
  readonly issuer: string;
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** Whole days until notAfter (negative once expired). */
  readonly daysLeft: number;
  readonly expired: boolean;
  readonly notYetValid: boolean;
  /** Subject alternative names as OpenSSL prints them: DNS:…, IP Address:… */
  readonly subjectAltNames: readonly string[];
  readonly commonName?: string | undefined;
  /** "EC P-256", "RSA 2048", "Ed25519" … */
  readonly key: string;
  readonly sha256: string;
  readonly isCA: boolean;
  readonly selfSigned: boolean;
}

const DAY_MS = 86_400_000;

/** Node prints names one attribute per line ("CN=a\nO=b"); we show them on one line like OpenSSL's -nameopt oneline. */
export function oneLineName(name: string): string {
  return name.split('\n').filter(Boolean).join(', ');
}

export function commonNameOf(name: string): string | undefined {
  for (const line of name.split('\n')) if (line.startsWith('CN=')) return line.slice(3);
  return undefined;
}

function splitSans(text: string | undefined): string[] {
  if (!text) return [];
  // Node separates entries with ", "; quoted entries (rare) may contain commas, which we keep together.
  return (text.match(/(?:[^,"]|"[^"]*")+/g) ?? []).map((s) => s.trim()).filter(Boolean);
}

function keyText(c: X509Certificate): string {
  const k = c.publicKey;
  const d = k.asymmetricKeyDetails ?? {};
  switch (k.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      return `RSA ${d.modulusLength ?? '?'}`;
    case 'ec': {
      const curve = d.namedCurve === 'prime256v1' ? 'P-256' : d.namedCurve === 'secp384r1' ? 'P-384' : d.namedCurve;
      return `EC ${curve ?? '?'}`;
    }
    case 'ed25519':
      return 'Ed25519';
    case 'ed448':
      return 'Ed448';
    default:
      return String(k.asymmetricKeyType ?? 'unknown');
  }
}

export function isSelfSigned(c: X509Certificate): boolean {
  try {
    return c.checkIssued(c) && c.verify(c.publicKey);
  } catch {
    return false;
  }
}

/** `child` names `parent` as issuer and `parent`'s key verifies `child`'s signature. */
export function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

export function summarize(c: X509Certificate, index: number, now = new Date()): CertificateSummary {
  const notBefore = new Date(c.validFrom);
  const notAfter = new Date(c.validTo);
  return {
    index,
    subject: oneLineName(c.subject),
    issuer: oneLineName(c.issuer),
    serial: c.serialNumber.toLowerCase(),
    notBefore: notBefore.toISOString(),
    notAfter: notAfter.toISOString(),
    daysLeft: Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS),
    expired: now > notAfter,
    notYetValid: now < notBefore,
    subjectAltNames: splitSans(c.subjectAltName),
    commonName: commonNameOf(c.subject),
    key: keyText(c),
    sha256: c.fingerprint256,
    isCA: c.ca,
    selfSigned: isSelfSigned(c),
  };
}

export type ChainProblem =
  | { readonly kind: 'empty' }
  /** The first certificate is a CA: the server's own certificate is not first (PostgreSQL: ssl_cert_file order). */
  | { readonly kind: 'leaf-not-first'; readonly subject: string }
  /** Certificate `index` is not signed by the next one sent. */
  | { readonly kind: 'wrong-order'; readonly index: number; readonly subject: string }
  /** The last certificate sent is not a root and its issuer was not sent. */
  | { readonly kind: 'ends-below-root'; readonly issuer: string }
  /** The self-signed root was sent too: harmless (clients must have it anyway) but useless bytes. */
  | { readonly kind: 'root-sent'; readonly subject: string }
  | { readonly kind: 'expired'; readonly index: number; readonly subject: string; readonly notAfter: string }
  | { readonly kind: 'not-yet-valid'; readonly index: number; readonly subject: string; readonly notBefore: string }
  /** A certificate sent that no other sent certificate links to or from. */
  | { readonly kind: 'unrelated'; readonly index: number; readonly subject: string };

export interface ChainShape {
  readonly certificates: readonly CertificateSummary[];
  readonly problems: readonly ChainProblem[];
  /** Issuer DN of the last linked certificate when the chain does not reach a self-signed root. */
  readonly topIssuer?: string | undefined;
}

/** Look at the chain as the server sent it. */
export function chainShape(ders: readonly Buffer[], now = new Date()): ChainShape {
  const certs = ders.map((d) => new X509Certificate(d));
  const certificates = certs.map((c, i) => summarize(c, i, now));
  const problems: ChainProblem[] = [];
  if (certs.length === 0) return { certificates, problems: [{ kind: 'empty' }] };
  const first = certs[0]!;
  if (first.ca && certs.length > 1) problems.push({ kind: 'leaf-not-first', subject: oneLineName(first.subject) });
  // Follow issuers from the leaf through the certificates sent, in any order.
  const used = new Set<number>([0]);
  let cur = first;
  let topIssuer: string | undefined;
  for (let guard = 0; guard < certs.length; guard++) {
    if (isSelfSigned(cur)) break;
    const next = certs.findIndex((c, i) => !used.has(i) && issuedBy(cur, c));
    if (next < 0) {
      topIssuer = oneLineName(cur.issuer);
      break;
    }
    used.add(next);
    cur = certs[next]!;
  }
  for (let i = 0; i + 1 < certs.length; i++) {
    if (used.has(i) && used.has(i + 1) && !isSelfSigned(certs[i]!) && !issuedBy(certs[i]!, certs[i + 1]!)) {
      problems.push({ kind: 'wrong-order', index: i + 1, subject: oneLineName(certs[i + 1]!.subject) });
      break;
    }
  }
  certs.forEach((c, i) => {
    if (!used.has(i)) problems.push({ kind: 'unrelated', index: i, subject: oneLineName(c.subject) });
  });
  // A chain that stops at a CA is normal (clients hold the root). One that stops at the server's own certificate,
  // issued by someone else, usually means the intermediate is missing; probe clears this when a store shows the
  // issuer is a root.
  if (topIssuer !== undefined && !cur.ca) problems.push({ kind: 'ends-below-root', issuer: topIssuer });
  const root = certs.find((c, i) => i > 0 && used.has(i) && isSelfSigned(c));
  if (root) problems.push({ kind: 'root-sent', subject: oneLineName(root.subject) });
  certificates.forEach((s) => {
    if (s.expired) problems.push({ kind: 'expired', index: s.index, subject: s.subject, notAfter: s.notAfter });
    if (s.notYetValid) {
      problems.push({ kind: 'not-yet-valid', index: s.index, subject: s.subject, notBefore: s.notBefore });
    }
  });
  return { certificates, problems, topIssuer };
}

/** Certificates in a PEM file (other blocks, such as CRLs in a root.crt, are skipped). */
export function readPemCertificates(text: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch {
      // not a certificate OpenSSL would load either
    }
  }
  return out;
}

export interface TrustStore {
  /** What the user would write: the path, "~/.postgresql/root.crt" or "system". */
  readonly label: string;
  readonly path: string;
  readonly exists: boolean;
  readonly pem: string;
  readonly certificates: readonly X509Certificate[];
}

export function loadTrustStore(label: string, path: string): TrustStore {
  if (!existsSync(path)) return { label, path, exists: false, pem: '', certificates: [] };
  let pem = '';
  try {
    pem = readFileSync(path, 'utf8');
  } catch {
    return { label, path, exists: true, pem: '', certificates: [] };
  }
  return { label, path, exists: true, pem, certificates: readPemCertificates(pem) };
}

/**
 * The store libpq's sslrootcert=system uses: OpenSSL's default verify file (SSL_CERT_FILE overrides it). Debian and
 * Ubuntu ship it as /etc/ssl/certs/ca-certificates.crt (the target of /usr/lib/ssl/cert.pem); Fedora/RHEL and
 * Alpine/macOS use the other paths.
 *
 * LOCAL: pgtls/client resolves sslrootcert=system too; use its answer once it exports one.
 */
export function systemStorePath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.SSL_CERT_FILE) return env.SSL_CERT_FILE;
  const candidates = [
    '/usr/lib/ssl/cert.pem',
    '/etc/ssl/certs/ca-certificates.crt',
    '/etc/pki/tls/certs/ca-bundle.crt',
    '/etc/ssl/cert.pem',
  ];
  return candidates.find((p) => existsSync(p));
}

export type StoreContent =
  | { readonly kind: 'empty' }
  /** The root the server's chain leads to is in the store. */
  | { readonly kind: 'has-root'; readonly subject: string }
  /** The store holds a CA from the chain that is not self-signed: an intermediate is pinned. */
  | { readonly kind: 'pinned-intermediate'; readonly subject: string; readonly issuer: string }
  /** The store holds the server's own certificate. */
  | { readonly kind: 'pinned-leaf'; readonly subject: string }
  /** Nothing in the store is in, or issues anything in, the server's chain. */
  | { readonly kind: 'unrelated'; readonly subjects: readonly string[] };

/** How a trust store relates to the chain the server sent (used to explain verification failures). */
export function storeContent(store: readonly X509Certificate[], chain: readonly Buffer[]): StoreContent {
  if (store.length === 0) return { kind: 'empty' };
  const sent = chain.map((d) => new X509Certificate(d));
  const leaf = sent[0];
  if (leaf && store.some((s) => s.fingerprint256 === leaf.fingerprint256)) {
    return { kind: 'pinned-leaf', subject: oneLineName(leaf.subject) };
  }
  // A root in the store that issues something in the chain (or is itself sent).
  for (const s of store) {
    if (!isSelfSigned(s)) continue;
    if (sent.some((c) => c.fingerprint256 === s.fingerprint256 || issuedBy(c, s))) {
      return { kind: 'has-root', subject: oneLineName(s.subject) };
    }
  }
  for (const s of store) {
    if (isSelfSigned(s)) continue;
    if (sent.some((c) => c.fingerprint256 === s.fingerprint256 || issuedBy(c, s))) {
      return { kind: 'pinned-intermediate', subject: oneLineName(s.subject), issuer: oneLineName(s.issuer) };
    }
  }
  return { kind: 'unrelated', subjects: store.length <= 5 ? store.map((s) => oneLineName(s.subject)) : [] };
}
