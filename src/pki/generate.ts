/**
 * Certificate and CRL generation on Node's WebCrypto with @peculiar/x509 (no hand-written ASN.1).
 * Used by the gateway's zero-config CA, by `pgtls cert …` and by the tests, so every certificate pgtls makes is made
 * the same way. Everything produced is PEM that OpenSSL, PostgreSQL and libpq accept.
 */
// Must precede @peculiar/x509: its tsyringe dependency needs the Reflect polyfill at import time (see x509.ts).
import 'reflect-metadata';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import { PgtlsError } from '../errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** A certificate with its private key: enough to sign with, if it is a CA. */
export interface Issued {
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
  readonly certPem: string;
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"), unencrypted. Write it with mode 0600. */
  readonly keyPem: string;
  /** Serial number, lower-case hex as OpenSSL prints it. */
  readonly serial: string;
}

/** A subject given as a DN string ("CN=a, O=b") or as attribute → value pairs (no escaping needed). */
export type SubjectInput = string | Readonly<Record<string, string>>;

export interface IssueOptions {
  readonly subject: SubjectInput;
  readonly keyType?: KeyType;
  readonly notBefore?: Date;
  /** Default: days from notBefore. */
  readonly notAfter?: Date;
  readonly days?: number;
  /** Hex serial; random 16 bytes (positive) by default. */
  readonly serial?: string;
}

const DAY_MS = 86_400_000;

function keyAlgorithm(type: KeyType): RsaHashedKeyGenParams | EcKeyGenParams {
  switch (type) {
    case 'ec-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ec-p384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    default: {
      const bits = Number(type.slice(4));
      return {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: bits,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      };
    }
  }
}

/** The signature algorithm a key signs with: ECDSA with the curve's matching hash, RSA PKCS#1 v1.5 with SHA-256. */
function signingAlgorithm(key: CryptoKey): Algorithm | EcdsaParams {
  const alg = key.algorithm as EcKeyAlgorithm | RsaHashedKeyAlgorithm;
  if (alg.name === 'ECDSA') {
    const curve = (alg as EcKeyAlgorithm).namedCurve;
    return {
      name: 'ECDSA',
      hash: curve === 'P-384' ? 'SHA-384' : curve === 'P-521' ? 'SHA-512' : 'SHA-256',
    } as EcdsaParams;
  }
  return { name: alg.name, hash: 'SHA-256' } as Algorithm;
}

export async function generateKeyPair(type: KeyType = 'ec-p256'): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(keyAlgorithm(type), true, ['sign', 'verify'])) as CryptoKeyPair;
}

function subjectName(subject: SubjectInput): string | x509.JsonName {
  if (typeof subject === 'string') return subject;
  return Object.entries(subject).map(([k, v]) => ({ [k]: [v] }));
}

function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01; // positive and exactly 16 bytes long
  return b.toString('hex');
}

function validity(opts: IssueOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  // Back-date by a minute so a certificate made now is valid on a peer whose clock is slightly behind.
  const notBefore = opts.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + (opts.days ?? defaultDays) * DAY_MS);
  return { notBefore, notAfter };
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function finish(cert: x509.X509Certificate, keys: CryptoKeyPair): Promise<Issued> {
  return {
    cert,
    keys,
    // PEM files end with a newline, so concatenating them (chain files, bundles) stays valid for OpenSSL.
    certPem: `${cert.toString('pem').trimEnd()}\n`,
    keyPem: `${(await exportKeyPem(keys.privateKey)).trimEnd()}\n`,
    serial: cert.serialNumber.toLowerCase(),
  };
}

const CA_USAGE = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
const LEAF_USAGE_EC = x509.KeyUsageFlags.digitalSignature;
const LEAF_USAGE_RSA = x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;

/** A self-signed root CA: CA:true (critical), keyCertSign + cRLSign, 10 years by default. */
export async function createRootCA(opts: IssueOptions & { pathLength?: number }): Promise<Issued> {
  const keys = await generateKeyPair(opts.keyType);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: opts.serial ?? randomSerial(),
    name: subjectName(opts.subject),
    ...validity(opts, 3650),
    keys,
    signingAlgorithm: signingAlgorithm(keys.privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(true, opts.pathLength, true),
      new x509.KeyUsagesExtension(CA_USAGE, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return finish(cert, keys);
}

async function issue(
  issuer: Issued,
  opts: IssueOptions,
  defaultDays: number,
  extensions: (keys: CryptoKeyPair) => Promise<x509.Extension[]>,
): Promise<Issued> {
  const keys = await generateKeyPair(opts.keyType);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: opts.serial ?? randomSerial(),
    subject: subjectName(opts.subject),
    issuer: issuer.cert.subjectName,
    ...validity(opts, defaultDays),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: signingAlgorithm(issuer.keys.privateKey),
    extensions: [
      ...(await extensions(keys)),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
    ],
  });
  return finish(cert, keys);
}

/** An intermediate CA (pathlen 0 by default), 5 years by default. */
export async function createIntermediateCA(
  issuer: Issued,
  opts: IssueOptions & { pathLength?: number },
): Promise<Issued> {
  return issue(issuer, opts, 1825, async () => [
    new x509.BasicConstraintsExtension(true, opts.pathLength ?? 0, true),
    new x509.KeyUsagesExtension(CA_USAGE, true),
  ]);
}

function leafUsage(keys: CryptoKeyPair): number {
  return keys.publicKey.algorithm.name === 'ECDSA' ? LEAF_USAGE_EC : LEAF_USAGE_RSA;
}

/** Split host names into DNS and IP SAN entries (an IP host gets an IP SAN, as libpq compares those as addresses). */
export function sanEntries(hosts: readonly string[]): x509.JsonGeneralName[] {
  return hosts.map((h) => ({ type: isIP(h) ? 'ip' : 'dns', value: h }) as x509.JsonGeneralName);
}

/**
 * A server certificate: serverAuth, the given hosts as SANs (none → CN only, the legacy form libpq still accepts),
 * 398 days by default (the public-CA maximum, so habits formed here carry over).
 */
export async function createServerCert(
  issuer: Issued,
  opts: IssueOptions & { hosts: readonly string[] },
): Promise<Issued> {
  return issue(issuer, opts, 398, async (keys) => {
    const ext: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(leafUsage(keys), true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ];
    if (opts.hosts.length > 0) ext.push(new x509.SubjectAlternativeNameExtension(sanEntries(opts.hosts)));
    return ext;
  });
}

/** A client certificate: clientAuth; PostgreSQL's `cert` method compares its CN (or DN) with the database user. */
export async function createClientCert(issuer: Issued, opts: IssueOptions): Promise<Issued> {
  return issue(issuer, opts, 398, async (keys) => [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(leafUsage(keys), true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
  ]);
}

export interface Revocation {
  /** Hex serial of the revoked certificate. */
  readonly serial: string;
  readonly date?: Date;
  readonly reason?: x509.X509CrlReason;
}

/** A CRL signed by `issuer` (v2, with an authority key identifier so OpenSSL can match it to its CA). */
export async function createCRL(
  issuer: Issued,
  revoked: readonly Revocation[],
  opts: { thisUpdate?: Date; nextUpdate?: Date; days?: number } = {},
): Promise<string> {
  const thisUpdate = opts.thisUpdate ?? new Date(Date.now() - 60_000);
  const nextUpdate = opts.nextUpdate ?? new Date(thisUpdate.getTime() + (opts.days ?? 30) * DAY_MS);
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.cert.subjectName,
    thisUpdate,
    nextUpdate,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: signingAlgorithm(issuer.keys.privateKey),
    entries: revoked.map((r) =>
      // @peculiar/x509 writes an empty crlEntryExtensions SEQUENCE for an entry without a (non-zero) reason, which
      // RFC 5280 forbids (SIZE (1..MAX)) and OpenSSL refuses to load; so such entries carry an explicit
      // reasonCode "unspecified" instead.
      r.reason === undefined || r.reason === 0
        ? {
            serialNumber: r.serial,
            revocationDate: r.date ?? new Date(Date.now() - 30_000),
            extensions: [new x509.Extension(CRL_REASON_OID, false, unspecifiedReason())],
          }
        : { serialNumber: r.serial, revocationDate: r.date ?? new Date(Date.now() - 30_000), reason: r.reason },
    ),
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey)],
  });
  // OpenSSL, PostgreSQL and libpq only read the "X509 CRL" PEM label; @peculiar/x509 writes "CRL".
  return `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`;
}

const CRL_REASON_OID = '2.5.29.21';

/** DER of CRLReason ::= ENUMERATED { unspecified (0) }. */
function unspecifiedReason(): ArrayBuffer {
  return new asn1js.Enumerated({ value: 0 }).toBER(false);
}

export const ERR_KEY_IMPORT = 'PGTLS_ERR_PKI_KEY_IMPORT';

/** Load an existing CA (certificate PEM + unencrypted private key PEM) so it can sign. */
export async function loadIssued(certPem: string, keyPem: string): Promise<Issued> {
  const cert = new x509.X509Certificate(certPem);
  let keyObject: ReturnType<typeof createPrivateKey>;
  try {
    keyObject = createPrivateKey(keyPem);
  } catch (cause) {
    throw new PgtlsError(ERR_KEY_IMPORT, 'could not read the private key (is it PEM, and unencrypted?)', { cause });
  }
  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'der' });
  const alg = cert.publicKey.algorithm as EcKeyImportParams | RsaHashedImportParams;
  const importAlg: EcKeyImportParams | RsaHashedImportParams =
    alg.name === 'ECDSA'
      ? { name: 'ECDSA', namedCurve: (alg as EcKeyImportParams).namedCurve }
      : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, importAlg, true, ['sign']);
  const publicKey = await cert.publicKey.export(importAlg, ['verify']);
  return finish(cert, { privateKey, publicKey } as CryptoKeyPair);
}

/**
 * A cross-certificate: `subject`'s CA name and public key, signed by `issuer`. Clients that trust either root can
 * then build a path — the "alternate trust path" of Azure's Microsoft RSA Root CA 2017 cross-signed by DigiCert
 * Global Root G2. Used for rotations (cross-sign the new root with the old one) and by the tests.
 */
export async function createCrossCertificate(
  issuer: Issued,
  subject: Issued,
  opts: Omit<IssueOptions, 'subject' | 'keyType'> & { pathLength?: number } = {},
): Promise<Issued> {
  const bc = subject.cert.getExtension(x509.BasicConstraintsExtension);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: opts.serial ?? randomSerial(),
    subject: subject.cert.subjectName,
    issuer: issuer.cert.subjectName,
    ...validity({ ...opts, subject: '' }, 1825),
    publicKey: subject.keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: signingAlgorithm(issuer.keys.privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(true, opts.pathLength ?? bc?.pathLength, true),
      new x509.KeyUsagesExtension(CA_USAGE, true),
      await x509.SubjectKeyIdentifierExtension.create(subject.keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
    ],
  });
  return finish(cert, subject.keys);
}
