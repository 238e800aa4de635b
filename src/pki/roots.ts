/**
 * Root certificates taken offline from trust stores already on the machine: the Mozilla-derived list compiled into
 * Node (`tls.rootCertificates`) and the system store (/etc/ssl/certs and the distribution bundles). Nothing is
 * downloaded: a user following Azure's "download these three roots" step gets them from a store they already trust.
 *
 * Nothing here assumes what a store holds: both change under us. Node's bundled list follows Mozilla's root
 * program, and a root Mozilla stops trusting for TLS leaves it in a later Node release (DigiCert Global Root CA is in
 * Node 20's list but not in 22.23, 24.22 or 26.12's), while Debian's ca-certificates still ships it. So every
 * certificate found says which store it came from, and a known root missing from Node's store is reported as such.
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

/** Node's bundled store (`tls.rootCertificates`), the system store, or a file the user named. */
export type RootSource = 'node' | 'system' | 'file';

export interface StoreCertificate {
  readonly cert: x509.X509Certificate;
  readonly source: RootSource;
  /** For the system store and a file, the file it was read from. */
  readonly file?: string;
}

/** Where a certificate came from, for people: "Node v26.12.1's bundled store", "the system store (/etc/…)", "…". */
export function describeSource(s: Pick<StoreCertificate, 'source' | 'file'>): string {
  if (s.source === 'node') return `Node ${process.version}'s bundled store`;
  if (s.source === 'system') return s.file ? `the system store (${s.file})` : 'the system store';
  return `the file ${s.file ?? '(unnamed)'}`;
}

/** The certificates of a file (PEM, one or more), as a store of its own. */
export async function fileRoots(file: string): Promise<StoreCertificate[]> {
  return parseCertificates(await readFile(file), file).map((cert) => ({ cert, source: 'file' as const, file }));
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
  /** The certificate, once found (the same certificate may be in several stores). */
  readonly cert?: x509.X509Certificate;
  readonly foundIn: RootSource[];
  /** Each place it was found, as describeSource says it (de-duplicated, in store order). */
  readonly origins: string[];
}

/** Look each known root up by subject, accepting only the exact certificate (SHA-256). */
export function findKnownRoots(wanted: readonly KnownRoot[], store: readonly StoreCertificate[]): RootSearch[] {
  const fp = new Map(store.map((s) => [s, facts(s.cert).sha256]));
  return wanted.map((root) => {
    const hits = store.filter((s) => fp.get(s) === root.sha256);
    const foundIn = [...new Set(hits.map((h) => h.source))];
    const origins = [...new Set(hits.map(describeSource))];
    return hits[0] ? { root, cert: hits[0].cert, foundIn, origins } : { root, foundIn, origins };
  });
}

/**
 * Why it matters that a known root is missing from Node's bundled store (undefined when it is there). Programs that
 * trust only Node's default CAs — node-postgres or postgres.js with `ssl: true` and no `ca` — will not verify a chain
 * ending at it, whatever the system store or a client's sslrootcert file holds.
 */
export function nodeStoreGap(root: KnownRoot, node: readonly StoreCertificate[] = nodeRoots()): string | undefined {
  if (node.some((s) => facts(s.cert).sha256 === root.sha256)) return undefined;
  return (
    `${root.name} is not in Node ${process.version}'s bundled store (Node builds it from Mozilla's root list, which ` +
    'drops roots it no longer trusts for TLS): Node programs that rely on the default CAs (node-postgres or ' +
    'postgres.js with `ssl: true` and no `ca`) will not verify a chain ending at it — give them the root file as ' +
    '`ca` (or NODE_EXTRA_CA_CERTS), or start Node with --use-system-ca'
  );
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
