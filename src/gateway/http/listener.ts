/**
 * The metrics listener: `GET /metrics` (Prometheus text exposition) and `GET /` (the status page). Off by default
 * (metrics_port = 0); binds metrics_listen_addresses (default localhost). Optional TLS (metrics_ssl_cert_file /
 * metrics_ssl_key_file) and HTTP basic auth (metrics_auth_file), which is what Prometheus's scrape config offers
 * (`scheme: https`, `basic_auth`).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { PgtlsError } from '../../errors.js';
import { readServedFiles } from '../admin/cert-files.js';
import type { OperatorView } from '../admin/runtime-view.js';
import { listenHosts } from '../listen-hosts.js';
import type { GatewayMetrics } from '../metrics.js';
import { renderStatusPage } from './status-page.js';

export const ERR_METRICS_LISTENER = 'PGTLS_ERR_METRICS_LISTENER';

export interface BasicAuthUser {
  readonly user: string;
  /** SHA-256 of the password: the clear text is not kept. */
  readonly passwordSha256: Buffer;
}

export interface MetricsListenerOptions {
  /** metrics_listen_addresses: comma-separated, '*' for all, 'localhost' resolved. */
  readonly listenAddresses: string;
  /** 0 picks a free port (tests); the configuration's 0 means "no listener" and never reaches here. */
  readonly port: number;
  readonly tls?: { readonly cert: Buffer | string; readonly key: Buffer | string };
  readonly users?: readonly BasicAuthUser[];
  readonly metrics: GatewayMetrics;
  readonly view: OperatorView;
  /** The exposition to serve instead of `metrics`' own (with workers: every worker's, gathered by the Operator). */
  readonly exposition?: () => Promise<{ text: string; contentType: string }>;
  /** The status page to serve instead of one built from `view` (with workers: counters summed over them). */
  readonly statusPage?: () => Promise<string>;
}

export interface MetricsListener {
  readonly port: number;
  readonly addresses: readonly string[];
  close(): Promise<void>;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * metrics_auth_file: `user:password` lines, `#` comments and blank lines ignored. The file should be 0600 like a key;
 * its passwords never reach a log or an error message (a bad line is reported by number).
 */
export function readMetricsAuthFile(path: string): BasicAuthUser[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new PgtlsError(ERR_METRICS_LISTENER, `could not read metrics_auth_file "${path}"`, {
      cause,
      details: { file: path },
    });
  }
  const users: BasicAuthUser[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0 || colon === line.length - 1) {
      throw new PgtlsError(ERR_METRICS_LISTENER, `metrics_auth_file "${path}" line ${i + 1}: expected user:password`, {
        details: { file: path, line: i + 1 },
      });
    }
    users.push({ user: line.slice(0, colon), passwordSha256: sha256(line.slice(colon + 1)) });
  });
  return users;
}

/** Compare against every user in constant time per user, so timing tells nothing about which part was wrong. */
export function checkBasicAuth(header: string | undefined, users: readonly BasicAuthUser[]): boolean {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const user = sha256(decoded.slice(0, colon));
  const pw = sha256(decoded.slice(colon + 1));
  let ok = false;
  for (const u of users) {
    const sameUser = timingSafeEqual(user, sha256(u.user));
    const samePw = timingSafeEqual(pw, u.passwordSha256);
    ok = (sameUser && samePw) || ok;
  }
  return ok;
}

const SECURITY_HEADERS = {
  // The page has no script and no external asset: say so to the browser.
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};

export async function startMetricsListener(opts: MetricsListenerOptions): Promise<MetricsListener> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    void respond(req, res, opts).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end('internal error\n');
    });
  };
  const hosts = await listenHosts(opts.listenAddresses);
  if (hosts.length === 0) throw new PgtlsError(ERR_METRICS_LISTENER, 'metrics_listen_addresses is empty');
  const servers: Server[] = [];
  let port = opts.port;
  try {
    for (const host of hosts) {
      const server = opts.tls
        ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' }, handler)
        : createHttpServer(handler);
      // Bound idle keep-alive connections so a scraper cannot hold sockets forever.
      server.keepAliveTimeout = 5000;
      server.headersTimeout = 10_000;
      server.requestTimeout = 10_000;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) =>
          reject(
            new PgtlsError(ERR_METRICS_LISTENER, `could not listen on ${host}:${port}: ${err.message}`, { cause: err }),
          ),
        );
        server.listen({ host, port, ipv6Only: host.includes(':') }, () => resolve());
      });
      port = (server.address() as { port: number }).port;
      servers.push(server);
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  return {
    port,
    addresses: hosts,
    close: async () => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
    },
  };
}

async function respond(req: IncomingMessage, res: ServerResponse, opts: MetricsListenerOptions): Promise<void> {
  if (opts.users && !checkBasicAuth(req.headers.authorization, opts.users)) {
    res.writeHead(401, {
      'content-type': 'text/plain; charset=utf-8',
      'www-authenticate': 'Basic realm="pgtls", charset="UTF-8"',
      ...SECURITY_HEADERS,
    });
    res.end('authentication required\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
    res.end('method not allowed\n');
    return;
  }
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/metrics') {
    let body: string;
    let contentType = opts.metrics.contentType;
    if (opts.exposition) {
      const e = await opts.exposition();
      body = e.text;
      contentType = e.contentType;
    } else {
      opts.metrics.certificates(opts.view.servedFiles());
      body = await opts.metrics.exposition();
    }
    res.writeHead(200, { 'content-type': contentType, ...SECURITY_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  if (path === '/') {
    const body = opts.statusPage
      ? await opts.statusPage()
      : renderStatusPage(opts.view, readServedFiles(opts.view.servedFiles()));
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...SECURITY_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
  res.end('not found: try /metrics or /\n');
}
