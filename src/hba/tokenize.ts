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

export function readAuthFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new PgtlsError(ERR_HBA, `could not open ${what} file "${file}": ${(cause as Error).message}`, {
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
    while (/\\\s*$/.test(stripComment(raw)) && i + 1 < physical.length) {
      raw = raw.replace(/\\\s*$/, ' ') + physical[++i];
    }
    const fields = tokenizeLine(raw, file, lineNo, depth);
    if (fields.length > 0) out.push({ fields, file, line: lineNo, raw: raw.trim() });
  }
  return out;
}

function stripComment(s: string): string {
  let q = false;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '"') q = !q;
    else if (s[i] === '#' && !q) return s.slice(0, i);
  }
  return s;
}

function tokenizeLine(raw: string, file: string, line: number, depth: number): Token[][] {
  const fields: Token[][] = [];
  let at = 0;
  const n = raw.length;
  const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\r';
  let current: Token[] | undefined;
  while (at < n) {
    while (at < n && isSpace(raw[at])) at++;
    if (at >= n || raw[at] === '#') break;
    let text = '';
    let quoted = false;
    let inQuote = false;
    while (at < n) {
      const c = raw[at]!;
      if (inQuote) {
        if (c === '"') inQuote = false;
        else text += c;
        at++;
        continue;
      }
      if (c === '"') {
        inQuote = true;
        quoted = true;
        at++;
        continue;
      }
      if (isSpace(c) || c === ',' || c === '#') break;
      text += c;
      at++;
    }
    if (inQuote) throw hbaError('unterminated quoted string', file, line);
    let comma = false;
    if (raw[at] === ',') {
      comma = true;
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
  if (depth > 10) throw hbaError(`could not open file "${name}": maximum nesting depth exceeded`, file, line);
  const target = isAbsolute(name) ? name : join(dirname(file), name);
  let text: string;
  try {
    text = readFileSync(target, 'utf8');
  } catch (cause) {
    throw hbaError(
      `could not open secondary authentication file "@${name}" as "${target}": ${(cause as Error).message}`,
      file,
      line,
    );
  }
  return tokenizeAuthText(text, target, depth + 1).flatMap((l) => l.fields.flat());
}
