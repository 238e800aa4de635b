/**
 * pg_hosts.conf, PostgreSQL 19's SNI configuration (doc/src/sgml/runtime.sgml "SNI Configuration"): which
 * certificate, key and client CA the server uses for which TLS server name. Parsing follows parse_hosts_line() and
 * load_hosts() in src/backend/libpq/be-secure-common.c, the checks across lines and the selection follow be_tls_init()
 * and sni_clienthello_cb() in be-secure-openssl.c (commit 4f433025f66, "ssl: Serverside SNI support for libpq").
 *
 *   HOSTNAME  SSL_CERTIFICATE  SSL_KEY  [SSL_CA_CERTIFICATE  [SSL_PASSPHRASE_CMD  [SSL_PASSPHRASE_CMD_RELOAD]]]
 *
 * HOSTNAME is a literal name, a comma-separated list of them (with `@file` inclusion), `*` (the default, used for any
 * name not listed and for clients without SNI when there is no `/no_sni/` line) or `/no_sni/` (clients that send no
 * SNI). The tokenizer is pg_hba.conf's (comments, quoting, line continuations); `include`, `include_if_exists` and
 * `include_dir` lines work as in pg_hba.conf. Pure apart from reading the files.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { PgtlsError } from '../errors.js';
import { parsePgBool } from '../protocol/startup.js';
import { type TokenLine, strerror, tokenizeAuthText } from './tokenize.js';

export const ERR_HOSTS = 'PGTLS_ERR_HOSTS';

/** PostgreSQL's CONF_FILE_MAX_DEPTH. */
const MAX_DEPTH = 10;

export interface HostsEntry {
  readonly file: string;
  readonly line: number;
  readonly raw: string;
  /** The names as written (matching ignores ASCII case); `['*']` or `['/no_sni/']` for the special entries. */
  readonly hostnames: readonly string[];
  readonly kind: 'names' | 'default' | 'no_sni';
  /** Absolute paths (relative ones are resolved against the directory of the file the line is in). */
  readonly ssl_cert_file: string;
  readonly ssl_key_file: string;
  /** '' when the line has no CA: then no client certificate is requested on connections it serves. */
  readonly ssl_ca_file: string;
  /** '' when none (the main ssl_passphrase_command is not used for pg_hosts.conf entries, as in PostgreSQL). */
  readonly ssl_passphrase_command: string;
  readonly ssl_passphrase_command_supports_reload: boolean;
}

/** The three kinds of entry, as be_tls_init() files them. */
export interface HostsConfig {
  /** Entries with literal names, in file order (the first match wins, as in sni_clienthello_cb()). */
  readonly sni: readonly HostsEntry[];
  readonly noSni?: HostsEntry;
  readonly defaultHost?: HostsEntry;
}

export type HostsFileResult =
  | { readonly status: 'missing' }
  | { readonly status: 'empty' }
  | { readonly status: 'ok'; readonly hosts: HostsConfig };

function hostsError(message: string, file: string, line: number, hint?: string): PgtlsError {
  // PostgreSQL reports these with errcontext("line %d of configuration file \"%s\""), as pg_hba.conf errors.
  return new PgtlsError(ERR_HOSTS, `${message} (line ${line} of configuration file "${file}")`, {
    details: { file, line, ...(hint ? { hint } : {}) },
  });
}

/**
 * load_hosts() + be_tls_init()'s checks: a missing file is 'missing' (PostgreSQL then uses postgresql.conf's ssl_*
 * settings), a file without entries is 'empty' (the same), anything else is parsed and checked; the first problem
 * throws with file and line.
 */
export function readHostsFile(file: string): HostsFileResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    throw new PgtlsError(ERR_HOSTS, `could not open file "${file}": ${strerror(cause)}`, { cause, details: { file } });
  }
  const entries = parseHostsLines(expandHostsIncludes(tokenizeAuthText(text, file), 0));
  if (entries.length === 0) return { status: 'empty' };
  return { status: 'ok', hosts: buildHosts(entries) };
}

/**
 * PostgreSQL 16+ include directives as tokenize_auth_file() recognises them: a line of exactly two fields whose first
 * token is `include`, `include_if_exists` or `include_dir` (quoted or not). Any other line, including a malformed
 * include, is an ordinary entry (and then fails as one).
 */
export function expandHostsIncludes(lines: readonly TokenLine[], depth: number): TokenLine[] {
  const out: TokenLine[] = [];
  for (const l of lines) {
    const kw = l.fields[0]?.[0]?.text;
    const arg = l.fields[1]?.[0]?.text;
    if (l.fields.length !== 2 || arg === undefined || !['include', 'include_if_exists', 'include_dir'].includes(kw!)) {
      out.push(l);
      continue;
    }
    const target = isAbsolute(arg) ? arg : join(dirname(l.file), arg);
    if (depth >= MAX_DEPTH) {
      throw hostsError(`could not open file "${target}": maximum nesting depth exceeded`, l.file, l.line);
    }
    const readOne = (path: string): string | undefined => {
      try {
        return readFileSync(path, 'utf8');
      } catch (cause) {
        if (kw === 'include_if_exists' && (cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw hostsError(`could not open file "${path}": ${strerror(cause)}`, l.file, l.line);
      }
    };
    if (kw === 'include_dir') {
      let names: string[];
      try {
        // As PostgreSQL: files ending in .conf, not starting with '.', in name order.
        names = readdirSync(target)
          .filter((n) => n.endsWith('.conf') && !n.startsWith('.'))
          .sort();
      } catch (cause) {
        throw hostsError(`could not open directory "${target}": ${strerror(cause)}`, l.file, l.line);
      }
      for (const n of names) {
        const p = join(target, n);
        out.push(...expandHostsIncludes(tokenizeAuthText(readOne(p) ?? '', p), depth + 1));
      }
      continue;
    }
    const text = readOne(target);
    if (text !== undefined) out.push(...expandHostsIncludes(tokenizeAuthText(text, target), depth + 1));
  }
  return out;
}

/** parse_hosts_line() for every line, with its messages. */
export function parseHostsLines(lines: readonly TokenLine[]): HostsEntry[] {
  return lines.map(parseHostsLine);
}

function parseHostsLine(l: TokenLine): HostsEntry {
  const err = (message: string) => hostsError(message, l.file, l.line);
  const names = l.fields[0]!.map((t) => t.text);
  // `*` and `/no_sni/` stand alone (compared as strings, quoted or not, as PostgreSQL does).
  if (names.length > 1 && names.some((n) => n === '*' || n === '/no_sni/')) {
    throw err('default and non-SNI entries cannot be mixed with other entries');
  }
  const single = (idx: number, what: string, required: boolean): string | undefined => {
    const f = l.fields[idx];
    if (!f) {
      if (required) throw err('missing entry at end of line');
      return undefined;
    }
    if (f.length > 1) throw err(`multiple values specified for ${what}`);
    return f[0]!.text;
  };
  const cert = single(1, 'SSL certificate', true)!;
  const key = single(2, 'SSL key', true)!;
  const ca = single(3, 'SSL CA', false) ?? '';
  const cmd = single(4, 'SSL passphrase command', false) ?? '';
  let reload = false;
  const reloadField = l.fields[5];
  if (reloadField) {
    // The extra-fields check comes before the boolean check in parse_hosts_line().
    if (l.fields.length > 6) throw err('extra fields at end of line');
    // parse_bool(): no surrounding blanks (parsePgBool trims, so check that first).
    const text = reloadField[0]!.text;
    const b = reloadField.length === 1 && text === text.trim() ? parsePgBool(text) : undefined;
    if (b === undefined) throw err('incorrect syntax for boolean value SSL_passphrase_cmd_reload');
    reload = b;
  }
  const base = dirname(l.file);
  const abs = (p: string) => (p === '' || isAbsolute(p) ? p : join(base, p));
  const first = names[0]!;
  return Object.freeze({
    file: l.file,
    line: l.line,
    raw: l.raw,
    hostnames: Object.freeze(names),
    kind: first === '*' ? 'default' : first === '/no_sni/' ? 'no_sni' : 'names',
    ssl_cert_file: abs(cert),
    ssl_key_file: abs(key),
    ssl_ca_file: abs(ca),
    ssl_passphrase_command: cmd,
    ssl_passphrase_command_supports_reload: reload,
  });
}

/** ASCII case folding, as pg_strcasecmp() compares host names. */
function fold(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** be_tls_init(): at most one `*`, at most one `/no_sni/`, each literal name once (ignoring ASCII case). */
export function buildHosts(entries: readonly HostsEntry[]): HostsConfig {
  const sni: HostsEntry[] = [];
  let noSni: HostsEntry | undefined;
  let defaultHost: HostsEntry | undefined;
  const seen = new Set<string>();
  for (const e of entries) {
    if (e.kind === 'default') {
      if (defaultHost) throw hostsError('multiple default hosts specified', e.file, e.line);
      defaultHost = e;
    } else if (e.kind === 'no_sni') {
      if (noSni) throw hostsError('multiple no_sni hosts specified', e.file, e.line);
      noSni = e;
    } else {
      for (const name of e.hostnames) {
        const k = fold(name);
        if (seen.has(k)) throw hostsError(`multiple entries for host "${name}" specified`, e.file, e.line);
        seen.add(k);
      }
      sni.push(e);
    }
  }
  return Object.freeze({
    sni: Object.freeze(sni),
    ...(noSni ? { noSni } : {}),
    ...(defaultHost ? { defaultHost } : {}),
  });
}

/** TLS alerts a refused ClientHello gets (RFC 8446 §6.2 codes). */
export const TLS_ALERT = { handshake_failure: 40, unrecognized_name: 112 } as const;
export type HostsAlert = keyof typeof TLS_ALERT;

export type HostSelection<E> = { readonly entry: E } | { readonly alert: HostsAlert; readonly reason: string };

/**
 * sni_clienthello_cb(): with a server name, the first entry listing it (ASCII case-insensitive), else the default,
 * else unrecognized_name; without one, the `/no_sni/` entry, else the default, else a refusal. PostgreSQL sets
 * missing_extension for that last case, but its ClientHello callback runs before the TLS version is chosen and
 * OpenSSL then maps missing_extension to handshake_failure on the wire (what 004_sni.pl expects), so that is the
 * alert named here.
 */
export function selectHost<E extends { readonly hostnames: readonly string[] }>(
  hosts: { readonly sni: readonly E[]; readonly noSni?: E | undefined; readonly defaultHost?: E | undefined },
  servername: string | undefined,
): HostSelection<E> {
  if (servername !== undefined && servername !== '') {
    const k = fold(servername);
    for (const e of hosts.sni) if (e.hostnames.some((n) => fold(n) === k)) return { entry: e };
    if (hosts.defaultHost) return { entry: hosts.defaultHost };
    return { alert: 'unrecognized_name', reason: `no pg_hosts.conf entry for server name "${servername}"` };
  }
  const e = hosts.noSni ?? hosts.defaultHost;
  if (e) return { entry: e };
  return { alert: 'handshake_failure', reason: 'no hostname provided in callback, and no fallback configured' };
}
