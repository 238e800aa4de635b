/**
 * The server's first flight, read from the raw bytes of a handshake: the certificate chain exactly as the server sent
 * it (order included, which Node's getPeerCertificate() does not keep: it re-links certificates by issuer and adds
 * trusted ones) and whether the server asked for a client certificate.
 *
 * TLS ≤ 1.2 sends these messages in clear. TLS 1.3 encrypts them under the server handshake traffic secret, which
 * Node hands out through the `keylog` event (NSS key log format); we decrypt only those records, as Wireshark does.
 * Layouts: RFC 5246 §6.2, §7.4 (TLS 1.2) and RFC 8446 §5.2, §4.4.2, §7.1, §7.3 (TLS 1.3).
 */
import { createDecipheriv, createHmac } from 'node:crypto';

export interface ServerFlight {
  /** DER certificates in the order the server sent them (leaf first if the server is configured correctly). */
  readonly certificates: readonly Buffer[];
  /** The server sent a CertificateRequest (PostgreSQL does when ssl_ca_file is set). */
  readonly certificateRequested: boolean;
  /** False when the records could not be read (unknown suite, missing key log line, truncated capture). */
  readonly complete: boolean;
}

const ContentType = { ChangeCipherSpec: 20, Alert: 21, Handshake: 22, ApplicationData: 23 } as const;
const HandshakeType = {
  Certificate: 11,
  CertificateRequest: 13,
  ServerHelloDone: 14,
  Finished: 20,
} as const;

interface TlsRecord {
  readonly type: number;
  readonly header: Buffer;
  readonly payload: Buffer;
}

/** Split raw bytes into records: ContentType(1) · ProtocolVersion(2) · uint16 length · fragment. */
function records(raw: Buffer): TlsRecord[] {
  const out: TlsRecord[] = [];
  let at = 0;
  while (at + 5 <= raw.length) {
    const len = raw.readUInt16BE(at + 3);
    if (at + 5 + len > raw.length) break;
    out.push({ type: raw[at]!, header: raw.subarray(at, at + 5), payload: raw.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

/** Handshake messages: HandshakeType(1) · uint24 length · body. Returns whole messages only. */
function handshakeMessages(stream: Buffer): { type: number; body: Buffer }[] {
  const out: { type: number; body: Buffer }[] = [];
  let at = 0;
  while (at + 4 <= stream.length) {
    const len = stream.readUIntBE(at + 1, 3);
    if (at + 4 + len > stream.length) break;
    out.push({ type: stream[at]!, body: stream.subarray(at + 4, at + 4 + len) });
    at += 4 + len;
  }
  return out;
}

/**
 * Certificate body. TLS 1.2: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>.
 * TLS 1.3: certificate_request_context<0..255> · certificate_list of { cert_data<1..2^24-1> · extensions<0..2^16-1> }.
 */
function parseCertificateMessage(body: Buffer, tls13: boolean): Buffer[] {
  let at = 0;
  if (tls13) at += 1 + body[0]!;
  const listLen = body.readUIntBE(at, 3);
  at += 3;
  const end = Math.min(body.length, at + listLen);
  const certs: Buffer[] = [];
  while (at + 3 <= end) {
    const len = body.readUIntBE(at, 3);
    at += 3;
    certs.push(Buffer.from(body.subarray(at, at + len)));
    at += len;
    if (tls13) at += 2 + body.readUInt16BE(at);
  }
  return certs;
}

function fromMessages(
  msgs: { type: number; body: Buffer }[],
  tls13: boolean,
): Omit<ServerFlight, 'complete'> & {
  done: boolean;
} {
  let certificates: Buffer[] = [];
  let certificateRequested = false;
  let done = false;
  for (const m of msgs) {
    if (m.type === HandshakeType.Certificate) certificates = parseCertificateMessage(m.body, tls13);
    else if (m.type === HandshakeType.CertificateRequest) certificateRequested = true;
    else if (m.type === HandshakeType.ServerHelloDone || m.type === HandshakeType.Finished) done = true;
  }
  return { certificates, certificateRequested, done };
}

/** HKDF-Expand (RFC 5869 §2.3) with HMAC; node:crypto's hkdf always runs Extract first, which TLS 1.3 must skip here. */
function hkdfExpand(hash: string, prk: Buffer, info: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  let prev = Buffer.alloc(0);
  let total = 0;
  for (let i = 1; total < length && i < 256; i++) {
    prev = createHmac(hash, prk)
      .update(Buffer.concat([prev, info, Buffer.from([i])]))
      .digest();
    blocks.push(prev);
    total += prev.length;
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** HKDF-Expand-Label (RFC 8446 §7.1) with an empty context. */
function expandLabel(hash: string, secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.alloc(2 + 1 + full.length + 1);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  full.copy(info, 3);
  info[3 + full.length] = 0;
  return hkdfExpand(hash, secret, info, length);
}

interface Aead {
  readonly algorithm: string;
  readonly keyLength: number;
  readonly tagLength: number;
  readonly hash: string;
}

const TLS13_AEAD: Readonly<Record<string, Aead>> = {
  TLS_AES_128_GCM_SHA256: { algorithm: 'aes-128-gcm', keyLength: 16, tagLength: 16, hash: 'sha256' },
  TLS_AES_256_GCM_SHA384: { algorithm: 'aes-256-gcm', keyLength: 32, tagLength: 16, hash: 'sha384' },
  TLS_CHACHA20_POLY1305_SHA256: { algorithm: 'chacha20-poly1305', keyLength: 32, tagLength: 16, hash: 'sha256' },
  TLS_AES_128_CCM_SHA256: { algorithm: 'aes-128-ccm', keyLength: 16, tagLength: 16, hash: 'sha256' },
  TLS_AES_128_CCM_8_SHA256: { algorithm: 'aes-128-ccm', keyLength: 16, tagLength: 8, hash: 'sha256' },
};

/** Decrypt one TLSCiphertext (RFC 8446 §5.2) and return TLSInnerPlaintext's content and type. */
function openRecord(
  aead: Aead,
  key: Buffer,
  iv: Buffer,
  seq: number,
  rec: TlsRecord,
): { type: number; content: Buffer } | undefined {
  if (rec.payload.length < aead.tagLength) return undefined;
  const nonce = Buffer.from(iv);
  // The 64-bit sequence number, left-padded to the IV length, XORed into the IV.
  for (let i = 0; i < 6; i++) nonce[nonce.length - 1 - i]! ^= Math.floor(seq / 2 ** (8 * i)) & 0xff;
  const ciphertext = rec.payload.subarray(0, rec.payload.length - aead.tagLength);
  const tag = rec.payload.subarray(rec.payload.length - aead.tagLength);
  try {
    // biome-ignore lint/suspicious/noExplicitAny: node's overloads for GCM/CCM/ChaCha differ only in option types.
    const d: any = createDecipheriv(aead.algorithm as 'aes-128-gcm', key, nonce, { authTagLength: aead.tagLength });
    d.setAuthTag(tag);
    d.setAAD(rec.header, { plaintextLength: ciphertext.length });
    const plain = Buffer.concat([d.update(ciphertext), d.final()]) as Buffer;
    let end = plain.length;
    while (end > 0 && plain[end - 1] === 0) end--;
    if (end === 0) return undefined;
    return { type: plain[end - 1]!, content: plain.subarray(0, end - 1) };
  } catch {
    return undefined;
  }
}

/** The SERVER_HANDSHAKE_TRAFFIC_SECRET from Node's key log lines. */
function serverHandshakeSecret(keylog: readonly Buffer[]): Buffer | undefined {
  for (const line of keylog) {
    const [label, , secret] = line.toString('ascii').trim().split(' ');
    if (label === 'SERVER_HANDSHAKE_TRAFFIC_SECRET' && secret) return Buffer.from(secret, 'hex');
  }
  return undefined;
}

/**
 * Read the server's flight from the bytes it sent (starting with its first TLS record).
 * `suite` is the negotiated suite's IANA name (Node's getCipher().standardName), `tls13` whether TLS 1.3 was used.
 */
export function readServerFlight(
  raw: Buffer,
  opts: { tls13: boolean; suite?: string | undefined; keylog?: readonly Buffer[] },
): ServerFlight {
  const recs = records(raw);
  if (!opts.tls13) {
    const hs: Buffer[] = [];
    for (const r of recs) {
      if (r.type === ContentType.ChangeCipherSpec) break;
      if (r.type === ContentType.Handshake) hs.push(r.payload);
    }
    const f = fromMessages(handshakeMessages(Buffer.concat(hs)), false);
    return { certificates: f.certificates, certificateRequested: f.certificateRequested, complete: f.done };
  }
  const aead = opts.suite === undefined ? undefined : TLS13_AEAD[opts.suite];
  const secret = serverHandshakeSecret(opts.keylog ?? []);
  if (!aead || !secret) return { certificates: [], certificateRequested: false, complete: false };
  const key = expandLabel(aead.hash, secret, 'key', aead.keyLength);
  const iv = expandLabel(aead.hash, secret, 'iv', 12);
  const hs: Buffer[] = [];
  let seq = 0;
  for (const r of recs) {
    if (r.type !== ContentType.ApplicationData) continue; // ServerHello and the compatibility ChangeCipherSpec
    const opened = openRecord(aead, key, iv, seq++, r);
    if (!opened) break; // past the handshake (application traffic keys) or not ours to read
    if (opened.type !== ContentType.Handshake) break;
    hs.push(opened.content);
    const f = fromMessages(handshakeMessages(Buffer.concat(hs)), true);
    if (f.done) return { certificates: f.certificates, certificateRequested: f.certificateRequested, complete: true };
  }
  const f = fromMessages(handshakeMessages(Buffer.concat(hs)), true);
  return { certificates: f.certificates, certificateRequested: f.certificateRequested, complete: false };
}
