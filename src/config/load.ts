/**
 * Build the gateway's configuration once, loudly, then freeze it (conventions §6).
 * Precedence: command-line flag > config file > environment (PGTLS_<KEY>) > default.
 * Paths in the file, and default paths when there is a file, are relative to the file; paths from flags and env (and
 * defaults when there is no file) are relative to the working directory.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { PgtlsError } from '../errors.js';
import { parseTrustedList } from '../hba/proxy-trusted.js';
import type { TlsSettings } from '../tls/context.js';
import { type ConfEntry, readConfFile } from './conf-file.js';
import {
  ALIASES,
  type ConfigKey,
  type Parsed,
  SCHEMA,
  type SslMode,
  type TlsVersionName,
  isConfigKey,
  parseValue,
} from './schema.js';

export const ERR_CONFIG_UNKNOWN_KEY = 'PGTLS_ERR_CONFIG_UNKNOWN_KEY';
export const ERR_CONFIG_VALUE = 'PGTLS_ERR_CONFIG_VALUE';
export const ERR_CONFIG_CONFLICT = 'PGTLS_ERR_CONFIG_CONFLICT';

/** The ssl_* settings are the TLS layer's own (src/tls/context.ts); the gateway adds the rest. */
export interface GatewayConfig extends TlsSettings {
  readonly listen_addresses: string;
  readonly port: number;
  readonly unix_socket_directories: string;
  readonly ssl: boolean;
  readonly require_secure_transport: boolean;
  readonly hba_file: string;
  readonly ident_file: string;
  readonly upstream: string;
  readonly upstream_sslmode: SslMode;
  readonly upstream_sslrootcert: string;
  readonly upstream_sslcert: string;
  readonly upstream_sslkey: string;
  readonly upstream_target_session_attrs: 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';
  /** Milliseconds (whole seconds: libpq's connect_timeout is in seconds). */
  readonly upstream_connect_timeout: number;
  readonly upstream_load_balance_hosts: 'disable' | 'random';
  readonly upstream_sslnegotiation: 'postgres' | 'direct';
  readonly upstream_sslsni: boolean;
  readonly error_style: 'postgres' | 'azure';
  /** Milliseconds. */
  readonly authentication_timeout: number;
  /** Milliseconds. */
  readonly shutdown_timeout: number;
  readonly data_directory: string;
  readonly log_connections: boolean;
  readonly max_client_conn: number;
  readonly watch_files: boolean;
  readonly native_data_plane: 'off' | 'on' | 'auto';
  readonly routes_file: string;
  /** '1'…'256' or 'auto'. */
  readonly workers: string;
  readonly auth_file: string;
  readonly auth_user: string;
  readonly auth_query: string;
  readonly auth_dbname: string;
  readonly proxy_protocol: boolean;
  /** The list as written; parse with parseTrustedList() (checked at load). */
  readonly proxy_protocol_trusted: string;
  readonly ssl_sni: boolean;
  readonly hosts_file: string;
  readonly admin_users: string;
  readonly stats_users: string;
  readonly metrics_listen_addresses: string;
  readonly metrics_port: number;
  readonly metrics_ssl_cert_file: string;
  readonly metrics_ssl_key_file: string;
  readonly metrics_auth_file: string;
  readonly report_min_protocol_version: TlsVersionName | '';
  readonly report_ciphers: string;
  readonly report_tls13_ciphers: string;
  readonly report_require_client_cert: boolean;
  readonly report_require_secure_transport: boolean;
  readonly report_list_size: number;
  readonly client_tls_facts_to_backend: 'off' | 'startup' | 'view' | 'both';
  /** Pooling (src/gateway/pool/settings.ts); durations in milliseconds. */
  readonly pool_mode: 'relay' | 'session' | 'transaction';
  readonly default_pool_size: number;
  readonly min_pool_size: number;
  readonly reserve_pool_size: number;
  readonly reserve_pool_timeout: number;
  readonly max_db_connections: number;
  readonly server_idle_timeout: number;
  readonly server_lifetime: number;
  readonly server_reset_query: string;
  readonly server_reset_query_always: boolean;
  /** '' disables the check; '<empty>' sends an empty query (PgBouncer's default since 1.23). */
  readonly server_check_query: string;
  readonly server_check_delay: number;
  readonly query_wait_timeout: number;
  readonly max_prepared_statements: number;
  /** Where each value came from ("pgtls.conf:12", "--port", "PGTLS_PORT", "default"). */
  readonly sources: Readonly<Record<ConfigKey, string>>;
  /** The config file, if one was given (reload re-reads it). */
  readonly config_file: string;
}

export interface ConfigInput {
  readonly file?: string | undefined;
  /** key → raw value, from the command line (`--port 6432`, `-c port=6432`). */
  readonly flags?: Readonly<Record<string, string>>;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

interface Raw {
  value: string;
  source: string;
  baseDir: string;
  file?: string;
  line?: number;
}

function canonical(name: string): string {
  const n = name.toLowerCase();
  return ALIASES[n] ?? n;
}

export function loadConfig(input: ConfigInput): GatewayConfig {
  const cwd = input.cwd ?? process.cwd();
  const raw = new Map<ConfigKey, Raw>();
  for (const key of Object.keys(SCHEMA) as ConfigKey[]) {
    raw.set(key, { value: SCHEMA[key].default, source: 'default', baseDir: cwd });
  }
  const env = input.env ?? {};
  for (const key of Object.keys(SCHEMA) as ConfigKey[]) {
    const v = env[`PGTLS_${key.toUpperCase()}`];
    if (v !== undefined) raw.set(key, { value: v, source: `PGTLS_${key.toUpperCase()}`, baseDir: cwd });
  }
  const configFile = input.file ? resolve(cwd, input.file) : '';
  if (configFile) {
    // Defaults that are paths (data_directory) live beside the config file, like every path written in it: a gateway
    // started with --config from any directory, and `pgtls reload --config` run from any other, find the same place.
    for (const [key, r] of raw) if (r.source === 'default') r.baseDir = dirname(configFile);
    const entries: ConfEntry[] = readConfFile(configFile);
    for (const e of entries) {
      const key = canonical(e.name);
      if (!isConfigKey(key)) {
        throw new PgtlsError(
          ERR_CONFIG_UNKNOWN_KEY,
          `unrecognized configuration parameter "${e.written ?? e.name}" in file "${e.file}" line ${e.line}`,
          {
            details: {
              file: e.file,
              line: e.line,
              key: e.written ?? e.name,
              hint: 'Run `pgtls serve --help` for the list of parameters.',
            },
          },
        );
      }
      raw.set(key, {
        value: e.value,
        source: `${e.file}:${e.line}`,
        baseDir: dirname(e.file),
        file: e.file,
        line: e.line,
      });
    }
  }
  for (const [name, value] of Object.entries(input.flags ?? {})) {
    const key = canonical(name.replace(/-/g, '_'));
    if (!isConfigKey(key)) {
      throw new PgtlsError(ERR_CONFIG_UNKNOWN_KEY, `unrecognized configuration parameter "${name}"`, {
        details: { key: name, hint: 'Run `pgtls serve --help` for the list of parameters.' },
      });
    }
    raw.set(key, { value, source: `--${key.replace(/_/g, '-')}`, baseDir: cwd });
  }

  const values: Record<string, Parsed> = {};
  const sources: Record<string, string> = {};
  for (const [key, r] of raw) {
    const parsed = parseValue(key, r.value);
    if (!parsed.ok) {
      const where = r.file
        ? ` in file "${r.file}" line ${r.line}`
        : r.source === 'default'
          ? ''
          : ` (from ${r.source})`;
      throw new PgtlsError(ERR_CONFIG_VALUE, `${parsed.message}${where}`, {
        details: { key, source: r.source, ...(parsed.hint ? { hint: parsed.hint } : {}) },
      });
    }
    let value = parsed.value;
    if (SCHEMA[key].kind.type === 'path' && typeof value === 'string' && value !== '' && !isAbsolute(value)) {
      value = resolve(r.baseDir, value);
    }
    values[key] = value;
    sources[key] = r.source;
  }
  const config = { ...values, sources: Object.freeze(sources), config_file: configFile } as unknown as GatewayConfig;
  checkConflicts(config);
  return Object.freeze(config);
}

function checkConflicts(c: GatewayConfig): void {
  if (!/^(auto|[1-9]\d{0,2})$/.test(c.workers) || (c.workers !== 'auto' && Number(c.workers) > 256)) {
    throw new PgtlsError(ERR_CONFIG_VALUE, `invalid value for parameter "workers": "${c.workers}"`, {
      details: { hint: "Use a number from 1 to 256, or 'auto' for one worker per CPU.", source: c.sources.workers },
    });
  }
  if (!c.ssl && c.require_secure_transport) {
    throw new PgtlsError(ERR_CONFIG_CONFLICT, 'ssl = off cannot be combined with require_secure_transport = on', {
      details: {
        hint: 'TLS can be turned off only for development: set require_secure_transport = off as well.',
        ssl: c.sources.ssl,
        require_secure_transport: c.sources.require_secure_transport,
      },
    });
  }
  const trusted = parseTrustedList(c.proxy_protocol_trusted);
  if (!trusted.ok) {
    throw new PgtlsError(
      ERR_CONFIG_VALUE,
      `invalid value for parameter "proxy_protocol_trusted": "${trusted.entry}" is not an IP address or CIDR range`,
      {
        details: {
          hint: "List addresses or ranges, e.g. '10.0.0.0/8, 192.168.1.10, fd00::/8' (host names are not accepted).",
          source: c.sources.proxy_protocol_trusted,
        },
      },
    );
  }
  if (c.proxy_protocol && trusted.ranges.length === 0) {
    // Trusting every peer would let anyone claim any client address (and so pass address-based hba rules).
    throw new PgtlsError(ERR_CONFIG_CONFLICT, 'proxy_protocol = on requires a non-empty proxy_protocol_trusted', {
      details: {
        hint: 'Set proxy_protocol_trusted to the addresses of the load balancers that send the PROXY header.',
        proxy_protocol: c.sources.proxy_protocol,
        proxy_protocol_trusted: c.sources.proxy_protocol_trusted,
      },
    });
  }
  // libpq (pqConnectOptions2) refuses direct TLS with a mode that could fall back to plaintext: so does the hop.
  if (c.upstream_sslnegotiation === 'direct' && !/^(require|verify-ca|verify-full)$/.test(c.upstream_sslmode)) {
    const src = c.sources.upstream_sslnegotiation ?? 'default';
    const at = /^(.*):(\d+)$/.exec(src);
    throw new PgtlsError(
      ERR_CONFIG_CONFLICT,
      `weak upstream_sslmode "${c.upstream_sslmode}" may not be used with upstream_sslnegotiation = direct (use "require", "verify-ca", or "verify-full")${at ? ` in file "${at[1]}" line ${at[2]}` : src === 'default' ? '' : ` (from ${src})`}`,
      {
        details: {
          key: 'upstream_sslnegotiation',
          ...(at ? { file: at[1], line: Number(at[2]) } : {}),
          upstream_sslnegotiation: src,
          upstream_sslmode: c.sources.upstream_sslmode,
          hint: 'Direct TLS has no plaintext fallback: set upstream_sslmode = require, verify-ca or verify-full.',
        },
      },
    );
  }
  if (c.upstream !== '' && !/^postgres(ql)?:\/\//.test(c.upstream)) {
    throw new PgtlsError(ERR_CONFIG_VALUE, `invalid value for parameter "upstream": "${c.upstream}"`, {
      details: {
        hint: "Use a URI such as 'postgres://db.internal:5432' (or 'postgres://%2Fvar%2Frun%2Fpostgresql:5432' for a Unix socket).",
        source: c.sources.upstream,
      },
    });
  }
}
