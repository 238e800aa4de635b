/**
 * Private keys: passphrases in OpenSSL's `-passin`/`-passout` syntax, matching a key to its certificate, and the
 * on-disk forms PostgreSQL clients want (libpq: PEM PKCS#1/SEC1/PKCS#8; pgjdbc: DER PKCS#8 `postgresql.pk8`).
 */
import { type KeyObject, createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { PgtlsError } from '../errors.js';
import { facts, isCA } from './facts.js';
import { type Issued, loadIssued } from './generate.js';
import { readCertificates, readPrivateKey } from './pem.js';
import { x509 } from './x509.js';

export const ERR_PASSPHRASE_SPEC = 'PGTLS_ERR_PKI_PASSPHRASE_SPEC';
export const ERR_KEY_MISMATCH = 'PGTLS_ERR_PKI_KEY_MISMATCH';
export const ERR_NOT_CA = 'PGTLS_ERR_PKI_NOT_CA';
export const ERR_KEY_FORMAT = 'PGTLS_ERR_PKI_KEY_FORMAT';

/** `pass:TEXT`, `env:VAR` or `file:PATH` (first line), as OpenSSL's -passin/-passout. */
export async function resolvePassphrase(spec: string): Promise<string> {
  const fail = (why: string) =>
    new PgtlsError(ERR_PASSPHRASE_SPEC, `passphrase source "${spec.split(':')[0]}:…": ${why}`, {
      details: { hint: 'Use pass:TEXT, env:VARIABLE or file:PATH.' },
    });
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? '' : spec.slice(0, colon);
  const rest = spec.slice(colon + 1);
  if (kind === 'pass') return rest;
  if (kind === 'env') {
    const v = process.env[rest];
    if (v === undefined) throw fail(`the environment variable ${rest} is not set`);
    return v;
  }
  if (kind === 'file') {
    try {
      return (await readFile(rest, 'utf8')).split(/\r?\n/)[0] ?? '';
    } catch (cause) {
      throw fail(`cannot read ${rest} (${(cause as NodeJS.ErrnoException).code ?? cause})`);
    }
  }
  throw fail('unknown source');
}

/** DER SubjectPublicKeyInfo of a private key's public half. */
export function publicKeyDer(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

/** Whether `key` is the private key of `cert` (same public key). */
export function keyMatchesCertificate(key: KeyObject, cert: x509.X509Certificate): boolean {
  return publicKeyDer(key).equals(Buffer.from(cert.publicKey.rawData));
}

export interface KeyDescription {
  /** `RSA`, `EC`, `Ed25519`, … */
  readonly type: string;
  readonly bits?: number;
  /** EC curve as OpenSSL names it (prime256v1, secp384r1). */
  readonly curve?: string;
}

export function describeKey(key: KeyObject): KeyDescription {
  const d = key.asymmetricKeyDetails ?? {};
  const t = key.asymmetricKeyType ?? 'unknown';
  if (t === 'rsa' || t === 'rsa-pss') return { type: t === 'rsa' ? 'RSA' : 'RSA-PSS', bits: d.modulusLength ?? 0 };
  if (t === 'ec') {
    const curve = d.namedCurve ?? 'unknown';
    const bits = curve === 'prime256v1' ? 256 : curve === 'secp384r1' ? 384 : curve === 'secp521r1' ? 521 : 0;
    return { type: 'EC', bits, curve };
  }
  return { type: t === 'ed25519' ? 'Ed25519' : t === 'ed448' ? 'Ed448' : t };
}

/** The public key of a certificate, described like a private key. */
export function describeCertificateKey(cert: x509.X509Certificate): KeyDescription {
  return describeKey(createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' }));
}

export type KeyOutputFormat = 'pkcs8' | 'pkcs1' | 'sec1';

/**
 * A private key in the requested form. With a passphrase, PKCS#8 becomes an EncryptedPrivateKeyInfo (AES-256-CBC,
 * PBKDF2), which both libpq (PEM) and pgjdbc (DER .pk8) can open; PKCS#1/SEC1 use the legacy PEM encryption OpenSSL
 * still reads.
 */
export function exportPrivateKey(
  key: KeyObject,
  format: KeyOutputFormat,
  encoding: 'pem' | 'der',
  passphrase?: string,
): string | Buffer {
  if (format === 'pkcs1' && key.asymmetricKeyType !== 'rsa') {
    throw new PgtlsError(ERR_KEY_FORMAT, 'PKCS#1 holds RSA keys only; this key is not RSA', {
      details: { hint: 'Use --to pkcs8 (any key type) or --to sec1 (EC keys).' },
    });
  }
  if (format === 'sec1' && key.asymmetricKeyType !== 'ec') {
    throw new PgtlsError(ERR_KEY_FORMAT, 'SEC1 holds EC keys only; this key is not EC', {
      details: { hint: 'Use --to pkcs8 (any key type) or --to pkcs1 (RSA keys).' },
    });
  }
  if (passphrase !== undefined && encoding === 'der' && format !== 'pkcs8') {
    throw new PgtlsError(ERR_KEY_FORMAT, 'only PKCS#8 keys can be encrypted in DER form', {
      details: { hint: 'Use PKCS#8 for an encrypted DER key (what pgjdbc reads as postgresql.pk8).' },
    });
  }
  const enc = passphrase === undefined ? {} : { cipher: 'aes-256-cbc', passphrase };
  if (encoding === 'pem') return key.export({ type: format, format: 'pem', ...enc }) as string;
  return key.export({ type: format, format: 'der', ...enc }) as Buffer;
}

/** A CA ready to sign, plus the certificates that follow it in its file (its own chain, leaf-first). */
export interface SigningCA {
  readonly issued: Issued;
  /** Certificates after the first one in the CA file: the CA's issuers, for building chain files. */
  readonly chain: readonly x509.X509Certificate[];
}

/**
 * Load a CA to sign with: the first certificate of `certFile` with the key of `keyFile`. Refuses a key that does
 * not belong to the certificate and a certificate that may not sign certificates, naming the file.
 */
export async function loadSigningCA(certFile: string, keyFile: string, passphrase?: string): Promise<SigningCA> {
  const [cert, ...chain] = await readCertificates(certFile);
  const { key } = await readPrivateKey(keyFile, passphrase);
  if (!cert) throw new Error('unreachable: readCertificates returns at least one certificate');
  if (!keyMatchesCertificate(key, cert)) {
    throw new PgtlsError(
      ERR_KEY_MISMATCH,
      `${keyFile}: this private key does not belong to the certificate in ${certFile}`,
      {
        details: { file: keyFile, hint: 'Give the key that was generated with that CA certificate (--ca-key).' },
      },
    );
  }
  // The same test OpenSSL applies to issuers (an extension-less self-signed v1 root counts as a CA).
  if (!isCA(cert)) {
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    throw new PgtlsError(
      ERR_NOT_CA,
      `${certFile}: ${cert.subject} is not a CA certificate (${!bc?.ca ? 'no CA:TRUE basic constraint' : 'key usage lacks keyCertSign'})`,
      {
        details: {
          file: certFile,
          hint: 'Sign with a certificate made by `pgtls cert ca` or `pgtls cert intermediate`.',
        },
      },
    );
  }
  const pkcs8 = key.export({ type: 'pkcs8', format: 'pem' }) as string;
  return { issued: await loadIssued(cert.toString('pem'), pkcs8), chain };
}

/**
 * What follows a certificate signed by `ca` in a chain file: the CA itself and its own issuers, without self-signed
 * roots — PostgreSQL's rule for ssl_cert_file ("it is not necessary to add the root certificate"), and what libpq
 * sends from sslcert.
 */
export function issuerChain(ca: SigningCA): x509.X509Certificate[] {
  return [ca.issued.cert, ...ca.chain].filter((c) => !facts(c).selfSigned);
}
