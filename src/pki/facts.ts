/**
 * The facts about one certificate that inspection and verification both reason with, decoded once per certificate:
 * names (raw and canonical), basic constraints, key usages, SANs, key identifiers — and the issuer test OpenSSL uses
 * while building chains (x509_likely_issued: issuer name equals subject name, and the authority key identifier, when
 * both sides have one, equals the issuer's subject key identifier). Signatures are checked separately, because
 * OpenSSL builds the path from names first and verifies signatures afterwards.
 */
import { createHash } from 'node:crypto';
import { canonicalNameEncoding, certificateNames } from './names.js';
import { x509 } from './x509.js';

export const EKU_NAMES: Readonly<Record<string, string>> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  '2.5.29.37.0': 'anyExtendedKeyUsage',
};

const KU_NAMES: readonly [number, string][] = [
  [x509.KeyUsageFlags.digitalSignature, 'digitalSignature'],
  [x509.KeyUsageFlags.nonRepudiation, 'nonRepudiation'],
  [x509.KeyUsageFlags.keyEncipherment, 'keyEncipherment'],
  [x509.KeyUsageFlags.dataEncipherment, 'dataEncipherment'],
  [x509.KeyUsageFlags.keyAgreement, 'keyAgreement'],
  [x509.KeyUsageFlags.keyCertSign, 'keyCertSign'],
  [x509.KeyUsageFlags.cRLSign, 'cRLSign'],
  [x509.KeyUsageFlags.encipherOnly, 'encipherOnly'],
  [x509.KeyUsageFlags.decipherOnly, 'decipherOnly'],
];

export interface SubjectAltNames {
  readonly dns: string[];
  readonly ip: string[];
  readonly email: string[];
  readonly uri: string[];
}

export interface CertFacts {
  readonly subjectDer: Uint8Array;
  readonly issuerDer: Uint8Array;
  readonly subjectCanon: Buffer;
  readonly issuerCanon: Buffer;
  /** basicConstraints cA; undefined when the extension is absent. */
  readonly ca: boolean | undefined;
  readonly pathLength: number | undefined;
  /** keyUsage bits; undefined when absent (then every usage is allowed). */
  readonly keyUsage: number | undefined;
  readonly keyUsageNames: string[];
  /** extendedKeyUsage OIDs; undefined when absent (then every purpose is allowed). */
  readonly extKeyUsage: string[] | undefined;
  readonly sans: SubjectAltNames;
  readonly ski: string | undefined;
  readonly akiKeyId: string | undefined;
  readonly hasExtensions: boolean;
  /** Issuer name equals subject name (OpenSSL EXFLAG_SI; a CA's key-rollover certificate is self-issued too). */
  readonly selfIssued: boolean;
  /**
   * Self-issued with consistent key identifiers — what OpenSSL treats as self-signed while building a path
   * (EXFLAG_SS; the signature itself is not checked here).
   */
  readonly selfSigned: boolean;
  readonly sha256: string;
}

const cache = new WeakMap<x509.X509Certificate, CertFacts>();

export function facts(cert: x509.X509Certificate): CertFacts {
  const hit = cache.get(cert);
  if (hit) return hit;
  const names = certificateNames(new Uint8Array(cert.rawData));
  const subjectCanon = canonicalNameEncoding(names.subject);
  const issuerCanon = canonicalNameEncoding(names.issuer);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId?.toLowerCase();
  const akiKeyId = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId?.toLowerCase();
  const sans: SubjectAltNames = { dns: [], ip: [], email: [], uri: [] };
  for (const n of san?.names.items ?? []) {
    if (n.type === 'dns') sans.dns.push(n.value);
    else if (n.type === 'ip') sans.ip.push(n.value);
    else if (n.type === 'email') sans.email.push(n.value);
    else if (n.type === 'url') sans.uri.push(n.value);
  }
  const keyUsage = ku ? ku.usages : undefined;
  const f: CertFacts = {
    subjectDer: names.subject,
    issuerDer: names.issuer,
    subjectCanon,
    issuerCanon,
    ca: bc ? bc.ca : undefined,
    pathLength: bc?.ca ? bc.pathLength : undefined,
    keyUsage,
    keyUsageNames: keyUsage === undefined ? [] : KU_NAMES.filter(([bit]) => (keyUsage & bit) !== 0).map(([, n]) => n),
    extKeyUsage: eku ? Array.from(eku.usages, String) : undefined,
    sans,
    ski,
    akiKeyId,
    hasExtensions: cert.extensions.length > 0,
    selfIssued: subjectCanon.equals(issuerCanon),
    selfSigned: subjectCanon.equals(issuerCanon) && (akiKeyId === undefined || ski === undefined || akiKeyId === ski),
    sha256: createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex'),
  };
  cache.set(cert, f);
  return f;
}

/** OpenSSL's x509_likely_issued without the signature: names and key identifiers agree. */
export function likelyIssued(issuer: x509.X509Certificate, subject: x509.X509Certificate): boolean {
  const i = facts(issuer);
  const s = facts(subject);
  if (!s.issuerCanon.equals(i.subjectCanon)) return false;
  if (s.akiKeyId !== undefined && i.ski !== undefined && s.akiKeyId !== i.ski) return false;
  return true;
}

/** Whether `issuer`'s key verifies `subject`'s signature. */
export async function signatureVerifies(issuer: x509.X509Certificate, subject: x509.X509Certificate): Promise<boolean> {
  try {
    return await subject.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

/**
 * May act as a CA (OpenSSL check_ca): basicConstraints cA:TRUE, and keyUsage (if present) includes keyCertSign.
 * A certificate with no extensions at all that is self-issued is an X.509 v1 root, which OpenSSL accepts as a CA.
 */
export function isCA(cert: x509.X509Certificate): boolean {
  const f = facts(cert);
  if (f.keyUsage !== undefined && (f.keyUsage & x509.KeyUsageFlags.keyCertSign) === 0) return false;
  if (f.ca !== undefined) return f.ca;
  return !f.hasExtensions && f.selfSigned;
}

/** Colon-separated upper-case hex, as `openssl x509 -fingerprint -sha256` prints. */
export function colonHex(hex: string): string {
  return (hex.toUpperCase().match(/../g) ?? []).join(':');
}
