import { readdirSync } from 'node:fs';
/**
 * pg_hba.conf: parse (parse_hba_line() rules and messages) and match (check_hba()), as PostgreSQL 18 does, for the
 * connection facts a gateway knows: client address, TLS or not, user, database, replication.
 * https://www.postgresql.org/docs/current/auth-pg-hba-conf.html
 */
import { BlockList, isIP } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { type Token, type TokenLine, hbaError, readAuthFile, tokenizeAuthText } from './tokenize.js';

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
  | { kind: 'cidr'; list: BlockList; text: string }
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

/** Options PostgreSQL accepts; only some mean something at the gateway, the rest are accepted and ignored here. */
const KNOWN_OPTIONS = new Set([
  'clientcert',
  'clientname',
  'map',
  'include_realm',
  'krb_realm',
  'compat_realm',
  'upn_username',
  'pamservice',
  'pam_use_hostname',
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
  'radiusservers',
  'radiusserver',
  'radiussecrets',
  'radiussecret',
  'radiusidentifiers',
  'radiusidentifier',
  'radiusports',
  'radiusport',
  'issuer',
  'scope',
  'validator',
  'delegate_ident_mapping',
]);

export function readHbaFile(file: string): HbaLine[] {
  return parseHba(expandIncludes(tokenizeAuthText(readAuthFile(file, 'configuration'), file), 0));
}

/** PostgreSQL 16+ `include`, `include_if_exists`, `include_dir` lines. */
function expandIncludes(lines: TokenLine[], depth: number): TokenLine[] {
  const out: TokenLine[] = [];
  for (const l of lines) {
    const kw = l.fields[0]?.[0];
    if (kw && !kw.quoted && ['include', 'include_if_exists', 'include_dir'].includes(kw.text)) {
      const arg = l.fields[1]?.[0]?.text;
      if (!arg || l.fields.length !== 2) throw hbaError(`invalid syntax for "${kw.text}" directive`, l.file, l.line);
      if (depth > 10) throw hbaError('maximum nesting depth of included files exceeded', l.file, l.line);
      const target = isAbsolute(arg) ? arg : join(dirname(l.file), arg);
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
          text = readAuthFile(target, 'configuration');
        } catch (e) {
          if (kw.text === 'include_if_exists') continue;
          throw e;
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

function single(l: TokenLine, idx: number, what: string, endMsg: string): Token {
  const f = l.fields[idx];
  if (!f || f.length === 0) throw hbaError(endMsg, l.file, l.line);
  if (f.length > 1)
    throw hbaError(`multiple values specified for ${what}`, l.file, l.line, `Specify exactly one ${what} per line.`);
  return f[0]!;
}

function parseHbaLine(l: TokenLine): HbaLine {
  const typeTok = single(l, 0, 'connection type', 'end-of-line before connection type');
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
  let next = 3;
  let address: Address | undefined;
  if (type !== 'local') {
    const a = single(l, 3, 'IP address', 'end-of-line before IP address specification');
    next = 4;
    address = parseAddress(a, l, () => {
      // A separate netmask field follows a bare IP address.
      const m = l.fields[4]?.[0];
      if (!m)
        throw hbaError(
          'end-of-line before netmask specification',
          l.file,
          l.line,
          'Specify an address range in CIDR notation, or provide a separate netmask.',
        );
      next = 5;
      return m.text;
    });
  }
  const methodTok = single(l, next, 'authentication type', 'end-of-line before authentication method');
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
  for (const f of l.fields.slice(next + 1)) {
    for (const t of f) {
      const eq = t.text.indexOf('=');
      if (eq <= 0) throw hbaError(`authentication option not in name=value format: ${t.text}`, l.file, l.line);
      const name = t.text.slice(0, eq);
      if (!KNOWN_OPTIONS.has(name))
        throw hbaError(`unrecognized authentication option name: "${name}"`, l.file, l.line);
      options[name] = t.text.slice(eq + 1);
    }
  }
  let clientcert: HbaLine['clientcert'] = method === 'cert' ? 'verify-full' : 'off';
  if (options.clientcert !== undefined) {
    if (type !== 'hostssl') throw hbaError('clientcert can only be configured for "hostssl" rows', l.file, l.line);
    const v = options.clientcert;
    if (v === 'verify-full') clientcert = 'verify-full';
    else if (v === 'verify-ca') {
      if (method === 'cert')
        throw hbaError('clientcert only accepts "verify-full" when using "cert" authentication', l.file, l.line);
      clientcert = 'verify-ca';
    } else throw hbaError(`invalid value for clientcert: "${v}"`, l.file, l.line);
  }
  let clientname: HbaLine['clientname'] = 'CN';
  if (options.clientname !== undefined) {
    if (type !== 'hostssl') throw hbaError('clientname can only be configured for "hostssl" rows', l.file, l.line);
    if (options.clientname === 'DN' || options.clientname === 'CN') clientname = options.clientname;
    else throw hbaError(`invalid value for clientname: "${options.clientname}"`, l.file, l.line);
  }
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

function parseAddress(t: Token, l: TokenLine, netmask: () => string): Address {
  if (!t.quoted && (t.text === 'all' || t.text === 'samehost' || t.text === 'samenet')) return { kind: t.text };
  const [ip, bitsText] = t.text.split('/', 2) as [string, string | undefined];
  const family = isIP(ip);
  if (family === 0) {
    if (bitsText !== undefined) throw hbaError(`invalid IP address "${ip}"`, l.file, l.line);
    return { kind: 'hostname', name: t.text.toLowerCase() };
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  let bits: number;
  if (bitsText !== undefined) {
    bits = Number(bitsText);
    if (!/^\d+$/.test(bitsText) || bits > (family === 4 ? 32 : 128))
      throw hbaError(`invalid CIDR mask in address "${t.text}"`, l.file, l.line);
  } else {
    const mask = netmask();
    if (isIP(mask) !== family) throw hbaError(`invalid IP mask "${mask}"`, l.file, l.line);
    bits = maskBits(mask, l);
  }
  const list = new BlockList();
  list.addSubnet(ip, bits, type);
  return { kind: 'cidr', list, text: `${ip}/${bits}` };
}

function maskBits(mask: string, l: TokenLine): number {
  const bytes = isIP(mask) === 4 ? mask.split('.').map(Number) : expandV6(mask);
  let bits = 0;
  let ended = false;
  for (const b of bytes) {
    for (let i = 7; i >= 0; i--) {
      const set = ((b >> i) & 1) === 1;
      if (set && ended) throw hbaError(`invalid IP mask "${mask}"`, l.file, l.line);
      if (set) bits++;
      else ended = true;
    }
  }
  return bits;
}

function expandV6(a: string): number[] {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => Number.parseInt(g || '0', 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}
