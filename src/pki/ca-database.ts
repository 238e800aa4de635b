/**
 * A small CA database, the JSON counterpart of OpenSSL's `index.txt` + `crlnumber`: which serials a CA issued (so a
 * revocation names a real certificate), which are revoked (so every new CRL lists them again) and the last CRL
 * number. It lives next to the CA certificate (`root.crt` → `root.db.json`) and is bound to the CA by the SHA-256
 * fingerprint of its certificate, so a database copied next to another CA is refused instead of silently mixed.
 *
 * Saved by write-to-temp + rename, so a crash leaves the previous version intact.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { PgtlsError } from '../errors.js';
import { PUBLIC_MODE, siblingPath, writeOutputs } from './files.js';
import type { x509 } from './x509.js';

export const ERR_CA_DATABASE = 'PGTLS_ERR_PKI_CA_DATABASE';
export const ERR_UNKNOWN_SERIAL = 'PGTLS_ERR_PKI_UNKNOWN_SERIAL';
export const ERR_ALREADY_REVOKED = 'PGTLS_ERR_PKI_ALREADY_REVOKED';

export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'removeFromCRL',
  'privilegeWithdrawn',
  'aACompromise',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];
/** RFC 5280 CRLReason codes (7 is unused). */
export const REASON_CODE: Readonly<Record<RevocationReason, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

export interface IssuedRecord {
  /** Lower-case hex, as OpenSSL prints serials. */
  readonly serial: string;
  readonly subject: string;
  readonly kind: 'intermediate' | 'server' | 'client';
  readonly notAfter: string;
  readonly issuedAt: string;
}

export interface RevokedRecord {
  readonly serial: string;
  readonly revokedAt: string;
  readonly reason: RevocationReason;
}

export interface CaDatabaseData {
  readonly format: 'pgtls-ca-db/1';
  readonly ca: { readonly subject: string; readonly sha256: string };
  readonly issued: IssuedRecord[];
  readonly revoked: RevokedRecord[];
  crlNumber: number;
}

export function databasePath(caCertFile: string): string {
  return siblingPath(caCertFile, '.db.json');
}

export function certificateSha256(cert: x509.X509Certificate): string {
  return createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex');
}

/** Normalise a serial as users type it (`01:AB`, `0x1ab`, `01AB`) to OpenSSL's lower-case hex without leading 00. */
export function normaliseSerial(serial: string): string {
  const hex = serial.trim().replace(/^0x/i, '').replace(/[:\s]/g, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) {
    throw new PgtlsError(ERR_UNKNOWN_SERIAL, `"${serial}" is not a hexadecimal serial number`, {
      details: { hint: 'Give the serial as `pgtls cert inspect` prints it, e.g. 4f:1a:… or 4f1a….' },
    });
  }
  return hex.replace(/^(00)+(?=.)/, '');
}

export class CaDatabase {
  private constructor(
    readonly path: string,
    readonly data: CaDatabaseData,
  ) {}

  /** Open the database of `ca` (a missing file is an empty database). */
  static async open(caCertFile: string, ca: x509.X509Certificate): Promise<CaDatabase> {
    const path = databasePath(caCertFile);
    const sha256 = certificateSha256(ca);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
        return new CaDatabase(path, {
          format: 'pgtls-ca-db/1',
          ca: { subject: ca.subject, sha256 },
          issued: [],
          revoked: [],
          crlNumber: 0,
        });
      }
      throw new PgtlsError(ERR_CA_DATABASE, `${path}: cannot read the CA database`, { cause, details: { file: path } });
    }
    let data: CaDatabaseData;
    try {
      data = JSON.parse(text) as CaDatabaseData;
      if (data.format !== 'pgtls-ca-db/1' || !Array.isArray(data.issued) || !Array.isArray(data.revoked)) {
        throw new Error('unknown format');
      }
    } catch (cause) {
      throw new PgtlsError(ERR_CA_DATABASE, `${path}: not a pgtls CA database (${(cause as Error).message})`, {
        cause,
        details: { file: path, hint: 'Move the file away; pgtls starts a new database for this CA.' },
      });
    }
    if (data.ca.sha256 !== sha256) {
      throw new PgtlsError(ERR_CA_DATABASE, `${path}: this database belongs to another CA (${data.ca.subject})`, {
        details: { file: path, hint: 'Keep each CA certificate next to its own .db.json file.' },
      });
    }
    return new CaDatabase(path, data);
  }

  /** A new, empty database for a CA just created (written by the caller together with the CA's files). */
  static async fresh(caCertFile: string, ca: x509.X509Certificate): Promise<CaDatabase> {
    return new CaDatabase(databasePath(caCertFile), {
      format: 'pgtls-ca-db/1',
      ca: { subject: ca.subject, sha256: certificateSha256(ca) },
      issued: [],
      revoked: [],
      crlNumber: 0,
    });
  }

  serialize(): string {
    return `${JSON.stringify(this.data, null, 2)}\n`;
  }

  recordIssued(cert: x509.X509Certificate, kind: IssuedRecord['kind']): void {
    this.data.issued.push({
      serial: normaliseSerial(cert.serialNumber),
      subject: cert.subject,
      kind,
      notAfter: cert.notAfter.toISOString(),
      issuedAt: new Date().toISOString(),
    });
  }

  findIssued(serial: string): IssuedRecord | undefined {
    const s = normaliseSerial(serial);
    return this.data.issued.find((r) => r.serial === s);
  }

  /**
   * Mark a serial revoked. An unknown serial is refused unless `allowUnknown` (a certificate issued before pgtls
   * kept this database); revoking twice is refused so the original date and reason stay on record.
   */
  revoke(serial: string, reason: RevocationReason, opts: { date?: Date; allowUnknown?: boolean } = {}): RevokedRecord {
    const s = normaliseSerial(serial);
    if (!this.findIssued(s) && !opts.allowUnknown) {
      throw new PgtlsError(
        ERR_UNKNOWN_SERIAL,
        `serial ${s} was not issued by ${this.data.ca.subject} (not in ${this.path})`,
        {
          details: {
            file: this.path,
            hint: 'Check the serial with `pgtls cert inspect`, or pass --force to revoke it anyway.',
          },
        },
      );
    }
    const prior = this.data.revoked.find((r) => r.serial === s);
    if (prior) {
      throw new PgtlsError(
        ERR_ALREADY_REVOKED,
        `serial ${s} is already revoked (${prior.reason}, ${prior.revokedAt})`,
        {
          details: { file: this.path, hint: 'Nothing to do; run `pgtls cert crl` to publish a fresh CRL.' },
        },
      );
    }
    const rec: RevokedRecord = { serial: s, revokedAt: (opts.date ?? new Date()).toISOString(), reason };
    this.data.revoked.push(rec);
    return rec;
  }

  nextCrlNumber(): number {
    this.data.crlNumber += 1;
    return this.data.crlNumber;
  }

  async save(): Promise<void> {
    await writeOutputs([{ path: this.path, data: this.serialize(), mode: PUBLIC_MODE }], { force: true });
  }
}
