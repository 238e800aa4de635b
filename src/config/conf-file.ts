/**
 * A reader for postgresql.conf syntax (the grammar of src/backend/utils/misc/guc-file.l), so a DBA's existing lines
 * work unchanged:
 *   name = value      name value      # comment
 *   quoted values: 'it''s' or 'it\'s', with backslash escapes \b \f \n \r \t and octal \ooo
 *   include 'file'    include_if_exists 'file'    include_dir 'directory'   (relative to the including file)
 * Every entry remembers its file and line so errors can point at them. Pure except for reading the files.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { PgtlsError } from '../errors.js';

export const ERR_CONFIG_SYNTAX = 'PGTLS_ERR_CONFIG_SYNTAX';
export const ERR_CONFIG_FILE = 'PGTLS_ERR_CONFIG_FILE';

export interface ConfEntry {
  /** Lower-case: parameter names are case-insensitive. */
  readonly name: string;
  /** The name as written, for messages (PostgreSQL quotes unknown names as written: "Ssl_Bogus"). */
  readonly written?: string;
  readonly value: string;
  readonly file: string;
  readonly line: number;
}

/** PostgreSQL stops following includes deeper than this (CONF_FILE_MAX_DEPTH). */
const MAX_DEPTH = 10;

export function readConfFile(path: string, depth = 0): ConfEntry[] {
  const file = resolve(path);
  if (depth > MAX_DEPTH) {
    throw new PgtlsError(
      ERR_CONFIG_FILE,
      `could not open configuration file "${file}": maximum nesting depth exceeded`,
      { details: { file } },
    );
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new PgtlsError(ERR_CONFIG_FILE, `could not open configuration file "${file}": ${strerror(cause)}`, {
      cause,
      details: { file },
    });
  }
  const out: ConfEntry[] = [];
  for (const entry of parseConfText(text, file)) {
    if (entry.name === 'include' || entry.name === 'include_if_exists' || entry.name === 'include_dir') {
      const target = isAbsolute(entry.value) ? entry.value : join(dirname(file), entry.value);
      if (entry.name === 'include_dir') {
        if (!existsSync(target) || !statSync(target).isDirectory()) {
          const why = existsSync(target) ? 'Not a directory' : 'No such file or directory';
          throw syntax(entry.file, entry.line, `could not open configuration directory "${target}": ${why}`);
        }
        // As PostgreSQL: only files ending in .conf, not starting with '.', in C-locale name order.
        const names = readdirSync(target)
          .filter((n) => n.endsWith('.conf') && !n.startsWith('.'))
          .sort();
        for (const n of names) out.push(...readConfFile(join(target, n), depth + 1));
      } else if (entry.name === 'include_if_exists' && !existsSync(target)) {
        // skipped, as PostgreSQL does (it logs "skipping missing configuration file")
      } else {
        out.push(...readConfFile(target, depth + 1));
      }
      continue;
    }
    out.push(entry);
  }
  return out;
}

/** The C library's text for an errno, as PostgreSQL's %m prints it, rather than Node's "ENOENT: …, open '…'". */
function strerror(cause: unknown): string {
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'No such file or directory';
  if (code === 'EACCES') return 'Permission denied';
  if (code === 'EISDIR') return 'Is a directory';
  return (cause as Error).message;
}

function syntax(file: string, line: number, message: string): PgtlsError {
  return new PgtlsError(ERR_CONFIG_SYNTAX, `${message} (${file}:${line})`, { details: { file, line } });
}

const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_.$]/;
/** Characters of an unquoted value: identifiers, numbers with units, simple paths (guc-file.l's UNQUOTED_STRING). */
const UNQUOTED_CHAR = /[A-Za-z0-9_.:/+\-$]/;

/** Parse the text of one file (no includes followed). */
export function parseConfText(text: string, file: string): ConfEntry[] {
  const out: ConfEntry[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    let at = 0;
    const skipSpace = () => {
      while (at < raw.length && (raw[at] === ' ' || raw[at] === '\t')) at++;
    };
    skipSpace();
    if (at >= raw.length || raw[at] === '#') return;
    if (!NAME_START.test(raw[at]!))
      throw syntax(
        file,
        line,
        `syntax error in file "${file}" line ${line}, near token "${raw.slice(at).split(/\s/)[0]}"`,
      );
    const nameStart = at;
    while (at < raw.length && NAME_CHAR.test(raw[at]!)) at++;
    const written = raw.slice(nameStart, at);
    const name = written.toLowerCase();
    skipSpace();
    if (raw[at] === '=') {
      at++;
      skipSpace();
    }
    let value: string;
    if (raw[at] === "'") {
      at++;
      let v = '';
      let closed = false;
      while (at < raw.length) {
        const c = raw[at]!;
        if (c === "'") {
          if (raw[at + 1] === "'") {
            v += "'";
            at += 2;
            continue;
          }
          at++;
          closed = true;
          break;
        }
        if (c === '\\' && at + 1 < raw.length) {
          const n = raw[at + 1]!;
          const map: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
          if (map[n] !== undefined) {
            v += map[n];
            at += 2;
          } else if (/[0-7]/.test(n)) {
            const m = /^[0-7]{1,3}/.exec(raw.slice(at + 1))![0];
            v += String.fromCharCode(Number.parseInt(m, 8));
            at += 1 + m.length;
          } else {
            v += n;
            at += 2;
          }
          continue;
        }
        v += c;
        at++;
      }
      // guc-file.l has no rule for an unterminated string: its lexer stops at the lone quote.
      if (!closed) throw syntax(file, line, `syntax error in file "${file}" line ${line}, near token "'"`);
      value = v;
    } else {
      const start = at;
      while (at < raw.length && UNQUOTED_CHAR.test(raw[at]!)) at++;
      if (at === start) {
        throw syntax(file, line, `syntax error in file "${file}" line ${line}, near end of line`);
      }
      value = raw.slice(start, at);
    }
    skipSpace();
    if (at < raw.length && raw[at] !== '#') {
      throw syntax(
        file,
        line,
        `syntax error in file "${file}" line ${line}, near token "${raw.slice(at).split(/\s/)[0]}"`,
      );
    }
    out.push({ name, value, file, line, ...(written !== name ? { written } : {}) });
  });
  return out;
}
