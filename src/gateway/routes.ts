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
import { type UpstreamTarget, parseUpstreamUrl } from './upstream.js';

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

const OPTIONS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey'] as const;

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
    if (f[1]!.length !== 1 || f[2]!.length !== 1)
      throw routeError('a route has one name and one upstream', file, l.line);
    let hostPort: { host: string; port: number };
    try {
      hostPort = parseUpstreamUrl(f[2]![0]!);
    } catch (e) {
      throw routeError((e as Error).message, file, l.line, "Use 'postgres://host:port'.");
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
    routes.push({
      kind,
      name: f[1]![0]!,
      upstream: {
        ...hostPort,
        sslmode: (opts.sslmode as SslMode | undefined) ?? defaults.sslmode,
        sslrootcert: opts.sslrootcert ?? defaults.sslrootcert,
        sslcert: opts.sslcert ?? defaults.sslcert,
        sslkey: opts.sslkey ?? defaults.sslkey,
      },
      where: `${file}:${l.line}`,
    });
  }
  return routes;
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
