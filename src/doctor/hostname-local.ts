/**
 * libpq's host-name check (pq_verify_peer_name_matches_certificate_name and friends, fe-secure-common.c and
 * fe-secure-openssl.c, PostgreSQL 14+): SANs of the host's type (dNSName for a name, iPAddress for an IP literal)
 * replace the CN; the CN is looked at only when the certificate has no SAN of that type; dNSName entries are also
 * compared as text for an IP host; one leading "*." wildcard matches exactly one label; comparison ignores case.
 *
 * LOCAL: src/pki/hostname.ts (client engineer) owns libpq's host-name rules. Replace this file with it once it lands.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { commonNameOf } from './chain.js';

export interface HostnameCheck {
  readonly match: boolean;
  /** Names examined, in libpq's order (SANs, then the CN when it counted). */
  readonly names: readonly string[];
  /** The name that matched. */
  readonly matched?: string | undefined;
  /** libpq's own message when it fails. */
  readonly message?: string | undefined;
}

function wildcardMatch(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase();
  const h = host.toLowerCase();
  if (p === h) return true;
  if (p.length > 2 && p.startsWith('*.')) {
    const suffix = p.slice(1); // ".example.com"
    if (h.length <= suffix.length || !h.endsWith(suffix)) return false;
    const label = h.slice(0, h.length - suffix.length);
    return !label.includes('.');
  }
  return false;
}

/** Normalise an IP for comparison (IPv6 to its full hex form). */
function ipKey(ip: string): string {
  if (isIP(ip) === 4) return ip;
  const [head, tail] = ip.toLowerCase().split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((x) => x.padStart(4, '0')).join(':');
}

export function checkHostname(certDer: Buffer, host: string): HostnameCheck {
  const cert = new X509Certificate(certDer);
  const hostIsIp = isIP(host) !== 0;
  const sans = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .map((s) => s.trim())
    .filter(Boolean);
  const names: string[] = [];
  let haveHostType = false;
  for (const san of sans) {
    if (san.startsWith('DNS:')) {
      const n = san.slice(4);
      names.push(n);
      if (!hostIsIp) haveHostType = true;
      if (wildcardMatch(n, host)) return { match: true, names, matched: n };
    } else if (san.startsWith('IP Address:')) {
      const ip = san.slice(11);
      names.push(ip);
      if (hostIsIp) {
        haveHostType = true;
        if (isIP(ip) !== 0 && ipKey(ip) === ipKey(host)) return { match: true, names, matched: ip };
      }
    }
  }
  if (!haveHostType) {
    const cn = commonNameOf(cert.subject);
    if (cn !== undefined) {
      names.push(cn);
      if (wildcardMatch(cn, host)) return { match: true, names, matched: cn };
    }
  }
  if (names.length === 0) {
    return { match: false, names, message: "could not get server's host name from server certificate" };
  }
  const others = names.length - 1;
  const first = names[0]!;
  const message =
    others === 0
      ? `server certificate for "${first}" does not match host name "${host}"`
      : `server certificate for "${first}" (and ${others} other name${others === 1 ? '' : 's'}) does not match host name "${host}"`;
  return { match: false, names, message };
}
