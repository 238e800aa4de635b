/**
 * PROXY protocol encoders (v1 line, v2 binary header with TLVs and an optional CRC32C), for the gateway's onward
 * connections and for tests. The layouts are those decoded in ./proxy.ts.
 */
import {
  FAMILIES,
  PP2_TYPE,
  PROXY_V2_SIGNATURE,
  type ProxyCommand,
  type ProxyEndpoint,
  type ProxyFamily,
  type ProxyTlv,
  type ProxyTransport,
  TRANSPORTS,
  crc32c,
  isCanonicalV4,
  parseV6,
} from './proxy.js';

export interface ProxyV1Input {
  readonly family: 'INET' | 'INET6' | 'UNSPEC';
  readonly source?: ProxyEndpoint;
  readonly destination?: ProxyEndpoint;
}

/** A v1 line; UNSPEC gives the short form "PROXY UNKNOWN\r\n". */
export function encodeProxyV1(h: ProxyV1Input): Buffer {
  if (h.family === 'UNSPEC') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const { source: s, destination: d } = h;
  if (!s || !d) throw new RangeError('PROXY v1: TCP4/TCP6 need a source and a destination');
  for (const e of [s, d]) {
    const ok = h.family === 'INET' ? isCanonicalV4(e.address) : parseV6(e.address) !== undefined;
    if (!ok)
      throw new RangeError(`PROXY v1: "${e.address}" is not an ${h.family === 'INET' ? 'IPv4' : 'IPv6'} address`);
    if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) throw new RangeError(`PROXY v1: bad port ${e.port}`);
  }
  const proto = h.family === 'INET' ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${proto} ${s.address} ${d.address} ${s.port} ${d.port}\r\n`, 'latin1');
}

export interface ProxyV2Input {
  readonly command: ProxyCommand;
  readonly family: ProxyFamily;
  readonly transport: ProxyTransport;
  readonly source?: ProxyEndpoint;
  readonly destination?: ProxyEndpoint;
  readonly tlvs?: readonly ProxyTlv[];
  /** Append a PP2_TYPE_CRC32C TLV holding the header's checksum. */
  readonly crc32c?: boolean;
}

/** A v2 header. Addresses are written only for PROXY with a known family and transport. */
export function encodeProxyV2(h: ProxyV2Input): Buffer {
  const parts: Buffer[] = [];
  const withAddresses = h.command === 'PROXY' && h.family !== 'UNSPEC' && h.transport !== 'UNSPEC';
  if (withAddresses) {
    const { source: s, destination: d } = h;
    if (!s || !d) throw new RangeError('PROXY v2: a PROXY header with addresses needs a source and a destination');
    if (h.family === 'UNIX') {
      parts.push(unixBytes(s.address), unixBytes(d.address));
    } else {
      const bytes = (a: string) => {
        const v =
          h.family === 'INET' ? (isCanonicalV4(a) ? Uint8Array.from(a.split('.').map(Number)) : undefined) : parseV6(a);
        if (!v) throw new RangeError(`PROXY v2: "${a}" is not an ${h.family === 'INET' ? 'IPv4' : 'IPv6'} address`);
        return Buffer.from(v);
      };
      const ports = Buffer.alloc(4);
      ports.writeUInt16BE(s.port, 0);
      ports.writeUInt16BE(d.port, 2);
      parts.push(bytes(s.address), bytes(d.address), ports);
    }
  }
  for (const t of h.tlvs ?? []) parts.push(tlvBytes(t.type, t.value));
  let crcAt = -1;
  if (h.crc32c) {
    crcAt = 16 + parts.reduce((n, p) => n + p.length, 0) + 3;
    parts.push(tlvBytes(PP2_TYPE.CRC32C, Buffer.alloc(4)));
  }
  const body = Buffer.concat(parts);
  if (body.length > 0xffff) throw new RangeError('PROXY v2: header too long');
  const fixed = Buffer.alloc(16);
  PROXY_V2_SIGNATURE.copy(fixed, 0);
  fixed[12] = 0x20 | (h.command === 'LOCAL' ? 0 : 1);
  fixed[13] = (FAMILIES.indexOf(h.family) << 4) | TRANSPORTS.indexOf(h.transport);
  fixed.writeUInt16BE(body.length, 14);
  const out = Buffer.concat([fixed, body]);
  if (crcAt >= 0) out.writeUInt32BE(crc32c(out), crcAt);
  return out;
}

function unixBytes(path: string): Buffer {
  const out = Buffer.alloc(108);
  const raw = path.startsWith('@')
    ? Buffer.concat([Buffer.from([0]), Buffer.from(path.slice(1), 'utf8')])
    : Buffer.from(path, 'utf8');
  if (raw.length > 108) throw new RangeError('PROXY v2: AF_UNIX path longer than 108 bytes');
  raw.copy(out);
  return out;
}

function tlvBytes(type: number, value: Uint8Array): Buffer {
  if (value.length > 0xffff) throw new RangeError('PROXY v2: TLV value too long');
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
}

/** PP2_TYPE_SSL value: client(1) verify(4) then the given sub-TLVs. */
export function encodeSslTlv(client: number, verify: number, sub: readonly ProxyTlv[]): ProxyTlv {
  const head = Buffer.alloc(5);
  head[0] = client;
  head.writeUInt32BE(verify >>> 0, 1);
  return { type: PP2_TYPE.SSL, value: Buffer.concat([head, ...sub.map((s) => tlvBytes(s.type, s.value))]) };
}
