/**
 * The tokenizer shared by pg_hba.conf and pg_ident.conf (tokenize_auth_file() / next_token() in
 * src/backend/libpq/hba.c): fields separated by whitespace, list items by commas (a comma may be followed by
 * whitespace), double quotes group and disable keywords, `#` starts a comment, a trailing backslash continues the
 * line, `@file` (unquoted) inserts the tokens of another file relative to the including one.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { PgtlsError } from '../errors.js';

export const ERR_HBA = 'PGTLS_ERR_HBA';

export interface Token {
  readonly text: string;
  readonly quoted: boolean;
}

/** One line: fields, each a list of tokens. */
export interface TokenLine {
  readonly fields: Token[][];
  readonly file: string;
  readonly line: number;
  readonly raw: string;
}

export function hbaError(message: string, file: string, line: number, hint?: string): PgtlsError {
  return new PgtlsError(ERR_HBA, `${message} (line ${line} of configuration file "${file}")`, {
    details: { file, line, ...(hint ? { hint } : {}) },
  });
}

/** The C library's text for an errno, as PostgreSQL's %m prints it ("No such file or directory"). */
export function strerror(cause: unknown): string {
  const code = (cause as NodeJS.ErrnoException).code;
  const known: Record<string, string> = {
    ENOENT: 'No such file or directory',
    EACCES: 'Permission denied',
    EISDIR: 'Is a directory',
    ENOTDIR: 'Not a directory',
    ELOOP: 'Too many levels of symbolic links',
  };
  return (code && known[code]) ?? (cause as Error).message;
}

export function readAuthFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new PgtlsError(ERR_HBA, `could not open ${what} file "${file}": ${strerror(cause)}`, {
      cause,
      details: { file },
    });
  }
}

/** Split text into logical lines (joining backslash continuations) and those into fields of tokens. */
export function tokenizeAuthText(text: string, file: string, depth = 0): TokenLine[] {
  const physical = text.split(/\r?\n/);
  const out: TokenLine[] = [];
  for (let i = 0; i < physical.length; i++) {
    const lineNo = i + 1;
    let raw = physical[i]!;
    // As tokenize_auth_file(): a backslash that is the very last character of the physical line (not followed by
    // blanks, and even inside a comment) is removed and the next line appended as is, without a separator.
    while (raw.endsWith('\\') && i + 1 < physical.length) {
      raw = raw.slice(0, -1) + physical[++i];
    }
    const fields = tokenizeLine(raw, file, lineNo, depth);
    if (fields.length > 0) out.push({ fields, file, line: lineNo, raw: raw.trim() });
  }
  return out;
}

const isBlank = (c: string | undefined) => c === ' ' || c === '\t' || c === '\r';

/**
 * next_token() + next_field_expand(): blanks and commas before a token are skipped (so `a ,b` is two fields and
 * `a,,b` one list); a token ends at an unquoted blank, comma or `#`; inside double quotes `""` is a literal quote
 * and an unterminated quote runs to the end of the line (PostgreSQL reports no error for it). A token counts as
 * quoted only when a quote came before its first character (`al"l"` is still the keyword all).
 */
function tokenizeLine(raw: string, file: string, line: number, depth: number): Token[][] {
  const fields: Token[][] = [];
  let at = 0;
  const n = raw.length;
  let current: Token[] | undefined;
  while (at < n) {
    while (at < n && (isBlank(raw[at]) || raw[at] === ',')) at++;
    if (at >= n || raw[at] === '#') break;
    let text = '';
    let quoted = false;
    let inQuote = false;
    let comma = false;
    while (at < n && (!isBlank(raw[at]) || inQuote)) {
      const c = raw[at]!;
      if (!inQuote && (c === '#' || c === ',')) {
        if (c === ',') {
          comma = true;
          at++;
        } else at = n; // a comment ends the line
        break;
      }
      if (c === '"') {
        if (inQuote && raw[at + 1] === '"') {
          text += '"';
          at += 2;
          continue;
        }
        if (text === '') quoted = true;
        inQuote = !inQuote;
        at++;
        continue;
      }
      text += c;
      at++;
    }
    if (!current) current = [];
    if (!quoted && text.startsWith('@') && text.length > 1) {
      current.push(...expandAtFile(text.slice(1), file, line, depth));
    } else {
      current.push({ text, quoted });
    }
    if (!comma) {
      fields.push(current);
      current = undefined;
    }
  }
  if (current) fields.push(current);
  return fields;
}

/** `@file`: the tokens of every line of the file, as one list (PostgreSQL's tokenize_expand_file()). */
function expandAtFile(name: string, file: string, line: number, depth: number): Token[] {
  const target = isAbsolute(name) ? name : join(dirname(file), name);
  if (depth > 10) throw hbaError(`could not open file "${target}": maximum nesting depth exceeded`, file, line);
  let text: string;
  try {
    text = readFileSync(target, 'utf8');
  } catch (cause) {
    // PostgreSQL 16+ words it as open_auth_file() does: `could not open file "…": %m`.
    throw hbaError(`could not open file "${target}": ${strerror(cause)}`, file, line);
  }
  return tokenizeAuthText(text, target, depth + 1).flatMap((l) => l.fields.flat());
}
