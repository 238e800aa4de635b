/**
 * libpq connection strings: `key=value` lists (conninfo_parse) and URIs (conninfo_uri_parse), with libpq's quirks
 * and error texts (src/interfaces/libpq/fe-connect.c). Pure: no environment, no files.
 */
import { ClientErrorCode, optionError } from './errors.js';
import { KEYWORDS } from './options.js';

/** Parsed parameters in the order they were given; a later duplicate replaces an earlier one, as in libpq. */
export type ParsedParams = Map<string, string>;

const isSpace = (c: string | undefined) =>
  c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';

/** True when libpq would treat the string as a URI (case-sensitive prefix, as uri_prefix_length()). */
export function isUri(s: string): boolean {
  return s.startsWith('postgresql://') || s.startsWith('postgres://');
}

/** conninfo_storeval(): unknown keyword → null; `requiressl` is rewritten to sslmode as libpq does. */
function storeval(params: ParsedParams, keyword: string, value: string): boolean {
  if (keyword === 'requiressl') {
    // Backwards compatibility: requiressl=1 → sslmode=require, anything else → sslmode=prefer.
    params.set('sslmode', value.startsWith('1') ? 'require' : 'prefer');
    return true;
  }
  if (!KEYWORDS.has(keyword)) return false;
  params.set(keyword, value);
  return true;
}

/** Parse a connection string: a URI if it starts with postgresql:// or postgres://, else key=value pairs. */
export function parseConnectionString(s: string): ParsedParams {
  return isUri(s) ? parseUri(s) : parseKeywordValue(s);
}

/** `key = value` pairs separated by whitespace; values may be single-quoted; backslash escapes the next char. */
export function parseKeywordValue(s: string): ParsedParams {
  const params: ParsedParams = new Map();
  let i = 0;
  const n = s.length;
  while (i < n) {
    if (isSpace(s[i])) {
      i++;
      continue;
    }
    const nameStart = i;
    let nameEnd = -1;
    while (i < n) {
      if (s[i] === '=') break;
      if (isSpace(s[i])) {
        nameEnd = i;
        while (i < n && isSpace(s[i])) i++;
        break;
      }
      i++;
    }
    const name = s.slice(nameStart, nameEnd < 0 ? i : nameEnd);
    if (s[i] !== '=') {
      throw optionError(ClientErrorCode.Conninfo, `missing "=" after "${name}" in connection info string`);
    }
    i++;
    while (i < n && isSpace(s[i])) i++;
    let value = '';
    if (s[i] !== "'") {
      while (i < n) {
        const c = s[i]!;
        if (isSpace(c)) {
          i++;
          break;
        }
        if (c === '\\') {
          i++;
          if (i < n) value += s[i++];
        } else {
          value += c;
          i++;
        }
      }
    } else {
      i++;
      for (;;) {
        if (i >= n) throw optionError(ClientErrorCode.Conninfo, 'unterminated quoted string in connection info string');
        const c = s[i]!;
        if (c === '\\') {
          i++;
          if (i < n) value += s[i++];
          continue;
        }
        if (c === "'") {
          i++;
          break;
        }
        value += c;
        i++;
      }
    }
    if (!storeval(params, name, value)) {
      throw optionError(ClientErrorCode.Conninfo, `invalid connection option "${name}"`);
    }
  }
  return params;
}

function hexValue(c: string | undefined): number {
  if (c === undefined) return -1;
  const code = c.charCodeAt(0);
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 65 && code <= 70) return code - 55;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

/** conninfo_uri_decode(): %XX → byte; a bad token or %00 is an error naming the whole encoded string. */
export function uriDecode(str: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(str, 'utf8');
  for (let i = 0; i < raw.length; ) {
    const b = raw[i]!;
    if (b === 0x25) {
      const hi = hexValue(i + 1 < raw.length ? String.fromCharCode(raw[i + 1]!) : undefined);
      const lo = hi < 0 ? -1 : hexValue(i + 2 < raw.length ? String.fromCharCode(raw[i + 2]!) : undefined);
      if (hi < 0 || lo < 0) throw optionError(ClientErrorCode.Conninfo, `invalid percent-encoded token: "${str}"`);
      const c = (hi << 4) | lo;
      if (c === 0) {
        throw optionError(ClientErrorCode.Conninfo, `forbidden value %00 in percent-encoded value: "${str}"`);
      }
      bytes.push(c);
      i += 3;
    } else {
      bytes.push(b);
      i++;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * postgresql://[user[:password]@][netloc][:port][,...][/dbname][?param1=value1&...]
 * Follows conninfo_uri_parse_options() step by step, including its error positions.
 */
export function parseUri(uri: string): ParsedParams {
  const params: ParsedParams = new Map();
  const prefixLen = uri.startsWith('postgresql://') ? 13 : uri.startsWith('postgres://') ? 11 : 0;
  if (prefixLen === 0) {
    throw optionError(ClientErrorCode.Conninfo, `invalid URI propagated to internal parser routine: "${uri}"`);
  }
  const s = uri;
  const n = s.length;
  const at = (k: number) => (k < n ? s[k]! : '\0');
  const store = (keyword: string, value: string) => {
    storeval(params, keyword, uriDecode(value));
  };
  let p = prefixLen;
  // Look ahead for a user-credentials designator.
  while (at(p) !== '\0' && at(p) !== '@' && at(p) !== '/') p++;
  if (at(p) === '@') {
    let q = prefixLen;
    while (at(q) !== ':' && at(q) !== '@') q++;
    const user = s.slice(prefixLen, q);
    if (user) store('user', user);
    if (at(q) === ':') {
      const pwStart = q + 1;
      q = pwStart;
      while (at(q) !== '@') q++;
      const password = s.slice(pwStart, q);
      if (password) store('password', password);
    }
    p = q + 1;
  } else {
    p = prefixLen;
  }
  const hosts: string[] = [];
  const ports: string[] = [];
  let prevchar = '\0';
  for (;;) {
    let host: string;
    if (at(p) === '[') {
      const start = ++p;
      while (at(p) !== '\0' && at(p) !== ']') p++;
      if (at(p) === '\0') {
        throw optionError(
          ClientErrorCode.Conninfo,
          `end of string reached when looking for matching "]" in IPv6 host address in URI: "${uri}"`,
        );
      }
      if (p === start) {
        throw optionError(ClientErrorCode.Conninfo, `IPv6 host address may not be empty in URI: "${uri}"`);
      }
      host = s.slice(start, p);
      p++;
      const c = at(p);
      if (c !== '\0' && c !== ':' && c !== '/' && c !== '?' && c !== ',') {
        throw optionError(
          ClientErrorCode.Conninfo,
          `unexpected character "${c}" at position ${p + 1} in URI (expected ":" or "/"): "${uri}"`,
        );
      }
    } else {
      const start = p;
      while (at(p) !== '\0' && at(p) !== ':' && at(p) !== '/' && at(p) !== '?' && at(p) !== ',') p++;
      host = s.slice(start, p);
    }
    prevchar = at(p);
    hosts.push(host);
    let port = '';
    if (prevchar === ':') {
      const start = ++p;
      while (at(p) !== '\0' && at(p) !== '/' && at(p) !== '?' && at(p) !== ',') p++;
      port = s.slice(start, p);
      prevchar = at(p);
    }
    ports.push(port);
    if (prevchar !== ',') break;
    p++;
  }
  const hostList = hosts.join(',');
  const portList = ports.join(',');
  if (hostList) store('host', hostList);
  if (portList) store('port', portList);
  if (prevchar !== '\0' && prevchar !== '?') {
    const start = ++p;
    while (at(p) !== '\0' && at(p) !== '?') p++;
    const dbname = s.slice(start, p);
    prevchar = at(p);
    // An empty dbname is not set at all, so PGDATABASE still applies.
    if (dbname) store('dbname', dbname);
  }
  if (prevchar !== '\0') {
    p++;
    parseUriParams(s.slice(p), params);
  }
  return params;
}

/** The query part: key=value pairs separated by '&', both percent-decoded; `ssl=true` means sslmode=require. */
function parseUriParams(query: string, params: ParsedParams): void {
  let i = 0;
  const n = query.length;
  while (i < n) {
    const keyStart = i;
    let keyEnd = -1;
    let valueStart = -1;
    let end = n;
    for (;;) {
      const c = i < n ? query[i]! : '\0';
      if (c === '=') {
        if (valueStart >= 0) {
          throw optionError(
            ClientErrorCode.Conninfo,
            `extra key/value separator "=" in URI query parameter: "${query.slice(keyStart, keyEnd)}"`,
          );
        }
        keyEnd = i;
        valueStart = ++i;
      } else if (c === '&' || c === '\0') {
        end = i;
        if (c === '&') i++;
        if (valueStart < 0) {
          throw optionError(
            ClientErrorCode.Conninfo,
            `missing key/value separator "=" in URI query parameter: "${query.slice(keyStart, end)}"`,
          );
        }
        break;
      } else {
        i++;
      }
    }
    let keyword = uriDecode(query.slice(keyStart, keyEnd));
    let value = uriDecode(query.slice(valueStart, end));
    // libpq's JDBC-compatibility spelling.
    if (keyword === 'ssl' && value === 'true') {
      keyword = 'sslmode';
      value = 'require';
    }
    if (!storeval(params, keyword, value)) {
      throw optionError(ClientErrorCode.Conninfo, `invalid URI query parameter: "${keyword}"`);
    }
  }
}
