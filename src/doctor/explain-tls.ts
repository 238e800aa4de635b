/**
 * Explanations that need to ask the server again: which TLS versions it accepts (version windows) and which suites
 * (no shared cipher, including suites OpenSSL 3 no longer offers).
 */
import type { SecureVersion } from 'node:tls';
import type { ConnectionPlan } from '../client/resolve.js';
import { TLS_VERSIONS, type TlsVersion, suitesFor } from './cipher-suites.js';
import { type Diagnosis, d } from './diagnosis.js';
import type { Observed } from './doctor.js';
import { LEGACY_SUITES, rawHello } from './legacy-suites.js';
import { closeTls, negotiate } from './wire.js';

/**
 * Does the server complete a handshake at exactly version `v`, offered every suite OpenSSL has (security level 0)?
 * Returns the suite it chose, or undefined.
 */
async function acceptsVersion(o: Observed, v: TlsVersion, timeoutMs: number): Promise<string | undefined> {
  const r = await negotiate(
    o.endpoint,
    {
      minVersion: v as SecureVersion,
      maxVersion: v as SecureVersion,
      ciphers:
        v === 'TLSv1.3'
          ? suitesFor(v)
              .map((s) => s.openssl)
              .join(':')
          : 'ALL:COMPLEMENTOFALL:@SECLEVEL=0',
      servername: o.host,
    },
    timeoutMs,
  );
  if (r.stage !== 'done') return undefined;
  closeTls(r.socket);
  return r.cipher.name;
}

async function serverVersions(o: Observed, timeoutMs: number): Promise<TlsVersion[]> {
  const out: TlsVersion[] = [];
  for (const v of TLS_VERSIONS) {
    if (await acceptsVersion(o, v, timeoutMs)) out.push(v);
  }
  return out;
}

function range(min: string, max: string): string {
  return min === max ? `${min} only` : `${min} to ${max}`;
}

export async function versionWindow(
  plan: ConnectionPlan,
  o: Observed,
  timeoutMs: number,
): Promise<Diagnosis | undefined> {
  const server = await serverVersions(o, timeoutMs);
  const cmin = (plan.ssl.minVersion || 'TLSv1.2') as TlsVersion;
  const cmax = (plan.ssl.maxVersion || 'TLSv1.3') as TlsVersion;
  const lo = TLS_VERSIONS.indexOf(cmin);
  const hi = TLS_VERSIONS.indexOf(cmax);
  const overlap = server.filter((v) => TLS_VERSIONS.indexOf(v) >= lo && TLS_VERSIONS.indexOf(v) <= hi);
  if (server.length === 0 || overlap.length > 0) return undefined;
  const smin = server[0]!;
  const smax = server[server.length - 1]!;
  const serverAbove = TLS_VERSIONS.indexOf(smin) > hi;
  return d(
    'tls-version-mismatch',
    'tls',
    `the TLS version windows do not overlap: this client allows ${range(cmin, cmax)} (ssl_min_protocol_version/ssl_max_protocol_version), the server accepts ${range(smin, smax)}`,
    serverAbove
      ? `raise the client's ssl_max_protocol_version to ${smax} (or remove it); the server's ssl_min_protocol_version is ${smin}`
      : `lower the client's ssl_min_protocol_version to ${smin} only if you must, or better raise the server's ssl_max_protocol_version / ssl_min_protocol_version to TLSv1.2 or later`,
    [`server accepts: ${server.join(', ')}`, `client allows: ${range(cmin, cmax)}`],
  );
}

export async function noSharedCipher(
  plan: ConnectionPlan,
  o: Observed,
  timeoutMs: number,
): Promise<Diagnosis | undefined> {
  const cmin = (plan.ssl.minVersion || 'TLSv1.2') as TlsVersion;
  const cmax = (plan.ssl.maxVersion || 'TLSv1.3') as TlsVersion;
  const versions = TLS_VERSIONS.slice(TLS_VERSIONS.indexOf(cmin), TLS_VERSIONS.indexOf(cmax) + 1);
  // Everything OpenSSL can do, at security level 0: if even this fails, the server has no usable suite at all.
  for (const v of [...versions].reverse()) {
    const cipher = await acceptsVersion(o, v, timeoutMs);
    if (cipher) {
      return d(
        'no-shared-cipher',
        'tls',
        `no cipher suite in common: the server accepts ${cipher} at ${v}, which libpq's OpenSSL does not offer by default (weak or legacy suite)`,
        "change the server's ssl_ciphers to modern suites (e.g. HIGH:!aNULL, or the ECDHE-…-GCM suites for its key type); libpq has no setting to offer weaker suites",
        [`accepted only with legacy settings: ${v} ${cipher}`],
      );
    }
  }
  // Suites no OpenSSL 3 client offers at all (SEED, RC4, DES, …): the server may accept only those.
  for (const v of [...versions].reverse()) {
    if (v === 'TLSv1.3') continue;
    const r = await rawHello(
      o.endpoint,
      v,
      LEGACY_SUITES.map(([id]) => Number.parseInt(id, 16)),
      o.host,
      timeoutMs,
    );
    if (r.accepted) {
      const name =
        LEGACY_SUITES.find(([id]) => Number.parseInt(id, 16) === r.suite)?.[1] ?? `0x${r.suite.toString(16)}`;
      return d(
        'no-shared-cipher',
        'tls',
        `no cipher suite in common: the server accepts only obsolete suites such as ${name} at ${v}, which OpenSSL 3 (and so libpq) no longer offers`,
        "set the server's ssl_ciphers to modern suites (e.g. HIGH:!aNULL) and reload",
        [`server accepts: ${v} ${name}`],
      );
    }
  }
  return d(
    'no-shared-cipher',
    'tls',
    "no cipher suite in common: the server's ssl_ciphers leaves no suite that works with its certificate's key (e.g. ECDHE-RSA suites with an EC key) at the versions this client allows",
    "set the server's ssl_ciphers to suites matching its key type (ECDHE-ECDSA-… for EC keys, ECDHE-RSA-… for RSA keys) or back to the default HIGH:MEDIUM:+3DES:!aNULL, then reload",
  );
}
