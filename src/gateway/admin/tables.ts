/**
 * The console's SHOW tables: each a column list and a row builder over the OperatorView. A new table (SHOW POOLS for
 * the pooling issue) is one more entry in TABLES. Values are text in PostgreSQL's output format (timestamptz as
 * DateStyle ISO, arrays as array literals, booleans t/f) so psql, node-postgres and JDBC parse them as they would a
 * real server's.
 */
import { X509Certificate } from 'node:crypto';
import { SCHEMA, isConfigKey } from '../../config/schema.js';
import type { Cell, Column, ColumnType } from '../../protocol/rows.js';
import { daysLeft, readServedFiles } from './cert-files.js';
import { rulesFromFile, rulesFromLines } from './hba-rules.js';
import type { LiveClient, OperatorView, StatsSnapshot } from './runtime-view.js';

export interface Table {
  readonly columns: readonly Column[];
  rows(view: OperatorView, now: Date): Cell[][];
  /**
   * With `workers = N`, where the rows come from: `gateway` (default) the same in every worker (configuration, files),
   * answered by the worker the console runs in; `worker` every worker's rows, with a `worker` column appended;
   * `merge` every worker's rows as they are (SHOW SSL keeps pg_stat_ssl's exact columns); `sum` counters summed.
   */
  readonly scope?: 'gateway' | 'worker' | 'merge' | 'sum';
}

const col = (name: string, type: ColumnType = 'text'): Column => ({ name, type });

/** timestamptz in DateStyle ISO with TimeZone UTC: "2026-12-02 01:52:41.123+00". */
export function pgTimestamp(d: Date): string {
  return `${d.toISOString().replace('T', ' ').replace('Z', '')}+00`;
}

/** An array literal of text: {a,"b c",NULL-free}; elements quoted when array_out would quote them. */
export function pgTextArray(items: readonly string[]): string {
  const quote = (s: string) =>
    s === '' || /[{}",\\\s]/.test(s) || s.toLowerCase() === 'null' ? `"${s.replace(/(["\\])/g, '\\$1')}"` : s;
  return `{${items.map(quote).join(',')}}`;
}

const str = (v: string | undefined | null): Cell => (v === undefined || v === null || v === '' ? null : v);
const num = (v: number | undefined): Cell => (v === undefined ? null : String(v));
const bool = (v: boolean): Cell => (v ? 't' : 'f');

/**
 * pg_stat_ssl's text columns are char[NAMEDATALEN] copies: at most 63 bytes, cut on a character boundary
 * (pg_mbcliplen), so SHOW SSL clips as the real view does.
 */
export function clip63(s: string): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= 63) return s;
  let end = 63;
  while (end > 0 && ((b[end] ?? 0) & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString('utf8');
}

/** The decimal serial pg_stat_ssl shows, from the record's hex. */
export function decimalSerial(hex: string): string {
  return BigInt(`0x${hex.replace(/:/g, '')}`).toString(10);
}

function peerNotAfter(c: LiveClient): Cell {
  const der = c.tls?.peerCertificate;
  if (!der) return null;
  try {
    return pgTimestamp(new Date(new X509Certificate(der).validTo));
  } catch {
    return null;
  }
}

const CLIENTS: Table = {
  columns: [
    col('id', 'int4'),
    col('user'),
    col('database'),
    col('state'),
    col('addr'),
    col('port', 'int4'),
    col('connect_time', 'timestamptz'),
    col('application_name'),
    col('negotiation'),
    col('tls_version'),
    col('cipher'),
    col('bits', 'int4'),
    col('tls_group'),
    col('sni'),
    col('alpn'),
    col('client_dn'),
    col('client_serial'),
    col('client_issuer_dn'),
    col('client_not_after', 'timestamptz'),
    col('client_cert_error'),
    col('hba_line'),
    col('backend_pid', 'int4'),
    col('bytes_from_client', 'int8'),
    col('bytes_from_backend', 'int8'),
  ],
  scope: 'worker',
  rows: (view) =>
    [...view.clients()].map((c) => [
      String(c.id),
      str(c.user),
      str(c.database),
      c.state,
      c.client,
      String(c.client_port),
      pgTimestamp(c.connect_time),
      str(c.application_name),
      c.negotiation,
      str(c.tls_version),
      str(c.cipher),
      num(c.tls?.bits),
      str(c.tls?.group),
      str(c.sni ?? c.tls?.sni),
      str(c.tls?.alpn),
      str(c.client_cert?.subject),
      str(c.client_cert?.serial),
      str(c.client_cert?.issuer),
      peerNotAfter(c),
      str(c.client_cert_error),
      str(c.hba),
      num(c.backend_pid),
      String(c.bytes_from_client ?? 0),
      String(c.bytes_from_backend ?? 0),
    ]),
};

/** Exactly pg_stat_ssl's columns and types (numeric for client_serial), one row per relayed session. */
const SSL: Table = {
  columns: [
    col('pid', 'int4'),
    col('ssl', 'bool'),
    col('version'),
    col('cipher'),
    col('bits', 'int4'),
    col('client_dn'),
    col('client_serial', 'numeric'),
    col('issuer_dn'),
  ],
  scope: 'merge',
  rows: (view) =>
    [...view.clients()]
      .filter((c) => c.backend_pid !== undefined)
      .map((c) => {
        const tls = c.tls_version !== undefined;
        const cert = tls ? c.client_cert : undefined;
        return [
          String(c.backend_pid),
          bool(tls),
          tls ? str(c.tls_version) : null,
          tls ? str(c.cipher) : null,
          tls ? num(c.tls?.bits) : null,
          cert ? clip63(cert.subject) : null,
          cert ? decimalSerial(cert.serial) : null,
          cert ? clip63(cert.issuer) : null,
        ];
      }),
};

/** Values that may hold a secret are shown as set / not set (a passphrase command can embed the passphrase). */
export function displayValue(key: string, value: unknown): string {
  const text = typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value ?? '');
  if (key === 'ssl_passphrase_command') return text === '' ? '' : '(set, not shown)';
  // A URI's password, if an operator put one there.
  if (key === 'upstream') return text.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1(hidden)@');
  return text;
}

function durationText(key: string, ms: number): string {
  const spec = SCHEMA[key as keyof typeof SCHEMA];
  return spec.kind.type === 'duration' && spec.kind.unit === 's' ? `${ms / 1000}s` : `${ms}ms`;
}

const CONFIG: Table = {
  columns: [col('key'), col('value'), col('default'), col('changeable'), col('source')],
  rows: (view) => {
    const config = view.config() as unknown as Record<string, unknown> & { sources: Record<string, string> };
    const overrides = view.overrides();
    return Object.keys(SCHEMA).map((key) => {
      if (!isConfigKey(key)) return [key, null, null, 'no', null];
      const spec = SCHEMA[key];
      const o = overrides.get(key as never);
      let value = o ? o.value : config[key];
      if (spec.kind.type === 'duration' && typeof value === 'number') value = durationText(key, value);
      const source = o
        ? `SET at ${pgTimestamp(o.since)} (until reload or restart)`
        : (config.sources[key] ?? 'default');
      return [
        key,
        displayValue(key, value),
        displayValue(key, spec.default),
        o !== undefined || key === 'require_secure_transport' || key === 'ssl_min_protocol_version' ? 'yes' : 'no',
        source,
      ];
    });
  },
};

const HBA: Table = {
  columns: [
    col('rule_number', 'int4'),
    col('file_name'),
    col('line_number', 'int4'),
    col('type'),
    col('database', 'textArray'),
    col('user_name', 'textArray'),
    col('address'),
    col('netmask'),
    col('auth_method'),
    col('options', 'textArray'),
    col('error'),
  ],
  rows: (view) => {
    const file = view.config().hba_file;
    const rules = file === '' ? rulesFromLines(view.hba()) : rulesFromFile(file);
    return rules.map((r) => [
      num(r.rule_number ?? undefined),
      r.file_name,
      String(r.line_number),
      r.type,
      r.database ? pgTextArray(r.database) : null,
      r.user_name ? pgTextArray(r.user_name) : null,
      r.address,
      r.netmask,
      r.auth_method,
      r.options ? pgTextArray(r.options) : null,
      r.error,
    ]);
  },
};

const CERTS: Table = {
  columns: [
    col('file'),
    col('kind'),
    col('index', 'int4'),
    col('type'),
    col('subject'),
    col('issuer'),
    col('not_after', 'timestamptz'),
    col('days_left', 'int4'),
    col('fingerprint'),
    col('error'),
  ],
  rows: (view, now) =>
    readServedFiles(view.servedFiles()).map((e) => [
      e.file,
      e.kind,
      String(e.index),
      e.type,
      str(e.subject),
      str(e.issuer),
      e.notAfter ? pgTimestamp(e.notAfter) : null,
      e.notAfter ? String(daysLeft(e.notAfter, now)) : null,
      str(e.fingerprint),
      str(e.error),
    ]),
};

/** SHOW STATS's rows from a snapshot (one process's, or the workers' summed). */
export function statsRows(s: StatsSnapshot, now: Date): Cell[][] {
  const rows: Cell[][] = [
    ['uptime_seconds', String(Math.floor((now.getTime() - s.started_at.getTime()) / 1000))],
    ['connections_total', String(s.connections_total)],
    ['relayed_total', String(s.relayed_total)],
    ['refused_total', String(s.refused_total)],
    ['active_sessions', String(s.active_sessions)],
    ['bytes_from_clients', String(s.bytes_from_clients)],
    ['bytes_from_backends', String(s.bytes_from_backends)],
    ['reloads_ok', String(s.reloads_ok)],
    ['reloads_failed', String(s.reloads_failed)],
    ['would_refuse_total', String(s.would_refuse_total)],
  ];
  const group = (prefix: string, m: Readonly<Record<string, number>>) => {
    for (const [k, v] of Object.entries(m).sort()) rows.push([`${prefix}${k}`, String(v)]);
  };
  group('connections_by_tls_version.', s.by_tls_version);
  group('connections_by_negotiation.', s.by_negotiation);
  group('connections_by_outcome.', s.by_outcome);
  group('refusals_by_reason.', s.refusals_by_reason);
  return rows;
}

const STATS: Table = {
  columns: [col('name'), col('value', 'int8')],
  rows: (view, now) => statsRows(view.stats(), now),
  scope: 'sum',
};

const VERSION: Table = {
  // PgBouncer's SHOW VERSION: one column "version".
  columns: [col('version')],
  rows: (view) => [[`pgtls ${view.version}`]],
};

const WOULD_REFUSE: Table = {
  columns: [
    col('at', 'timestamptz'),
    col('addr'),
    col('port', 'int4'),
    col('user'),
    col('database'),
    col('application_name'),
    col('negotiation'),
    col('tls_version'),
    col('cipher'),
    col('client_cert', 'bool'),
    col('reasons', 'textArray'),
  ],
  scope: 'worker',
  rows: (view) =>
    view
      .wouldRefuse()
      .map((e) => [
        pgTimestamp(e.at),
        e.client,
        String(e.client_port),
        str(e.user),
        str(e.database),
        str(e.application_name),
        e.negotiation,
        str(e.tls_version),
        str(e.cipher),
        bool(e.client_cert),
        pgTextArray(e.reasons.map((r) => r.message)),
      ]),
};

/**
 * PgBouncer's SHOW POOLS columns (the ones that mean something here): one row per (database, user) pool with
 * pool_mode session or transaction; none with the 1:1 relay, where each session owns its backend. cl_active counts
 * logged-in clients not waiting for a server; maxwait/maxwait_us is the oldest waiting client's wait.
 */
const POOLS: Table = {
  columns: [
    col('database'),
    col('user'),
    col('cl_active', 'int4'),
    col('cl_waiting', 'int4'),
    col('sv_active', 'int4'),
    col('sv_idle', 'int4'),
    col('sv_login', 'int4'),
    col('maxwait', 'int4'),
    col('maxwait_us', 'int4'),
    col('pool_mode'),
  ],
  scope: 'worker',
  rows: (view) => {
    const p = view.pools?.();
    if (!p) return [];
    return p.rows.map((r) => [
      r.database,
      r.user,
      String(Math.max(0, r.clients - r.waiting)),
      String(r.waiting),
      String(r.active),
      String(r.idle),
      String(r.opening),
      String(Math.floor(r.maxWaitMs / 1000)),
      String((r.maxWaitMs % 1000) * 1000),
      p.mode,
    ]);
  },
};

/**
 * PgBouncer's SHOW SERVERS columns (those that mean something here): one row per logged-in pooled server. state is
 * `active` (lent to a client, or running a check or reset query) or `idle`; request_time is when it was last handed
 * out or returned; tls is "version/cipher" on a TLS hop to the backend.
 */
const SERVERS: Table = {
  columns: [
    col('type'),
    col('user'),
    col('database'),
    col('state'),
    col('addr'),
    col('port', 'int4'),
    col('connect_time', 'timestamptz'),
    col('request_time', 'timestamptz'),
    col('remote_pid', 'int4'),
    col('tls'),
    col('prepared_statements', 'int4'),
    col('id', 'int4'),
  ],
  scope: 'worker',
  rows: (view) =>
    (view.pools?.()?.servers ?? []).map((s) => [
      'S',
      s.user,
      s.database,
      s.state,
      s.addr,
      num(s.port),
      pgTimestamp(s.connectTime),
      pgTimestamp(s.requestTime),
      num(s.remotePid),
      s.tls,
      String(s.preparedStatements),
      String(s.id),
    ]),
};

/**
 * The processes of the gateway: one row per worker slot with `workers = N` (the console fills it from the primary's
 * view, ./console-workers.ts); one row for the process itself otherwise (worker 0).
 */
export const WORKERS_COLUMNS: readonly Column[] = [
  col('worker', 'int4'),
  col('pid', 'int4'),
  col('state'),
  col('started_at', 'timestamptz'),
  col('restarts', 'int4'),
  col('clients', 'int4'),
  col('active_sessions', 'int4'),
];

const WORKERS: Table = {
  columns: WORKERS_COLUMNS,
  rows: (view) => {
    const s = view.stats();
    return [
      [
        '0',
        String(process.pid),
        'up',
        pgTimestamp(s.started_at),
        '0',
        String([...view.clients()].length),
        String(s.active_sessions),
      ],
    ];
  },
};

/** SHOW <name> → table. SHOW HELP is answered by the console itself. */
export const TABLES: Readonly<Record<string, Table>> = {
  clients: CLIENTS,
  ssl: SSL,
  config: CONFIG,
  hba: HBA,
  certs: CERTS,
  stats: STATS,
  version: VERSION,
  would_refuse: WOULD_REFUSE,
  pools: POOLS,
  servers: SERVERS,
  workers: WORKERS,
};
