/**
 * The gateway's configuration contract (../shared/design.md): one table of keys with their type and default, the
 * same ssl_* names and defaults as PostgreSQL 18 so existing postgresql.conf lines carry over.
 */
import { parsePgBool } from '../protocol/startup.js';

export const TLS_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export type TlsVersionName = (typeof TLS_VERSIONS)[number];
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

type Kind =
  | { type: 'string' }
  | { type: 'path' }
  | { type: 'bool' }
  | { type: 'int'; min: number; max: number }
  | { type: 'enum'; values: readonly string[]; allowEmpty?: boolean }
  /** Milliseconds; a bare number is in `unit` (PostgreSQL's GUC_UNIT_S / _MS). */
  | { type: 'duration'; unit: 'ms' | 's'; minMs: number; maxMs: number };

interface KeySpec {
  readonly kind: Kind;
  readonly default: string;
  readonly help: string;
}

export const SCHEMA = {
  listen_addresses: { kind: { type: 'string' }, default: 'localhost', help: "addresses to listen on ('*' = all)" },
  port: { kind: { type: 'int', min: 0, max: 65535 }, default: '6432', help: 'TCP port (0: any free port)' },
  unix_socket_directories: {
    kind: { type: 'string' },
    default: '',
    help: 'directories for a Unix socket .s.PGSQL.<port> (empty: none); `local` hba lines match it',
  },
  ssl: { kind: { type: 'bool' }, default: 'on', help: 'offer TLS (off only for development)' },
  ssl_cert_file: { kind: { type: 'path' }, default: '', help: 'server chain: leaf first, then intermediates' },
  ssl_key_file: { kind: { type: 'path' }, default: '', help: 'private key (0600, or 0640 owned by root)' },
  ssl_ca_file: { kind: { type: 'path' }, default: '', help: 'CAs trusted for client certificates' },
  ssl_crl_file: { kind: { type: 'path' }, default: '', help: 'revoked client certificates' },
  ssl_crl_dir: { kind: { type: 'path' }, default: '', help: 'hashed CRL directory, read at connection time' },
  ssl_ciphers: { kind: { type: 'string' }, default: 'HIGH:MEDIUM:+3DES:!aNULL', help: 'TLS ≤ 1.2 suites (OpenSSL)' },
  ssl_tls13_ciphers: { kind: { type: 'string' }, default: '', help: 'TLS 1.3 suites (empty: OpenSSL default)' },
  ssl_groups: { kind: { type: 'string' }, default: 'X25519:prime256v1', help: 'key-exchange groups' },
  ssl_prefer_server_ciphers: { kind: { type: 'bool' }, default: 'on', help: "server's cipher order wins" },
  ssl_min_protocol_version: {
    kind: { type: 'enum', values: TLS_VERSIONS },
    default: 'TLSv1.2',
    help: 'lowest TLS version',
  },
  ssl_max_protocol_version: {
    kind: { type: 'enum', values: TLS_VERSIONS, allowEmpty: true },
    default: '',
    help: 'highest TLS version (empty: no limit)',
  },
  ssl_dh_params_file: { kind: { type: 'path' }, default: '', help: 'DH parameters for DHE suites' },
  ssl_passphrase_command: { kind: { type: 'string' }, default: '', help: 'command printing the key passphrase' },
  ssl_passphrase_command_supports_reload: {
    kind: { type: 'bool' },
    default: 'off',
    help: 'run the passphrase command on reload too',
  },
  require_secure_transport: { kind: { type: 'bool' }, default: 'on', help: 'refuse every plaintext session' },
  hba_file: { kind: { type: 'path' }, default: '', help: 'pg_hba.conf (default: hostssl all all all trust)' },
  ident_file: { kind: { type: 'path' }, default: '', help: 'pg_ident.conf user name maps' },
  upstream: { kind: { type: 'string' }, default: '', help: 'postgres://host:port of the backend (empty: embedded)' },
  upstream_sslmode: { kind: { type: 'enum', values: SSL_MODES }, default: 'prefer', help: 'TLS to the backend' },
  upstream_sslrootcert: { kind: { type: 'path' }, default: '', help: "root CA for the backend's certificate" },
  upstream_sslcert: { kind: { type: 'path' }, default: '', help: "the gateway's client certificate" },
  upstream_sslkey: { kind: { type: 'path' }, default: '', help: "the gateway's client key" },
  error_style: { kind: { type: 'enum', values: ['postgres', 'azure'] }, default: 'postgres', help: 'refusal texts' },
  authentication_timeout: {
    kind: { type: 'duration', unit: 's', minMs: 1000, maxMs: 600_000 },
    default: '60s',
    help: 'negotiation + handshake + startup + authentication',
  },
  shutdown_timeout: {
    kind: { type: 'duration', unit: 's', minMs: 0, maxMs: 86_400_000 },
    default: '30s',
    help: 'on SIGTERM, how long sessions may finish',
  },
  data_directory: { kind: { type: 'path' }, default: './pgtls-data', help: 'generated CA/certs, embedded cluster' },
  log_connections: { kind: { type: 'bool' }, default: 'on', help: 'one JSON line per connection' },
  native_data_plane: {
    kind: { type: 'enum', values: ['off', 'on', 'auto'] },
    default: 'auto',
    help: "TLS and the relay in the native addon (native/): auto (when it built, else Node's tls with a warning), on (required), off (Node's tls)",
  },
  routes_file: {
    kind: { type: 'path' },
    default: '',
    help: 'routes to other upstreams by SNI, database or user@server (empty: every session goes to upstream)',
  },
  workers: {
    kind: { type: 'string' },
    default: '1',
    help: "processes sharing the port: a number, or 'auto' for one per CPU",
  },
  watch_files: {
    kind: { type: 'bool' },
    default: 'off',
    help: 'reload when a certificate, key, CA, CRL, hba/ident or config file changes',
  },
  max_client_conn: {
    kind: { type: 'int', min: 0, max: 1_000_000 },
    default: '0',
    help: "client connections at once (PgBouncer's name; 0: no limit); beyond it: FATAL 53300",
  },
  auth_file: {
    kind: { type: 'path' },
    default: '',
    help: "PgBouncer's userlist.txt: the gateway authenticates password-method hba lines itself",
  },
  auth_user: { kind: { type: 'string' }, default: '', help: 'user that runs auth_query on the backend' },
  auth_query: {
    kind: { type: 'string' },
    default:
      'SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname = $1 AND rolcanlogin',
    help: "query returning (user, secret) for $1 (PgBouncer's default)",
  },
  auth_dbname: { kind: { type: 'string' }, default: '', help: "database for auth_query (empty: the client's)" },
  proxy_protocol: {
    kind: { type: 'bool' },
    default: 'off',
    help: 'expect a PROXY v1/v2 header from peers in proxy_protocol_trusted',
  },
  proxy_protocol_trusted: {
    kind: { type: 'string' },
    default: '',
    help: 'addresses/CIDR ranges allowed to send a PROXY header (empty: nobody)',
  },
  ssl_sni: { kind: { type: 'bool' }, default: 'off', help: 'choose the certificate by SNI from hosts_file' },
  hosts_file: {
    kind: { type: 'path' },
    default: '',
    help: "pg_hosts.conf, PostgreSQL 19's format (empty: none, the ssl_* files serve everyone)",
  },
  admin_users: {
    kind: { type: 'string' },
    default: '',
    help: 'users allowed every admin console command (dbname=pgtls), comma-separated',
  },
  stats_users: {
    kind: { type: 'string' },
    default: '',
    help: 'users allowed the read-only SHOW commands of the admin console, comma-separated',
  },
  metrics_listen_addresses: {
    kind: { type: 'string' },
    default: 'localhost',
    help: 'addresses of the /metrics and status page listener',
  },
  metrics_port: {
    kind: { type: 'int', min: 0, max: 65535 },
    default: '0',
    help: 'port of the /metrics and status page listener (0: no listener)',
  },
  metrics_ssl_cert_file: { kind: { type: 'path' }, default: '', help: 'serve the metrics listener over TLS' },
  metrics_ssl_key_file: { kind: { type: 'path' }, default: '', help: 'key of metrics_ssl_cert_file' },
  metrics_auth_file: {
    kind: { type: 'path' },
    default: '',
    help: 'user:password lines for HTTP basic auth on the metrics listener (empty: none)',
  },
  report_min_protocol_version: {
    kind: { type: 'enum', values: TLS_VERSIONS, allowEmpty: true },
    default: '',
    help: 'report-only: list sessions below this TLS version',
  },
  report_ciphers: { kind: { type: 'string' }, default: '', help: 'report-only: TLS ≤ 1.2 suites allowed (OpenSSL)' },
  report_tls13_ciphers: { kind: { type: 'string' }, default: '', help: 'report-only: TLS 1.3 suites allowed' },
  report_require_client_cert: {
    kind: { type: 'bool' },
    default: 'off',
    help: 'report-only: list sessions without a client certificate',
  },
  report_require_secure_transport: {
    kind: { type: 'bool' },
    default: 'off',
    help: 'report-only: list plaintext sessions',
  },
  report_list_size: {
    kind: { type: 'int', min: 1, max: 1_000_000 },
    default: '1000',
    help: 'report-only: how many recent would-be refusals SHOW WOULD_REFUSE keeps',
  },
  client_tls_facts_to_backend: {
    kind: { type: 'enum', values: ['off', 'startup', 'view', 'both'] },
    default: 'off',
    help: "show the client's TLS facts to SQL: pgtls.* startup settings, the pgtls.pg_stat_ssl view, or both",
  },
  // Pooling (PgBouncer's names and defaults, doc/config.md of PgBouncer 1.25; see docs/pooling.md).
  pool_mode: {
    kind: { type: 'enum', values: ['relay', 'session', 'transaction'] },
    default: 'relay',
    help: 'relay: a fresh backend connection per client (no pooling); session; transaction',
  },
  default_pool_size: {
    kind: { type: 'int', min: 1, max: 100_000 },
    default: '20',
    help: 'servers per (database, user)',
  },
  min_pool_size: { kind: { type: 'int', min: 0, max: 100_000 }, default: '0', help: 'servers kept open per pool' },
  reserve_pool_size: {
    kind: { type: 'int', min: 0, max: 100_000 },
    default: '0',
    help: 'extra servers for a client waiting longer than reserve_pool_timeout',
  },
  reserve_pool_timeout: {
    kind: { type: 'duration', unit: 's', minMs: 0, maxMs: 86_400_000 },
    default: '5s',
    help: 'wait before the reserve pool is used (0: at once)',
  },
  max_db_connections: {
    kind: { type: 'int', min: 0, max: 1_000_000 },
    default: '0',
    help: 'servers per database over all users (0: no limit)',
  },
  server_idle_timeout: {
    kind: { type: 'duration', unit: 's', minMs: 0, maxMs: 2_147_483_000 },
    default: '600s',
    help: 'close a server idle this long (0: never)',
  },
  server_lifetime: {
    kind: { type: 'duration', unit: 's', minMs: 0, maxMs: 2_147_483_000 },
    default: '3600s',
    help: 'close a server this old when it is released (0: never)',
  },
  server_reset_query: { kind: { type: 'string' }, default: 'DISCARD ALL', help: 'run on release in session mode' },
  server_reset_query_always: {
    kind: { type: 'bool' },
    default: 'off',
    help: 'run server_reset_query in transaction mode too',
  },
  server_check_query: {
    kind: { type: 'string' },
    default: '<empty>',
    help: "check before reusing a server ('<empty>': an empty query; '': no check)",
  },
  server_check_delay: {
    kind: { type: 'duration', unit: 's', minMs: 0, maxMs: 86_400_000 },
    default: '30s',
    help: 'reuse a server idle less than this without server_check_query',
  },
  query_wait_timeout: {
    kind: { type: 'duration', unit: 's', minMs: 0, maxMs: 2_147_483_000 },
    default: '120s',
    help: 'a client waits this long for a server, then FATAL "query_wait_timeout" (0: forever)',
  },
  max_prepared_statements: {
    kind: { type: 'int', min: 0, max: 100_000 },
    default: '200',
    help: 'named protocol-level prepared statements per server in transaction mode (0: not tracked)',
  },
  upstream_target_session_attrs: {
    kind: { type: 'enum', values: ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'] },
    default: 'any',
    help: "libpq's target_session_attrs: which of the upstream's hosts will do",
  },
  upstream_connect_timeout: {
    kind: { type: 'duration', unit: 's', minMs: 0, maxMs: 2_147_483_000 },
    default: '10s',
    help: "libpq's connect_timeout, per upstream host and address (0: wait for the OS; 1 s counts as 2 s)",
  },
  upstream_load_balance_hosts: {
    kind: { type: 'enum', values: ['disable', 'random'] },
    default: 'disable',
    help: "libpq's load_balance_hosts: try the upstream's hosts in a random order",
  },
  upstream_sslnegotiation: {
    kind: { type: 'enum', values: ['postgres', 'direct'] },
    default: 'postgres',
    help: "libpq's sslnegotiation: direct starts TLS at once with ALPN postgresql (PostgreSQL 17+)",
  },
  upstream_sslsni: {
    kind: { type: 'bool' },
    default: 'on',
    help: "libpq's sslsni: send the upstream's host name (not an IP address) as TLS SNI",
  },
} as const satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof SCHEMA;

/** Other spellings PostgreSQL accepts for the same setting. */
export const ALIASES: Readonly<Record<string, ConfigKey>> = { ssl_ecdh_curve: 'ssl_groups' };

export function isConfigKey(name: string): name is ConfigKey {
  return Object.hasOwn(SCHEMA, name);
}

/**
 * Parse a duration like PostgreSQL: a number (sign and fraction allowed) with an optional unit (us, ms, s, min, h, d),
 * converted to the parameter's own unit and rounded there with rint() (half to even) as parse_int() does — so
 * '500ms' for a parameter in seconds is 0 s, '1500ms' is 2 s. Returns milliseconds.
 */
export function parseDuration(value: string, unit: 'ms' | 's'): number | undefined {
  const m = /^\s*([-+]?\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  const factor: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };
  const inUnit = (n * factor[m[2] ?? unit]!) / factor[unit]!;
  return rint(inUnit) * factor[unit]!;
}

/** C's rint() in the default rounding mode: to nearest, ties to even. */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export type Parsed = string | number | boolean;

/** Check one value against its key's kind; returns the typed value, or PostgreSQL's message and hint. */
export function parseValue(
  key: ConfigKey,
  raw: string,
): { ok: true; value: Parsed } | { ok: false; message: string; hint?: string } {
  const kind: Kind = SCHEMA[key].kind;
  const bad = (hint?: string) => ({
    ok: false as const,
    message: `invalid value for parameter "${key}": "${raw}"`,
    ...(hint ? { hint } : {}),
  });
  switch (kind.type) {
    case 'string':
    case 'path':
      return { ok: true, value: raw };
    case 'bool': {
      // parse_bool() takes no surrounding blanks (parsePgBool trims, as the startup packet needs).
      const b = raw === raw.trim() ? parsePgBool(raw) : undefined;
      return b === undefined
        ? { ok: false, message: `parameter "${key}" requires a Boolean value` }
        : { ok: true, value: b };
    }
    case 'int': {
      if (!/^\s*\d+\s*$/.test(raw)) return bad();
      const n = Number(raw);
      if (n < kind.min || n > kind.max) {
        return {
          ok: false,
          message: `${n} is outside the valid range for parameter "${key}" (${kind.min} .. ${kind.max})`,
        };
      }
      return { ok: true, value: n };
    }
    case 'enum': {
      if (raw === '' && kind.allowEmpty) return { ok: true, value: '' };
      // PostgreSQL matches enum values case-insensitively and stores its own spelling.
      const found = kind.values.find((v) => v.toLowerCase() === raw.toLowerCase());
      // PostgreSQL lists the empty value too, which prints as a leading ", " for ssl_max_protocol_version.
      const listed = kind.allowEmpty ? ['', ...kind.values] : kind.values;
      return found === undefined ? bad(`Available values: ${listed.join(', ')}.`) : { ok: true, value: found };
    }
    case 'duration': {
      const ms = parseDuration(raw, kind.unit);
      if (ms === undefined) return bad('Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".');
      if (ms < kind.minMs || ms > kind.maxMs) {
        const u = kind.unit === 's' ? 1000 : 1;
        return {
          ok: false,
          message: `${ms / u} ${kind.unit} is outside the valid range for parameter "${key}" (${kind.minMs / u} ${kind.unit} .. ${kind.maxMs / u} ${kind.unit})`,
        };
      }
      return { ok: true, value: ms };
    }
  }
}
