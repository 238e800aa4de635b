/**
 * `auth_file`: PgBouncer's userlist.txt, read with PgBouncer's rules (src/loader.c load_auth_file, doc/config.md
 * "Authentication file format") so an existing file carries over unchanged:
 *
 *     "username" "password-or-secret" anything else on the line is ignored
 *
 * - blank space (any isspace(), newlines included) before an entry is skipped; a line starting with ';' is a comment
 *   — '#' is *not* a comment in PgBouncer (it stops with "broken auth file"), and not here either;
 * - both fields are double-quoted; inside a field "" stands for one ";
 * - between the two fields anything up to the next " is skipped (PgBouncer's find_quote), even a line break;
 * - a user name must be under 128 bytes and a password under 65531 bytes (MAX_USERNAME, MAX_PASSWORD, counted as
 *   written, before "" is unescaped);
 * - a user listed twice keeps the last password;
 * - the secret is a SCRAM secret (SCRAM-SHA-256$…), an md5 secret (md5 + 32 hex) or else a plaintext password,
 *   classified as PostgreSQL's get_password_type() does.
 *
 * One deliberate difference: where PgBouncer logs "broken auth file" and keeps the users read so far, pgtls refuses
 * the whole file with a PgtlsError naming file:line — half a user list is worse than none. A NUL byte (which ends
 * PgBouncer's read silently) is refused the same way. Messages never contain a secret, nor a user name.
 */
import { readFile } from 'node:fs/promises';
import { type StoredSecret, classifySecret } from '../auth/password.js';
import { PgtlsError } from '../errors.js';

/** MAX_USERNAME and MAX_PASSWORD of PgBouncer (include/bouncer.h), terminating NUL included. */
export const AUTH_FILE_MAX_USERNAME = 128;
export const AUTH_FILE_MAX_PASSWORD = 65531;

export interface AuthFileEntry {
  readonly user: string;
  /** The password or secret exactly as stored (unescaped). Never log it. */
  readonly secret: string;
  readonly kind: StoredSecret['kind'];
  /** 1-based line of the entry's user name. */
  readonly line: number;
}

export type AuthFile = ReadonlyMap<string, AuthFileEntry>;

function authFileError(file: string, line: number, what: string): PgtlsError {
  return new PgtlsError('PGTLS_ERR_AUTH_FILE', `${file}:${line}: ${what}`, { details: { file, line } });
}

/** isspace() in the C locale. */
const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\v' || c === '\f' || c === '\r';

/** find_quote(): the next unescaped '"' from `at` ("" is skipped unless `start`), or -1. */
function findQuote(text: string, at: number, start: boolean): number {
  for (let p = at; p < text.length; p++) {
    if (text[p] !== '"') continue;
    if (!start && text[p + 1] === '"') {
      p++;
      continue;
    }
    return p;
  }
  return -1;
}

/** Parse the text of an auth_file. `file` only names it in errors. */
export function parseAuthFile(text: string, file: string): AuthFile {
  const users = new Map<string, AuthFileEntry>();
  const nul = text.indexOf('\0');
  const newlines: number[] = [];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) newlines.push(i);
  const lineAt = (pos: number) => {
    // 1 + the number of newlines before pos (binary search)
    let lo = 0;
    let hi = newlines.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (newlines[mid]! < pos) lo = mid + 1;
      else hi = mid;
    }
    return lo + 1;
  };
  if (nul >= 0) throw authFileError(file, lineAt(nul), 'broken auth file: NUL byte');
  let p = 0;
  // each turn consumes at least one character, so the loop ends
  while (p < text.length) {
    while (p < text.length && isSpace(text[p]!)) p++;
    if (p >= text.length) break;
    if (text[p] === ';') {
      const nl = text.indexOf('\n', p);
      p = nl < 0 ? text.length : nl;
      continue;
    }
    const line = lineAt(p);
    if (text[p] !== '"') throw authFileError(file, line, 'broken auth file: expected a double-quoted user name');
    const userStart = p + 1;
    const userEnd = findQuote(text, userStart, false);
    if (userEnd < 0) throw authFileError(file, line, 'broken auth file: the user name has no closing double quote');
    const rawUser = text.slice(userStart, userEnd);
    if (Buffer.byteLength(rawUser, 'utf8') >= AUTH_FILE_MAX_USERNAME) {
      throw authFileError(file, line, 'username too long in auth file');
    }
    const pwQuote = findQuote(text, userEnd + 1, true);
    if (pwQuote < 0) throw authFileError(file, line, 'broken auth file: expected a double-quoted password');
    const pwEnd = findQuote(text, pwQuote + 1, false);
    if (pwEnd < 0)
      throw authFileError(file, lineAt(pwQuote), 'broken auth file: the password has no closing double quote');
    const rawSecret = text.slice(pwQuote + 1, pwEnd);
    if (Buffer.byteLength(rawSecret, 'utf8') >= AUTH_FILE_MAX_PASSWORD) {
      throw authFileError(file, lineAt(pwQuote), 'password too long in auth file');
    }
    const user = rawUser.replaceAll('""', '"');
    const secret = rawSecret.replaceAll('""', '"');
    users.set(user, { user, secret, kind: classifySecret(secret).kind, line });
    const nl = text.indexOf('\n', pwEnd + 1);
    p = nl < 0 ? text.length : nl;
  }
  return users;
}

/** Read and parse an auth_file. */
export async function readAuthFile(path: string): Promise<AuthFile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new PgtlsError('PGTLS_ERR_AUTH_FILE_READ', `could not open auth_file "${path}": ${e.code ?? e.message}`, {
      cause: err,
      details: { file: path },
    });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new PgtlsError('PGTLS_ERR_AUTH_FILE', `${path}: auth_file is not valid UTF-8`, {
      cause: err,
      details: { file: path },
    });
  }
  return parseAuthFile(text, path);
}
