/**
 * The files libpq reads before connecting: the connection service file (pg_service.conf, parseServiceFile) and the
 * password file (~/.pgpass, passwordFromFile), with libpq's syntax, matching and permission rules.
 */
import { readFileSync, statSync } from 'node:fs';
import { ClientErrorCode, optionError } from './errors.js';
import { KEYWORDS } from './options.js';

/** Read a pg_service.conf-style file: [name] sections of key=value lines. Returns undefined if the file is absent. */
export function readServiceFile(path: string, service: string): Map<string, string> | undefined | 'absent' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return 'absent';
  }
  let inGroup = false;
  let found: Map<string, string> | undefined;
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      if (inGroup) break;
      inGroup = line.slice(1, line.indexOf(']')) === service;
      if (inGroup) found = new Map();
      continue;
    }
    if (!inGroup || !found) continue;
    const eq = line.indexOf('=');
    if (eq < 0) {
      throw optionError(ClientErrorCode.Conninfo, `syntax error in service file "${path}", line ${index + 1}`);
    }
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (key === 'service' || key === 'servicefile') {
      throw optionError(
        ClientErrorCode.Conninfo,
        `nested "${key}" specifications not supported in service file "${path}", line ${index + 1}`,
      );
    }
    if (!KEYWORDS.has(key)) {
      throw optionError(ClientErrorCode.Conninfo, `syntax error in service file "${path}", line ${index + 1}`);
    }
    if (!found.has(key)) found.set(key, value);
  }
  return found;
}

/** The unescaped fields of one ~/.pgpass line, or undefined if it has fewer than five. */
function pgpassFields(line: string): string[] | undefined {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
    } else if (c === ':' && fields.length < 4) {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  fields.push(cur);
  return fields.length === 5 ? fields : undefined;
}

export function passwordFromFile(
  defaultSocketDir: string,
  defaultPort: string,
  path: string,
  host: string,
  port: string,
  dbname: string,
  user: string,
  warnings: string[],
): string | undefined {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  if (!st.isFile()) {
    warnings.push(`WARNING: password file "${path}" is not a plain file`);
    return undefined;
  }
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    warnings.push(
      `WARNING: password file "${path}" has group or world access; permissions should be u=rw (0600) or less`,
    );
    return undefined;
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const h = host === '' || host === defaultSocketDir ? 'localhost' : host;
  const p = port === '' ? defaultPort : port;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    const f = pgpassFields(line);
    if (!f) continue;
    const match = (pattern: string, value: string) => pattern === '*' || pattern === value;
    if (match(f[0]!, h) && match(f[1]!, p) && match(f[2]!, dbname) && match(f[3]!, user)) return f[4]!;
  }
  return undefined;
}
