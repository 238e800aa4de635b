/**
 * Host-name verification with libpq's rules, not Node's checkServerIdentity and not RFC 6125 in general.
 * Mirrors pgtls_verify_peer_name_matches_certificate_guts (fe-secure-openssl.c) and
 * pq_verify_peer_name_matches_certificate{,_name,_ip} (fe-secure-common.c), PostgreSQL 14–18:
 *
 * - The host is an IP address if inet_aton() (IPv4, including "127.1" and hex/octal forms) or inet_pton(AF_INET6)
 *   accepts it; otherwise it is a DNS name.
 * - Every dNSName and iPAddress SAN is examined, in certificate order, until one matches. dNSNames are compared with
 *   the host even when the host is an IP address (case-insensitively, or as a wildcard); iPAddress SANs are compared
 *   as bytes with the host parsed as an address.
 * - A SAN of the host's own type (DNS for a name, IP for an address) disables the fallback to the Common Name;
 *   otherwise the first CN is examined as a DNS name.
 * - A wildcard is only `*.` as the whole leftmost label and matches exactly one label (no dots) in the host.
 * - A name with an embedded NUL is an error, whatever the host.
 *
 * Messages are libpq's, verbatim; `names` lists what was examined so a caller can show it.
 * Pure: no I/O. The certificate is DER (or PEM) bytes or a Node X509Certificate.
 */
import type { X509Certificate } from 'node:crypto';

export type HostNameResult =
  | { readonly ok: true; readonly matched: string; readonly names: readonly string[] }
  | { readonly ok: false; readonly message: string; readonly names: readonly string[] };

export type CertificateInput = Uint8Array | string | X509Certificate;

interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly end: number;
  /** Offset of the contents. */
  readonly body: number;
}

function readTlv(buf: Uint8Array, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new Error('truncated DER');
  const tag = buf[at]!;
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > limit) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    body += n;
  }
  if (body + len > limit) throw new Error('truncated DER');
  return { tag, start: at, end: body + len, body };
}

function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTlv(buf, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

const OID_SAN = Buffer.from([0x55, 0x1d, 0x11]); // 2.5.29.17
const OID_CN = Buffer.from([0x55, 0x04, 0x03]); // 2.5.4.3

function toDer(cert: CertificateInput): Uint8Array {
  if (typeof cert === 'string') {
    const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(cert);
    if (!m) throw new Error('no PEM certificate found');
    return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  }
  if (cert instanceof Uint8Array) return cert;
  return cert.raw;
}

export interface CertificateNames {
  /** dNSName and iPAddress SANs in certificate order; other SAN types are ignored, as libpq does. */
  readonly sans: readonly (
    | { readonly type: 'dns'; readonly value: Buffer }
    | { readonly type: 'ip'; readonly value: Buffer }
  )[];
  /** The first commonName of the subject, as its raw string bytes; undefined if there is none. */
  readonly commonName: Buffer | undefined;
}

/** Pull the SANs and the first CN out of a DER certificate (only what host-name checking needs). */
export function certificateNames(cert: CertificateInput): CertificateNames {
  const der = toDer(cert);
  const top = readTlv(der, 0, der.length);
  const tbs = children(der, top)[0];
  if (!tbs) throw new Error('not a certificate');
  const fields = children(der, tbs);
  // tbsCertificate: [0] version (optional) · serial · signature · issuer · validity · subject · spki · [1] [2] [3] ext
  let i = fields[0]?.tag === 0xa0 ? 1 : 0;
  i += 4; // serial, signature, issuer, validity
  const subject = fields[i];
  let commonName: Buffer | undefined;
  if (subject) {
    outer: for (const rdn of children(der, subject)) {
      for (const atv of children(der, rdn)) {
        const [oid, value] = children(der, atv);
        if (oid && value && Buffer.from(der.subarray(oid.body, oid.end)).equals(OID_CN)) {
          commonName = decodeDirectoryString(der, value);
          break outer;
        }
      }
    }
  }
  const sans: CertificateNames['sans'][number][] = [];
  const extsWrapper = fields.find((f) => f.tag === 0xa3);
  if (extsWrapper) {
    const exts = children(der, extsWrapper)[0];
    for (const ext of exts ? children(der, exts) : []) {
      const parts = children(der, ext);
      const oid = parts[0];
      if (!oid || !Buffer.from(der.subarray(oid.body, oid.end)).equals(OID_SAN)) continue;
      const octets = parts[parts.length - 1]!;
      const seq = readTlv(der, octets.body, octets.end);
      for (const gn of children(der, seq)) {
        const value = Buffer.from(der.subarray(gn.body, gn.end));
        if (gn.tag === 0x82) sans.push({ type: 'dns', value });
        else if (gn.tag === 0x87) sans.push({ type: 'ip', value });
      }
    }
  }
  return { sans, commonName };
}

/** X509_NAME_ENTRY data as OpenSSL hands it to libpq: the string's bytes (BMPString converted to UTF-8). */
function decodeDirectoryString(der: Uint8Array, value: Tlv): Buffer {
  const raw = Buffer.from(der.subarray(value.body, value.end));
  if (value.tag === 0x1e) {
    // BMPString (UCS-2 BE): libpq gets the raw ASN1_STRING data, i.e. UCS-2 bytes; keep them as they are.
    return raw;
  }
  return raw;
}

/** glibc inet_aton(): 1–4 parts, each decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes. */
export function inetAton(host: string): Buffer | undefined {
  const text = host.split(/[ \t\n]/, 1)[0]!;
  if (text === '') return undefined;
  const parts = text.split('.');
  if (parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0[xX][0-9a-fA-F]*$/.test(p)) n = p.length === 2 ? 0 : Number.parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) n = Number.parseInt(p, 8);
    else if (/^[1-9][0-9]*$/.test(p)) n = Number.parseInt(p, 10);
    else return undefined;
    if (!Number.isFinite(n) || n > 0xffffffff) return undefined;
    nums.push(n);
  }
  const last = nums[nums.length - 1]!;
  const head = nums.slice(0, -1);
  if (head.some((n) => n > 255)) return undefined;
  const lastBytes = 4 - head.length;
  if (last >= 2 ** (8 * lastBytes)) return undefined;
  const out = Buffer.alloc(4);
  head.forEach((n, k) => {
    out[k] = n;
  });
  for (let k = 3, v = last; k >= head.length; k--, v = Math.floor(v / 256)) out[k] = v % 256;
  return out;
}

/** inet_pton(AF_INET6): eight groups, one "::", an optional trailing dotted quad; no zone ids. */
export function inet6Pton(host: string): Buffer | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(host)) return undefined;
  let text = host;
  if (text.includes('.')) {
    // A trailing dotted quad stands for the last two groups.
    const lastColon = text.lastIndexOf(':');
    const quad = text.slice(lastColon + 1);
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(quad);
    if (lastColon < 0 || !m) return undefined;
    const o = m.slice(1).map(Number);
    if (o.some((x) => x > 255)) return undefined;
    text = `${text.slice(0, lastColon + 1)}${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const group = (s: string) => (s === '' ? [] : s.split(':'));
  const left = group(halves[0]!);
  const right = halves.length === 2 ? group(halves[1]!) : [];
  if ([...left, ...right].some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const total = left.length + right.length;
  if (halves.length === 2 ? total > 7 : total !== 8) return undefined;
  const words = [...left, ...Array<string>(8 - total).fill('0'), ...right].map((g) => Number.parseInt(g, 16));
  const out = Buffer.alloc(16);
  words.forEach((w, k) => out.writeUInt16BE(w, k * 2));
  return out;
}

/** How libpq prints a certificate's IP (pg_inet_net_ntop): dotted quad, or IPv6 with the longest zero run as "::". */
export function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const words: number[] = [];
  for (let k = 0; k < 16; k += 2) words.push(bytes.readUInt16BE(k));
  let bestStart = -1;
  let bestLen = 0;
  for (let k = 0; k < 8; ) {
    if (words[k] !== 0) {
      k++;
      continue;
    }
    let j = k;
    while (j < 8 && words[j] === 0) j++;
    if (j - k > bestLen && j - k > 1) {
      bestStart = k;
      bestLen = j - k;
    }
    k = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  // IPv4-mapped / compatible addresses end in a dotted quad.
  if (bestStart === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
    const quad = `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
    return bestLen === 5 ? `::ffff:${quad}` : `::${quad}`;
  }
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** libpq's wildcard_certificate_match(): "*." + suffix, and no dot in the part the star stands for. */
export function wildcardMatches(pattern: string, host: string): boolean {
  if (pattern.length < 3 || !pattern.startsWith('*.')) return false;
  if (pattern.length > host.length) return false;
  const suffix = pattern.slice(1);
  if (host.slice(host.length - suffix.length).toLowerCase() !== suffix.toLowerCase()) return false;
  const starPart = host.slice(0, host.length - suffix.length);
  return !starPart.includes('.');
}

/** pg_strcasecmp: ASCII-only case folding. */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

export function isIpAddress(host: string): boolean {
  return inetAton(host) !== undefined || inet6Pton(host) !== undefined;
}

/**
 * Does the certificate name `host` by libpq's rules? (The check libpq runs for sslmode=verify-full, against the
 * `host` parameter — never hostaddr.)
 */
export function verifyHostName(cert: CertificateInput, host: string): HostNameResult {
  if (host === '')
    return { ok: false, message: 'host name must be specified for a verified SSL connection', names: [] };
  const { sans, commonName } = certificateNames(cert);
  const hostType = isIpAddress(host) ? 'ip' : 'dns';
  const names: string[] = [];
  let examined = 0;
  let checkCn = true;
  const matchName = (raw: Buffer): { rc: 0 | 1 | -1; name?: string; message?: string } => {
    if (raw.includes(0)) return { rc: -1, message: "SSL certificate's name contains embedded null" };
    const name = raw.toString('latin1');
    const display = raw.toString('utf8');
    if (asciiLower(name) === asciiLower(host) || wildcardMatches(asciiLower(name), asciiLower(host))) {
      return { rc: 1, name: display };
    }
    return { rc: 0, name: display };
  };
  for (const san of sans) {
    if (san.type === hostType) checkCn = false;
    examined++;
    let r: { rc: 0 | 1 | -1; name?: string; message?: string };
    if (san.type === 'dns') r = matchName(san.value);
    else if (san.value.length === 4 || san.value.length === 16) {
      const want = san.value.length === 4 ? inetAton(host) : inet6Pton(host);
      r = { rc: want?.equals(san.value) ? 1 : 0, name: formatIp(san.value) };
    } else {
      r = { rc: -1, message: `certificate contains IP address with invalid length ${san.value.length}` };
    }
    if (r.name !== undefined) names.push(r.name);
    if (r.rc === 1) return { ok: true, matched: r.name!, names };
    if (r.rc === -1) return { ok: false, message: r.message!, names };
  }
  if (checkCn && commonName !== undefined) {
    examined++;
    const r = matchName(commonName);
    if (r.name !== undefined) names.push(r.name);
    if (r.rc === 1) return { ok: true, matched: r.name!, names };
    if (r.rc === -1) return { ok: false, message: r.message!, names };
  }
  if (examined === 0 || names.length === 0) {
    return { ok: false, message: "could not get server's host name from server certificate", names };
  }
  const first = names[0]!;
  const others = examined - 1;
  const message =
    others === 0
      ? `server certificate for "${first}" does not match host name "${host}"`
      : `server certificate for "${first}" (and ${others} other name${others === 1 ? '' : 's'}) does not match host name "${host}"`;
  return { ok: false, message, names };
}

const OID_KEY_USAGE = Buffer.from([0x55, 0x1d, 0x0f]); // 2.5.29.15

/**
 * OpenSSL's ssl_server purpose test on keyUsage (check_purpose_ssl_server → ku_reject(KU_TLS)): a certificate with a
 * keyUsage extension must allow digitalSignature, keyEncipherment or keyAgreement. No extension → allowed.
 */
export function keyUsageAllowsTls(cert: CertificateInput): boolean {
  const der = toDer(cert);
  const top = readTlv(der, 0, der.length);
  const tbs = children(der, top)[0];
  if (!tbs) return true;
  const extsWrapper = children(der, tbs).find((f) => f.tag === 0xa3);
  const exts = extsWrapper ? children(der, extsWrapper)[0] : undefined;
  for (const ext of exts ? children(der, exts) : []) {
    const parts = children(der, ext);
    const oid = parts[0];
    if (!oid || !Buffer.from(der.subarray(oid.body, oid.end)).equals(OID_KEY_USAGE)) continue;
    const octets = parts[parts.length - 1]!;
    const bits = readTlv(der, octets.body, octets.end);
    const first = bits.end - bits.body > 1 ? der[bits.body + 1]! : 0;
    // digitalSignature (0x80) · keyEncipherment (0x20) · keyAgreement (0x08)
    return (first & (0x80 | 0x20 | 0x08)) !== 0;
  }
  return true;
}
