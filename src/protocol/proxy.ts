/**
 * The PROXY protocol, versions 1 and 2, as HAProxy's specification defines it
 * (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt, shipped by Debian as
 * /usr/share/doc/haproxy/proxy-protocol.txt.gz). A load balancer in front of the gateway prepends one header to the
 * connection saying who the real client is. Pure: bytes in, a decoded header (or "need more" / "invalid") out.
 *
 * The decoder is incremental: call it with everything received so far; it never consumes a partial header, and a
 * proper prefix of a valid header is always "need-more", never "invalid" (so a header split across TCP segments at
 * any offset decodes the same).
 */

/** v1 lines are at most 107 bytes including the CRLF (spec §2.1, "worst case"). */
export const PROXY_V1_MAX_LENGTH = 107;
/** The 12-byte v2 signature (spec §2.2): \r\n\r\n\0\r\nQUIT\n. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Default bound on the v2 length field (address block + TLVs); the spec has none, so the receiver chooses. */
export const PROXY_V2_DEFAULT_MAX_LENGTH = 4096;

const V1_PREFIX = Buffer.from('PROXY', 'latin1');

/** Registered TLV types (spec §2.2). */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

/** Sub-TLVs inside PP2_TYPE_SSL (spec §2.2.6). */
export const PP2_SUBTYPE_SSL = { VERSION: 0x21, CN: 0x22, CIPHER: 0x23, SIG_ALG: 0x24, KEY_ALG: 0x25 } as const;
/** Bits of the `client` byte of PP2_TYPE_SSL. */
export const PP2_CLIENT = { SSL: 0x01, CERT_CONN: 0x02, CERT_SESS: 0x04 } as const;

export type ProxyCommand = 'LOCAL' | 'PROXY';
export type ProxyFamily = 'UNSPEC' | 'INET' | 'INET6' | 'UNIX';
export type ProxyTransport = 'UNSPEC' | 'STREAM' | 'DGRAM';

export const FAMILIES: readonly ProxyFamily[] = ['UNSPEC', 'INET', 'INET6', 'UNIX'];
export const TRANSPORTS: readonly ProxyTransport[] = ['UNSPEC', 'STREAM', 'DGRAM'];

export interface ProxyEndpoint {
  /** IPv4 dotted quad or IPv6 text (lower case, compressed), or for AF_UNIX the path. */
  readonly address: string;
  /** TCP/UDP port; 0 for AF_UNIX. */
  readonly port: number;
}

export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

export interface ProxySsl {
  /** The `client` bit field (PP2_CLIENT). */
  readonly client: number;
  /** 0 when the client presented a certificate and it verified, non-zero otherwise. */
  readonly verify: number;
  readonly version?: string;
  readonly cn?: string;
  readonly cipher?: string;
  readonly sigAlg?: string;
  readonly keyAlg?: string;
  readonly subTlvs: readonly ProxyTlv[];
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** LOCAL: a connection the proxy made itself (health check): use the real endpoints. */
  readonly command: ProxyCommand;
  readonly family: ProxyFamily;
  readonly transport: ProxyTransport;
  /** Absent for LOCAL, for UNSPEC (v1 "UNKNOWN") and for combinations the receiver does not interpret. */
  readonly source?: ProxyEndpoint;
  readonly destination?: ProxyEndpoint;
  /** v2 only: every TLV in order, raw. */
  readonly tlvs: readonly ProxyTlv[];
  /** PP2_TYPE_AUTHORITY (the client's SNI when the proxy terminated TLS), UTF-8. */
  readonly authority?: string;
  readonly ssl?: ProxySsl;
}

export type ProxyDecode =
  | { readonly status: 'need-more' }
  | { readonly status: 'header'; readonly header: ProxyHeader; readonly consumed: number }
  | { readonly status: 'invalid'; readonly reason: string };

export interface ProxyDecodeOptions {
  /** Largest accepted v2 length field (bytes after the 16-byte fixed part). */
  readonly maxV2Length?: number;
}

const NEED_MORE: ProxyDecode = Object.freeze({ status: 'need-more' });
const invalid = (reason: string): ProxyDecode => ({ status: 'invalid', reason });

/** Decode a PROXY header at the start of `buf` (all bytes received so far). */
export function decodeProxyHeader(buf: Uint8Array, opts: ProxyDecodeOptions = {}): ProxyDecode {
  if (buf.length === 0) return NEED_MORE;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b[0] === 0x50) return decodeV1(b);
  if (b[0] === 0x0d) return decodeV2(b, opts.maxV2Length ?? PROXY_V2_DEFAULT_MAX_LENGTH);
  return invalid('not a PROXY protocol header');
}

/** True when `buf` starts like a PROXY header (v1 "PROXY" or the v2 signature), judging by the bytes present. */
export function looksLikeProxyHeader(buf: Uint8Array): boolean {
  const n = Math.min(buf.length, 12);
  if (n === 0) return false;
  const sig = buf[0] === 0x50 ? V1_PREFIX : PROXY_V2_SIGNATURE;
  for (let i = 0; i < Math.min(n, sig.length); i++) if (buf[i] !== sig[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Version 1: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"

function decodeV1(b: Buffer): ProxyDecode {
  const limit = Math.min(b.length, PROXY_V1_MAX_LENGTH);
  for (let i = 0; i < limit; i++) {
    const c = b[i]!;
    if (i < V1_PREFIX.length) {
      if (c !== V1_PREFIX[i]) return invalid('not a PROXY protocol header');
      continue;
    }
    if (c === 0x0d) {
      if (i + 1 >= b.length) return NEED_MORE;
      // The spec forbids a lone CR or LF as the line end.
      if (b[i + 1] !== 0x0a) return invalid('PROXY v1 header: CR not followed by LF');
      return parseV1Line(b.toString('latin1', 0, i), i + 2);
    }
    if (c === 0x0a) return invalid('PROXY v1 header: LF without CR');
    // Only printable US-ASCII can appear in a line: abort early on anything else, as the spec recommends.
    if (c < 0x20 || c > 0x7e) return invalid('PROXY v1 header: non-ASCII byte');
  }
  if (b.length >= PROXY_V1_MAX_LENGTH) return invalid('PROXY v1 header: no CRLF within 107 bytes');
  return NEED_MORE;
}

function parseV1Line(line: string, consumed: number): ProxyDecode {
  // "PROXY UNKNOWN" may be followed by anything (ignored) before the CRLF.
  if (line === 'PROXY UNKNOWN' || line.startsWith('PROXY UNKNOWN ')) {
    return {
      status: 'header',
      header: { version: 1, command: 'PROXY', family: 'UNSPEC', transport: 'UNSPEC', tlvs: [] },
      consumed,
    };
  }
  const parts = line.split(' ');
  if (parts.length !== 6) return invalid('PROXY v1 header: expected 6 fields separated by single spaces');
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  let family: ProxyFamily;
  if (proto === 'TCP4') {
    if (!isCanonicalV4(src) || !isCanonicalV4(dst)) return invalid('PROXY v1 header: invalid IPv4 address');
    family = 'INET';
  } else if (proto === 'TCP6') {
    const s = parseV6(src);
    const d = parseV6(dst);
    if (!s || !d) return invalid('PROXY v1 header: invalid IPv6 address');
    family = 'INET6';
  } else {
    return invalid(`PROXY v1 header: unknown protocol "${proto}"`);
  }
  const sp = v1Port(sport);
  const dp = v1Port(dport);
  if (sp === undefined || dp === undefined) return invalid('PROXY v1 header: invalid port');
  const norm = (a: string) => (family === 'INET' ? a : formatV6(parseV6(a)!));
  return {
    status: 'header',
    header: {
      version: 1,
      command: 'PROXY',
      family,
      transport: 'STREAM',
      source: { address: norm(src), port: sp },
      destination: { address: norm(dst), port: dp },
      tlvs: [],
    },
    consumed,
  };
}

/** Four decimal numbers 0..255 without leading zeroes (spec: "heading zeroes are not permitted"). */
export function isCanonicalV4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

function v1Port(s: string): number | undefined {
  if (!/^(0|[1-9]\d{0,4})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

/**
 * IPv6 text to 16 bytes: groups of 1-4 hex digits, at most one "::", exactly 128 bits; an embedded IPv4 tail is
 * accepted as inet_pton() (which HAProxy uses) does. No zone index.
 */
export function parseV6(s: string): Uint8Array | undefined {
  if (s.length === 0 || s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    const parts = h.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        if (!isCanonicalV4(p)) return undefined;
        const q = p.split('.').map(Number);
        out.push((q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(Number.parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  // An embedded IPv4 tail is only allowed at the very end.
  if (halves.length === 2 && halves[0]!.includes('.')) return undefined;
  const total = head.length + tail.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return undefined;
  const words = [...head, ...Array<number>(8 - total).fill(0), ...tail];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

/**
 * RFC 5952 text for 16 bytes (lower case, longest run of ≥ 2 zero groups compressed, first run on a tie); an
 * IPv4-mapped address in the mixed notation RFC 5952 §5 recommends ("::ffff:192.0.2.1"), as Node reports peers.
 */
export function formatV6(bytes: Uint8Array): string {
  if (bytes.subarray(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${[...bytes.subarray(12, 16)].join('.')}`;
  }
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((bytes[i * 2]! << 8) | bytes[i * 2 + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(w);
  return `${hex(w.slice(0, bestStart))}::${hex(w.slice(bestStart + bestLen))}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Version 2: signature(12) ver_cmd(1) fam(1) len(2, big-endian) then `len` bytes of addresses and TLVs.

function decodeV2(b: Buffer, maxLength: number): ProxyDecode {
  const sigLen = Math.min(b.length, PROXY_V2_SIGNATURE.length);
  for (let i = 0; i < sigLen; i++) {
    if (b[i] !== PROXY_V2_SIGNATURE[i]) return invalid('not a PROXY protocol header');
  }
  if (b.length < 13) return NEED_MORE;
  const verCmd = b[12]!;
  if (verCmd >> 4 !== 2) return invalid(`PROXY v2 header: unsupported version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid(`PROXY v2 header: unknown command ${cmd}`);
  if (b.length < 14) return NEED_MORE;
  const fam = b[13]!;
  const family = FAMILIES[fam >> 4];
  const transport = TRANSPORTS[fam & 0x0f];
  if (!family || !transport) return invalid(`PROXY v2 header: invalid family/transport byte 0x${hex2(fam)}`);
  if (b.length < 16) return NEED_MORE;
  const len = b.readUInt16BE(14);
  if (len > maxLength) return invalid(`PROXY v2 header: length ${len} exceeds the limit of ${maxLength}`);
  if (b.length < 16 + len) return NEED_MORE;
  const consumed = 16 + len;
  const block = b.subarray(16, consumed);
  const command: ProxyCommand = cmd === 0 ? 'LOCAL' : 'PROXY';
  // LOCAL: the receiver uses the real endpoints and discards the whole block, family included (spec §2.2).
  if (command === 'LOCAL') {
    return { status: 'header', header: { version: 2, command, family, transport, tlvs: [] }, consumed };
  }
  // UNSPEC family or transport: addresses, if any, have no defined layout, so nothing (TLVs included) can be
  // located in the block; the receiver uses the real endpoints.
  if (family === 'UNSPEC' || transport === 'UNSPEC') {
    return { status: 'header', header: { version: 2, command, family, transport, tlvs: [] }, consumed };
  }
  const addrLen = family === 'INET' ? 12 : family === 'INET6' ? 36 : 216;
  if (len < addrLen) return invalid(`PROXY v2 header: address block of ${len} bytes is too short for ${family}`);
  let source: ProxyEndpoint;
  let destination: ProxyEndpoint;
  if (family === 'INET') {
    source = { address: [...block.subarray(0, 4)].join('.'), port: block.readUInt16BE(8) };
    destination = { address: [...block.subarray(4, 8)].join('.'), port: block.readUInt16BE(10) };
  } else if (family === 'INET6') {
    source = { address: formatV6(block.subarray(0, 16)), port: block.readUInt16BE(32) };
    destination = { address: formatV6(block.subarray(16, 32)), port: block.readUInt16BE(34) };
  } else {
    source = { address: unixPath(block.subarray(0, 108)), port: 0 };
    destination = { address: unixPath(block.subarray(108, 216)), port: 0 };
  }
  const tlvs = parseTlvs(block.subarray(addrLen));
  if (typeof tlvs === 'string') return invalid(`PROXY v2 header: ${tlvs}`);
  const crc = tlvs.find((t) => t.type === PP2_TYPE.CRC32C);
  if (crc) {
    if (crc.value.length !== 4) return invalid('PROXY v2 header: CRC32C TLV must be 4 bytes');
    // Verify over the whole header with the checksum field zeroed (spec §2.2.3).
    const copy = Buffer.from(b.subarray(0, consumed));
    const at = crc.value.byteOffset - b.byteOffset;
    copy.fill(0, at, at + 4);
    if (crc32c(copy) !== crc.value.readUInt32BE(0)) return invalid('PROXY v2 header: CRC32C mismatch');
  }
  const ssl = sslOf(tlvs);
  if (ssl === 'malformed') return invalid('PROXY v2 header: malformed PP2_TYPE_SSL TLV');
  const authority = tlvs.find((x) => x.type === PP2_TYPE.AUTHORITY);
  const header: ProxyHeader = {
    version: 2,
    command,
    family,
    transport,
    source,
    destination,
    tlvs,
    ...(authority ? { authority: authority.value.toString('utf8') } : {}),
    ...(ssl ? { ssl } : {}),
  };
  return { status: 'header', header, consumed };
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** An AF_UNIX address: the path up to the first NUL (an abstract socket, starting with NUL, is shown as "@…"). */
function unixPath(a: Buffer): string {
  if (a[0] === 0) {
    const end = a.indexOf(0, 1);
    return `@${a.toString('utf8', 1, end < 0 ? a.length : end)}`;
  }
  const end = a.indexOf(0);
  return a.toString('utf8', 0, end < 0 ? a.length : end);
}

/** A sequence of type(1) length(2) value(length); the lengths must tile the area exactly. */
function parseTlvs(area: Buffer): ProxyTlv[] | string {
  const out: ProxyTlv[] = [];
  let at = 0;
  // Each TLV takes at least 3 bytes, so this loop is bounded by area.length / 3.
  while (at < area.length) {
    if (area.length - at < 3) return 'truncated TLV';
    const type = area[at]!;
    const len = area.readUInt16BE(at + 1);
    if (at + 3 + len > area.length) return `TLV 0x${hex2(type)} runs past the header`;
    out.push({ type, value: area.subarray(at + 3, at + 3 + len) });
    at += 3 + len;
  }
  return out;
}

/** PP2_TYPE_SSL: client(1) verify(4, big-endian) then sub-TLVs. */
function sslOf(tlvs: readonly ProxyTlv[]): ProxySsl | undefined | 'malformed' {
  const t = tlvs.find((x) => x.type === PP2_TYPE.SSL);
  if (!t) return undefined;
  if (t.value.length < 5) return 'malformed';
  const sub = parseTlvs(t.value.subarray(5));
  if (typeof sub === 'string') return 'malformed';
  const text = (type: number) => {
    const s = sub.find((x) => x.type === type);
    return s ? s.value.toString('utf8') : undefined;
  };
  const fields: Record<string, string> = {};
  const pairs: [string, number][] = [
    ['version', PP2_SUBTYPE_SSL.VERSION],
    ['cn', PP2_SUBTYPE_SSL.CN],
    ['cipher', PP2_SUBTYPE_SSL.CIPHER],
    ['sigAlg', PP2_SUBTYPE_SSL.SIG_ALG],
    ['keyAlg', PP2_SUBTYPE_SSL.KEY_ALG],
  ];
  for (const [k, type] of pairs) {
    const v = text(type);
    if (v !== undefined) fields[k] = v;
  }
  return { client: t.value[0]!, verify: t.value.readUInt32BE(1), ...fields, subTlvs: sub };
}

let CRC32C_TABLE: Uint32Array | undefined;

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as RFC 4960 appendix B computes it. */
export function crc32c(data: Uint8Array): number {
  if (!CRC32C_TABLE) {
    CRC32C_TABLE = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      CRC32C_TABLE[i] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
