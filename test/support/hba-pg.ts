import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
/**
 * PostgreSQL 18 as the reference for the configuration layer: a cluster with ssl = on (server and client CA generated
 * at test time) whose pg_hba.conf / pg_ident.conf / included postgresql.conf we rewrite, then read back through
 * pg_hba_file_rules, pg_ident_file_mappings and pg_file_settings, or replay connections with psql and learn which
 * line won from the server log (PostgreSQL 18 logs `connection authenticated: … (FILE:LINE)` for trust and cert).
 */
import { readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Issued, createClientCert, createRootCA, createServerCert } from '../../src/pki/generate.js';
import { psql } from './clients.js';
import { type TestCluster, startTestCluster } from './postgres.js';

export interface HbaReference {
  readonly cluster: TestCluster;
  /** Client CA that ssl_ca_file trusts; issue client certificates with clientCert(). */
  readonly clientCa: Issued;
  readonly dir: string;
  destroy(): Promise<void>;
}

export async function startReference(): Promise<HbaReference> {
  const root = await createRootCA({ subject: { CN: 'pgtls hba reference root' } });
  const server = await createServerCert(root, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
  const clientCa = await createRootCA({ subject: { CN: 'pgtls hba reference client CA' } });
  const cluster = await startTestCluster({
    hba: ['local all all trust'],
    settings: {
      listen_addresses: '127.0.0.1,::1',
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      ssl_ca_file: 'client-ca.crt',
      log_connections: 'all',
    },
    files: { 'server.crt': server.certPem, 'server.key': server.keyPem, 'client-ca.crt': clientCa.certPem },
  });
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-hbaref-'));
  return { cluster, clientCa, dir, destroy: () => cluster.destroy() };
}

/** SQL as the superuser over the Unix socket (pg_hba.conf always keeps a `local all all trust` line for this). */
export async function adminSql(ref: HbaReference, sql: string): Promise<string> {
  const c = ref.cluster;
  const r = await psql(`host=${c.socketDir} port=${c.port} user=postgres dbname=postgres`, sql);
  if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`);
  return r.stdout.trim();
}

async function queryJson<T>(ref: HbaReference, sql: string): Promise<T[]> {
  const out = await adminSql(ref, `select coalesce(json_agg(r), '[]') from (${sql}) r`);
  return JSON.parse(out) as T[];
}

export interface HbaRuleRow {
  readonly rule_number: number | null;
  readonly file_name: string;
  readonly line_number: number;
  readonly type: string | null;
  readonly database: string[] | null;
  readonly user_name: string[] | null;
  readonly address: string | null;
  readonly netmask: string | null;
  readonly auth_method: string | null;
  readonly options: string[] | null;
  readonly error: string | null;
}

/** Write pg_hba.conf (without reloading) and read it back through pg_hba_file_rules. */
export async function hbaFileRules(ref: HbaReference, text: string): Promise<HbaRuleRow[]> {
  await ref.cluster.install('pg_hba.conf', text);
  return queryJson<HbaRuleRow>(
    ref,
    'select rule_number, file_name, line_number, type, database, user_name, address, netmask, auth_method, options, error from pg_hba_file_rules',
  );
}

export interface IdentRow {
  readonly file_name: string;
  readonly line_number: number;
  readonly map_name: string | null;
  readonly sys_name: string | null;
  readonly pg_username: string | null;
  readonly error: string | null;
}

export async function identFileMappings(ref: HbaReference, text: string): Promise<IdentRow[]> {
  await ref.cluster.install('pg_ident.conf', text);
  return queryJson<IdentRow>(
    ref,
    'select file_name, line_number, map_name, sys_name, pg_username, error from pg_ident_file_mappings',
  );
}

export interface FileSettingRow {
  readonly sourceline: number | null;
  readonly name: string | null;
  readonly setting: string | null;
  readonly error: string | null;
}

/** Write `name` in the data directory, include it from postgresql.conf, and read it back through pg_file_settings. */
export async function fileSettings(ref: HbaReference, name: string, text: string): Promise<FileSettingRow[]> {
  const main = join(ref.cluster.dataDir, 'postgresql.conf');
  const conf = await readFile(main, 'utf8');
  const include = `include_if_exists = '${name}'`;
  if (!conf.includes(include)) await ref.cluster.install('postgresql.conf', `${conf}\n${include}\n`);
  const path = await ref.cluster.install(name, text);
  return queryJson<FileSettingRow>(
    ref,
    `select sourceline, name, setting, error from pg_file_settings where sourcefile = '${path}' or (sourcefile is null and error is not null) order by sourceline`,
  );
}

/** Install pg_hba.conf (a `local all all trust` line is appended for adminSql) and/or pg_ident.conf, then reload. */
export async function applyRules(
  ref: HbaReference,
  files: { hba?: string; ident?: string; extra?: Record<string, string> },
): Promise<void> {
  for (const [name, content] of Object.entries(files.extra ?? {})) await ref.cluster.install(name, content);
  if (files.hba !== undefined) await ref.cluster.install('pg_hba.conf', `${files.hba}\nlocal all all trust\n`);
  if (files.ident !== undefined) await ref.cluster.install('pg_ident.conf', files.ident);
  await reloadAndWait(ref);
}

async function sighups(ref: HbaReference): Promise<number> {
  const log = await readFile(ref.cluster.logFile, 'utf8');
  return log.split('received SIGHUP').length - 1;
}

/** What PostgreSQL did with a TCP connection: the winning trust/cert line, a reject line, no entry, or another refusal. */
export type Verdict =
  | { readonly kind: 'line'; readonly file: string; readonly line: number }
  | { readonly kind: 'reject' }
  | { readonly kind: 'none' }
  | { readonly kind: 'failed'; readonly message: string };

export async function connectVerdict(
  ref: HbaReference,
  c: {
    user: string;
    database: string;
    ssl: boolean;
    cert?: { cert: string; key: string };
    replication?: 'none' | 'physical' | 'logical';
    /** 127.0.0.1 unless given (the server listens on ::1 too). */
    host?: string;
  },
): Promise<Verdict> {
  const q = (v: string) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const conninfo = [
    `host=${c.host ?? '127.0.0.1'}`,
    `port=${ref.cluster.port}`,
    `user=${q(c.user)}`,
    `dbname=${q(c.database)}`,
    `sslmode=${c.ssl ? 'require' : 'disable'}`,
    'gssencmode=disable',
    ...(c.replication === 'physical'
      ? ['replication=true']
      : c.replication === 'logical'
        ? ['replication=database']
        : []),
    ...(c.cert ? [`sslcert=${c.cert.cert}`, `sslkey=${c.cert.key}`] : []),
  ].join(' ');
  const size = (await stat(ref.cluster.logFile)).size;
  const r = await psql(conninfo, 'select 1', { env: { PGPASSWORD: 'not-used' } });
  const log = (await readFile(ref.cluster.logFile)).subarray(size).toString('utf8');
  if (/pg_hba\.conf rejects connection/.test(r.stderr)) return { kind: 'reject' };
  if (/no pg_hba\.conf entry/.test(r.stderr)) return { kind: 'none' };
  const fatal = /FATAL: {2}(.*)/.exec(r.stderr)?.[1];
  // cert logs "connection authenticated" once the certificate is verified, before the user-name map is checked
  if (fatal && /authentication failed/.test(fatal)) return { kind: 'failed', message: fatal };
  // the line that authenticated (a later "role/database does not exist" does not matter here)
  const m = /connection authenticated: .*\((.+):(\d+)\)/.exec(log);
  if (m) return { kind: 'line', file: m[1]!, line: Number(m[2]) };
  return { kind: 'failed', message: fatal ?? r.stderr.trim() };
}

/** A client certificate issued by the reference's client CA, written 0600 for libpq. */
export async function clientCert(ref: HbaReference, cn: string): Promise<{ cert: string; key: string }> {
  const c = await createClientCert(ref.clientCa, { subject: { CN: cn } });
  const base = join(ref.dir, cn.replace(/[^A-Za-z0-9_.-]/g, '_'));
  writeFileSync(`${base}.crt`, c.certPem);
  writeFileSync(`${base}.key`, c.keyPem);
  chmodSync(`${base}.key`, 0o600);
  return { cert: `${base}.crt`, key: `${base}.key` };
}

/**
 * Give the running server other ssl_* settings (ALTER SYSTEM + reload) and return what it logged about them: the
 * messages of the reload (LOG/DETAIL/HINT lines, without connection chatter). The settings are reset afterwards.
 */
export async function sslReloadLog(ref: HbaReference, settings: Record<string, string>): Promise<string[]> {
  const size = (await stat(ref.cluster.logFile)).size;
  for (const [k, v] of Object.entries(settings)) {
    await adminSql(ref, `alter system set ${k} = '${v.replace(/'/g, "''")}'`);
  }
  await reloadAndWait(ref);
  const log = (await readFile(ref.cluster.logFile)).subarray(size).toString('utf8');
  await adminSql(ref, 'alter system reset all');
  await reloadAndWait(ref);
  return log
    .split('\n')
    .map((l) => /(?:LOG|DETAIL|HINT): {2}(.*)$/.exec(l)?.[1])
    .filter((l): l is string => l !== undefined)
    .filter((l) => !/^(connection |received SIGHUP|parameter ".*" (changed to|removed from)|statement: )/.test(l));
}

/** pg_reload_conf(), then wait until the postmaster logged the SIGHUP and had a moment to finish reloading. */
async function reloadAndWait(ref: HbaReference): Promise<void> {
  const before = await sighups(ref);
  await adminSql(ref, 'select pg_reload_conf()');
  for (let i = 0; i < 100 && (await sighups(ref)) === before; i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 250));
}
