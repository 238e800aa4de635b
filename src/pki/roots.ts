/**
 * Root certificates taken offline from trust stores already on the machine: the Mozilla-derived list compiled into
 * Node (`tls.rootCertificates`) and the system store (/etc/ssl/certs and the distribution bundles). Nothing is
 * downloaded: a user following Azure's "download these three roots" step gets them from a store they already trust.
 */
import { readFile, readdir } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { facts } from './facts.js';
import { parseCertificates } from './pem.js';
import type { x509 } from './x509.js';

export interface KnownRoot {
  readonly name: string;
  /** Subject common name and organisation, to find the certificate in a store. */
  readonly cn: string;
  readonly o: string;
  /** SHA-256 of the certificate (lower-case hex): a lookalike subject in some store is never taken. */
  readonly sha256: string;
}

/**
 * The roots Azure Database for PostgreSQL tells verify-ca / verify-full clients to deploy ("Configure SSL on the
 * client"): DigiCert Global Root G2 and Microsoft RSA Root Certificate Authority 2017 for the migration to the
 * Microsoft CA, DigiCert Global Root CA for legacy compatibility.
 */
export const AZURE_ROOTS: readonly KnownRoot[] = [
  {
    name: 'DigiCert Global Root G2',
    cn: 'DigiCert Global Root G2',
    o: 'DigiCert Inc',
    sha256: 'cb3ccbb76031e5e0138f8dd39a23f9de47ffc35e43c1144cea27d46a5ab1cb5f',
  },
  {
    name: 'Microsoft RSA Root Certificate Authority 2017',
    cn: 'Microsoft RSA Root Certificate Authority 2017',
    o: 'Microsoft Corporation',
    sha256: 'c741f70f4b2a8d88bf2e71c14122ef53ef10eba0cfa5e64cfa20f418853073e0',
  },
  {
    name: 'DigiCert Global Root CA',
    cn: 'DigiCert Global Root CA',
    o: 'DigiCert Inc',
    sha256: '4348a0e9444c78cb265e058d5e8944b4d84f9662bd26db257f8934a443c70161',
  },
];

export type RootSource = 'node' | 'system';

export interface StoreCertificate {
  readonly cert: x509.X509Certificate;
  readonly source: RootSource;
  /** For the system store, the file it was read from. */
  readonly file?: string;
}

/** Bundle files distributions ship (Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE, FreeBSD). */
export const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
] as const;

export function nodeRoots(): StoreCertificate[] {
  return rootCertificates.flatMap((pem) => {
    try {
      return parseCertificates(Buffer.from(pem), 'node:tls rootCertificates').map((cert) => ({
        cert,
        source: 'node' as const,
      }));
    } catch {
      return [];
    }
  });
}

/** The system store: the first bundle file found, plus the individual files of /etc/ssl/certs. */
export async function systemRoots(
  opts: { bundles?: readonly string[]; dir?: string } = {},
): Promise<StoreCertificate[]> {
  const out: StoreCertificate[] = [];
  for (const file of opts.bundles ?? SYSTEM_BUNDLES) {
    const bytes = await readFile(file).catch(() => undefined);
    if (!bytes) continue;
    try {
      for (const cert of parseCertificates(bytes, file)) out.push({ cert, source: 'system', file });
      break;
    } catch {}
  }
  const dir = opts.dir ?? '/etc/ssl/certs';
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.slice(0, 5000)) {
    if (!/\.(pem|crt)$/.test(name)) continue;
    const file = `${dir}/${name}`;
    const bytes = await readFile(file).catch(() => undefined);
    if (!bytes) continue;
    try {
      for (const cert of parseCertificates(bytes, file)) out.push({ cert, source: 'system', file });
    } catch {}
  }
  return out;
}

function attr(cert: x509.X509Certificate, name: string): string[] {
  return cert.subjectName.getField(name);
}

export interface RootSearch {
  readonly root: KnownRoot;
  /** The certificate, once found (the same certificate may be in both stores). */
  readonly cert?: x509.X509Certificate;
  readonly foundIn: RootSource[];
}

/** Look each known root up by subject, accepting only the exact certificate (SHA-256). */
export function findKnownRoots(wanted: readonly KnownRoot[], store: readonly StoreCertificate[]): RootSearch[] {
  return wanted.map((root) => {
    const hits = store.filter((s) => facts(s.cert).sha256 === root.sha256);
    const sources = [...new Set(hits.map((h) => h.source))];
    return hits[0] ? { root, cert: hits[0].cert, foundIn: sources } : { root, foundIn: sources };
  });
}

/**
 * Certificates of the store whose subject contains `text` (case-insensitive; matched against the whole subject
 * string), de-duplicated across stores, for `pgtls cert roots --subject`.
 */
export function searchRoots(
  store: readonly StoreCertificate[],
  text: string,
): { cert: x509.X509Certificate; foundIn: RootSource[] }[] {
  const needle = text.toLowerCase();
  const byFp = new Map<string, { cert: x509.X509Certificate; foundIn: RootSource[] }>();
  for (const s of store) {
    const cn = attr(s.cert, 'CN').join(' ');
    if (!s.cert.subject.toLowerCase().includes(needle) && !cn.toLowerCase().includes(needle)) continue;
    const fp = facts(s.cert).sha256;
    const e = byFp.get(fp);
    if (e) {
      if (!e.foundIn.includes(s.source)) e.foundIn.push(s.source);
    } else byFp.set(fp, { cert: s.cert, foundIn: [s.source] });
  }
  return [...byFp.values()];
}
