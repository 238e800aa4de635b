/**
 * Did the server ask for a client certificate? libpq learns it from OpenSSL's certificate callback (cert_cb sets
 * ssl_cert_requested) and needs it for sslcertmode=require; Node has no such hook. This tap reads the server's
 * handshake flight from the raw TLS records instead:
 *
 * - TLS 1.2: the handshake is in clear until ChangeCipherSpec; look for a CertificateRequest (type 13).
 * - TLS 1.3: the flight after ServerHello is encrypted with the server handshake traffic secret. Node reports it in
 *   its 'keylog' event (SERVER_HANDSHAKE_TRAFFIC_SECRET), so the records can be decrypted (RFC 8446 §7.3 key
 *   schedule, AES-GCM or ChaCha20-Poly1305) and searched for a CertificateRequest before the server's Finished.
 *
 * Used only when sslcertmode=require (it puts a JavaScript stream under TLS, which costs some throughput).
 */
import { createDecipheriv, createHmac } from 'node:crypto';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

const MAX_TAPPED = 256 * 1024;

/** HKDF-Expand (RFC 5869) with HMAC-`hash`. */
function hkdfExpand(hash: string, prk: Buffer, info: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length && i < 255; i++) {
    prev = createHmac(hash, prk)
      .update(Buffer.concat([prev, info, Buffer.from([i])]))
      .digest();
    blocks.push(prev);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** HKDF-Expand-Label(secret, label, "", length) of TLS 1.3. */
function expandLabel(hash: string, secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
  return hkdfExpand(hash, secret, info, length);
}

const SUITES: Readonly<Record<string, { hash: string; cipher: string; keyLen: number }>> = {
  TLS_AES_128_GCM_SHA256: { hash: 'sha256', cipher: 'aes-128-gcm', keyLen: 16 },
  TLS_AES_256_GCM_SHA384: { hash: 'sha384', cipher: 'aes-256-gcm', keyLen: 32 },
  TLS_CHACHA20_POLY1305_SHA256: { hash: 'sha256', cipher: 'chacha20-poly1305', keyLen: 32 },
};

interface TlsRecord {
  readonly type: number;
  readonly header: Buffer;
  readonly payload: Buffer;
}

function records(data: Buffer): TlsRecord[] {
  const out: TlsRecord[] = [];
  for (let at = 0; at + 5 <= data.length; ) {
    const len = data.readUInt16BE(at + 3);
    if (at + 5 + len > data.length) break;
    out.push({ type: data[at]!, header: data.subarray(at, at + 5), payload: data.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

/** Handshake message types in a concatenation of handshake payloads. */
function handshakeTypes(data: Buffer): number[] {
  const types: number[] = [];
  for (let at = 0; at + 4 <= data.length; ) {
    types.push(data[at]!);
    at += 4 + data.readUIntBE(at + 1, 3);
  }
  return types;
}

/** A pass-through stream between the TCP socket and TLS that keeps the server's first bytes for inspection. */
export class CertificateRequestTap extends Duplex {
  private tapped: Buffer[] = [];
  private tappedLength = 0;
  private serverHandshakeSecret: Buffer | undefined;

  constructor(private readonly socket: Socket) {
    super();
    socket.on('data', (chunk: Buffer) => {
      if (this.tappedLength < MAX_TAPPED) {
        this.tapped.push(chunk);
        this.tappedLength += chunk.length;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  /** Feed Node's 'keylog' lines (NSS format). */
  keylog(line: Buffer): void {
    const [label, , secret] = line.toString('latin1').trim().split(' ');
    if (label === 'SERVER_HANDSHAKE_TRAFFIC_SECRET' && secret) this.serverHandshakeSecret = Buffer.from(secret, 'hex');
  }

  /**
   * After the handshake: true if the server sent a CertificateRequest, false if not, undefined if it cannot be told
   * (unknown suite, or a flight larger than the tap keeps).
   */
  certificateRequested(protocol: string | null, suite: string | undefined): boolean | undefined {
    const data = Buffer.concat(this.tapped);
    const recs = records(data);
    if (protocol !== 'TLSv1.3') {
      const hs: Buffer[] = [];
      for (const r of recs) {
        if (r.type === 20) break; // ChangeCipherSpec: the rest is encrypted
        if (r.type === 22) hs.push(r.payload);
      }
      return handshakeTypes(Buffer.concat(hs)).includes(13);
    }
    const params = suite ? SUITES[suite] : undefined;
    if (!params || !this.serverHandshakeSecret) return undefined;
    const key = expandLabel(params.hash, this.serverHandshakeSecret, 'key', params.keyLen);
    const iv = expandLabel(params.hash, this.serverHandshakeSecret, 'iv', 12);
    const plain: Buffer[] = [];
    let seq = 0;
    for (const r of recs) {
      if (r.type !== 23) continue; // ServerHello (22) and the compatibility ChangeCipherSpec (20) are in clear
      const nonce = Buffer.from(iv);
      for (let i = 0; i < 8; i++) nonce[11 - i]! ^= Number((BigInt(seq) >> BigInt(8 * i)) & 0xffn);
      seq++;
      const tag = r.payload.subarray(r.payload.length - 16);
      const body = r.payload.subarray(0, r.payload.length - 16);
      try {
        const d = createDecipheriv(params.cipher as 'aes-128-gcm', key, nonce, { authTagLength: 16 });
        d.setAAD(r.header);
        d.setAuthTag(tag);
        const inner = Buffer.concat([d.update(body), d.final()]);
        let end = inner.length - 1;
        while (end >= 0 && inner[end] === 0) end--; // padding, then the real content type
        if (inner[end] === 22) plain.push(inner.subarray(0, end));
        const types = handshakeTypes(Buffer.concat(plain));
        if (types.includes(20)) return types.includes(13); // server Finished: its flight is complete
      } catch {
        return undefined; // not a handshake record under this key
      }
    }
    return handshakeTypes(Buffer.concat(plain)).includes(13);
  }

  /** Stop keeping bytes once the handshake is over. */
  release(): void {
    this.tapped = [];
    this.tappedLength = MAX_TAPPED;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}
