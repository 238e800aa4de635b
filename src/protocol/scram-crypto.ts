/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) in PostgreSQL's flavour — the cryptographic part: constants, PostgreSQL's base64,
 * key derivation, proofs and signatures, the stored secret format, the mock salt, and tls-server-end-point channel
 * binding data (RFC 5929) with PostgreSQL's hash rule. No I/O, no state, no randomness except where a function says
 * so (a fresh salt or nonce), and no exceptions on peer input: parsers return undefined or an error value.
 *
 * PostgreSQL's differences from the RFC that matter here (src/backend/libpq/auth-scram.c):
 * - the user name in client-first-message is ignored (libpq sends `n=`); the StartupMessage's user is the identity;
 * - the password goes through SASLprep, and when that fails the raw bytes are used (./saslprep.ts);
 * - the only channel-binding type is tls-server-end-point.
 *
 * Message texts are handled as byte strings ('latin1'): every byte maps to one char, so the AuthMessage hashed here is
 * byte-for-byte what crossed the wire, whatever a peer put in it.
 *
 * Messages are in ./scram.ts (which re-exports this file); the two roles with PostgreSQL's and libpq's exact error
 * handling are ../auth/scram-server.ts and ./scram-client.ts.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { scramPasswordBytes } from './saslprep.js';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';
/** The one channel-binding type PostgreSQL implements. */
export const CHANNEL_BINDING_TYPE = 'tls-server-end-point';
/** SCRAM_SHA_256_KEY_LEN: the length of every key, proof and signature. */
export const SCRAM_KEY_LEN = 32;
/** SCRAM_DEFAULT_SALT_LEN */
export const SCRAM_SALT_LEN = 16;
/** SCRAM_RAW_NONCE_LEN: random bytes behind each (base64) nonce. */
export const SCRAM_RAW_NONCE_LEN = 18;
/** SCRAM_SHA_256_DEFAULT_ITERATIONS (and the iterations of a mock secret). */
export const SCRAM_DEFAULT_ITERATIONS = 4096;
/** PG_MAX_SASL_MESSAGE_LENGTH: the longest SASLInitialResponse/SASLResponse the server reads. */
export const MAX_SASL_MESSAGE_LENGTH = 1024;
/** gs2 headers as libpq sends them; the cbind-input of "n" and "y" is the header itself. */
export const GS2_HEADER = { n: 'n,,', y: 'y,,', p: `p=${CHANNEL_BINDING_TYPE},,` } as const;
export type ChannelBindingFlag = keyof typeof GS2_HEADER;

/** A byte string (one char per byte) as bytes. */
export const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** pg_b64_encode: standard alphabet, with padding. */
export function b64encode(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * pg_b64_decode, with its acceptance rules (Node's own decoder skips bad characters, PostgreSQL's refuses them):
 * whitespace or a character outside the alphabet is an error, '=' only in the 3rd/4th place of a quartet, and the
 * input must end on a quartet boundary. undefined on error.
 */
export function b64decode(text: string): Buffer | undefined {
  const out: number[] = [];
  let buf = 0;
  let pos = 0;
  let end = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    let b: number;
    if (c === '=') {
      if (!end) {
        if (pos === 2) end = 1;
        else if (pos === 3) end = 2;
        else return undefined;
      }
      b = 0;
    } else {
      b = B64.indexOf(c);
      if (b < 0) return undefined;
    }
    buf = ((buf << 6) | b) >>> 0;
    pos++;
    if (pos === 4) {
      out.push((buf >> 16) & 255);
      if (end === 0 || end > 1) out.push((buf >> 8) & 255);
      if (end === 0 || end > 2) out.push(buf & 255);
      buf = 0;
      pos = 0;
    }
  }
  if (pos !== 0) return undefined;
  return Buffer.from(out);
}

export const sha256 = (data: Uint8Array): Buffer => createHash('sha256').update(data).digest();
export const hmac = (key: Uint8Array, data: Uint8Array | string): Buffer =>
  createHmac('sha256', key)
    .update(typeof data === 'string' ? latin1(data) : data)
    .digest();

/** SaltedPassword := Hi(Normalize(password), salt, i) — Hi is PBKDF2-HMAC-SHA-256. */
export function saltedPassword(password: string | Uint8Array, salt: Uint8Array, iterations: number): Buffer {
  return pbkdf2Sync(scramPasswordBytes(password), salt, iterations, SCRAM_KEY_LEN, 'sha256');
}

export interface ScramKeys {
  readonly clientKey: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/** ClientKey := HMAC(SaltedPassword, "Client Key"), StoredKey := H(ClientKey), ServerKey := HMAC(…, "Server Key"). */
export function keysFromSalted(salted: Uint8Array): ScramKeys {
  const clientKey = hmac(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

export function deriveKeys(password: string | Uint8Array, salt: Uint8Array, iterations: number): ScramKeys {
  return keysFromSalted(saltedPassword(password, salt, iterations));
}

function xor(a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** AuthMessage := client-first-message-bare "," server-first-message "," client-final-message-without-proof */
export function authMessage(clientFirstBare: string, serverFirst: string, clientFinalWithoutProof: string): string {
  return `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
}

/** ClientProof := ClientKey XOR HMAC(H(ClientKey), AuthMessage) */
export function clientProof(clientKey: Uint8Array, message: string): Buffer {
  return xor(clientKey, hmac(sha256(clientKey), message));
}

/** ServerSignature := HMAC(ServerKey, AuthMessage) */
export function serverSignature(serverKey: Uint8Array, message: string): Buffer {
  return hmac(serverKey, message);
}

/**
 * SCRAM pass-through: the ClientKey a client used, recovered from its proof — ClientKey = ClientProof XOR
 * HMAC(StoredKey, AuthMessage) — and whether H(ClientKey) equals StoredKey (compared in constant time). Only when
 * `valid` is the ClientKey the real one; a gateway can then log in to a backend with it (see ./scram-client.ts).
 */
export function recoverClientKey(
  storedKey: Uint8Array,
  message: string,
  proof: Uint8Array,
): { readonly valid: boolean; readonly clientKey: Buffer } {
  const clientKey = xor(proof, hmac(storedKey, message));
  // lengths are public (the proof's came from the wire, the key's is fixed): no secret leaks through this return
  if (proof.length !== SCRAM_KEY_LEN || storedKey.length !== SCRAM_KEY_LEN) return { valid: false, clientKey };
  return { valid: timingSafeEqual(sha256(clientKey), storedKey), clientKey };
}

/** Constant-time equality of two byte strings of possibly different lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  // hash first so that unequal lengths take the same path and time as equal ones
  return timingSafeEqual(sha256(a), sha256(b)) && a.length === b.length;
}

/** A fresh nonce as PostgreSQL and libpq make one: 18 random bytes, base64. */
export function makeNonce(): string {
  return b64encode(randomBytes(SCRAM_RAW_NONCE_LEN));
}

// ---------------------------------------------------------------------------------------------------------------
// The stored secret: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (RFC 5803 layout, base64 fields)

export interface ScramSecret {
  readonly iterations: number;
  /** The salt as stored and as sent in server-first-message (base64). */
  readonly salt: string;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/**
 * parse_scram_secret(): the scheme must be SCRAM-SHA-256, the iterations a whole number (strtol: optional leading
 * blanks and sign), the salt valid base64, and both keys base64 of exactly 32 bytes. undefined when it is not a SCRAM
 * secret. pgtls also refuses iterations below 1 or above 2^31-1, which no server would hand a client (libpq refuses
 * "invalid iteration count").
 */
export function parseScramSecret(text: string): ScramSecret | undefined {
  const m = /^([^$]*)\$([^:]*):([^$]*)\$([^:]*):(.*)$/s.exec(text);
  if (!m) return undefined;
  const [, scheme, iter, salt, stored, server] = m as unknown as [string, string, string, string, string, string];
  if (scheme !== SCRAM_SHA_256) return undefined;
  if (!/^[ \t\n\v\f\r]*[+-]?\d+$/.test(iter)) return undefined;
  const iterations = Number(iter.trim());
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 0x7fffffff) return undefined;
  if (!b64decode(salt)) return undefined;
  const storedKey = b64decode(stored);
  const serverKey = b64decode(server);
  if (storedKey?.length !== SCRAM_KEY_LEN || serverKey?.length !== SCRAM_KEY_LEN) return undefined;
  return { iterations, salt, storedKey, serverKey };
}

export function formatScramSecret(secret: ScramSecret): string {
  return `${SCRAM_SHA_256}$${secret.iterations}:${secret.salt}$${b64encode(secret.storedKey)}:${b64encode(secret.serverKey)}`;
}

/** scram_build_secret() / pg_be_scram_build_secret(): a new secret for a password (random 16-byte salt by default). */
export function buildScramSecret(
  password: string | Uint8Array,
  opts: { readonly salt?: Uint8Array; readonly iterations?: number } = {},
): string {
  const salt = opts.salt ?? randomBytes(SCRAM_SALT_LEN);
  const iterations = opts.iterations ?? SCRAM_DEFAULT_ITERATIONS;
  const keys = deriveKeys(password, salt, iterations);
  return formatScramSecret({ iterations, salt: b64encode(salt), storedKey: keys.storedKey, serverKey: keys.serverKey });
}

/**
 * The salt of a mock authentication (scram_mock_salt): SHA-256 over the user name and a per-gateway secret,
 * truncated to 16 bytes. Deterministic, so asking twice for an unknown user gives the same salt, as for a real one;
 * unpredictable without the secret, so the salt does not tell a real user from an invented one.
 */
export function mockSalt(username: string, gatewaySecret: Uint8Array): string {
  const digest = createHash('sha256').update(Buffer.from(username, 'utf8')).update(gatewaySecret).digest();
  return b64encode(digest.subarray(0, SCRAM_SALT_LEN));
}

// ---------------------------------------------------------------------------------------------------------------
// tls-server-end-point (RFC 5929 section 4.1) with PostgreSQL's hash choice (be_tls_get_certificate_hash)

/** DER: the [start, end) of the value of the TLV at `at`, and the end of the whole TLV. */
function tlv(der: Uint8Array, at: number): { tag: number; start: number; end: number } | undefined {
  if (at + 2 > der.length) return undefined;
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > der.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  if (start + len > der.length) return undefined;
  return { tag, start, end: start + len };
}

function oidText(bytes: Uint8Array): string {
  const parts: number[] = [];
  let v = 0;
  for (const b of bytes) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** Signature algorithm OID → the digest OpenSSL reports for it (X509_get_signature_info's mdnid). */
const SIGNATURE_DIGESTS: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.4': 'md5', // md5WithRSAEncryption
  '1.2.840.113549.1.1.5': 'sha1', // sha1WithRSAEncryption
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.1': 'sha1', // ecdsa-with-SHA1
  '1.2.840.10045.4.3.1': 'sha224',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.10040.4.3': 'sha1', // dsa-with-sha1
  '2.16.840.1.101.3.4.3.1': 'sha224', // dsa-with-sha224
  '2.16.840.1.101.3.4.3.2': 'sha256',
  '2.16.840.1.101.3.4.3.3': 'sha384',
  '2.16.840.1.101.3.4.3.4': 'sha512',
  '2.16.840.1.101.3.4.3.9': 'sha3-224', // ecdsa-with-SHA3-*
  '2.16.840.1.101.3.4.3.10': 'sha3-256',
  '2.16.840.1.101.3.4.3.11': 'sha3-384',
  '2.16.840.1.101.3.4.3.12': 'sha3-512',
  '2.16.840.1.101.3.4.3.13': 'sha3-224', // RSA PKCS#1 v1.5 with SHA3-*
  '2.16.840.1.101.3.4.3.14': 'sha3-256',
  '2.16.840.1.101.3.4.3.15': 'sha3-384',
  '2.16.840.1.101.3.4.3.16': 'sha3-512',
};
const HASH_OIDS: Readonly<Record<string, string>> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
const RSASSA_PSS = '1.2.840.113549.1.1.10';

/**
 * The hash of the certificate's signature algorithm as OpenSSL names it, or undefined when the algorithm has no
 * separate digest (Ed25519, Ed448) or the DER cannot be read. For RSASSA-PSS it is the hash in the parameters
 * (SHA-1 when absent, RFC 4055), as X509_get_signature_info() reports it.
 */
export function certificateSignatureDigest(der: Uint8Array): string | undefined {
  const cert = tlv(der, 0);
  if (cert?.tag !== 0x30) return undefined;
  const tbs = tlv(der, cert.start);
  if (tbs?.tag !== 0x30) return undefined;
  const alg = tlv(der, tbs.end);
  if (alg?.tag !== 0x30) return undefined;
  const oid = tlv(der, alg.start);
  if (oid?.tag !== 0x06) return undefined;
  const name = oidText(der.subarray(oid.start, oid.end));
  if (name !== RSASSA_PSS) return SIGNATURE_DIGESTS[name];
  // RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] HashAlgorithm DEFAULT sha1, … }
  const params = tlv(der, oid.end);
  if (params?.tag !== 0x30 || oid.end >= alg.end) return 'sha1';
  const first = tlv(der, params.start);
  if (first?.tag !== 0xa0 || params.start >= params.end) return 'sha1';
  const hashAlg = tlv(der, first.start);
  const hashOid = hashAlg?.tag === 0x30 ? tlv(der, hashAlg.start) : undefined;
  if (hashOid?.tag !== 0x06) return undefined;
  return HASH_OIDS[oidText(der.subarray(hashOid.start, hashOid.end))];
}

/**
 * The channel-binding data for tls-server-end-point: the hash of the server certificate (DER) with the hash of its
 * signature algorithm, SHA-256 instead of MD5 or SHA-1 (RFC 5929 section 4.1; be_tls_get_certificate_hash and libpq's
 * pgtls_get_peer_certificate_hash). undefined where PostgreSQL fails too ("could not find digest for NID …"),
 * e.g. an Ed25519 certificate.
 */
export function tlsServerEndPoint(certificateDer: Uint8Array): Buffer | undefined {
  const digest = certificateSignatureDigest(certificateDer);
  if (!digest) return undefined;
  const algorithm = digest === 'md5' || digest === 'sha1' ? 'sha256' : digest;
  return createHash(algorithm).update(certificateDer).digest();
}

/** The c= attribute of client-final-message: base64 of the gs2 header, followed by the binding data for "p". */
export function channelBindingAttribute(flag: ChannelBindingFlag, data?: Uint8Array): string {
  const header = latin1(GS2_HEADER[flag]);
  return b64encode(flag === 'p' && data ? Buffer.concat([header, data]) : header);
}
