/**
 * check_hba() of src/backend/libpq/hba.c for a gateway: the first line whose connection type, address, database and
 * user all match wins; no match means PostgreSQL's implicit reject.
 */
import { lookup, lookupService } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { type Address, type HbaLine, dottedQuad, ipBytes } from './hba.js';
import { pgRegExp } from './regex.js';
import type { Token } from './tokenize.js';

export interface ConnectionFacts {
  /** Client IP address, IPv4-mapped IPv6 already unwrapped ("127.0.0.1", "::1"); undefined on a Unix socket. */
  readonly address?: string | undefined;
  readonly ssl: boolean;
  readonly user: string;
  readonly database: string;
  readonly replication: 'none' | 'physical' | 'logical';
}

/** Unwrap "::ffff:1.2.3.4" (what a dual-stack listener reports for IPv4 clients) to "1.2.3.4". */
export function normalizeAddress(address: string): string {
  if (!address.startsWith('::')) return address;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

export async function matchHba(lines: readonly HbaLine[], facts: ConnectionFacts): Promise<HbaLine | undefined> {
  for (const line of lines) {
    if (line.type === 'local') {
      if (facts.address !== undefined) continue;
    } else {
      if (facts.address === undefined) continue;
      if (line.type === 'hostssl' && !facts.ssl) continue;
      if (line.type === 'hostnossl' && facts.ssl) continue;
      // The gateway never offers GSSAPI encryption, so hostgssenc cannot match and hostnogssenc always can.
      if (line.type === 'hostgssenc') continue;
      if (!(await addressMatches(line.address!, facts.address))) continue;
    }
    if (!databaseMatches(line.databases, facts)) continue;
    if (!userMatches(line.users, facts.user)) continue;
    return line;
  }
  return undefined;
}

/**
 * matchHba() without a promise unless it needs one: the lines are checked here until one matches, or until one with a
 * host name in its address field needs DNS — from that line on, matchHba() goes on (same order, same result).
 */
export function matchHbaNow(
  lines: readonly HbaLine[],
  facts: ConnectionFacts,
): HbaLine | undefined | Promise<HbaLine | undefined> {
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.type === 'local') {
      if (facts.address !== undefined) continue;
    } else {
      if (facts.address === undefined) continue;
      if (line.type === 'hostssl' && !facts.ssl) continue;
      if (line.type === 'hostnossl' && facts.ssl) continue;
      if (line.type === 'hostgssenc') continue;
      const now = addressMatchesNow(line.address!, facts.address);
      if (now === undefined) return matchHba(lines.slice(i), facts);
      if (!now) continue;
    }
    if (!databaseMatches(line.databases, facts)) continue;
    if (!userMatches(line.users, facts.user)) continue;
    return line;
  }
  return undefined;
}

function regexOf(t: Token): RegExp | undefined {
  if (t.quoted || !t.text.startsWith('/')) return undefined;
  try {
    return pgRegExp(t.text.slice(1));
  } catch {
    return undefined;
  }
}

function databaseMatches(tokens: readonly Token[], f: ConnectionFacts): boolean {
  if (f.replication === 'physical') {
    // A physical replication connection matches only the keyword `replication` (check_db()).
    return tokens.some((t) => !t.quoted && t.text === 'replication');
  }
  for (const t of tokens) {
    if (!t.quoted && t.text === 'all') return true;
    if (!t.quoted && t.text === 'sameuser') {
      if (f.database === f.user) return true;
      continue;
    }
    if (!t.quoted && t.text === 'replication') continue;
    const re = regexOf(t);
    if (re ? re.test(f.database) : t.text === f.database) return true;
  }
  return false;
}

function userMatches(tokens: readonly Token[], user: string): boolean {
  for (const t of tokens) {
    if (!t.quoted && t.text === 'all') return true;
    const re = regexOf(t);
    if (re ? re.test(user) : t.text === user) return true;
  }
  return false;
}

/** The address field against the client's address, when that needs no DNS (undefined: a host name, see below). */
function addressMatchesNow(a: Address, ip: string): boolean | undefined {
  switch (a.kind) {
    case 'all':
      return true;
    case 'cidr': {
      // check_ip(): same family, and (client & mask) == (address & mask).
      const v4 = dottedQuad(ip);
      if ((a.family === 6) !== (v4 === undefined && isIP(ip) === 6)) return false;
      const c = v4 ?? ipBytes(ip);
      return a.addr.every((b, i) => ((b ^ c[i]!) & a.mask[i]!) === 0);
    }
    case 'samehost':
      return localInterfaces().some((i) => i.address === ip);
    case 'samenet': {
      const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
      return localInterfaces().some((i) => {
        if ((i.family === 'IPv6') !== (family === 'ipv6')) return false;
        const list = new BlockList();
        list.addSubnet(i.address, Number(i.cidr!.split('/')[1]), family);
        return list.check(ip, family);
      });
    }
    case 'hostname':
      return undefined;
  }
}

async function addressMatches(a: Address, ip: string): Promise<boolean> {
  if (a.kind === 'hostname') return hostnameMatches(a.name, ip);
  return addressMatchesNow(a, ip) === true;
}

function localInterfaces() {
  return Object.values(networkInterfaces())
    .flat()
    .filter((i): i is NonNullable<typeof i> => i !== undefined && i.cidr !== null);
}

/**
 * check_hostname(): reverse-resolve the client address, compare with the line's name (a leading dot matches a
 * suffix), then forward-resolve that name and require the client address among the results.
 */
async function hostnameMatches(name: string, ip: string): Promise<boolean> {
  let remote: string;
  try {
    remote = (await lookupService(ip, 0)).hostname.toLowerCase();
  } catch {
    return false;
  }
  const ok = name.startsWith('.') ? remote.endsWith(name) : remote === name;
  if (!ok) return false;
  try {
    const addrs = await lookup(remote, { all: true });
    return addrs.some((x) => normalizeAddress(x.address) === ip);
  } catch {
    return false;
  }
}
