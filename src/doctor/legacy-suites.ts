import { randomBytes } from 'node:crypto';
/**
 * Cipher suites OpenSSL 3 can no longer negotiate as a client (SEED, IDEA, RC4, DES, export grades, static ECDH/DH,
 * …) but that a server built on an older OpenSSL may still accept. They are found the way sslscan finds them: a
 * hand-built ClientHello (RFC 5246 §7.4.1.2) offering only such suites, and the cipher_suite of the ServerHello — no
 * handshake is completed, no key is exchanged. Code points and names are IANA's ("TLS Cipher Suites" registry).
 */
import { Socket } from 'node:net';
import { isIP } from 'node:net';
import type { TlsVersion } from './cipher-suites.js';
import { type Endpoint, openTcp, sendSSLRequest } from './wire.js';

// biome-ignore format: one suite per line reads as a table
export const LEGACY_SUITES: readonly (readonly [string, string])[] = [
  ['0x0003', 'TLS_RSA_EXPORT_WITH_RC4_40_MD5'],
  ['0x0004', 'TLS_RSA_WITH_RC4_128_MD5'],
  ['0x0005', 'TLS_RSA_WITH_RC4_128_SHA'],
  ['0x0006', 'TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5'],
  ['0x0007', 'TLS_RSA_WITH_IDEA_CBC_SHA'],
  ['0x0008', 'TLS_RSA_EXPORT_WITH_DES40_CBC_SHA'],
  ['0x0009', 'TLS_RSA_WITH_DES_CBC_SHA'],
  ['0x000a', 'TLS_RSA_WITH_3DES_EDE_CBC_SHA'],
  ['0x000b', 'TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA'],
  ['0x000c', 'TLS_DH_DSS_WITH_DES_CBC_SHA'],
  ['0x000d', 'TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA'],
  ['0x000e', 'TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA'],
  ['0x000f', 'TLS_DH_RSA_WITH_DES_CBC_SHA'],
  ['0x0010', 'TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA'],
  ['0x0011', 'TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA'],
  ['0x0012', 'TLS_DHE_DSS_WITH_DES_CBC_SHA'],
  ['0x0013', 'TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA'],
  ['0x0014', 'TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA'],
  ['0x0015', 'TLS_DHE_RSA_WITH_DES_CBC_SHA'],
  ['0x0016', 'TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA'],
  ['0x0017', 'TLS_DH_anon_EXPORT_WITH_RC4_40_MD5'],
  ['0x0018', 'TLS_DH_anon_WITH_RC4_128_MD5'],
  ['0x0019', 'TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA'],
  ['0x001a', 'TLS_DH_anon_WITH_DES_CBC_SHA'],
  ['0x001b', 'TLS_DH_anon_WITH_3DES_EDE_CBC_SHA'],
  ['0x0030', 'TLS_DH_DSS_WITH_AES_128_CBC_SHA'],
  ['0x0031', 'TLS_DH_RSA_WITH_AES_128_CBC_SHA'],
  ['0x0036', 'TLS_DH_DSS_WITH_AES_256_CBC_SHA'],
  ['0x0037', 'TLS_DH_RSA_WITH_AES_256_CBC_SHA'],
  ['0x003e', 'TLS_DH_DSS_WITH_AES_128_CBC_SHA256'],
  ['0x003f', 'TLS_DH_RSA_WITH_AES_128_CBC_SHA256'],
  ['0x0042', 'TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA'],
  ['0x0043', 'TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA'],
  ['0x0062', 'TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA'],
  ['0x0063', 'TLS_DHE_DSS_EXPORT1024_WITH_DES_CBC_SHA'],
  ['0x0064', 'TLS_RSA_EXPORT1024_WITH_RC4_56_SHA'],
  ['0x0065', 'TLS_DHE_DSS_EXPORT1024_WITH_RC4_56_SHA'],
  ['0x0066', 'TLS_DHE_DSS_WITH_RC4_128_SHA'],
  ['0x0068', 'TLS_DH_DSS_WITH_AES_256_CBC_SHA256'],
  ['0x0069', 'TLS_DH_RSA_WITH_AES_256_CBC_SHA256'],
  ['0x0085', 'TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA'],
  ['0x0086', 'TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA'],
  ['0x0096', 'TLS_RSA_WITH_SEED_CBC_SHA'],
  ['0x0097', 'TLS_DH_DSS_WITH_SEED_CBC_SHA'],
  ['0x0098', 'TLS_DH_RSA_WITH_SEED_CBC_SHA'],
  ['0x0099', 'TLS_DHE_DSS_WITH_SEED_CBC_SHA'],
  ['0x009a', 'TLS_DHE_RSA_WITH_SEED_CBC_SHA'],
  ['0x009b', 'TLS_DH_anon_WITH_SEED_CBC_SHA'],
  ['0x00a0', 'TLS_DH_RSA_WITH_AES_128_GCM_SHA256'],
  ['0x00a1', 'TLS_DH_RSA_WITH_AES_256_GCM_SHA384'],
  ['0x00a4', 'TLS_DH_DSS_WITH_AES_128_GCM_SHA256'],
  ['0x00a5', 'TLS_DH_DSS_WITH_AES_256_GCM_SHA384'],
  ['0x00bb', 'TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA256'],
  ['0x00bc', 'TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA256'],
  ['0x00c1', 'TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA256'],
  ['0x00c2', 'TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA256'],
  ['0xc001', 'TLS_ECDH_ECDSA_WITH_NULL_SHA'],
  ['0xc002', 'TLS_ECDH_ECDSA_WITH_RC4_128_SHA'],
  ['0xc003', 'TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA'],
  ['0xc004', 'TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA'],
  ['0xc005', 'TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA'],
  ['0xc007', 'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA'],
  ['0xc008', 'TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA'],
  ['0xc00b', 'TLS_ECDH_RSA_WITH_NULL_SHA'],
  ['0xc00c', 'TLS_ECDH_RSA_WITH_RC4_128_SHA'],
  ['0xc00d', 'TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA'],
  ['0xc00e', 'TLS_ECDH_RSA_WITH_AES_128_CBC_SHA'],
  ['0xc00f', 'TLS_ECDH_RSA_WITH_AES_256_CBC_SHA'],
  ['0xc011', 'TLS_ECDHE_RSA_WITH_RC4_128_SHA'],
  ['0xc012', 'TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA'],
  ['0xc016', 'TLS_ECDH_anon_WITH_RC4_128_SHA'],
  ['0xc017', 'TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA'],
  ['0xc025', 'TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256'],
  ['0xc026', 'TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384'],
  ['0xc029', 'TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256'],
  ['0xc02a', 'TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384'],
  ['0xc02d', 'TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256'],
  ['0xc02e', 'TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384'],
  ['0xc031', 'TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256'],
  ['0xc032', 'TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384'],
  ['0xc03c', 'TLS_RSA_WITH_ARIA_128_CBC_SHA256'],
  ['0xc03d', 'TLS_RSA_WITH_ARIA_256_CBC_SHA384'],
  ['0xc03e', 'TLS_DH_DSS_WITH_ARIA_128_CBC_SHA256'],
  ['0xc03f', 'TLS_DH_DSS_WITH_ARIA_256_CBC_SHA384'],
  ['0xc040', 'TLS_DH_RSA_WITH_ARIA_128_CBC_SHA256'],
  ['0xc041', 'TLS_DH_RSA_WITH_ARIA_256_CBC_SHA384'],
  ['0xc042', 'TLS_DHE_DSS_WITH_ARIA_128_CBC_SHA256'],
  ['0xc043', 'TLS_DHE_DSS_WITH_ARIA_256_CBC_SHA384'],
  ['0xc044', 'TLS_DHE_RSA_WITH_ARIA_128_CBC_SHA256'],
  ['0xc045', 'TLS_DHE_RSA_WITH_ARIA_256_CBC_SHA384'],
  ['0xc046', 'TLS_DH_anon_WITH_ARIA_128_CBC_SHA256'],
  ['0xc047', 'TLS_DH_anon_WITH_ARIA_256_CBC_SHA384'],
  ['0xc048', 'TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256'],
  ['0xc049', 'TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384'],
  ['0xc04a', 'TLS_ECDH_ECDSA_WITH_ARIA_128_CBC_SHA256'],
  ['0xc04b', 'TLS_ECDH_ECDSA_WITH_ARIA_256_CBC_SHA384'],
  ['0xc04c', 'TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256'],
  ['0xc04d', 'TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384'],
  ['0xc04e', 'TLS_ECDH_RSA_WITH_ARIA_128_CBC_SHA256'],
  ['0xc04f', 'TLS_ECDH_RSA_WITH_ARIA_256_CBC_SHA384'],
  ['0xc054', 'TLS_DH_RSA_WITH_ARIA_128_GCM_SHA256'],
  ['0xc055', 'TLS_DH_RSA_WITH_ARIA_256_GCM_SHA384'],
  ['0xc058', 'TLS_DH_DSS_WITH_ARIA_128_GCM_SHA256'],
  ['0xc059', 'TLS_DH_DSS_WITH_ARIA_256_GCM_SHA384'],
  ['0xc05a', 'TLS_DH_anon_WITH_ARIA_128_GCM_SHA256'],
  ['0xc05b', 'TLS_DH_anon_WITH_ARIA_256_GCM_SHA384'],
  ['0xc05e', 'TLS_ECDH_ECDSA_WITH_ARIA_128_GCM_SHA256'],
  ['0xc05f', 'TLS_ECDH_ECDSA_WITH_ARIA_256_GCM_SHA384'],
  ['0xc062', 'TLS_ECDH_RSA_WITH_ARIA_128_GCM_SHA256'],
  ['0xc063', 'TLS_ECDH_RSA_WITH_ARIA_256_GCM_SHA384'],
  ['0xc074', 'TLS_ECDH_ECDSA_WITH_CAMELLIA_128_CBC_SHA256'],
  ['0xc075', 'TLS_ECDH_ECDSA_WITH_CAMELLIA_256_CBC_SHA384'],
  ['0xc078', 'TLS_ECDH_RSA_WITH_CAMELLIA_128_CBC_SHA256'],
  ['0xc079', 'TLS_ECDH_RSA_WITH_CAMELLIA_256_CBC_SHA384'],
  ['0xc07a', 'TLS_RSA_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc07b', 'TLS_RSA_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc07c', 'TLS_DHE_RSA_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc07d', 'TLS_DHE_RSA_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc07e', 'TLS_DH_RSA_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc07f', 'TLS_DH_RSA_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc080', 'TLS_DHE_DSS_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc081', 'TLS_DHE_DSS_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc082', 'TLS_DH_DSS_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc083', 'TLS_DH_DSS_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc084', 'TLS_DH_anon_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc085', 'TLS_DH_anon_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc086', 'TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc087', 'TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc088', 'TLS_ECDH_ECDSA_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc089', 'TLS_ECDH_ECDSA_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc08a', 'TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc08b', 'TLS_ECDHE_RSA_WITH_CAMELLIA_256_GCM_SHA384'],
  ['0xc08c', 'TLS_ECDH_RSA_WITH_CAMELLIA_128_GCM_SHA256'],
  ['0xc08d', 'TLS_ECDH_RSA_WITH_CAMELLIA_256_GCM_SHA384'],
];

/** Key bits implied by an IANA suite name (what sslscan prints in its "bits" column). */
export function legacyBits(name: string): number {
  if (/_NULL_/.test(name) || name.endsWith('_NULL_SHA') || name.endsWith('_NULL_MD5')) return 0;
  if (/EXPORT1024/.test(name)) return 56;
  if (/EXPORT/.test(name)) return 40;
  if (/3DES/.test(name)) return 112;
  if (/_DES_CBC/.test(name)) return 56;
  const m = /_(128|256)_/.exec(name);
  if (m) return Number(m[1]);
  if (/RC4_128|SEED|IDEA/.test(name)) return 128;
  return 0;
}

const WIRE_VERSION: Readonly<Record<Exclude<TlsVersion, 'TLSv1.3'>, number>> = {
  TLSv1: 0x0301,
  'TLSv1.1': 0x0302,
  'TLSv1.2': 0x0303,
};

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function ext(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

/** A ClientHello record offering exactly `ids` at `version`. */
export function clientHello(
  version: Exclude<TlsVersion, 'TLSv1.3'>,
  ids: readonly number[],
  servername?: string,
): Buffer {
  const v = WIRE_VERSION[version];
  const suites = Buffer.concat([...ids, 0x00ff].map(u16)); // + TLS_EMPTY_RENEGOTIATION_INFO_SCSV
  // x25519, secp256r1, secp384r1, secp521r1, x448, ffdhe2048, ffdhe3072
  const groups = [0x001d, 0x0017, 0x0018, 0x0019, 0x001e, 0x0100, 0x0101];
  const extensions: Buffer[] = [
    ext(10, Buffer.concat([u16(groups.length * 2), ...groups.map(u16)])),
    ext(11, Buffer.from([1, 0])), // ec_point_formats: uncompressed
  ];
  if (servername && isIP(servername) === 0) {
    const name = Buffer.from(servername, 'ascii');
    extensions.push(ext(0, Buffer.concat([u16(name.length + 3), Buffer.from([0]), u16(name.length), name])));
  }
  if (version === 'TLSv1.2') {
    // ecdsa/rsa-pss/rsa with SHA-256/384/512, then SHA-1 and DSA forms, for old servers.
    const algs = [
      0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203, 0x0201, 0x0402, 0x0202,
    ];
    extensions.push(ext(13, Buffer.concat([u16(algs.length * 2), ...algs.map(u16)])));
  }
  const extBytes = Buffer.concat(extensions);
  const body = Buffer.concat([
    u16(v),
    randomBytes(32),
    Buffer.from([0]), // session_id: empty
    u16(suites.length),
    suites,
    Buffer.from([1, 0]), // compression_methods: null
    u16(extBytes.length),
    extBytes,
  ]);
  const hs = Buffer.concat([
    Buffer.from([1, (body.length >> 16) & 0xff, (body.length >> 8) & 0xff, body.length & 0xff]),
    body,
  ]);
  // The record layer says TLS 1.0, as most clients do for the first flight.
  return Buffer.concat([Buffer.from([22, 0x03, 0x01]), u16(hs.length), hs]);
}

export type HelloAnswer =
  | { readonly accepted: true; readonly version: number; readonly suite: number }
  | { readonly accepted: false; readonly why: string };

/** Parse the start of the server's answer: a ServerHello (version, cipher_suite) or an alert. */
export function parseServerHello(data: Buffer): HelloAnswer | undefined {
  if (data.length < 5) return undefined;
  const type = data[0]!;
  const len = data.readUInt16BE(3);
  if (type === 21) return { accepted: false, why: 'alert' };
  if (type !== 22) return { accepted: false, why: `record type ${type}` };
  if (data.length < 5 + Math.min(len, 44)) return undefined;
  const hs = data.subarray(5, 5 + len);
  if (hs[0] !== 2 || hs.length < 39) return { accepted: false, why: 'not a ServerHello' };
  const version = hs.readUInt16BE(4);
  const sidLen = hs[38]!;
  if (hs.length < 39 + sidLen + 2) return undefined;
  return { accepted: true, version, suite: hs.readUInt16BE(39 + sidLen) };
}

/** One raw probe: SSLRequest, then the ClientHello; reads only the server's first record. */
export async function rawHello(
  ep: Endpoint,
  version: Exclude<TlsVersion, 'TLSv1.3'>,
  ids: readonly number[],
  servername: string | undefined,
  timeoutMs: number,
): Promise<HelloAnswer> {
  const sock = await openTcp(ep, timeoutMs);
  if (!(sock instanceof Socket)) return { accepted: false, why: sock.code };
  try {
    const a = await sendSSLRequest(sock, timeoutMs);
    if (a.answer !== 'S') return { accepted: false, why: `SSLRequest answered ${a.answer}` };
    sock.write(clientHello(version, ids, servername));
    return await new Promise<HelloAnswer>((resolve) => {
      let buf = Buffer.alloc(0);
      const finish = (r: HelloAnswer) => {
        clearTimeout(timer);
        sock.removeAllListeners('data');
        resolve(r);
      };
      const timer = setTimeout(() => finish({ accepted: false, why: 'timeout' }), timeoutMs);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const r = parseServerHello(buf);
        if (r)
          finish(r.accepted && r.version !== WIRE_VERSION[version] ? { accepted: false, why: 'other version' } : r);
      });
      sock.once('close', () => finish({ accepted: false, why: 'closed' }));
      sock.once('error', () => finish({ accepted: false, why: 'reset' }));
      sock.resume();
    });
  } finally {
    sock.destroy();
  }
}
