/**
 * libpq's connection parameters: keyword, environment variable and compiled-in default, in the order of
 * PQconninfoOptions[] (src/interfaces/libpq/fe-connect.c, PostgreSQL 18). The order matters: libpq fills defaults and
 * reports the first invalid value in this order.
 *
 * `pgtls` reads every parameter libpq 18 accepts so that a connection string that works with psql parses here too;
 * the ones that only matter after the TLS layer (authentication, GSS, OAuth, …) are carried in the plan untouched.
 */
export interface ParameterDefinition {
  readonly keyword: string;
  /** Environment variable libpq falls back to when the parameter is not given. */
  readonly envvar?: string;
  /** libpq's compiled-in default (DefaultSSLMode, DEF_PGPORT_STR, …) as libpq 18 on Linux builds it. */
  readonly compiled?: string;
  /** Secret: never shown in a plan's explanation. */
  readonly secret?: boolean;
}

export const PARAMETERS: readonly ParameterDefinition[] = [
  { keyword: 'service', envvar: 'PGSERVICE' },
  { keyword: 'user', envvar: 'PGUSER' },
  { keyword: 'password', envvar: 'PGPASSWORD', secret: true },
  { keyword: 'passfile', envvar: 'PGPASSFILE' },
  { keyword: 'channel_binding', envvar: 'PGCHANNELBINDING', compiled: 'prefer' },
  { keyword: 'connect_timeout', envvar: 'PGCONNECT_TIMEOUT' },
  { keyword: 'dbname', envvar: 'PGDATABASE' },
  { keyword: 'host', envvar: 'PGHOST' },
  { keyword: 'hostaddr', envvar: 'PGHOSTADDR' },
  { keyword: 'port', envvar: 'PGPORT', compiled: '5432' },
  { keyword: 'client_encoding', envvar: 'PGCLIENTENCODING' },
  { keyword: 'options', envvar: 'PGOPTIONS', compiled: '' },
  { keyword: 'application_name', envvar: 'PGAPPNAME' },
  { keyword: 'fallback_application_name' },
  { keyword: 'keepalives' },
  { keyword: 'keepalives_idle' },
  { keyword: 'keepalives_interval' },
  { keyword: 'keepalives_count' },
  { keyword: 'tcp_user_timeout' },
  { keyword: 'sslmode', envvar: 'PGSSLMODE', compiled: 'prefer' },
  { keyword: 'sslnegotiation', envvar: 'PGSSLNEGOTIATION', compiled: 'postgres' },
  { keyword: 'sslcompression', envvar: 'PGSSLCOMPRESSION', compiled: '0' },
  { keyword: 'sslcert', envvar: 'PGSSLCERT' },
  { keyword: 'sslkey', envvar: 'PGSSLKEY' },
  { keyword: 'sslcertmode', envvar: 'PGSSLCERTMODE', compiled: 'allow' },
  { keyword: 'sslpassword', secret: true },
  { keyword: 'sslkeylogfile', envvar: 'PGSSLKEYLOGFILE' },
  { keyword: 'sslrootcert', envvar: 'PGSSLROOTCERT' },
  { keyword: 'sslcrl', envvar: 'PGSSLCRL' },
  { keyword: 'sslcrldir', envvar: 'PGSSLCRLDIR' },
  { keyword: 'sslsni', envvar: 'PGSSLSNI', compiled: '1' },
  { keyword: 'requirepeer', envvar: 'PGREQUIREPEER' },
  { keyword: 'require_auth', envvar: 'PGREQUIREAUTH' },
  { keyword: 'min_protocol_version', envvar: 'PGMINPROTOCOLVERSION' },
  { keyword: 'max_protocol_version', envvar: 'PGMAXPROTOCOLVERSION' },
  { keyword: 'ssl_min_protocol_version', envvar: 'PGSSLMINPROTOCOLVERSION', compiled: 'TLSv1.2' },
  { keyword: 'ssl_max_protocol_version', envvar: 'PGSSLMAXPROTOCOLVERSION' },
  // Built without GSSAPI (as the embedded libpq 18 is): gssencmode defaults to "disable".
  { keyword: 'gssencmode', envvar: 'PGGSSENCMODE', compiled: 'disable' },
  { keyword: 'krbsrvname', envvar: 'PGKRBSRVNAME', compiled: 'postgres' },
  { keyword: 'gsslib', envvar: 'PGGSSLIB' },
  { keyword: 'gssdelegation', envvar: 'PGGSSDELEGATION', compiled: '0' },
  { keyword: 'replication' },
  { keyword: 'target_session_attrs', envvar: 'PGTARGETSESSIONATTRS', compiled: 'any' },
  { keyword: 'load_balance_hosts', envvar: 'PGLOADBALANCEHOSTS', compiled: 'disable' },
  { keyword: 'scram_client_key', secret: true },
  { keyword: 'scram_server_key', secret: true },
  { keyword: 'oauth_issuer' },
  { keyword: 'oauth_client_id' },
  { keyword: 'oauth_client_secret', secret: true },
  { keyword: 'oauth_scope' },
];

export const KEYWORDS: ReadonlySet<string> = new Set(PARAMETERS.map((p) => p.keyword));

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
export const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
export type SslNegotiation = 'postgres' | 'direct';
export type SslCertMode = 'disable' | 'allow' | 'require';
export type TlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
export const TLS_VERSIONS: readonly TlsVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

/** Where a parameter's final value came from, in libpq's precedence order (first wins). */
export type ValueSource = 'conninfo' | 'uri' | 'options' | 'service' | 'env' | 'default' | 'home' | 'legacy';
