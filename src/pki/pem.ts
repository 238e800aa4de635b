/**
 * Reading what users hand us: PEM files with any number of blocks (certificates, CRLs, keys, in any order, with
 * text between them as `openssl x509 -text` leaves it), or a single DER object. Formats are detected from the bytes,
 * never from the file extension: Azure's download links serve DER under `.crt` and PEM under `.crt.pem`.
 *
 * Every error names the file and says what to do, because these messages end up in front of users verbatim.
 */
import { type KeyObject, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { PgtlsError } from '../errors.js';
import { x509 } from './x509.js';

export const ERR_READ = 'PGTLS_ERR_PKI_READ';
export const ERR_NOT_CERTIFICATE = 'PGTLS_ERR_PKI_NOT_CERTIFICATE';
export const ERR_NOT_CRL = 'PGTLS_ERR_PKI_NOT_CRL';
export const ERR_NOT_KEY = 'PGTLS_ERR_PKI_NOT_KEY';
export const ERR_KEY_PASSPHRASE = 'PGTLS_ERR_PKI_KEY_PASSPHRASE';

/** A fresh ArrayBuffer holding `bytes` (WebCrypto and @peculiar/x509 want an ArrayBuffer, not a Node Buffer view). */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(out).set(bytes);
  return out;
}

/** One `-----BEGIN X-----` … `-----END X-----` block. */
export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
  /** The block's text exactly as found (legacy encrypted keys carry `Proc-Type`/`DEK-Info` headers in it). */
  readonly text: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** All PEM blocks of a text, in order. Text outside blocks is ignored, as OpenSSL does. */
export function splitPem(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const body = m[2]!
      .split(/\r?\n/)
      .filter((line) => !line.includes(':')) // RFC 1421 headers (Proc-Type, DEK-Info)
      .join('');
    blocks.push({ label: m[1]!, der: Buffer.from(body.replace(/\s+/g, ''), 'base64'), text: m[0] });
  }
  return blocks;
}

export function encodePem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** PEM if the bytes contain a BEGIN line; DER if they start with an ASN.1 SEQUENCE; otherwise unknown. */
export function detectEncoding(bytes: Uint8Array): 'pem' | 'der' | 'unknown' {
  const head = Buffer.from(bytes.subarray(0, Math.min(bytes.length, 65536))).toString('latin1');
  if (head.includes('-----BEGIN ')) return 'pem';
  if (bytes.length > 2 && bytes[0] === 0x30) return 'der';
  return 'unknown';
}

/** What a DER object is, found by trying the parsers (cheap, and exact where sniffing OIDs would guess). */
export type DerKind = 'certificate' | 'crl' | 'private-key' | 'encrypted-private-key' | 'public-key' | 'unknown';

export function classifyDer(der: Buffer): DerKind {
  try {
    new x509.X509Certificate(toArrayBuffer(der));
    return 'certificate';
  } catch {}
  try {
    new x509.X509Crl(toArrayBuffer(der));
    return 'crl';
  } catch {}
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      createPrivateKey({ key: der, format: 'der', type });
      return 'private-key';
    } catch (err) {
      // Node reports an encrypted PKCS#8 key as needing a passphrase rather than as garbage.
      if (type === 'pkcs8' && /passphrase/i.test(String((err as Error).message))) return 'encrypted-private-key';
    }
  }
  try {
    new x509.PublicKey(toArrayBuffer(der));
    return 'public-key';
  } catch {}
  return 'unknown';
}

/** Read a file, turning OS errors into a message with the file name and the reason. */
export async function readInput(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (cause) {
    const e = cause as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EACCES'
          ? 'permission denied'
          : e.code === 'EISDIR'
            ? 'is a directory'
            : e.message;
    throw new PgtlsError(ERR_READ, `${file}: cannot read the file (${why})`, {
      cause,
      details: { file, hint: 'Check the path and that this user may read it.' },
    });
  }
}

const CERT_LABELS = new Set(['CERTIFICATE', 'TRUSTED CERTIFICATE', 'X509 CERTIFICATE']);

/** Every certificate in PEM or DER bytes; an error naming `file` when there is none or one is corrupt. */
export function parseCertificates(bytes: Uint8Array, file: string): x509.X509Certificate[] {
  const enc = detectEncoding(bytes);
  if (enc === 'pem') {
    const blocks = splitPem(Buffer.from(bytes).toString('latin1')).filter((b) => CERT_LABELS.has(b.label));
    if (blocks.length === 0) throw notCertificate(file, 'the file holds PEM blocks but no CERTIFICATE block');
    return blocks.map((b, i) => {
      try {
        return new x509.X509Certificate(toArrayBuffer(b.der));
      } catch (cause) {
        throw notCertificate(file, `certificate #${i + 1} is corrupt (${(cause as Error).message})`, cause);
      }
    });
  }
  if (enc === 'der') {
    try {
      return [new x509.X509Certificate(toArrayBuffer(bytes))];
    } catch (cause) {
      const kind = classifyDer(Buffer.from(bytes));
      throw notCertificate(file, kind === 'unknown' ? 'not a DER certificate' : `it is a DER ${kind}`, cause);
    }
  }
  throw notCertificate(file, bytes.length === 0 ? 'the file is empty' : 'neither PEM nor DER');
}

function notCertificate(file: string, why: string, cause?: unknown): PgtlsError {
  return new PgtlsError(ERR_NOT_CERTIFICATE, `${file}: no certificate found: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
    details: {
      file,
      hint: 'Give a PEM file with "-----BEGIN CERTIFICATE-----" blocks or a DER certificate; check with `pgtls cert inspect`.',
    },
  });
}

export async function readCertificates(file: string): Promise<x509.X509Certificate[]> {
  return parseCertificates(await readInput(file), file);
}

/** Every CRL in PEM or DER bytes. */
export function parseCrls(bytes: Uint8Array, file: string): x509.X509Crl[] {
  const fail = (why: string, cause?: unknown) =>
    new PgtlsError(ERR_NOT_CRL, `${file}: no CRL found: ${why}`, {
      ...(cause === undefined ? {} : { cause }),
      details: { file, hint: 'Give a PEM file with "-----BEGIN X509 CRL-----" blocks or a DER CRL.' },
    });
  const enc = detectEncoding(bytes);
  if (enc === 'pem') {
    const blocks = splitPem(Buffer.from(bytes).toString('latin1')).filter((b) => b.label === 'X509 CRL');
    if (blocks.length === 0) throw fail('the file holds no X509 CRL block');
    return blocks.map((b) => {
      try {
        return new x509.X509Crl(toArrayBuffer(b.der));
      } catch (cause) {
        throw fail(`a CRL block is corrupt (${(cause as Error).message})`, cause);
      }
    });
  }
  if (enc === 'der') {
    try {
      return [new x509.X509Crl(toArrayBuffer(bytes))];
    } catch (cause) {
      throw fail('not a DER CRL', cause);
    }
  }
  throw fail(bytes.length === 0 ? 'the file is empty' : 'neither PEM nor DER');
}

export async function readCrls(file: string): Promise<x509.X509Crl[]> {
  return parseCrls(await readInput(file), file);
}

const KEY_LABELS = new Set(['PRIVATE KEY', 'ENCRYPTED PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY']);

/** The on-disk form of a private key, for `convert` and for messages. */
export type KeyFormat = 'pkcs8' | 'pkcs8-encrypted' | 'pkcs1' | 'sec1' | 'pkcs1-encrypted' | 'sec1-encrypted';

export interface ParsedKey {
  readonly key: KeyObject;
  readonly format: KeyFormat;
  readonly encoding: 'pem' | 'der';
}

/**
 * The first private key in PEM or DER bytes (PKCS#8, PKCS#1 RSA or SEC1 EC; encrypted ones with `passphrase`).
 * Distinguishes "encrypted, give a passphrase" from "wrong passphrase" from "not a key", as users need different fixes.
 */
export function parsePrivateKey(bytes: Uint8Array, file: string, passphrase?: string): ParsedKey {
  const enc = detectEncoding(bytes);
  let input: { key: string | Buffer; format: 'pem' | 'der'; type?: 'pkcs8' | 'pkcs1' | 'sec1' };
  let format: KeyFormat;
  if (enc === 'pem') {
    const block = splitPem(Buffer.from(bytes).toString('latin1')).find((b) => KEY_LABELS.has(b.label));
    if (!block) throw notKey(file, 'the file holds no PRIVATE KEY block');
    const legacyEncrypted = block.text.includes('Proc-Type: 4,ENCRYPTED');
    format =
      block.label === 'ENCRYPTED PRIVATE KEY'
        ? 'pkcs8-encrypted'
        : block.label === 'RSA PRIVATE KEY'
          ? legacyEncrypted
            ? 'pkcs1-encrypted'
            : 'pkcs1'
          : block.label === 'EC PRIVATE KEY'
            ? legacyEncrypted
              ? 'sec1-encrypted'
              : 'sec1'
            : 'pkcs8';
    input = { key: block.text, format: 'pem' };
  } else if (enc === 'der') {
    const kind = classifyDer(Buffer.from(bytes));
    if (kind !== 'private-key' && kind !== 'encrypted-private-key') {
      throw notKey(file, kind === 'unknown' ? 'not a DER private key' : `it is a DER ${kind}`);
    }
    format = kind === 'encrypted-private-key' ? 'pkcs8-encrypted' : derKeyType(Buffer.from(bytes));
    input = { key: Buffer.from(bytes), format: 'der', type: format === 'pkcs8-encrypted' ? 'pkcs8' : format };
  } else {
    throw notKey(file, bytes.length === 0 ? 'the file is empty' : 'neither PEM nor DER');
  }
  const encrypted = format.endsWith('-encrypted');
  if (encrypted && (passphrase === undefined || passphrase === '')) {
    throw new PgtlsError(ERR_KEY_PASSPHRASE, `${file}: the private key is encrypted and no passphrase was given`, {
      details: { file, hint: 'Pass --passin pass:…, env:VAR or file:PATH.' },
    });
  }
  try {
    const key = createPrivateKey(encrypted ? { ...input, passphrase: passphrase ?? '' } : input);
    return { key, format, encoding: enc };
  } catch (cause) {
    if (encrypted) {
      throw new PgtlsError(ERR_KEY_PASSPHRASE, `${file}: wrong passphrase for the encrypted private key`, {
        cause,
        details: { file, hint: 'Check the passphrase given with --passin.' },
      });
    }
    throw notKey(file, `the key is corrupt (${(cause as Error).message})`, cause);
  }
}

function derKeyType(der: Buffer): 'pkcs8' | 'pkcs1' | 'sec1' {
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      createPrivateKey({ key: der, format: 'der', type });
      return type;
    } catch {}
  }
  return 'pkcs8';
}

function notKey(file: string, why: string, cause?: unknown): PgtlsError {
  return new PgtlsError(ERR_NOT_KEY, `${file}: no private key found: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { file, hint: 'Give the PEM or DER private key that belongs to the certificate.' },
  });
}

export async function readPrivateKey(file: string, passphrase?: string): Promise<ParsedKey> {
  return parsePrivateKey(await readInput(file), file, passphrase);
}
