/**
 * Policies `pgtls scan --policy` checks a server against. A policy says which TLS versions may be accepted and which
 * suites may be accepted at each; the result lists every accepted version or suite outside it ("offending").
 */
import { PgtlsError } from '../errors.js';
import { type CipherSuite, TLS_VERSIONS, type TlsVersion, findSuite, isAead } from './cipher-suites.js';
import type { ScanResult } from './scan.js';

export const ERR_POLICY = 'PGTLS_ERR_DOCTOR_POLICY';

export interface Policy {
  readonly name: string;
  readonly description: string;
  readonly versions: readonly TlsVersion[];
  /** Whether a suite accepted at `version` is allowed (only asked for allowed versions). */
  readonly allows: (suite: CipherSuite | undefined, version: TlsVersion) => boolean;
  /** Suites (OpenSSL names) the policy expects to be accepted; missing ones are reported, not failed. */
  readonly expected?: readonly string[];
}

const forwardSecret = (s: CipherSuite) => s.minVersion === 'TLSv1.3' || s.kx === 'ECDH' || s.kx === 'DH';
const authenticated = (s: CipherSuite) => s.au !== 'None';

/** The four suites Azure Database for PostgreSQL single server accepts (seed: "Cipher suite supported"). */
export const AZURE_SINGLE_SERVER_SUITES = [
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-SHA384',
  'ECDHE-RSA-AES128-SHA256',
] as const;

export const POLICIES: Readonly<Record<string, Policy>> = {
  modern: {
    name: 'modern',
    description: 'TLS 1.3 only',
    versions: ['TLSv1.3'],
    allows: () => true,
  },
  intermediate: {
    name: 'intermediate',
    description:
      'TLS 1.2 and 1.3; TLS 1.2 suites AEAD with forward secrecy (ECDHE/DHE with GCM, ChaCha20-Poly1305 or CCM)',
    versions: ['TLSv1.2', 'TLSv1.3'],
    allows: (s, v) => v === 'TLSv1.3' || (s !== undefined && isAead(s) && forwardSecret(s) && authenticated(s)),
  },
  'azure-flexible': {
    name: 'azure-flexible',
    description: "Azure flexible server: TLS 1.2 and 1.3; TLS 1.2 suites in OpenSSL's HIGH:!aNULL",
    versions: ['TLSv1.2', 'TLSv1.3'],
    allows: (s, v) => v === 'TLSv1.3' || (s?.high === true && authenticated(s)),
  },
  'azure-single-server': {
    name: 'azure-single-server',
    description: `Azure single server: TLS 1.2 (and later) with only ${AZURE_SINGLE_SERVER_SUITES.join(', ')}`,
    versions: ['TLSv1.2', 'TLSv1.3'],
    allows: (s, v) =>
      v === 'TLSv1.3' || (s !== undefined && (AZURE_SINGLE_SERVER_SUITES as readonly string[]).includes(s.openssl)),
    expected: AZURE_SINGLE_SERVER_SUITES,
  },
};

const VERSION_ALIASES: Readonly<Record<string, TlsVersion>> = {
  tlsv1: 'TLSv1',
  'tlsv1.0': 'TLSv1',
  '1.0': 'TLSv1',
  '1': 'TLSv1',
  'tlsv1.1': 'TLSv1.1',
  '1.1': 'TLSv1.1',
  'tlsv1.2': 'TLSv1.2',
  '1.2': 'TLSv1.2',
  'tlsv1.3': 'TLSv1.3',
  '1.3': 'TLSv1.3',
};

/** TLSv1.2, 1.2, tlsv1.2 (PostgreSQL's ssl_min_protocol_version spelling and short forms). */
export function parseTlsVersion(v: string): TlsVersion {
  const r =
    VERSION_ALIASES[
      v
        .trim()
        .toLowerCase()
        .replace(/^tls(?!v)/, 'tlsv')
    ];
  if (!r) {
    throw new PgtlsError(ERR_POLICY, `unknown TLS version "${v}"`, {
      details: { hint: 'Use TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3.' },
    });
  }
  return r;
}

/**
 * A policy from --min/--max/--ciphers. `ciphers` is a list (":" or "," separated) of suite names, OpenSSL or IANA,
 * and the classes AEAD, HIGH and FS (forward secrecy); a suite is allowed when it is named or in a named class.
 */
export function customPolicy(opts: {
  min?: string | undefined;
  max?: string | undefined;
  ciphers?: string | undefined;
}): Policy {
  const min = opts.min ? TLS_VERSIONS.indexOf(parseTlsVersion(opts.min)) : 0;
  const max = opts.max ? TLS_VERSIONS.indexOf(parseTlsVersion(opts.max)) : TLS_VERSIONS.length - 1;
  const versions = TLS_VERSIONS.slice(min, max + 1);
  const items = (opts.ciphers ?? '')
    .split(/[:,\s]+/)
    .map((x) => x.trim())
    .filter(Boolean);
  const classes = new Set(
    items.filter((x) => ['AEAD', 'HIGH', 'FS'].includes(x.toUpperCase())).map((x) => x.toUpperCase()),
  );
  const names = new Set<string>();
  for (const item of items) {
    if (classes.has(item.toUpperCase())) continue;
    const s = findSuite(item);
    if (!s) {
      throw new PgtlsError(ERR_POLICY, `unknown cipher suite "${item}"`, {
        details: {
          hint: 'Name suites as OpenSSL (ECDHE-RSA-AES128-GCM-SHA256) or IANA (TLS_ECDHE_RSA_WITH_…) does, or use AEAD, HIGH, FS.',
        },
      });
    }
    names.add(s.openssl);
  }
  const restricted = items.length > 0;
  const parts = [`${versions[0]}–${versions[versions.length - 1]}`];
  if (restricted) parts.push(`suites: ${items.join(':')}`);
  return {
    name: 'custom',
    description: parts.join('; '),
    versions,
    allows: (s) => {
      if (!restricted) return true;
      if (s === undefined) return false;
      if (names.has(s.openssl)) return true;
      if (classes.has('AEAD') && isAead(s)) return true;
      if (classes.has('HIGH') && s.high && authenticated(s)) return true;
      if (classes.has('FS') && forwardSecret(s) && authenticated(s)) return true;
      return false;
    },
  };
}

export function policyByName(name: string): Policy {
  const p = POLICIES[name];
  if (!p) {
    throw new PgtlsError(ERR_POLICY, `unknown policy "${name}"`, {
      details: { hint: `Policies: ${Object.keys(POLICIES).join(', ')}; or give --min/--max/--ciphers.` },
    });
  }
  return p;
}

export interface PolicyResult {
  readonly policy: string;
  readonly description: string;
  readonly pass: boolean;
  /** Versions the server accepts that the policy forbids. */
  readonly offendingVersions: readonly TlsVersion[];
  /** Suites the server accepts that the policy forbids (at an allowed version), as "TLSv1.2 AES128-SHA". */
  readonly offendingSuites: readonly { readonly version: TlsVersion; readonly name: string; readonly iana: string }[];
  /** Expected suites the server does not accept (informational). */
  readonly missingSuites: readonly string[];
}

export function checkPolicy(result: ScanResult, policy: Policy): PolicyResult {
  const offendingVersions = TLS_VERSIONS.filter((v) => result.versions[v] && !policy.versions.includes(v));
  const offendingSuites = result.suites
    .filter((s) => policy.versions.includes(s.version) && !policy.allows(findSuite(s.name), s.version))
    .map((s) => ({ version: s.version, name: s.name, iana: s.iana }));
  const accepted = new Set(result.suites.map((s) => s.name));
  const missingSuites = (policy.expected ?? []).filter((n) => !accepted.has(n));
  return {
    policy: policy.name,
    description: policy.description,
    pass: result.sslRequest === 'S' && offendingVersions.length === 0 && offendingSuites.length === 0,
    offendingVersions,
    offendingSuites,
    missingSuites,
  };
}
