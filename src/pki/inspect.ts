/**
 * What `pgtls cert inspect` (and the doctor) tell a user about a set of certificates: one summary per certificate,
 * and findings about how they link — which signs which, a missing link, the wrong order for a chain file, a key that
 * does not belong to the leaf, expired or soon-expiring certificates. Findings are data (level, code, message) so
 * the CLI prints them and the doctor can reason with them.
 */
import type { KeyObject } from 'node:crypto';
import { type CertFacts, EKU_NAMES, colonHex, facts, isCA, likelyIssued, signatureVerifies } from './facts.js';
import { type KeyDescription, describeCertificateKey, keyMatchesCertificate } from './keys.js';
import type { x509 } from './x509.js';

const DAY_MS = 86_400_000;
/** Azure and most CAs notify 30 days ahead; we warn in the same window. */
export const EXPIRY_WARNING_DAYS = 30;

export interface CertificateSummary {
  readonly index: number;
  readonly subject: string;
  readonly issuer: string;
  /** Colon-separated hex, as `openssl x509 -serial` prints without the colons removed. */
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** Whole days until notAfter (negative once expired). */
  readonly daysLeft: number;
  readonly status: 'valid' | 'expiring' | 'expired' | 'not-yet-valid';
  readonly sans: CertFacts['sans'];
  readonly key: KeyDescription;
  readonly ca: boolean;
  readonly pathLength: number | null;
  readonly keyUsage: string[];
  readonly extendedKeyUsage: string[];
  readonly selfSigned: boolean;
  readonly sha256: string;
  /** Index of the certificate in the same set that signed this one, or null. */
  readonly signedBy: number | null;
}

export type FindingCode =
  | 'expired'
  | 'not-yet-valid'
  | 'expiring'
  | 'key-mismatch'
  | 'key-matches-other'
  | 'wrong-order'
  | 'missing-link'
  | 'issuer-not-included'
  | 'duplicate'
  | 'unrelated'
  | 'root-included'
  | 'signer-not-ca';

export interface Finding {
  readonly level: 'error' | 'warning' | 'info';
  readonly code: FindingCode;
  /** 0-based index of the certificate concerned. */
  readonly index: number;
  readonly message: string;
}

export interface Inspection {
  readonly certificates: CertificateSummary[];
  readonly findings: Finding[];
}

export interface InspectOptions {
  readonly now?: Date;
  /** The private key said to belong to the first certificate (ssl_key_file / sslkey). */
  readonly key?: KeyObject;
  /** `chain`: a file sent to peers (leaf first, then issuers): order matters. `bundle`: a trust file, any order. */
  readonly mode?: 'chain' | 'bundle';
}

function serialHex(cert: x509.X509Certificate): string {
  let hex = cert.serialNumber.toLowerCase();
  if (hex.length % 2) hex = `0${hex}`;
  return (hex.match(/../g) ?? []).join(':');
}

/** For each certificate, the index of the one in the set that signed it (name, key id and signature), or -1. */
export async function linkSigners(certs: readonly x509.X509Certificate[]): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < certs.length; i++) {
    let signer = -1;
    for (let j = 0; j < certs.length && signer < 0; j++) {
      if (j === i || facts(certs[j]!).sha256 === facts(certs[i]!).sha256) continue;
      if (likelyIssued(certs[j]!, certs[i]!) && (await signatureVerifies(certs[j]!, certs[i]!))) signer = j;
    }
    out.push(signer);
  }
  return out;
}

export async function isSelfSigned(cert: x509.X509Certificate): Promise<boolean> {
  return facts(cert).selfSigned && (await signatureVerifies(cert, cert));
}

export async function summarize(
  cert: x509.X509Certificate,
  index: number,
  signedBy: number | null,
  now: Date,
): Promise<CertificateSummary> {
  const f = facts(cert);
  const daysLeft = Math.floor((cert.notAfter.getTime() - now.getTime()) / DAY_MS);
  const status =
    cert.notBefore > now
      ? 'not-yet-valid'
      : cert.notAfter < now
        ? 'expired'
        : daysLeft < EXPIRY_WARNING_DAYS
          ? 'expiring'
          : 'valid';
  return {
    index,
    subject: cert.subject,
    issuer: cert.issuer,
    serial: serialHex(cert),
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    daysLeft,
    status,
    sans: f.sans,
    key: describeCertificateKey(cert),
    ca: isCA(cert),
    pathLength: f.pathLength ?? null,
    keyUsage: f.keyUsageNames,
    extendedKeyUsage: (f.extKeyUsage ?? []).map((oid) => EKU_NAMES[oid] ?? oid),
    selfSigned: await isSelfSigned(cert),
    sha256: colonHex(f.sha256),
    signedBy,
  };
}

/** Summaries and linkage findings for certificates as they appear in one file (or as a server presented them). */
export async function inspectCertificates(
  certs: readonly x509.X509Certificate[],
  opts: InspectOptions = {},
): Promise<Inspection> {
  const now = opts.now ?? new Date();
  const mode = opts.mode ?? 'chain';
  const signers = await linkSigners(certs);
  const certificates: CertificateSummary[] = [];
  for (let i = 0; i < certs.length; i++) {
    certificates.push(await summarize(certs[i]!, i, signers[i]! < 0 ? null : signers[i]!, now));
  }
  const findings: Finding[] = [];
  const add = (level: Finding['level'], code: FindingCode, index: number, message: string) =>
    findings.push({ level, code, index, message });
  const label = (i: number) => `#${i + 1} (${certs[i]!.subject})`;

  for (const s of certificates) {
    if (s.status === 'expired') add('error', 'expired', s.index, `${label(s.index)} expired on ${s.notAfter}`);
    if (s.status === 'not-yet-valid') {
      add('error', 'not-yet-valid', s.index, `${label(s.index)} is not valid before ${s.notBefore}`);
    }
    if (s.status === 'expiring') {
      add('warning', 'expiring', s.index, `${label(s.index)} expires in ${s.daysLeft} days (${s.notAfter})`);
    }
  }
  const seen = new Map<string, number>();
  certs.forEach((c, i) => {
    const fp = facts(c).sha256;
    const first = seen.get(fp);
    if (first !== undefined) add('warning', 'duplicate', i, `${label(i)} is a duplicate of #${first + 1}`);
    else seen.set(fp, i);
  });
  signers.forEach((j, i) => {
    if (j >= 0 && !isCA(certs[j]!)) {
      add('error', 'signer-not-ca', j, `${label(j)} signed #${i + 1} but is not a CA certificate`);
    }
  });

  if (opts.key && certs[0]) {
    if (!keyMatchesCertificate(opts.key, certs[0])) {
      const other = certs.findIndex((c) => keyMatchesCertificate(opts.key!, c));
      if (other > 0) {
        add(
          'error',
          'key-matches-other',
          0,
          `the key belongs to ${label(other)}, not to the first certificate: the leaf must come first`,
        );
      } else {
        add('error', 'key-mismatch', 0, `the key does not belong to ${label(0)} (different public key)`);
      }
    }
  }

  if (mode === 'chain' && certs.length > 0) {
    for (let i = 0; i < certs.length; i++) {
      const selfSigned = certificates[i]!.selfSigned;
      const last = i === certs.length - 1;
      if (selfSigned) {
        if (i > 0)
          add(
            'info',
            'root-included',
            i,
            `${label(i)} is a self-signed root: peers need it in their own trust store, sending it is unnecessary`,
          );
        continue;
      }
      const j = signers[i]!;
      if (j === i + 1) continue;
      if (j >= 0) {
        add(
          'error',
          'wrong-order',
          i,
          `wrong order: ${label(i)} is signed by #${j + 1}, which must come right after it`,
        );
      } else if (last) {
        add(
          'info',
          'issuer-not-included',
          i,
          `${label(i)} was issued by ${certs[i]!.issuer}, which is not in the file: peers must trust it (sslrootcert / ssl_ca_file)`,
        );
      } else {
        add(
          'error',
          'missing-link',
          i,
          `missing link: nothing in the file signed ${label(i)}; its issuer, ${certs[i]!.issuer}, must follow it`,
        );
      }
    }
    // A certificate nobody in the chain points to, other than the leaf, does not belong in it.
    for (let i = 1; i < certs.length; i++) {
      if (!signers.includes(i) && findings.every((f) => f.index !== i || f.code !== 'duplicate')) {
        add('warning', 'unrelated', i, `${label(i)} signs nothing else in the file`);
      }
    }
  }
  return { certificates, findings };
}
