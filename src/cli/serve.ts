/** `pgtls serve`: the gateway, in front of a configured upstream or of an embedded PostgreSQL. */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type ConfigInput, loadConfig } from '../config/load.js';
import { SCHEMA } from '../config/schema.js';
import { errorMessage, isPgtlsError } from '../errors.js';
import { type EmbeddedPostgres, startEmbedded } from '../gateway/embedded-mode.js';
import { type CheckReport, Gateway, checkConfiguration } from '../gateway/gateway.js';
import type { ConnectionRecord } from '../gateway/runtime.js';
import { WorkerPool, isWorker, serveAsWorker, workerCount, workerId, workerTotal } from '../gateway/workers.js';
import { type Command, EXIT, type ParsedArgs, flag, parseCommandArgs, str, strs } from './command.js';
import { RELOAD_STATUS_FILE, type ReloadStatus } from './reload.js';

const keyFlags = Object.keys(SCHEMA).map((k) => k.replace(/_/g, '-'));

const HELP = `Usage: pgtls serve [--config FILE] [--<parameter> VALUE …] [-c name=value …]

Run the TLS-enforcing gateway. Settings use postgresql.conf syntax and PostgreSQL's ssl_* names; precedence is
flag > config file > environment (PGTLS_<NAME>) > default. With no upstream, an embedded PostgreSQL is started
under data_directory and the psql command that connects is printed.

Options:
  --config FILE            configuration file (postgresql.conf syntax; paths in it are relative to it)
  --check                  load and check everything (config, hba, ident, certificate, key, CA, CRL), print what
                           would be served, and exit: 0 if a start would succeed (add --json for data)
  --json                   with --check: the report as JSON
  -c, --set NAME=VALUE     set any parameter (repeatable)
  --<parameter> VALUE      set a parameter, e.g. --port 6432 --ssl-min-protocol-version TLSv1.3
  -h, --help               show this help

Parameters (default):
${Object.entries(SCHEMA)
  .map(([k, v]) => `  ${k.padEnd(40)} ${v.help}${v.default === '' ? '' : ` (${v.default})`}`)
  .join('\n')}

Signals: SIGHUP reloads (also 'pgtls reload'); SIGINT/SIGTERM stop accepting, let sessions finish for
shutdown_timeout, then stop. One JSON line per connection is written to standard output.`;

function configInput(args: ParsedArgs): ConfigInput {
  const flags: Record<string, string> = {};
  for (const k of keyFlags) {
    const v = str(args, k);
    if (v !== undefined) flags[k] = v;
  }
  for (const kv of strs(args, 'set')) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`-c expects name=value, got "${kv}"`);
    flags[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return { file: str(args, 'config'), flags, env: process.env };
}

function log(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...obj })}\n`);
}

function describeError(err: unknown): string {
  let text = `pgtls: ${errorMessage(err)}`;
  if (isPgtlsError(err)) {
    if (typeof err.details.detail === 'string') text += `\nDETAIL:  ${err.details.detail}`;
    if (typeof err.details.hint === 'string') text += `\nHINT:  ${err.details.hint}`;
  }
  return text;
}

async function check(input: ConfigInput, json: boolean): Promise<number> {
  let r: CheckReport;
  try {
    r = await checkConfiguration(input);
  } catch (err) {
    if (json)
      process.stdout.write(
        `${JSON.stringify({ ok: false, error: errorMessage(err), code: isPgtlsError(err) ? err.code : undefined })}\n`,
      );
    else process.stderr.write(`${describeError(err)}\n`);
    return EXIT.failure;
  }
  if (json) {
    const { config, ...rest } = r;
    process.stdout.write(`${JSON.stringify({ ok: true, ...rest, sources: config.sources }, null, 2)}\n`);
    return EXIT.ok;
  }
  const c = r.config;
  const lines = [
    'configuration OK',
    `  listen        ${c.listen_addresses}:${c.port}`,
    c.ssl
      ? `  TLS           ${c.ssl_min_protocol_version}${c.ssl_max_protocol_version ? `–${c.ssl_max_protocol_version}` : '+'}, ciphers '${c.ssl_ciphers}', groups '${c.ssl_groups}'`
      : '  TLS           off',
    ...(r.certificate
      ? [
          `  certificate   ${r.certificate.subject} (issuer ${r.certificate.issuer}; chain of ${r.certificate.chainLength}; expires ${r.certificate.validTo}, ${r.certificate.daysLeft} days left)`,
        ]
      : []),
    `  client certs  ${c.ssl_ca_file ? `verified against ${c.ssl_ca_file}${c.ssl_crl_file || c.ssl_crl_dir ? ' with CRLs' : ''}` : 'not requested (no ssl_ca_file)'}`,
    `  pg_hba.conf   ${c.hba_file || '(built in)'}: ${r.hbaLines} line(s)${c.ident_file ? `; pg_ident.conf ${r.identLines} line(s)` : ''}`,
    `  upstream      ${c.upstream === '' ? 'embedded PostgreSQL' : r.upstream}`,
    ...r.warnings.map((w) => `warning: ${w}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return EXIT.ok;
}

/** A worker of `workers = N`: the gateway alone, coordinated by the primary (src/gateway/workers.ts). */
async function runWorker(input: ConfigInput): Promise<number> {
  const up = process.env.PGTLS_WORKER_UPSTREAM;
  const passwordFile = process.env.PGTLS_WORKER_EMBEDDED_PASSWORD_FILE;
  const worker = workerId();
  const gw = await Gateway.start(input, {
    ...(up ? { defaultUpstream: JSON.parse(up) as { host: string; port: number } } : {}),
    ...(up && passwordFile ? { embeddedSuperuser: { user: 'postgres', passwordFile } } : {}),
    // Interleaved ids: worker k of N numbers its connections k, k+N, … (the console finds the owner of an id).
    connectionIds: { first: worker, step: workerTotal() },
  });
  gw.on('connection', (r: ConnectionRecord) => {
    if (gw.config.log_connections) log({ level: 'info', msg: 'connection', worker, ...r });
  });
  gw.on('warning', (w: Record<string, unknown>) => log({ level: 'warn', worker, ...w }));
  serveAsWorker(gw);
  return new Promise<number>(() => undefined); // the primary's 'stop' message ends the process
}

export const command: Command = async (argv) => {
  const options = Object.fromEntries(keyFlags.map((k) => [k, { type: 'string' as const }]));
  const args = parseCommandArgs(
    argv,
    {
      ...options,
      config: { type: 'string' },
      set: { type: 'string', short: 'c', multiple: true },
      check: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    HELP,
  );
  if (!args) return EXIT.ok;
  const input = configInput(args);
  if (flag(args, 'check')) return check(input, flag(args, 'json'));
  const preview = loadConfig(input); // fails fast, before PostgreSQL is started, on any config error
  if (isWorker()) return runWorker(input);
  let embedded: EmbeddedPostgres | undefined;
  const progress = (msg: string) => process.stderr.write(`pgtls: ${msg}\n`);
  if (preview.upstream === '') embedded = await startEmbedded(preview.data_directory, progress);
  const count = workerCount(preview.workers);
  let gw: Gateway | WorkerPool;
  try {
    if (count > 1) {
      // Workers run this same command; the embedded cluster (started here, once) is their upstream.
      const env: Record<string, string> = embedded
        ? {
            PGTLS_WORKER_UPSTREAM: JSON.stringify(embedded.upstream),
            PGTLS_WORKER_EMBEDDED_PASSWORD_FILE: embedded.passwordFile,
          }
        : {};
      gw = await WorkerPool.start(preview, count, env);
    } else {
      gw = await Gateway.start(
        input,
        embedded
          ? {
              defaultUpstream: embedded.upstream,
              embeddedSuperuser: { user: 'postgres', passwordFile: embedded.passwordFile },
            }
          : {},
      );
    }
  } catch (err) {
    await embedded?.cluster.stop().catch(() => undefined);
    process.stderr.write(`${describeError(err)}\n`);
    return EXIT.failure;
  }
  const c = gw.config;
  const dataDir = resolve(c.data_directory);
  const pidFile = join(dataDir, 'pgtls.pid');
  const reloadFile = join(dataDir, RELOAD_STATUS_FILE);
  let reloadSeq = 0;
  try {
    // With an upstream nothing else may have created the data directory: `pgtls reload` finds the gateway here.
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(pidFile, `${process.pid}\n`);
    rmSync(reloadFile, { force: true });
  } catch (err) {
    log({
      level: 'warn',
      msg: `could not write ${pidFile}: ${errorMessage(err)}; \`pgtls reload\` cannot find this gateway (send SIGHUP to pid ${process.pid})`,
    });
  }
  gw.on('connection', (r: ConnectionRecord) => {
    if (gw.config.log_connections) log({ level: 'info', msg: 'connection', ...r });
  });
  gw.on('warning', (w: Record<string, unknown>) => log({ level: 'warn', ...w }));
  gw.on('notice', (w: Record<string, unknown>) => log({ level: 'info', ...w }));
  gw.on('reload', (e: { ok: boolean; warnings?: string[]; error?: unknown; trigger?: string; files?: string[] }) => {
    const why = { trigger: e.trigger, ...(e.files ? { files: e.files } : {}) };
    if (e.ok) log({ level: 'info', msg: 'configuration reloaded', ...why, warnings: e.warnings });
    else
      log({
        level: 'error',
        msg: 'reload failed; the previous configuration stays in force',
        ...why,
        error: errorMessage(e.error),
      });
    // The outcome for `pgtls reload`, which waits for it (written whole, then renamed into place).
    const status: ReloadStatus = {
      seq: ++reloadSeq,
      pid: process.pid,
      ok: e.ok,
      time: new Date().toISOString(),
      ...(e.ok ? { warnings: e.warnings ?? [] } : { error: describeError(e.error).replace(/^pgtls: /, '') }),
    };
    try {
      writeFileSync(`${reloadFile}.tmp`, `${JSON.stringify(status)}\n`);
      renameSync(`${reloadFile}.tmp`, reloadFile);
    } catch {
      // no data directory to write to: the log line above is all there is
    }
  });
  const where = gw.addresses().map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`));
  const tlsText = c.ssl
    ? `TLS ${c.ssl_min_protocol_version}${c.ssl_max_protocol_version ? `–${c.ssl_max_protocol_version}` : '+'}`
    : 'TLS OFF';
  const backendText = embedded ? `embedded PostgreSQL ${embedded.version}` : c.upstream;
  const workersText = gw instanceof WorkerPool ? `, ${gw.workerCount} workers` : '';
  process.stderr.write(`pgtls: gateway listening on ${where.join(', ')} (${tlsText}${workersText}) → ${backendText}\n`);
  if (embedded) {
    const rootcert = join(resolve(c.data_directory), 'tls', 'ca.crt');
    const usesLocalCa = c.sources.ssl_cert_file === 'default';
    const conn = [
      'host=localhost',
      `port=${gw.port}`,
      'user=postgres',
      'dbname=postgres',
      c.ssl ? (usesLocalCa ? `sslmode=verify-full sslrootcert=${rootcert}` : 'sslmode=verify-full') : 'sslmode=disable',
    ].join(' ');
    process.stderr.write(`\nConnect with:\n  psql "${conn}"\n`);
    if (embedded.passwordCreated) {
      process.stderr.write(
        `\nPassword for user postgres (shown once; stored in ${embedded.passwordFile}, mode 0600):\n  ${embedded.password}\n\n`,
      );
    } else {
      process.stderr.write(`The password for user postgres is in ${embedded.passwordFile}.\n\n`);
    }
  }
  log({
    level: 'info',
    msg: 'ready',
    listen: where,
    upstream: embedded ? 'embedded' : c.upstream,
    pid: process.pid,
    ...(gw instanceof WorkerPool ? { workers: gw.workerCount } : {}),
  });
  for (const w of gw.report().warnings) log({ level: 'warn', msg: w });

  return new Promise<number>((done) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log({
        level: 'info',
        msg: 'shutting down',
        signal,
        ...(gw instanceof Gateway ? { sessions: gw.sessionCount } : { workers: gw.workerCount }),
        timeout_ms: c.shutdown_timeout,
      });
      await gw.close();
      if (embedded) await embedded.cluster.stop().catch((e: unknown) => log({ level: 'error', msg: errorMessage(e) }));
      rmSync(pidFile, { force: true });
      rmSync(reloadFile, { force: true });
      log({ level: 'info', msg: 'stopped' });
      done(EXIT.ok);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGHUP', () => void gw.reload());
  });
};
