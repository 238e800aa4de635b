/**
 * The facts of every certificate and CRL in the files the gateway serves or trusts: subject, issuer, not-after, days
 * left and SHA-256 fingerprint — for SHOW CERTS, the *_not_after_seconds gauges and the status page. Only public
 * material is read (certificates and CRLs, never a key file).
 */
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseCrls, splitPem } from '../../pki/pem.js';
import type { ServedFile } from './runtime-view.js';

export interface CertFileEntry {
  readonly file: string;
  readonly kind: ServedFile['kind'];
  /** Position in the file, from 0 (a chain file holds the leaf, then intermediates). */
  readonly index: number;
  /** 'certificate' or 'crl'. */
  readonly type: 'certificate' | 'crl';
  /** RFC 2253 order (most specific first), as PostgreSQL prints DNs; empty for a CRL. */
  readonly subject: string;
  readonly issuer: string;
  /** Certificate notAfter; a CRL's nextUpdate (when it must be replaced). */
  readonly notAfter?: Date;
  /** Colon-separated upper-case hex of SHA-256 over the DER, as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint: string;
  /** Why the file could not be read, when it could not (the row still appears so the operator sees it). */
  readonly error?: string;
}

/** Node prints a name one attribute per line in certificate order; PostgreSQL and OpenSSL's RFC 2253 put the most specific first. */
export function rfc2253(nodeName: string): string {
  return nodeName.split('\n').filter(Boolean).reverse().join(',');
}

const fingerprint = (der: Uint8Array) =>
  createHash('sha256')
    .update(der)
    .digest('hex')
    .toUpperCase()
    .replace(/(..)(?!$)/g, '$1:');

/** Whole days from `now` to `notAfter`, rounded down (negative once expired). */
export function daysLeft(notAfter: Date, now: Date): number {
  return Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000);
}

/** Read one served file. Never throws: an unreadable file becomes one entry with `error`. */
export function readServedFile(f: ServedFile): CertFileEntry[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(f.path);
  } catch (e) {
    return [
      broken(f, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message),
    ];
  }
  try {
    if (f.kind === 'crl') {
      return parseCrls(bytes, f.path).map((crl, index) => ({
        file: f.path,
        kind: f.kind,
        index,
        type: 'crl' as const,
        subject: '',
        issuer: crl.issuer.split(', ').join(','),
        ...(crl.nextUpdate ? { notAfter: crl.nextUpdate } : {}),
        fingerprint: fingerprint(new Uint8Array(crl.rawData)),
      }));
    }
    const blocks = splitPem(bytes.toString('latin1')).filter(
      (b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE',
    );
    const ders = blocks.length > 0 ? blocks.map((b) => b.der) : [bytes];
    return ders.map((der, index) => {
      const c = new X509Certificate(der);
      return {
        file: f.path,
        kind: f.kind,
        index,
        type: 'certificate' as const,
        subject: rfc2253(c.subject),
        issuer: rfc2253(c.issuer),
        notAfter: new Date(c.validTo),
        fingerprint: fingerprint(c.raw),
      };
    });
  } catch (e) {
    return [broken(f, (e as Error).message)];
  }
}

function broken(f: ServedFile, error: string): CertFileEntry {
  return {
    file: f.path,
    kind: f.kind,
    index: 0,
    type: f.kind === 'crl' ? 'crl' : 'certificate',
    subject: '',
    issuer: '',
    fingerprint: '',
    error,
  };
}

export function readServedFiles(files: readonly ServedFile[]): CertFileEntry[] {
  return files.flatMap(readServedFile);
}

/**
 * The files the gateway serves or trusts, from the TLS settings in force (pass TlsMaterial.settings, whose
 * ssl_cert_file is the generated one when the configuration left it empty): the server chain, the client CA, the CRL
 * file, every file of the CRL directory, and the root the gateway trusts for its backend.
 */
export function servedFilesOf(s: {
  readonly ssl_cert_file: string;
  readonly ssl_ca_file: string;
  readonly ssl_crl_file: string;
  readonly ssl_crl_dir: string;
  readonly upstream_sslrootcert?: string;
}): ServedFile[] {
  const out: ServedFile[] = [];
  if (s.ssl_cert_file) out.push({ path: s.ssl_cert_file, kind: 'server' });
  if (s.ssl_ca_file) out.push({ path: s.ssl_ca_file, kind: 'ca' });
  if (s.upstream_sslrootcert && s.upstream_sslrootcert !== 'system')
    out.push({ path: s.upstream_sslrootcert, kind: 'ca' });
  if (s.ssl_crl_file) out.push({ path: s.ssl_crl_file, kind: 'crl' });
  if (s.ssl_crl_dir) {
    let names: string[] = [];
    try {
      names = readdirSync(s.ssl_crl_dir).sort();
    } catch {
      // An unreadable directory is reported by TLS loading; here it simply lists nothing.
    }
    // OpenSSL's hashed names (<hash>.r<n>); anything else in the directory is not read by OpenSSL either.
    for (const n of names.filter((x) => /^[0-9a-f]{8}\.r\d+$/.test(x)))
      out.push({ path: join(s.ssl_crl_dir, n), kind: 'crl' });
  }
  return out;
}
