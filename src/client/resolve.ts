/**
 * resolve(): from a connection string, URI or options object plus an environment to a frozen plan of what libpq
 * would do — every parameter's value and where it came from, the hosts to try in order, the encryption methods to
 * try for each, and the files TLS will read. Mirrors connectOptions1/conninfo_add_defaults/connectOptions2 of
 * src/interfaces/libpq/fe-connect.c (PostgreSQL 18), with libpq's messages.
 *
 * Files are not read here: libpq reads them per connection attempt, after the server has accepted SSL, and so does
 * connect() — a missing root certificate is reported only once the server said 'S', exactly as psql reports it.
 */
import { isIP } from 'node:net';
import { homedir as osHomedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { type ParsedParams, isUri, parseConnectionString } from './conninfo.js';
import { ClientErrorCode, optionError } from './errors.js';
import {
  KEYWORDS,
  PARAMETERS,
  SSL_MODES,
  type SslCertMode,
  type SslMode,
  type SslNegotiation,
  TLS_VERSIONS,
  type TlsVersion,
  type ValueSource,
} from './options.js';
import { passwordFromFile, readServiceFile } from './service-files.js';

/** Where libpq looks for the Unix socket when no host is given (Debian/Ubuntu builds; upstream uses /tmp). */
export const DEFAULT_SOCKET_DIR = process.platform === 'linux' ? '/var/run/postgresql' : '/tmp';
export const DEFAULT_PORT = '5432';

export interface HostTarget {
  /** `name` (DNS lookup), `address` (hostaddr, no lookup) or `socket` (Unix-domain socket directory). */
  readonly kind: 'name' | 'address' | 'socket';
  /** The host as given ('' when only hostaddr was): what TLS verifies and SNI sends, never hostaddr. */
  readonly host: string;
  readonly hostaddr: string;
  /** The port as given ('' → 5432); checked when this host is tried, as libpq does. */
  readonly port: string;
  /** Password for this host: the password parameter, or the matching ~/.pgpass line. */
  readonly password?: string;
}

export interface SslPlan {
  readonly mode: SslMode;
  /** True when sslmode came from the caller (conninfo, options, PGSSLMODE/PGREQUIRESSL), not the default. */
  readonly modeExplicit: boolean;
  readonly negotiation: SslNegotiation;
  /** `system`, a path, or the default ~/.postgresql/root.crt (see rootCertDefault). '' when no home directory. */
  readonly rootCert: string;
  readonly rootCertDefault: boolean;
  /** sslcrl (or the default ~/.postgresql/root.crl when neither sslcrl nor sslcrldir is set). */
  readonly crl: string;
  readonly crlDir: string;
  readonly cert: string;
  readonly key: string;
  readonly certMode: SslCertMode;
  readonly sni: boolean;
  readonly minVersion: TlsVersion | '';
  readonly maxVersion: TlsVersion | '';
  readonly keyLogFile: string;
}

export interface ConnectionPlan {
  /** Every parameter libpq knows with its final value; absent when it has none. Secrets included: keep it private. */
  readonly params: Readonly<Record<string, string>>;
  readonly sources: Readonly<Record<string, ValueSource>>;
  readonly hosts: readonly HostTarget[];
  readonly user: string;
  readonly database: string;
  readonly ssl: SslPlan;
  /** Encryption methods tried for each address, in order (libpq's init_allowed_encryption_methods). */
  readonly methods: readonly ('plain' | 'ssl' | 'direct')[];
  readonly connectTimeoutSeconds: number;
  /** An error libpq reports only when the first connection attempt starts (an invalid connect_timeout). */
  readonly deferredError?: string;
  readonly targetSessionAttrs: string;
  /** Human-readable steps: what libpq would do, and why. */
  readonly steps: readonly string[];
  /** Things libpq would print to stderr as WARNING (pgtls never prints). */
  readonly warnings: readonly string[];
  /** SSL_CERT_FILE / SSL_CERT_DIR as seen in the environment, for sslrootcert=system. */
  readonly systemStore: { readonly file?: string; readonly dir?: string };
}

export type Environment = Readonly<Record<string, string | undefined>>;

export interface ResolveOptions {
  /** Home directory for ~/.postgresql and ~/.pgpass; default: HOME from `env`, then the OS's. */
  readonly homedir?: string;
  /** OS user name used when no user is given; default: the current user. */
  readonly osUser?: string;
}

export type ConnectionInput = string | Readonly<Record<string, string | number | boolean | undefined | null>>;

function homeDirectory(env: Environment, opts: ResolveOptions): string {
  if (opts.homedir !== undefined) return opts.homedir;
  if (process.platform === 'win32') {
    const appdata = env.APPDATA;
    return appdata ? join(appdata, 'postgresql') : '';
  }
  // libpq's pqGetHomeDirectory(): $HOME first, then the password database.
  const home = env.HOME;
  if (home) return home;
  try {
    return osHomedir();
  } catch {
    return '';
  }
}

/** ~/.postgresql/<name> (or %APPDATA%\postgresql\<name> on Windows, where the directory itself is the "home"). */
function defaultFile(home: string, name: string): string {
  if (!home) return '';
  return process.platform === 'win32' ? join(home, name) : join(home, '.postgresql', name);
}

function osUserName(opts: ResolveOptions): string {
  if (opts.osUser !== undefined) return opts.osUser;
  try {
    return userInfo().username;
  } catch {
    return '';
  }
}

/** Parse a libpq-style integer (pqParseIntParam): optional whitespace around a decimal integer. */
export function parseIntParam(value: string, name: string): number {
  const m = /^\s*([+-]?\d+)\s*$/.exec(value);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!m || !Number.isSafeInteger(n) || n > 2147483647 || n < -2147483648) {
    throw optionError(ClientErrorCode.Option, `invalid integer value "${value}" for connection option "${name}"`);
  }
  return n;
}

function invalidValue(keyword: string, value: string): never {
  throw optionError(ClientErrorCode.Option, `invalid ${keyword} value: "${value}"`);
}

/** ssl_min/max_protocol_version: case-insensitive TLSv1…TLSv1.3, or empty for "no bound". */
function tlsVersion(keyword: string, value: string | undefined): TlsVersion | '' {
  if (value === undefined || value === '') return '';
  const v = TLS_VERSIONS.find((t) => t.toLowerCase() === value.toLowerCase());
  if (!v) throw optionError(ClientErrorCode.Option, `invalid "${keyword}" value: "${value}"`);
  return v;
}

function fromInput(input: ConnectionInput): { params: ParsedParams; source: ValueSource } {
  if (typeof input === 'string') {
    return { params: parseConnectionString(input), source: isUri(input) ? 'uri' : 'conninfo' };
  }
  // PQconnectdbParams(): keywords must exist; null/undefined/'' values are ignored; dbname may be a full string.
  const params: ParsedParams = new Map();
  for (const [key, raw] of Object.entries(input)) {
    if (raw === undefined || raw === null || raw === '') continue;
    const value = typeof raw === 'boolean' ? (raw ? '1' : '0') : String(raw);
    if (key === 'dbname' && (isUri(value) || value.includes('='))) {
      for (const [k, v] of parseConnectionString(value)) params.set(k, v);
      continue;
    }
    if (key === 'requiressl') {
      params.set('sslmode', value.startsWith('1') ? 'require' : 'prefer');
      continue;
    }
    if (!KEYWORDS.has(key)) throw optionError(ClientErrorCode.Conninfo, `invalid connection option "${key}"`);
    params.set(key, value);
  }
  return { params, source: 'options' };
}

/**
 * Resolve a connection string, URI or options object against an environment (default: process.env) into a frozen
 * plan. Throws a ClientError with libpq's message for anything libpq refuses before connecting.
 */
export function resolve(
  input: ConnectionInput,
  env: Environment = process.env,
  opts: ResolveOptions = {},
): ConnectionPlan {
  const { params, source } = fromInput(input);
  const values: Record<string, string> = {};
  const sources: Record<string, ValueSource> = {};
  const steps: string[] = [];
  const warnings: string[] = [];
  for (const [k, v] of params) {
    values[k] = v;
    sources[k] = source;
  }
  const home = homeDirectory(env, opts);

  // Service file (parseServiceInfo): values fill in what the string did not set.
  const service = values.service ?? env.PGSERVICE;
  if (service !== undefined && service !== '') {
    const files = [
      env.PGSERVICEFILE ?? (home ? join(home, '.pg_service.conf') : ''),
      join(env.PGSYSCONFDIR ?? '/etc/postgresql-common', 'pg_service.conf'),
    ].filter((f) => f !== '');
    let found: Map<string, string> | undefined;
    for (const f of files) {
      const r = readServiceFile(f, service);
      if (r instanceof Map) {
        found = r;
        break;
      }
    }
    if (!found) throw optionError(ClientErrorCode.Conninfo, `definition of service "${service}" not found`);
    for (const [k, v] of found) {
      if (values[k] === undefined) {
        values[k] = v;
        sources[k] = 'service';
      }
    }
    steps.push(`service "${service}" supplied ${[...found.keys()].join(', ') || 'nothing'}`);
  }

  // conninfo_add_defaults(): environment variable, then PGREQUIRESSL for sslmode, then the compiled default.
  let sslmodeDefaulted = false;
  for (const def of PARAMETERS) {
    if (values[def.keyword] !== undefined) continue;
    const fromEnv = def.envvar === undefined ? undefined : env[def.envvar];
    if (fromEnv !== undefined) {
      values[def.keyword] = fromEnv;
      sources[def.keyword] = 'env';
      continue;
    }
    if (def.keyword === 'sslmode') {
      const legacy = env.PGREQUIRESSL;
      if (legacy?.startsWith('1')) {
        values.sslmode = 'require';
        sources.sslmode = 'legacy';
        continue;
      }
      sslmodeDefaulted = true;
    }
    if (def.compiled !== undefined) {
      values[def.keyword] = def.compiled;
      sources[def.keyword] = 'default';
      continue;
    }
    if (def.keyword === 'user') {
      const u = osUserName(opts);
      if (u) {
        values.user = u;
        sources.user = 'default';
      }
    }
  }
  // With sslrootcert=system and no sslmode given anywhere, the default becomes verify-full.
  if (sslmodeDefaulted && values.sslrootcert === 'system') {
    values.sslmode = 'verify-full';
    steps.push('sslrootcert=system and no sslmode given: sslmode defaults to verify-full');
  }

  // connectOptions2(): hosts, ports, then value checks in libpq's order.
  const split = (v: string | undefined) => (v === undefined || v === '' ? [] : v.split(','));
  const hostList = split(values.host);
  const addrList = split(values.hostaddr);
  let count: number;
  if (addrList.length > 0) {
    count = addrList.length;
    if (hostList.length > 0 && hostList.length !== addrList.length) {
      throw optionError(
        ClientErrorCode.Option,
        `could not match ${hostList.length} host names to ${addrList.length} hostaddr values`,
      );
    }
  } else count = Math.max(hostList.length, 1);
  const portList = split(values.port);
  if (portList.length > 1 && portList.length !== count) {
    throw optionError(ClientErrorCode.Option, `could not match ${portList.length} port numbers to ${count} hosts`);
  }
  const user = values.user ?? '';
  const database = values.dbname === undefined || values.dbname === '' ? user : values.dbname;
  const passfile =
    values.passfile ?? (home ? join(home, process.platform === 'win32' ? 'pgpass.conf' : '.pgpass') : '');
  const hosts: HostTarget[] = [];
  for (let i = 0; i < count; i++) {
    const host = hostList[i] ?? '';
    const hostaddr = addrList[i] ?? '';
    const port = portList.length === 1 ? portList[0]! : (portList[i] ?? '');
    const kind: HostTarget['kind'] =
      hostaddr !== '' ? 'address' : host !== '' && !host.startsWith('/') && !host.startsWith('@') ? 'name' : 'socket';
    let password = values.password;
    if ((password === undefined || password === '') && passfile) {
      const pw = passwordFromFile(
        DEFAULT_SOCKET_DIR,
        DEFAULT_PORT,
        passfile,
        host !== '' ? host : hostaddr,
        port,
        database,
        user,
        warnings,
      );
      if (pw !== undefined) password = pw;
    }
    hosts.push(
      Object.freeze({
        kind,
        // libpq stores the default socket directory as the host when none is given, even next to hostaddr: that
        // is the name verify-full then checks (and fails on), so keep it.
        host: host === '' ? DEFAULT_SOCKET_DIR : host,
        hostaddr,
        port,
        ...(password === undefined || password === '' ? {} : { password }),
      }),
    );
  }

  const cb = values.channel_binding ?? 'prefer';
  if (!['disable', 'prefer', 'require'].includes(cb)) invalidValue('channel_binding', cb);

  if (values.require_auth !== undefined && values.require_auth !== '') {
    const methods = ['password', 'md5', 'gss', 'sspi', 'scram-sha-256', 'oauth', 'none'];
    for (const m of values.require_auth.split(',')) {
      const name = m.startsWith('!') ? m.slice(1) : m;
      if (!methods.includes(name)) invalidValue('require_auth', name);
    }
  }

  const sslmode = values.sslmode ?? 'prefer';
  if (!SSL_MODES.includes(sslmode as SslMode)) invalidValue('sslmode', sslmode);
  const mode = sslmode as SslMode;
  const negotiation = values.sslnegotiation ?? 'postgres';
  if (negotiation !== 'postgres' && negotiation !== 'direct') invalidValue('sslnegotiation', negotiation);
  if (negotiation === 'direct' && (mode === 'disable' || mode === 'allow' || mode === 'prefer')) {
    throw optionError(
      ClientErrorCode.Option,
      `weak sslmode "${mode}" may not be used with sslnegotiation=direct (use "require", "verify-ca", or "verify-full")`,
    );
  }
  const certMode = values.sslcertmode ?? 'allow';
  if (certMode !== 'disable' && certMode !== 'allow' && certMode !== 'require') invalidValue('sslcertmode', certMode);
  const minVersion = tlsVersion('ssl_min_protocol_version', values.ssl_min_protocol_version);
  const maxVersion = tlsVersion('ssl_max_protocol_version', values.ssl_max_protocol_version);
  if (minVersion && maxVersion && TLS_VERSIONS.indexOf(minVersion) > TLS_VERSIONS.indexOf(maxVersion)) {
    throw optionError(ClientErrorCode.Option, 'invalid SSL protocol version range');
  }
  const gss = values.gssencmode ?? 'disable';
  if (!['disable', 'prefer', 'require'].includes(gss)) invalidValue('gssencmode', gss);
  if (gss === 'require') {
    throw optionError(
      ClientErrorCode.Option,
      'gssencmode value "require" invalid when GSSAPI support is not compiled in',
    );
  }
  if (values.sslrootcert === 'system' && mode !== 'verify-full') {
    throw optionError(
      ClientErrorCode.Option,
      `weak sslmode "${mode}" may not be used with sslrootcert=system (use "verify-full")`,
    );
  }
  const tsa = values.target_session_attrs ?? 'any';
  if (!['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'].includes(tsa)) {
    invalidValue('target_session_attrs', tsa);
  }
  const lbh = values.load_balance_hosts ?? 'disable';
  if (lbh !== 'disable' && lbh !== 'random') invalidValue('load_balance_hosts', lbh);
  let connectTimeoutSeconds = 0;
  let deferredError: string | undefined;
  if (values.connect_timeout !== undefined && values.connect_timeout !== '') {
    try {
      connectTimeoutSeconds = parseIntParam(values.connect_timeout, 'connect_timeout');
    } catch (err) {
      // libpq parses connect_timeout only once the first connection has been started, so the message carries that
      // connection's "connection to server at … failed: " prefix.
      deferredError = (err as Error).message;
    }
    // libpq: values 1 and below 0 behave as 2 seconds ("at least 2 seconds"), 0 means wait forever.
    if (connectTimeoutSeconds > 0 && connectTimeoutSeconds < 2) connectTimeoutSeconds = 2;
    if (connectTimeoutSeconds < 0) connectTimeoutSeconds = 0;
  }

  const rootCertGiven = values.sslrootcert !== undefined && values.sslrootcert !== '';
  const crlGiven = (values.sslcrl ?? '') !== '' || (values.sslcrldir ?? '') !== '';
  const ssl: SslPlan = Object.freeze({
    mode,
    modeExplicit: !sslmodeDefaulted,
    negotiation: negotiation as SslNegotiation,
    rootCert: rootCertGiven ? values.sslrootcert! : defaultFile(home, 'root.crt'),
    rootCertDefault: !rootCertGiven,
    crl: crlGiven ? (values.sslcrl ?? '') : defaultFile(home, 'root.crl'),
    crlDir: values.sslcrldir ?? '',
    cert: (values.sslcert ?? '') !== '' ? values.sslcert! : defaultFile(home, 'postgresql.crt'),
    key: (values.sslkey ?? '') !== '' ? values.sslkey! : defaultFile(home, 'postgresql.key'),
    certMode: certMode as SslCertMode,
    sni: (values.sslsni ?? '1').startsWith('1'),
    minVersion,
    maxVersion,
    keyLogFile: values.sslkeylogfile ?? '',
  });

  // init_allowed_encryption_methods(): the order in which plaintext and TLS are tried.
  const tls: 'ssl' | 'direct' = ssl.negotiation === 'direct' ? 'direct' : 'ssl';
  const methods: ('plain' | 'ssl' | 'direct')[] =
    mode === 'disable' ? ['plain'] : mode === 'allow' ? ['plain', tls] : mode === 'prefer' ? [tls, 'plain'] : [tls];

  steps.push(
    `sslmode=${mode} (${sources.sslmode ?? 'default'}): ${
      {
        disable: 'plaintext only',
        allow: 'plaintext first; TLS only if the server refuses plaintext',
        prefer: 'TLS first; plaintext if the server refuses TLS, the handshake fails or the login is rejected',
        require: 'TLS only; the certificate chain is verified only if a root certificate file exists',
        'verify-ca': 'TLS only; the chain must verify against the root certificates',
        'verify-full': 'TLS only; the chain must verify and the certificate must name the host',
      }[mode]
    }`,
  );
  if (mode !== 'disable') {
    steps.push(
      ssl.rootCert === 'system'
        ? 'root certificates: the system store (SSL_CERT_FILE / SSL_CERT_DIR honoured)'
        : ssl.rootCert
          ? `root certificates: "${ssl.rootCert}"${ssl.rootCertDefault ? ' (default)' : ''}; if it exists, the chain is verified in every mode`
          : 'root certificates: none (no home directory)',
    );
    if (ssl.negotiation === 'direct')
      steps.push('TLS starts immediately (sslnegotiation=direct) with ALPN "postgresql"');
    steps.push(
      `TLS versions: ${ssl.minVersion || 'any'} to ${ssl.maxVersion || 'any'}; SNI ${ssl.sni ? 'on (host names only)' : 'off'}`,
    );
  }
  for (const h of hosts) {
    steps.push(
      h.kind === 'socket'
        ? `connect to the Unix socket in "${h.host}" (no TLS over Unix sockets)`
        : `connect to ${h.kind === 'address' ? `address ${h.hostaddr}${h.host ? ` (verified as "${h.host}")` : ''}` : `host "${h.host}"`} port ${h.port || DEFAULT_PORT}`,
    );
  }

  return Object.freeze({
    params: Object.freeze({ ...values }),
    sources: Object.freeze({ ...sources }),
    hosts: Object.freeze(hosts),
    user,
    database,
    ssl,
    methods: Object.freeze(methods),
    connectTimeoutSeconds,
    ...(deferredError === undefined ? {} : { deferredError }),
    targetSessionAttrs: tsa,
    steps: Object.freeze(steps),
    warnings: Object.freeze(warnings),
    systemStore: Object.freeze({
      ...(env.SSL_CERT_FILE === undefined ? {} : { file: env.SSL_CERT_FILE }),
      ...(env.SSL_CERT_DIR === undefined ? {} : { dir: env.SSL_CERT_DIR }),
    }),
  });
}

/** True when `host` is an IP literal as libpq's SNI rule sees it (only digits and dots, or any ':'). */
export function sniSuppressed(host: string): boolean {
  return /^[0-9.]*$/.test(host) || host.includes(':');
}

export { isIP };

/** The plan's parameters with secrets (password, sslpassword, …) replaced by "********", for display and logs. */
export function redactedParams(plan: ConnectionPlan): Readonly<Record<string, string>> {
  const secret = new Set(PARAMETERS.filter((p) => p.secret).map((p) => p.keyword));
  return Object.freeze(
    Object.fromEntries(Object.entries(plan.params).map(([k, v]) => [k, secret.has(k) && v !== '' ? '********' : v])),
  );
}
