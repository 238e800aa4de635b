import { SSL_MODES, type SslMode } from '../config/schema.js';
/**
 * Routing to several upstreams (`routes_file`): which backend a session goes to, by the TLS server name the client
 * sent, by the database it asks for, or by Azure Single Server's `user@servername` form (the suffix picks the
 * upstream and is stripped before pg_hba.conf and the backend see the user name, as Azure's gateway did). pg_hba.conf
 * still applies to every session; without a matching route the session goes to `upstream`.
 *
 *   # KIND    NAME              UPSTREAM                      [upstream_ssl* options]
 *   sni       reports.example   postgres://10.0.0.8:5432      sslmode=verify-full sslrootcert=/etc/pgtls/b.crt
 *   database  sales             postgres://10.0.0.7:5432
 *   server    mydb              postgres://10.0.0.9:5432      sslmode=require
 *
 * The file uses pg_hba.conf's tokenizer (quotes, comments, continuation lines); the first matching line wins.
 */
import { PgtlsError } from '../errors.js';
import { readAuthFile, tokenizeAuthText } from '../hba/tokenize.js';
import {
  TARGET_SESSION_ATTRS,
  type TargetSessionAttrs,
  type UpstreamTarget,
  checkTarget,
  parseUpstreamUrl,
} from './upstream.js';

export const ERR_ROUTES = 'PGTLS_ERR_ROUTES';

export type RouteKind = 'sni' | 'database' | 'server';

export interface Route {
  readonly kind: RouteKind;
  readonly name: string;
  readonly upstream: UpstreamTarget;
  /** For the log: file:line. */
  readonly where: string;
}

function routeError(message: string, file: string, line: number, hint?: string): PgtlsError {
  return new PgtlsError(ERR_ROUTES, `${message} (line ${line} of routes file "${file}")`, {
    details: { file, line, ...(hint ? { hint } : {}) },
  });
}

const OPTIONS = [
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslnegotiation',
  'sslsni',
  'target_session_attrs',
  'connect_timeout',
  'load_balance_hosts',
] as const;

/** Read and check the whole file; the first problem throws, naming the file and line. */
export function readRoutesFile(file: string, defaults: Omit<UpstreamTarget, 'host' | 'port'>): Route[] {
  const routes: Route[] = [];
  for (const l of tokenizeAuthText(readAuthFile(file, 'routes'), file)) {
    const f = l.fields.map((x) => x.map((t) => t.text));
    if (f.length < 3) throw routeError('missing entry at end of line', file, l.line, 'KIND NAME postgres://host:port');
    const kind = f[0]!.join(',');
    if (kind !== 'sni' && kind !== 'database' && kind !== 'server') {
      throw routeError(`invalid route kind "${kind}"`, file, l.line, 'Use sni, database or server.');
    }
    if (f[1]!.length !== 1 || f[2]!.length < 1 || !f[2]![0]!.includes('://'))
      throw routeError('a route has one name and one upstream', file, l.line);
    let hostPort: ReturnType<typeof parseUpstreamUrl>;
    try {
      // The tokenizer splits at commas, as for hba lists: libpq's multi-host URL comes back whole.
      hostPort = parseUpstreamUrl(f[2]!.join(','));
    } catch (e) {
      throw routeError(
        (e as Error).message,
        file,
        l.line,
        "Use 'postgres://host:port' or 'postgres://host1:port1,host2:port2'.",
      );
    }
    const opts: Record<string, string> = {};
    for (const field of f.slice(3)) {
      const [kv] = field;
      const eq = kv?.indexOf('=') ?? -1;
      const key = eq > 0 ? kv!.slice(0, eq) : '';
      if (!(OPTIONS as readonly string[]).includes(key)) {
        throw routeError(`invalid route option "${kv}"`, file, l.line, `Options: ${OPTIONS.join(', ')} (key=value).`);
      }
      opts[key] = kv!.slice(eq + 1);
    }
    if (opts.sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(opts.sslmode)) {
      throw routeError(`invalid sslmode value: "${opts.sslmode}"`, file, l.line);
    }
    const upstream: UpstreamTarget = {
      ...hostPort,
      sslmode: (opts.sslmode as SslMode | undefined) ?? defaults.sslmode,
      sslrootcert: opts.sslrootcert ?? defaults.sslrootcert,
      sslcert: opts.sslcert ?? defaults.sslcert,
      sslkey: opts.sslkey ?? defaults.sslkey,
      ...routeHopOptions(opts, defaults, file, l.line),
    };
    // libpq's own option checks (a weak sslmode with sslnegotiation=direct, …), with libpq's text.
    const refused = checkTarget(upstream);
    if (refused !== undefined) throw routeError(refused, file, l.line);
    routes.push({ kind, name: f[1]![0]!, upstream, where: `${file}:${l.line}` });
  }
  return routes;
}

/** The libpq-named hop options of a route line (sslnegotiation, sslsni, …), checked; unset ones from upstream_*. */
function routeHopOptions(
  opts: Record<string, string>,
  defaults: Omit<UpstreamTarget, 'host' | 'port'>,
  file: string,
  line: number,
): Pick<UpstreamTarget, 'sslnegotiation' | 'sslsni' | 'connectTimeout' | 'targetSessionAttrs' | 'loadBalanceHosts'> {
  const oneOf = <T extends string>(key: string, values: readonly T[], fallback: T | undefined): T | undefined => {
    const v = opts[key];
    if (v === undefined) return fallback;
    if (!(values as readonly string[]).includes(v)) throw routeError(`invalid ${key} value: "${v}"`, file, line);
    return v as T;
  };
  const out: {
    -readonly [K in
      | 'sslnegotiation'
      | 'sslsni'
      | 'connectTimeout'
      | 'targetSessionAttrs'
      | 'loadBalanceHosts']?: UpstreamTarget[K];
  } = {};
  const negotiation = oneOf('sslnegotiation', ['postgres', 'direct'] as const, defaults.sslnegotiation);
  if (negotiation !== undefined) out.sslnegotiation = negotiation;
  const sni = oneOf('sslsni', ['0', '1'] as const, undefined);
  if (sni !== undefined) out.sslsni = sni === '1';
  else if (defaults.sslsni !== undefined) out.sslsni = defaults.sslsni;
  const tsa = oneOf<TargetSessionAttrs>('target_session_attrs', TARGET_SESSION_ATTRS, defaults.targetSessionAttrs);
  if (tsa !== undefined) out.targetSessionAttrs = tsa;
  const lb = oneOf('load_balance_hosts', ['disable', 'random'] as const, defaults.loadBalanceHosts);
  if (lb !== undefined) out.loadBalanceHosts = lb;
  if (opts.connect_timeout !== undefined) {
    if (!/^\d+$/.test(opts.connect_timeout)) {
      throw routeError(
        `invalid integer value "${opts.connect_timeout}" for connection option "connect_timeout"`,
        file,
        line,
      );
    }
    out.connectTimeout = Number(opts.connect_timeout);
  } else if (defaults.connectTimeout !== undefined) out.connectTimeout = defaults.connectTimeout;
  return out;
}

export interface RouteChoice {
  readonly route: Route;
  /** The user name without its `@servername` suffix (server routes), else the user as sent. */
  readonly user: string;
}

/** The first route that matches this session, if any. Host names and server names compare without case. */
export function chooseRoute(
  routes: readonly Route[],
  s: { sni: string | undefined; database: string; user: string },
): RouteChoice | undefined {
  for (const r of routes) {
    if (r.kind === 'sni' && s.sni !== undefined && s.sni.toLowerCase() === r.name.toLowerCase()) {
      return { route: r, user: s.user };
    }
    if (r.kind === 'database' && s.database === r.name) return { route: r, user: s.user };
    if (r.kind === 'server') {
      const at = s.user.lastIndexOf('@');
      if (at > 0 && s.user.slice(at + 1).toLowerCase() === r.name.toLowerCase()) {
        return { route: r, user: s.user.slice(0, at) };
      }
    }
  }
  return undefined;
}
