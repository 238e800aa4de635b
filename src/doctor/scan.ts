/**
 * `pgtls scan`: which TLS versions, cipher suites and key-exchange groups a PostgreSQL server accepts.
 *
 * Method (the one sslscan uses, so the two agree): for each version, offer every suite we know and note the one the
 * server picks; remove it and offer the rest again, until the server refuses. The first pick is the server's
 * preferred suite. Every handshake is one connection: TCP → SSLRequest → 'S' → ClientHello. The work is bounded: at
 * most (suites + 1) handshakes per version plus one per (version, group).
 */
import type { SecureVersion } from 'node:tls';
import {
  CIPHER_SUITES,
  type CipherSuite,
  TLS_VERSIONS,
  type TlsVersion,
  findSuite,
  suitesFor,
} from './cipher-suites.js';
import { LEGACY_SUITES, legacyBits, rawHello } from './legacy-suites.js';
import { type Endpoint, type SslAnswer, closeTls, negotiate } from './wire.js';

export interface AcceptedSuite {
  readonly version: TlsVersion;
  /** OpenSSL name, as psql and sslscan print it. */
  readonly name: string;
  readonly iana: string;
  readonly id: string;
  readonly bits: number;
  /** The server's first choice at this version. */
  readonly preferred: boolean;
  /** Key exchange used, e.g. "X25519 253 bits", "DH 2048 bits"; absent for static RSA. */
  readonly keyExchange?: string | undefined;
}

export interface AcceptedGroup {
  readonly version: TlsVersion;
  /** OpenSSL group name: X25519, prime256v1, secp384r1, ffdhe2048, … */
  readonly name: string;
  readonly bits: number;
}

export interface ScanResult {
  readonly host: string;
  readonly port: number;
  /** The answer to SSLRequest; anything but 'S' ends the scan with nothing accepted. */
  readonly sslRequest: SslAnswer['answer'] | 'tcp-failed';
  readonly tcpError?: string | undefined;
  readonly versions: Readonly<Record<TlsVersion, boolean>>;
  readonly suites: readonly AcceptedSuite[];
  readonly groups: readonly AcceptedGroup[];
  readonly handshakes: number;
}

export interface ScanProgress {
  readonly done: number;
  /** An estimate: it grows as accepted suites are found. */
  readonly total: number;
  readonly step: string;
}

export interface ScanOptions {
  readonly servername?: string | undefined;
  readonly timeoutMs?: number;
  readonly onProgress?: (p: ScanProgress) => void;
  /** Versions to test (default: TLS 1.0 to 1.3). */
  readonly versions?: readonly TlsVersion[];
}

/** Groups tried per version, in OpenSSL's spelling (Node passes them to SSL_CTX_set1_groups_list). */
export const SCAN_GROUPS = [
  'X25519',
  'X448',
  'prime256v1',
  'secp384r1',
  'secp521r1',
  'ffdhe2048',
  'ffdhe3072',
  'ffdhe4096',
  'ffdhe6144',
  'ffdhe8192',
] as const;

const GROUP_BITS: Readonly<Record<string, number>> = {
  X25519: 128,
  X448: 224,
  prime256v1: 128,
  secp384r1: 192,
  secp521r1: 260,
  ffdhe2048: 112,
  ffdhe3072: 128,
  ffdhe4096: 150,
  ffdhe6144: 175,
  ffdhe8192: 192,
};

/** OpenSSL cipher string for a set of suites at a version; TLS ≤ 1.0/1.1 and SHA-1 need security level 0. */
function cipherString(suites: readonly CipherSuite[], version: TlsVersion): string {
  const names = suites.map((s) => s.openssl).join(':');
  return version === 'TLSv1.3' ? names : `${names}:@SECLEVEL=0`;
}

function keyExchangeText(g: { type: string; name?: string; size: number } | undefined): string | undefined {
  if (!g) return undefined;
  return g.name ? `${g.name} ${g.size} bits` : `${g.type} ${g.size} bits`;
}

export async function scan(target: Endpoint, opts: ScanOptions = {}): Promise<ScanResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const versions = opts.versions ?? TLS_VERSIONS;
  let handshakes = 0;
  let total = versions.length + versions.length * SCAN_GROUPS.length;
  let done = 0;
  const tick = (step: string) => {
    done++;
    opts.onProgress?.({ done, total: Math.max(total, done), step });
  };
  const base = { servername: opts.servername ?? target.host };
  const attempt = async (a: { v: TlsVersion; ciphers: string; groups?: string }) => {
    handshakes++;
    const r = await negotiate(
      target,
      {
        ...base,
        minVersion: a.v as SecureVersion,
        maxVersion: a.v as SecureVersion,
        ciphers: a.ciphers,
        ...(a.groups ? { groups: a.groups } : {}),
      },
      timeoutMs,
    );
    if (r.stage === 'done') closeTls(r.socket);
    return r;
  };

  const accepted: Record<TlsVersion, boolean> = { TLSv1: false, 'TLSv1.1': false, 'TLSv1.2': false, 'TLSv1.3': false };
  const suites: AcceptedSuite[] = [];
  const groups: AcceptedGroup[] = [];
  const empty = (sslRequest: ScanResult['sslRequest'], tcpError?: string): ScanResult => ({
    host: target.host,
    port: target.port,
    sslRequest,
    ...(tcpError ? { tcpError } : {}),
    versions: accepted,
    suites,
    groups,
    handshakes,
  });

  for (const v of versions) {
    const r = await attempt({ v, ciphers: cipherString(suitesFor(v), v) });
    tick(`${v}`);
    if (r.stage === 'tcp') return empty('tcp-failed', `${r.code}: ${r.message}`);
    if (r.stage === 'sslrequest') return empty(r.answer.answer);
    accepted[v] = r.stage === 'done';
    if (!accepted[v]) total -= SCAN_GROUPS.length; // no groups to try at a refused version
  }

  // Newest version first, as sslscan prints them.
  for (const v of [...versions].reverse()) {
    if (!accepted[v]) continue;
    let remaining = suitesFor(v);
    total += remaining.length > 0 ? 1 : 0;
    // Bounded: each round removes one suite, so at most remaining.length + 1 handshakes.
    for (let round = 0; remaining.length > 0 && round <= CIPHER_SUITES.length; round++) {
      const r = await attempt({ v, ciphers: cipherString(remaining, v) });
      tick(`${v} suites`);
      if (r.stage !== 'done') break;
      const picked = findSuite(r.cipher.name) ?? findSuite(r.cipher.standardName);
      const name = picked?.openssl ?? r.cipher.name;
      suites.push({
        version: v,
        name,
        iana: picked?.iana ?? r.cipher.standardName,
        id: picked?.id ?? '',
        bits: picked?.bits ?? 0,
        preferred: round === 0,
        keyExchange: keyExchangeText(r.group),
      });
      const before = remaining.length;
      remaining = remaining.filter((s) => s.openssl !== name);
      if (remaining.length === before) break; // the server chose a suite we did not offer: stop rather than loop
      total++;
    }
  }

  // Suites the local OpenSSL cannot negotiate, asked for with a hand-built ClientHello (bounded as above).
  for (const v of ['TLSv1.2', 'TLSv1.1', 'TLSv1'] as const) {
    if (!versions.includes(v) || !accepted[v]) continue;
    let remaining = LEGACY_SUITES.map(([id, name]) => ({ id: Number.parseInt(id, 16), hex: id, name }));
    total++;
    for (let round = 0; remaining.length > 0 && round <= LEGACY_SUITES.length; round++) {
      handshakes++;
      const r = await rawHello(
        target,
        v,
        remaining.map((x) => x.id),
        base.servername,
        timeoutMs,
      );
      tick(`${v} legacy suites`);
      if (!r.accepted) break;
      const picked = remaining.find((x) => x.id === r.suite);
      if (!picked) break;
      suites.push({
        version: v,
        name: picked.name,
        iana: picked.name,
        id: picked.hex,
        bits: legacyBits(picked.name),
        preferred: !suites.some((s) => s.version === v),
      });
      remaining = remaining.filter((x) => x !== picked);
      total++;
    }
  }

  for (const v of ['TLSv1.3', 'TLSv1.2', 'TLSv1.1', 'TLSv1'] as const) {
    if (!versions.includes(v)) continue;
    if (!accepted[v]) {
      continue;
    }
    const offered = suites.filter((s) => s.version === v);
    for (const g of SCAN_GROUPS) {
      // Before TLS 1.3, finite-field groups are not negotiated through supported_groups (the server picks DH
      // parameters itself), so only elliptic curves are tried, with the ECDHE suites the server accepted.
      const ecdhe = offered.filter((s) => findSuite(s.name)?.kx === 'ECDH');
      if (v !== 'TLSv1.3' && (g.startsWith('ffdhe') || ecdhe.length === 0)) {
        tick(`${v} groups`);
        continue;
      }
      const ciphers =
        v === 'TLSv1.3'
          ? cipherString(suitesFor(v), v)
          : cipherString(
              ecdhe.map((s) => findSuite(s.name)!),
              v,
            );
      const r = await attempt({ v, ciphers, groups: g });
      tick(`${v} groups`);
      if (r.stage === 'done') groups.push({ version: v, name: g, bits: GROUP_BITS[g] ?? 0 });
    }
  }
  // Newest version first; within a version, the order found (server preference, then legacy suites).
  suites.sort((a, b) => TLS_VERSIONS.indexOf(b.version) - TLS_VERSIONS.indexOf(a.version));
  return empty('S');
}
