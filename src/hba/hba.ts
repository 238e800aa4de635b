import { readFileSync, readdirSync } from 'node:fs';
/**
 * pg_hba.conf: parse (parse_hba_line() rules and messages) and match (check_hba()), as PostgreSQL 18 does, for the
 * connection facts a gateway knows: client address, TLS or not, user, database, replication.
 * https://www.postgresql.org/docs/current/auth-pg-hba-conf.html
 */
import { isIP } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { pgRegExp } from './regex.js';
import { type Token, type TokenLine, hbaError, readAuthFile, strerror, tokenizeAuthText } from './tokenize.js';

export type ConnType = 'local' | 'host' | 'hostssl' | 'hostnossl' | 'hostgssenc' | 'hostnogssenc';
const CONN_TYPES: readonly ConnType[] = ['local', 'host', 'hostssl', 'hostnossl', 'hostgssenc', 'hostnogssenc'];

/** Methods PostgreSQL knows. At the gateway: reject refuses, cert is checked here, the rest pass to the backend. */
const METHODS = [
  'trust',
  'reject',
  'md5',
  'password',
  'scram-sha-256',
  'gss',
  'sspi',
  'ident',
  'peer',
  'pam',
  'ldap',
  'radius',
  'cert',
  'bsd',
  'oauth',
] as const;
export type HbaMethod = (typeof METHODS)[number];

export type Address =
  | { kind: 'all' }
  | { kind: 'samehost' }
  | { kind: 'samenet' }
  /** addr and mask as bytes (4 or 16); text is "addr/bits" for logs. */
  | { kind: 'cidr'; family: 4 | 6; addr: readonly number[]; mask: readonly number[]; text: string }
  | { kind: 'hostname'; name: string };

export interface HbaLine {
  readonly file: string;
  readonly line: number;
  readonly raw: string;
  readonly type: ConnType;
  readonly databases: readonly Token[];
  readonly users: readonly Token[];
  readonly address?: Address;
  readonly method: HbaMethod;
  readonly clientcert: 'off' | 'verify-ca' | 'verify-full';
  readonly clientname: 'CN' | 'DN';
  readonly map?: string;
  readonly options: Readonly<Record<string, string>>;
}

/**
 * Which methods an option is valid for, with the list as parse_hba_auth_opt() prints it in
 * `authentication option "%s" is only valid for authentication methods %s` (checked against PostgreSQL 18).
 * clientcert and clientname are valid for every method (on hostssl rows).
 */
const OPTION_METHODS: Readonly<Record<string, readonly [readonly HbaMethod[], string]>> = {
  map: [['ident', 'peer', 'gss', 'sspi', 'cert', 'oauth'], 'ident, peer, gssapi, sspi, cert, and oauth'],
  include_realm: [['gss', 'sspi'], 'gssapi and sspi'],
  krb_realm: [['gss', 'sspi'], 'gssapi and sspi'],
  compat_realm: [['sspi'], 'sspi'],
  upn_username: [['sspi'], 'sspi'],
  pamservice: [['pam'], 'pam'],
  pam_use_hostname: [['pam'], 'pam'],
  ...Object.fromEntries(
    [
      'ldapurl',
      'ldapserver',
      'ldapport',
      'ldapscheme',
      'ldapbinddn',
      'ldapbindpasswd',
      'ldapsearchattribute',
      'ldapsearchfilter',
      'ldapbasedn',
      'ldapprefix',
      'ldapsuffix',
      'ldaptls',
    ].map((o) => [o, [['ldap'], 'ldap'] as const]),
  ),
  ...Object.fromEntries(
    ['radiusservers', 'radiussecrets', 'radiusidentifiers', 'radiusports'].map((o) => [
      o,
      [['radius'], 'radius'] as const,
    ]),
  ),
  ...Object.fromEntries(
    ['issuer', 'scope', 'validator', 'delegate_ident_mapping'].map((o) => [o, [['oauth'], 'oauth'] as const]),
  ),
};

/**
 * Options PostgreSQL accepts; only clientcert, clientname and map mean something at the gateway, the rest are
 * validated and kept. (PostgreSQL knows only the plural radiusservers/radiussecrets/radiusidentifiers/radiusports.)
 */
const KNOWN_OPTIONS: ReadonlySet<string> = new Set(['clientcert', 'clientname', ...Object.keys(OPTION_METHODS)]);

/** Arguments a method cannot do without (MANDATORY_AUTH_ARG in parse_hba_line()), in PostgreSQL's order. */
const MANDATORY: Partial<Record<HbaMethod, readonly string[]>> = {
  radius: ['radiusservers', 'radiussecrets'],
  oauth: ['scope', 'issuer'], // PostgreSQL 18 asks for scope first (checked against a running server)
};

export function readHbaFile(file: string): HbaLine[] {
  return parseHba(expandIncludes(tokenizeAuthText(readAuthFile(file, 'configuration'), file), 0));
}

/** PostgreSQL 16+ `include`, `include_if_exists`, `include_dir` lines. */
export function expandIncludes(lines: TokenLine[], depth: number): TokenLine[] {
  const out: TokenLine[] = [];
  for (const l of lines) {
    const kw = l.fields[0]?.[0];
    if (kw && !kw.quoted && ['include', 'include_if_exists', 'include_dir'].includes(kw.text)) {
      const arg = l.fields[1]?.[0]?.text;
      // PostgreSQL treats a malformed include line as an ordinary rule, so the first field is reported.
      if (!arg || l.fields.length !== 2) throw hbaError(`invalid connection type "${kw.text}"`, l.file, l.line);
      const target = isAbsolute(arg) ? arg : join(dirname(l.file), arg);
      // open_auth_file()'s wording (CONF_FILE_MAX_DEPTH is 10)
      if (depth >= 10)
        throw hbaError(`could not open file "${target}": maximum nesting depth exceeded`, l.file, l.line);
      if (kw.text === 'include_dir') {
        let names: string[];
        try {
          names = readdirSync(target)
            .filter((n) => n.endsWith('.conf') && !n.startsWith('.'))
            .sort();
        } catch {
          throw hbaError(`could not open directory "${target}"`, l.file, l.line);
        }
        for (const n of names)
          out.push(
            ...expandIncludes(
              tokenizeAuthText(readAuthFile(join(target, n), 'configuration'), join(target, n)),
              depth + 1,
            ),
          );
      } else {
        let text: string;
        try {
          text = readFileSync(target, 'utf8');
        } catch (cause) {
          if (kw.text === 'include_if_exists') continue;
          // open_auth_file()'s wording in PostgreSQL 16+.
          throw hbaError(`could not open file "${target}": ${strerror(cause)}`, l.file, l.line);
        }
        out.push(...expandIncludes(tokenizeAuthText(text, target), depth + 1));
      }
      continue;
    }
    out.push(l);
  }
  return out;
}

export function parseHba(lines: TokenLine[]): HbaLine[] {
  return lines.map(parseHbaLine);
}

/** The one token of a field; PostgreSQL's "end-of-line before …" / "multiple values specified for …" otherwise. */
function single(l: TokenLine, idx: number, what: string, endMsg: string, hint?: string, endHint?: string): Token {
  const f = l.fields[idx];
  if (!f || f.length === 0) throw hbaError(endMsg, l.file, l.line, endHint);
  if (f.length > 1) throw hbaError(`multiple values specified for ${what}`, l.file, l.line, hint);
  return f[0]!;
}

function parseHbaLine(l: TokenLine): HbaLine {
  const typeTok = single(
    l,
    0,
    'connection type',
    'end-of-line before connection type',
    'Specify exactly one connection type per line.',
  );
  const type = typeTok.text as ConnType;
  if (!CONN_TYPES.includes(type)) throw hbaError(`invalid connection type "${typeTok.text}"`, l.file, l.line);
  const databases = l.fields[1];
  if (!databases) throw hbaError('end-of-line before database specification', l.file, l.line);
  const users = l.fields[2];
  if (!users) throw hbaError('end-of-line before role specification', l.file, l.line);
  for (const t of [...databases, ...users]) {
    if (
      !t.quoted &&
      (t.text === 'samerole' || t.text === 'samegroup' || (t.text.startsWith('+') && users.includes(t)))
    ) {
      throw hbaError(
        `"${t.text}" needs the backend's role membership, which pgtls cannot evaluate at the gateway`,
        l.file,
        l.line,
        "List the roles explicitly (or in an @file), or keep this rule in the backend's own pg_hba.conf.",
      );
    }
  }
  // PostgreSQL compiles the /regex tokens of both lists when it loads the file and refuses a line whose expression
  // does not compile (ARE is translated by regex.ts; the reason text is JavaScript's, PostgreSQL words it otherwise).
  for (const t of [...databases, ...users]) {
    if (t.quoted || !t.text.startsWith('/')) continue;
    try {
      pgRegExp(t.text.slice(1));
    } catch (e) {
      throw hbaError(`invalid regular expression "${t.text.slice(1)}": ${(e as Error).message}`, l.file, l.line);
    }
  }
  let next = 3;
  let address: Address | undefined;
  if (type !== 'local') {
    const a = single(
      l,
      3,
      'host address',
      'end-of-line before IP address specification',
      'Specify one address range per line.',
    );
    next = 4;
    address = parseAddress(a, l, () => {
      // A separate netmask field follows a bare IP address.
      const m = single(
        l,
        4,
        'netmask',
        'end-of-line before netmask specification',
        undefined,
        'Specify an address range in CIDR notation, or provide a separate netmask.',
      );
      next = 5;
      return m.text;
    });
  }
  const methodTok = single(
    l,
    next,
    'authentication type',
    'end-of-line before authentication method',
    'Specify exactly one authentication type per line.',
  );
  const method = methodTok.text as HbaMethod;
  if (!METHODS.includes(method)) throw hbaError(`invalid authentication method "${methodTok.text}"`, l.file, l.line);
  if (method === 'peer' && type !== 'local')
    throw hbaError('peer authentication is only supported on local sockets', l.file, l.line);
  if (method === 'ident' && type === 'local') {
    // PostgreSQL silently turns ident into peer on local lines; harmless for us.
  } else if (method === 'ident') {
    throw hbaError(
      'ident authentication asks an identd on the client host, which the gateway cannot do for the backend',
      l.file,
      l.line,
      'Use cert or a password method.',
    );
  }
  if (method === 'cert' && type !== 'hostssl')
    throw hbaError('cert authentication is only supported on hostssl connections', l.file, l.line);
  const options: Record<string, string> = {};
  let clientcert: HbaLine['clientcert'] = 'off';
  let clientname: HbaLine['clientname'] = 'CN';
  // parse_hba_auth_opt() checks each option where it stands, so the first bad one is the one reported.
  for (const f of l.fields.slice(next + 1)) {
    for (const t of f) {
      const eq = t.text.indexOf('=');
      if (eq < 0) throw hbaError(`authentication option not in name=value format: ${t.text}`, l.file, l.line);
      const name = t.text.slice(0, eq);
      const v = t.text.slice(eq + 1);
      if (!KNOWN_OPTIONS.has(name))
        throw hbaError(`unrecognized authentication option name: "${name}"`, l.file, l.line);
      const valid = OPTION_METHODS[name];
      if (valid && !valid[0].includes(method))
        throw hbaError(
          `authentication option "${name}" is only valid for authentication methods ${valid[1]}`,
          l.file,
          l.line,
        );
      if (name === 'clientcert') {
        if (type !== 'hostssl') throw hbaError('clientcert can only be configured for "hostssl" rows', l.file, l.line);
        if (v === 'verify-full') clientcert = 'verify-full';
        else if (v === 'verify-ca') {
          if (method === 'cert')
            throw hbaError('clientcert only accepts "verify-full" when using "cert" authentication', l.file, l.line);
          clientcert = 'verify-ca';
        } else throw hbaError(`invalid value for clientcert: "${v}"`, l.file, l.line);
      }
      if (name === 'clientname') {
        if (type !== 'hostssl') throw hbaError('clientname can only be configured for "hostssl" rows', l.file, l.line);
        if (v === 'DN' || v === 'CN') clientname = v;
        else throw hbaError(`invalid value for clientname: "${v}"`, l.file, l.line);
      }
      options[name] = v;
    }
  }
  for (const arg of MANDATORY[method] ?? []) {
    if (options[arg] === undefined)
      throw hbaError(`authentication method "${method}" requires argument "${arg}" to be set`, l.file, l.line);
  }
  // cert implies clientcert=verify-full
  if (method === 'cert') clientcert = 'verify-full';
  return Object.freeze({
    file: l.file,
    line: l.line,
    raw: l.raw,
    type,
    databases,
    users,
    ...(address ? { address } : {}),
    method,
    clientcert,
    clientname,
    ...(options.map !== undefined ? { map: options.map } : {}),
    options,
  });
}

/**
 * The address field as parse_hba_line() reads it: the keywords all/samehost/samenet (compared without regard to
 * quoting, as PostgreSQL does), an IP address with a /bits suffix or followed by a separate netmask field, or else a
 * host name. PostgreSQL accepts any netmask that is an address of the same family, contiguous or not, and compares
 * (client & mask) == (address & mask): so does this.
 */
function parseAddress(t: Token, l: TokenLine, netmask: () => string): Address {
  if (t.text === 'all' || t.text === 'samehost' || t.text === 'samenet') return { kind: t.text };
  const slash = t.text.indexOf('/');
  const ip = slash < 0 ? t.text : t.text.slice(0, slash);
  const bitsText = slash < 0 ? undefined : t.text.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0) {
    if (bitsText !== undefined)
      throw hbaError(`specifying both host name and CIDR mask is invalid: "${t.text}"`, l.file, l.line);
    return { kind: 'hostname', name: t.text.toLowerCase() };
  }
  const addr = ipBytes(ip);
  let mask: number[];
  if (bitsText !== undefined) {
    const bits = Number(bitsText);
    if (!/^\d+$/.test(bitsText) || bits > (family === 4 ? 32 : 128))
      throw hbaError(`invalid CIDR mask in address "${t.text}"`, l.file, l.line);
    mask = addr.map((_, i) => (0xff00 >> Math.max(0, Math.min(8, bits - i * 8))) & 0xff);
  } else {
    const m = netmask();
    const mf = isIP(m);
    // getaddrinfo(AI_NUMERICHOST) fails on anything that is not an address: PostgreSQL prints gai_strerror().
    if (mf === 0) throw hbaError(`invalid IP mask "${m}": Name or service not known`, l.file, l.line);
    if (mf !== family) throw hbaError('IP address and mask do not match', l.file, l.line);
    mask = ipBytes(m);
  }
  return { kind: 'cidr', family: family === 4 ? 4 : 6, addr, mask, text: `${ip}/${prefixText(mask)}` };
}

/** A prefix length when the mask is contiguous, else the mask itself (for logs only). */
function prefixText(mask: readonly number[]): string {
  const bits = mask.map((b) => b.toString(2).padStart(8, '0')).join('');
  return /^1*0*$/.test(bits) ? String(bits.indexOf('0') < 0 ? bits.length : bits.indexOf('0')) : mask.join('.');
}

/**
 * The four bytes of a dotted-quad IPv4 address exactly when isIP() says 4 (0–255 per part, no leading zeros), else
 * undefined. Read by hand: the client's address is parsed on every connection, and isIP()'s regular expression and
 * split() cost more there than everything else hba matching does.
 */
export function dottedQuad(a: string): number[] | undefined {
  const out = [0, 0, 0, 0];
  let part = 0;
  let n = 0;
  let digits = 0;
  for (let i = 0; i < a.length; i++) {
    const ch = a.charCodeAt(i);
    if (ch === 0x2e) {
      if (digits === 0 || part === 3) return undefined;
      out[part++] = n;
      n = 0;
      digits = 0;
      continue;
    }
    if (ch < 0x30 || ch > 0x39 || (digits === 1 && n === 0) || digits === 3) return undefined;
    n = n * 10 + (ch - 0x30);
    digits++;
  }
  if (digits === 0 || part !== 3 || n > 255 || out[0]! > 255 || out[1]! > 255 || out[2]! > 255) return undefined;
  out[3] = n;
  return out;
}

/** The bytes of an IPv4 (4) or IPv6 (16) address given as text that isIP() accepted. */
export function ipBytes(a: string): number[] {
  const v4 = dottedQuad(a);
  if (v4) return v4;
  const [head, tail] = a.split('::') as [string, string | undefined];
  const part = (s: string | undefined): number[] => {
    if (!s) return [];
    const groups = s.split(':');
    const last = groups[groups.length - 1]!;
    // An embedded IPv4 tail ("::ffff:1.2.3.4") is two groups.
    let v4: number[] = [];
    if (last.includes('.')) {
      groups.pop();
      v4 = last.split('.').map(Number);
    }
    return [...groups.flatMap((g) => [Number.parseInt(g, 16) >> 8, Number.parseInt(g, 16) & 0xff]), ...v4];
  };
  const h = part(head);
  const t = tail === undefined ? [] : part(tail);
  return [...h, ...Array(16 - h.length - t.length).fill(0), ...t];
}
