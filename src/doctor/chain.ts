/**
 * The doctor's judgements about a server's chain, on top of pki/: summaries and linkage findings come from
 * pki/inspect (inspectCertificates, mode "chain"), OpenSSL-equivalent verification from pki/verify (verifyChain).
 * What is added here is what only the doctor asks: is a trust store holding a root, a pinned intermediate, or the
 * server certificate itself, and does a chain that stops at the server's own certificate mean a missing intermediate.
 */
import { existsSync, readFileSync } from 'node:fs';
import { facts, likelyIssued, signatureVerifies } from '../pki/facts.js';
import { type Finding, type Inspection, inspectCertificates, isSelfSigned } from '../pki/inspect.js';
import { parseCertificates, toArrayBuffer } from '../pki/pem.js';
import { SYSTEM_BUNDLES, nodeRoots, systemRoots } from '../pki/roots.js';
import { type VerifyFailure, verifyChain } from '../pki/verify.js';
import { x509 } from '../pki/x509.js';

export type { CertificateSummary, Finding } from '../pki/inspect.js';

export function toX509(der: Uint8Array): x509.X509Certificate {
  return new x509.X509Certificate(toArrayBuffer(der));
}

export interface ChainReport extends Inspection {
  /** Issuer of the last certificate sent, when that certificate is not self-signed (the name clients must trust). */
  readonly topIssuer?: string | undefined;
  /** The last certificate sent is the server's own (not a CA): if its issuer is not a root, an intermediate is missing. */
  readonly endsAtLeaf: boolean;
}

/** Inspect the chain as the server sent it (order matters: leaf first, then each issuer). */
export async function inspectChain(ders: readonly Buffer[], now = new Date()): Promise<ChainReport> {
  const certs = ders.map(toX509);
  const inspection = await inspectCertificates(certs, { mode: 'chain', now });
  const last = inspection.certificates[inspection.certificates.length - 1];
  return {
    ...inspection,
    topIssuer: last && !last.selfSigned ? last.issuer : undefined,
    endsAtLeaf: last !== undefined && !last.ca && !last.selfSigned,
  };
}

export interface TrustStore {
  /** What the user would write: the path, "~/.postgresql/root.crt" or "system". */
  readonly label: string;
  readonly path: string;
  readonly exists: boolean;
  readonly certificates: readonly x509.X509Certificate[];
  /** Why the file could not be used, when it exists but holds no certificate. */
  readonly problem?: string | undefined;
  /** CRLs the client checks (sslcrl / sslcrldir); when present every certificate of the chain is checked. */
  readonly crls?: readonly x509.X509Crl[];
}

export function loadTrustStore(label: string, path: string): TrustStore {
  if (!path || !existsSync(path)) return { label, path, exists: false, certificates: [] };
  try {
    return { label, path, exists: true, certificates: parseCertificates(readFileSync(path), path) };
  } catch (err) {
    return { label, path, exists: true, certificates: [], problem: (err as Error).message };
  }
}

/**
 * The store libpq's sslrootcert=system uses: OpenSSL's default verify file, SSL_CERT_FILE first, then the bundles
 * distributions ship (pki/roots' list). pgtls/client reads the same files for sslrootcert=system when it connects.
 */
export function systemStorePath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.SSL_CERT_FILE) return env.SSL_CERT_FILE;
  return SYSTEM_BUNDLES.find((p) => existsSync(p));
}

export type StoreContent =
  | { readonly kind: 'empty' }
  /** A self-signed root in the store issues a certificate of the chain (or is sent in it). */
  | { readonly kind: 'has-root'; readonly subject: string }
  /** The store holds a CA of the chain that is not self-signed (an intermediate is pinned), and no root for it. */
  | { readonly kind: 'pinned-intermediate'; readonly subject: string; readonly issuer: string }
  /** The store holds the server's own certificate. */
  | { readonly kind: 'pinned-leaf'; readonly subject: string }
  /** Nothing in the store is in, or issues anything in, the chain. */
  | { readonly kind: 'unrelated'; readonly count: number };

async function issues(issuer: x509.X509Certificate, subject: x509.X509Certificate): Promise<boolean> {
  return likelyIssued(issuer, subject) && (await signatureVerifies(issuer, subject));
}

/** How a trust store relates to the chain the server sent (explains verification failures). */
export async function storeContent(
  store: readonly x509.X509Certificate[],
  ders: readonly Buffer[],
): Promise<StoreContent> {
  if (store.length === 0) return { kind: 'empty' };
  const sent = ders.map(toX509);
  const fp = (c: x509.X509Certificate) => facts(c).sha256;
  const sentFps = new Set(sent.map(fp));
  const related = async (s: x509.X509Certificate) => {
    if (sentFps.has(fp(s))) return true;
    for (const c of sent) if (await issues(s, c)) return true;
    return false;
  };
  for (const s of store)
    if ((await isSelfSigned(s)) && (await related(s))) return { kind: 'has-root', subject: s.subject };
  const leaf = sent[0];
  if (leaf && store.some((s) => fp(s) === fp(leaf))) return { kind: 'pinned-leaf', subject: leaf.subject };
  for (const s of store) {
    if (!(await isSelfSigned(s)) && (await related(s))) {
      return { kind: 'pinned-intermediate', subject: s.subject, issuer: s.issuer };
    }
  }
  return { kind: 'unrelated', count: store.length };
}

export interface StoreVerdict {
  readonly verified: boolean;
  readonly error?: VerifyFailure | undefined;
  readonly content: StoreContent;
}

/** Verify the chain as sent against a store, as OpenSSL in libpq would (no partial chains, purpose sslserver). */
export async function verifyAgainstStore(ders: readonly Buffer[], store: TrustStore, at?: Date): Promise<StoreVerdict> {
  const chain = ders.map(toX509);
  const content = await storeContent(store.certificates, ders);
  if (chain.length === 0) return { verified: false, content };
  const r = await verifyChain(chain, {
    roots: store.certificates,
    purpose: 'sslserver',
    ...(store.crls ? { crls: store.crls, crlCheck: 'all' as const } : {}),
    ...(at ? { at } : {}),
  });
  return { verified: r.ok, ...(r.error ? { error: r.error } : {}), content };
}

/** Findings worth a line in probe's output (pki reports `info` findings too). */
export function notableFindings(r: ChainReport): Finding[] {
  return r.findings.filter((f) => f.level !== 'info' || f.code === 'root-included');
}

/**
 * A self-signed root, among the certificates this machine already trusts (Node's bundled roots and the system store,
 * via pki/roots), that issued `cert`: what to tell a user to put in sslrootcert, with its fingerprint.
 */
export async function knownRootFor(
  cert: x509.X509Certificate,
): Promise<{ subject: string; sha256: string; file?: string } | undefined> {
  const candidates = [...(await systemRoots()), ...nodeRoots()];
  for (const c of candidates) {
    if (likelyIssued(c.cert, cert) && (await signatureVerifies(c.cert, cert)) && (await isSelfSigned(c.cert))) {
      return { subject: c.cert.subject, sha256: facts(c.cert).sha256, ...(c.file ? { file: c.file } : {}) };
    }
  }
  return undefined;
}

/**
 * Where an unverified chain ends, for probe: at a root nobody here trusts (a private CA, the usual case), or — only
 * when there is a reason to think the leaf's issuer is not a root — at a missing intermediate.
 */
export type ChainEnd =
  /** The top is a root no store holds: sent (self-signed, possibly the server certificate itself) or only named. */
  | {
      readonly kind: 'untrusted-root';
      readonly subject: string;
      readonly sent: boolean;
      readonly selfSignedLeaf: boolean;
      /** The server sent only its certificate: "subject" could still be an intermediate (no store can tell). */
      readonly leafOnly: boolean;
    }
  /** Only the server certificate is sent, and a store the user chose holds a root that is not its issuer. */
  | {
      readonly kind: 'missing-intermediate';
      readonly issuer: string;
      readonly store: string;
      readonly roots: string[];
    };

/**
 * `stores` are those probe verified against; `userStores` the ones the user chose (--rootcert, ~/.postgresql/root.crt).
 * undefined when some store verifies the chain, or a store's content (a pinned certificate, a root of this chain)
 * already explains the failure.
 */
export async function chainEnd(
  chain: ChainReport,
  verdicts: readonly { readonly verified: boolean; readonly content?: StoreContent | undefined }[],
  userStores: readonly TrustStore[],
): Promise<ChainEnd | undefined> {
  if (verdicts.some((v) => v.verified)) return undefined;
  if (verdicts.some((v) => v.content && v.content.kind !== 'empty' && v.content.kind !== 'unrelated')) return undefined;
  const last = chain.certificates[chain.certificates.length - 1];
  if (!last) return undefined;
  if (last.selfSigned) {
    return {
      kind: 'untrusted-root',
      subject: last.subject,
      sent: true,
      selfSignedLeaf: last.index === 0,
      leafOnly: false,
    };
  }
  const issuer = chain.topIssuer ?? last.issuer;
  if (chain.endsAtLeaf) {
    // The leaf's issuer is not sent. A root the user trusts that is not that issuer is the only evidence available
    // offline that the issuer is an intermediate (the leaf names its issuer, not the root above it).
    for (const store of userStores) {
      const roots: string[] = [];
      for (const c of store.certificates) if (c.subject !== issuer && (await isSelfSigned(c))) roots.push(c.subject);
      if (roots.length) return { kind: 'missing-intermediate', issuer, store: store.label, roots };
    }
  }
  return { kind: 'untrusted-root', subject: issuer, sent: false, selfSignedLeaf: false, leafOnly: chain.endsAtLeaf };
}
