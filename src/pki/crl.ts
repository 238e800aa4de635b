/**
 * CRLs: issuing them from a CA database, laying them out as a hashed directory for ssl_crl_dir, and finding the CRL
 * that covers a certificate the way OpenSSL does during verification.
 *
 * ssl_crl_dir is an OpenSSL X509_LOOKUP_hash_dir: a CRL is found under `<issuer-name-hash>.r<n>`, n = 0, 1, … for
 * different CAs whose names hash alike. PostgreSQL (and libpq's sslcrldir) load CRLs from it on demand, so a CA's
 * CRL can be replaced in place without a reload (docs: "ssl_crl_dir … loaded on demand").
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaDatabase } from './ca-database.js';
import { REASON_CODE } from './ca-database.js';
import { facts } from './facts.js';
import { PUBLIC_MODE, writeOutputs } from './files.js';
import { type Issued, createCRL } from './generate.js';
import { certificateNames, crlIssuerName, namesEqual, subjectNameHash } from './names.js';
import { parseCrls } from './pem.js';
import { x509 } from './x509.js';

/** A CRL listing every revocation in `db`, signed by `ca`; bumps the database's CRL number. */
export async function issueCrl(ca: Issued, db: CaDatabase, opts: { days?: number; now?: Date } = {}): Promise<string> {
  db.nextCrlNumber();
  const thisUpdate = new Date((opts.now ?? new Date()).getTime() - 60_000);
  return createCRL(
    ca,
    db.data.revoked.map((r) => ({
      serial: r.serial,
      date: new Date(r.revokedAt),
      reason: REASON_CODE[r.reason] as x509.X509CrlReason,
    })),
    { thisUpdate, days: opts.days ?? 30 },
  );
}

/** `openssl crl -hash`: the name hash of the CRL's issuer. */
export function crlHash(crl: x509.X509Crl): string {
  return subjectNameHash(crlIssuerName(new Uint8Array(crl.rawData)));
}

/**
 * Write CRLs into a hashed directory (the directory must exist). A file there holding a CRL of the same issuer is
 * replaced — that is how a CRL directory is updated — and a different issuer with a colliding hash gets the next
 * free `.r<n>`. Returns the file names written.
 */
export async function writeCrlDirectory(dir: string, crlPems: readonly string[]): Promise<string[]> {
  const existing = new Set(await readdir(dir));
  const outputs: { path: string; data: string; mode: number }[] = [];
  const taken = new Set<string>();
  for (const pem of crlPems) {
    const crl = new x509.X509Crl(pem);
    const issuer = crlIssuerName(new Uint8Array(crl.rawData));
    const hash = subjectNameHash(issuer);
    let chosen: string | undefined;
    for (let n = 0; n < 1000 && chosen === undefined; n++) {
      const name = `${hash}.r${n}`;
      if (taken.has(name)) continue;
      if (!existing.has(name)) {
        chosen = name;
        break;
      }
      try {
        const old = parseCrls(await readFile(join(dir, name)), name)[0];
        if (old && namesEqual(crlIssuerName(new Uint8Array(old.rawData)), issuer)) chosen = name;
      } catch {
        // an unreadable file under a hashed name is left alone; try the next index
      }
    }
    if (chosen === undefined) throw new Error(`${dir}: no free name for hash ${hash}`);
    taken.add(chosen);
    outputs.push({ path: join(dir, chosen), data: pem, mode: PUBLIC_MODE });
  }
  await writeOutputs(outputs, { force: true });
  return outputs.map((o) => o.path);
}

export type CrlProblem =
  | { readonly code: 'X509_V_ERR_UNABLE_TO_GET_CRL' }
  | { readonly code: 'X509_V_ERR_CRL_SIGNATURE_FAILURE' }
  | { readonly code: 'X509_V_ERR_CRL_NOT_YET_VALID' }
  | { readonly code: 'X509_V_ERR_CRL_HAS_EXPIRED' }
  | { readonly code: 'X509_V_ERR_CERT_REVOKED'; readonly revokedAt: Date; readonly reason?: number };

/**
 * The revocation status of `cert` (issued by `issuer`) against `crls`, as OpenSSL's check_cert: a CRL whose issuer
 * name matches and whose signature verifies with the issuer's key; then its validity period; then the entry.
 */
export async function checkRevocation(
  cert: x509.X509Certificate,
  issuer: x509.X509Certificate,
  crls: readonly x509.X509Crl[],
  at: Date,
): Promise<CrlProblem | undefined> {
  const issuerName = certificateNames(new Uint8Array(cert.rawData)).issuer;
  // As OpenSSL's crl_akid_check: a CRL whose authority key identifier names another key is not this CA's CRL at
  // all ("unable to get certificate CRL"), even under the same name; only a matching one can fail its signature.
  const ski = facts(issuer).ski;
  const candidates = crls.filter((c) => {
    if (!namesEqual(crlIssuerName(new Uint8Array(c.rawData)), issuerName)) return false;
    const akid = c.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId?.toLowerCase();
    return akid === undefined || ski === undefined || akid === ski;
  });
  if (candidates.length === 0) return { code: 'X509_V_ERR_UNABLE_TO_GET_CRL' };
  let signed: x509.X509Crl | undefined;
  for (const c of candidates) {
    if (await c.verify({ publicKey: issuer }).catch(() => false)) {
      // Prefer the newest valid CRL when several are present (OpenSSL picks the "best" by validity and time).
      if (!signed || c.thisUpdate > signed.thisUpdate) signed = c;
    }
  }
  if (!signed) return { code: 'X509_V_ERR_CRL_SIGNATURE_FAILURE' };
  if (signed.thisUpdate > at) return { code: 'X509_V_ERR_CRL_NOT_YET_VALID' };
  if (signed.nextUpdate && signed.nextUpdate < at) return { code: 'X509_V_ERR_CRL_HAS_EXPIRED' };
  const entry = signed.findRevoked(cert.serialNumber);
  if (entry) {
    return {
      code: 'X509_V_ERR_CERT_REVOKED',
      revokedAt: entry.revocationDate,
      ...(entry.reason === undefined ? {} : { reason: entry.reason }),
    };
  }
  return undefined;
}
