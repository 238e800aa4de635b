/**
 * `proxy_protocol_trusted`: which peers may send a PROXY header. A list of IP addresses and CIDR ranges (IPv4 and
 * IPv6), separated by commas and/or blanks. An IPv4-mapped IPv6 address ("::ffff:10.1.2.3", what a dual-stack
 * listener reports for an IPv4 peer) is matched as the IPv4 address it carries, on either side; so is a mapped range
 * ("::ffff:10.0.0.0/104" is 10.0.0.0/8). Host names are refused: trust must not depend on DNS.
 */
import { isIP } from 'node:net';
import { ipBytes } from './hba.js';

export interface TrustedRange {
  readonly family: 4 | 6;
  readonly addr: readonly number[];
  readonly bits: number;
  /** As written, for messages. */
  readonly text: string;
}

/** Parse the list; returns the ranges, or the first entry that is not an address or CIDR range. */
export function parseTrustedList(value: string): { ok: true; ranges: TrustedRange[] } | { ok: false; entry: string } {
  const ranges: TrustedRange[] = [];
  for (const entry of value.split(/[\s,]+/).filter((e) => e !== '')) {
    const r = parseRange(entry);
    if (!r) return { ok: false, entry };
    ranges.push(r);
  }
  return { ok: true, ranges };
}

function parseRange(entry: string): TrustedRange | undefined {
  const slash = entry.indexOf('/');
  const ip = slash < 0 ? entry : entry.slice(0, slash);
  const family = isIP(ip);
  // A zone index ("fe80::1%eth0") names an interface, not a peer.
  if (family === 0 || ip.includes('%')) return undefined;
  const max = family === 4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const t = entry.slice(slash + 1);
    if (!/^\d{1,3}$/.test(t) || Number(t) > max) return undefined;
    bits = Number(t);
  }
  let addr = ipBytes(ip);
  let fam: 4 | 6 = family === 4 ? 4 : 6;
  if (fam === 6 && isV4Mapped(addr) && bits >= 96) {
    addr = addr.slice(12);
    bits -= 96;
    fam = 4;
  }
  return { family: fam, addr: masked(addr, bits), bits, text: entry };
}

function isV4Mapped(a: readonly number[]): boolean {
  return a.length === 16 && a.slice(0, 10).every((b) => b === 0) && a[10] === 0xff && a[11] === 0xff;
}

function masked(a: readonly number[], bits: number): number[] {
  return a.map((b, i) => b & ((0xff00 >> Math.max(0, Math.min(8, bits - i * 8))) & 0xff));
}

/** Is this peer address (as net.Socket.remoteAddress reports it) inside one of the ranges? */
export function isTrustedPeer(ranges: readonly TrustedRange[], address: string | undefined): boolean {
  if (address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  let a = ipBytes(address);
  let fam: 4 | 6 = family === 4 ? 4 : 6;
  if (fam === 6 && isV4Mapped(a)) {
    a = a.slice(12);
    fam = 4;
  }
  return ranges.some((r) => r.family === fam && masked(a, r.bits).every((b, i) => b === r.addr[i]));
}
