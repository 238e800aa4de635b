/**
 * The server-flight reader on byte fixtures: a TLS 1.2 flight split across records, and a TLS 1.3 flight encrypted
 * here with a known handshake secret (RFC 8446 §5.2/§7.3), so the decryption path is checked without a network.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { readServerFlight } from '../../src/tls/server-flight.js';

const u24 = (n: number) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const hsMsg = (type: number, body: Buffer) => Buffer.concat([Buffer.from([type]), u24(body.length), body]);
const record = (type: number, payload: Buffer) =>
  Buffer.concat([Buffer.from([type, 3, 3]), u16(payload.length), payload]);

const certA = randomBytes(300);
const certB = randomBytes(200);

test('TLS 1.2: Certificate (split over two records) and CertificateRequest, in order', () => {
  const list = Buffer.concat([u24(certA.length), certA, u24(certB.length), certB]);
  const flight = Buffer.concat([
    hsMsg(2, Buffer.alloc(70)), // ServerHello
    hsMsg(11, Buffer.concat([u24(list.length), list])),
    hsMsg(13, Buffer.from([1, 1, 0, 0, 0, 0])),
    hsMsg(14, Buffer.alloc(0)), // ServerHelloDone
  ]);
  const raw = Buffer.concat([record(22, flight.subarray(0, 150)), record(22, flight.subarray(150))]);
  const f = readServerFlight(raw, { tls13: false });
  assert.equal(f.complete, true);
  assert.equal(f.certificateRequested, true);
  assert.deepEqual(f.certificates, [certA, certB]);
  const cut = readServerFlight(raw.subarray(0, 100), { tls13: false });
  assert.equal(cut.complete, false);
});

function expandLabel(secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`);
  const info = Buffer.concat([u16(length), Buffer.from([full.length]), full, Buffer.from([0])]);
  return createHmac('sha256', secret)
    .update(Buffer.concat([info, Buffer.from([1])]))
    .digest()
    .subarray(0, length);
}

test('TLS 1.3: encrypted EncryptedExtensions/Certificate/Finished decrypted with the key-log secret', () => {
  const secret = randomBytes(32);
  const key = expandLabel(secret, 'key', 16);
  const iv = expandLabel(secret, 'iv', 12);
  const entry = (c: Buffer) => Buffer.concat([u24(c.length), c, u16(0)]);
  const list = Buffer.concat([entry(certA), entry(certB)]);
  const messages = [
    hsMsg(8, u16(0)), // EncryptedExtensions
    hsMsg(11, Buffer.concat([Buffer.from([0]), u24(list.length), list])),
    hsMsg(15, Buffer.alloc(40)), // CertificateVerify
    hsMsg(20, Buffer.alloc(32)), // Finished
  ];
  const seal = (seq: number, content: Buffer) => {
    const inner = Buffer.concat([content, Buffer.from([22]), Buffer.alloc(3)]); // type + padding
    const header = Buffer.concat([Buffer.from([23, 3, 3]), u16(inner.length + 16)]);
    const nonce = Buffer.from(iv);
    nonce[11]! ^= seq;
    const c = createCipheriv('aes-128-gcm', key, nonce);
    c.setAAD(header);
    return Buffer.concat([header, c.update(inner), c.final(), c.getAuthTag()]);
  };
  // Records: ServerHello (clear), compatibility ChangeCipherSpec, then two encrypted records.
  const raw = Buffer.concat([
    record(22, hsMsg(2, Buffer.alloc(80))),
    record(20, Buffer.from([1])),
    seal(0, Buffer.concat([messages[0]!, messages[1]!])),
    seal(1, Buffer.concat([messages[2]!, messages[3]!])),
  ]);
  const keylog = [Buffer.from(`SERVER_HANDSHAKE_TRAFFIC_SECRET ${'00'.repeat(32)} ${secret.toString('hex')}\n`)];
  const f = readServerFlight(raw, { tls13: true, suite: 'TLS_AES_128_GCM_SHA256', keylog });
  assert.equal(f.complete, true);
  assert.equal(f.certificateRequested, false);
  assert.deepEqual(f.certificates, [certA, certB]);
  // Without the secret nothing can be read, and the reader says so instead of guessing.
  assert.equal(readServerFlight(raw, { tls13: true, suite: 'TLS_AES_128_GCM_SHA256', keylog: [] }).complete, false);
});
