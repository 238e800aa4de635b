/**
 * The gateway's own connection to its backend: one or several hosts (libpq's `postgres://h1:5432,h2:5433/` form),
 * TCP or a Unix socket, with libpq's semantics for the hop — sslmode, sslnegotiation (direct TLS with ALPN
 * "postgresql", PostgreSQL 17+), sslsni, connect_timeout, load_balance_hosts. The walk over hosts, addresses and
 * encryption methods is the client's own libpq-exact one (../client/connect.ts ConnectionAttempts); what the gateway
 * adds — the login, and the target_session_attrs check after it — is in ./upstream-walk.ts.
 */
import { type Socket, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { parseUri } from '../client/conninfo.js';
import { ClientError } from '../client/errors.js';
import { type ConnectionPlan, resolve } from '../client/resolve.js';
import type { SslMode } from '../config/schema.js';
import { PgtlsError } from '../errors.js';
import { encodeCancelRequest } from '../protocol/startup.js';

export const ERR_UPSTREAM = 'PGTLS_ERR_UPSTREAM';

export const TARGET_SESSION_ATTRS = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'] as const;
export type TargetSessionAttrs = (typeof TARGET_SESSION_ATTRS)[number];

export interface UpstreamHost {
  /** Host name/IP, or an absolute directory for a Unix socket (as libpq's host=/dir). */
  readonly host: string;
  readonly port: number;
}

export interface UpstreamTarget extends UpstreamHost {
  /** Every host, in the order written (the first is `host`/`port`); absent: just `host`/`port`. */
  readonly hosts?: readonly UpstreamHost[];
  readonly sslmode: SslMode;
  readonly sslrootcert: string;
  readonly sslcert: string;
  readonly sslkey: string;
  /** libpq 17's sslnegotiation: `direct` starts TLS at once (no SSLRequest). Default postgres. */
  readonly sslnegotiation?: 'postgres' | 'direct';
  /** libpq's sslsni: send the host name (never an IP address) as TLS SNI. Default true. */
  readonly sslsni?: boolean;
  /** libpq's connect_timeout in seconds, per host/address (0: none; 1 counts as 2, as libpq has it). */
  readonly connectTimeout?: number;
  readonly targetSessionAttrs?: TargetSessionAttrs;
  /** libpq 16's load_balance_hosts. */
  readonly loadBalanceHosts?: 'disable' | 'random';
}

/** The libpq-style settings of the hop from the configuration (the embedded cluster gets them too: harmless). */
export function upstreamOptions(c: {
  readonly upstream_sslnegotiation: 'postgres' | 'direct';
  readonly upstream_sslsni: boolean;
  readonly upstream_connect_timeout: number;
  readonly upstream_target_session_attrs: TargetSessionAttrs;
  readonly upstream_load_balance_hosts: 'disable' | 'random';
}): Pick<UpstreamTarget, 'sslnegotiation' | 'sslsni' | 'connectTimeout' | 'targetSessionAttrs' | 'loadBalanceHosts'> {
  return {
    sslnegotiation: c.upstream_sslnegotiation,
    sslsni: c.upstream_sslsni,
    // libpq's connect_timeout is whole seconds; a fraction rounds up so that 500ms does not mean "no timeout".
    connectTimeout: Math.ceil(c.upstream_connect_timeout / 1000),
    targetSessionAttrs: c.upstream_target_session_attrs,
    loadBalanceHosts: c.upstream_load_balance_hosts,
  };
}

/** For `serve --check` and the log: every host, and the hop's settings where they differ from libpq's defaults. */
export function upstreamSummary(t: UpstreamTarget): string {
  const parts = [`upstream_sslmode=${t.sslmode}`];
  if (t.sslnegotiation === 'direct') parts.push('upstream_sslnegotiation=direct');
  if (t.sslsni === false) parts.push('upstream_sslsni=off');
  if (t.targetSessionAttrs && t.targetSessionAttrs !== 'any') {
    parts.push(`upstream_target_session_attrs=${t.targetSessionAttrs}`);
  }
  if (t.loadBalanceHosts === 'random') parts.push('upstream_load_balance_hosts=random');
  if (t.connectTimeout !== undefined) parts.push(`upstream_connect_timeout=${t.connectTimeout}s`);
  return `${hostsOf(t).map(hostLabel).join(', ')} (${parts.join(', ')})`;
}

/** All hosts of a target, in the order written. */
export function hostsOf(t: UpstreamTarget): readonly UpstreamHost[] {
  return t.hosts && t.hosts.length > 0 ? t.hosts : [{ host: t.host, port: t.port }];
}

/** `host:port` as an operator writes it ([v6]:port, /dir:port for a socket). */
export function hostLabel(h: UpstreamHost): string {
  return `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`;
}

/**
 * Parse `postgres://host:port` or libpq's multi-host form `postgres://h1:5432,h2:5433,[::1]:5434/` (a host may be
 * percent-encoded "/dir" for a Unix socket). Nothing else may be written in it (see below).
 */
export function parseUpstreamUrl(url: string): { host: string; port: number; hosts: UpstreamHost[] } {
  // A password written into the URL never reaches a message.
  const shown = url.replace(/^(postgres(?:ql)?:\/\/[^:@/]*):[^@/]*@/, '$1:********@');
  const invalid = (why?: string, hint = "Use 'postgres://host:port' or 'postgres://host1:port1,host2:port2'.") =>
    new PgtlsError(ERR_UPSTREAM, `invalid upstream "${shown}"${why ? `: ${why}` : ''}`, { details: { hint } });
  if (!/^postgres(?:ql)?:\/\//.test(url)) throw invalid();
  let params: Map<string, string>;
  try {
    params = parseUri(url);
  } catch (e) {
    throw invalid((e as Error).message.replace(url, shown));
  }
  // Only hosts and ports are read from the URL: the client's user, database and parameters pass through, and the
  // hop's settings are upstream_* keys. Anything else written there would be silently ignored, so it is refused.
  const ignored = [...params.keys()].filter((k) => k !== 'host' && k !== 'port');
  if (ignored.length > 0) {
    throw invalid(
      `${ignored.map((k) => `"${k}"`).join(', ')} cannot be set in upstream`,
      'Write only hosts and ports; the hop is set with upstream_sslmode, upstream_target_session_attrs and the other upstream_* settings, and user and database come from the client.',
    );
  }
  const names = (params.get('host') ?? '').split(',');
  const portList = (params.get('port') ?? '').split(',');
  if (portList.length !== 1 && portList.length !== names.length) {
    throw invalid(`could not match ${portList.length} port numbers to ${names.length} hosts`);
  }
  const hosts = names.map((name, i): UpstreamHost => {
    const p = (portList.length === 1 ? portList[0] : portList[i]) ?? '';
    if (p !== '' && !/^\d+$/.test(p)) throw invalid(`invalid port number: "${p}"`);
    const port = p === '' ? 5432 : Number(p);
    if (port < 1 || port > 65535) throw invalid(`invalid port number: "${p}"`);
    return { host: name === '' ? 'localhost' : name, port };
  });
  const first = hosts[0]!;
  return { host: first.host, port: first.port, hosts };
}

/**
 * The client's connection plan for a target: libpq's parameters for the hop, nothing from the environment or a home
 * directory (an empty upstream_sslrootcert means none, as it always has for the gateway). Throws ClientError with
 * libpq's text for a combination libpq refuses (weak sslmode with sslnegotiation=direct).
 */
export function planFor(t: UpstreamTarget): ConnectionPlan {
  const hosts = hostsOf(t);
  return resolve(
    {
      host: hosts.map((h) => h.host).join(','),
      port: hosts.map((h) => String(h.port)).join(','),
      user: 'pgtls',
      dbname: 'pgtls',
      sslmode: t.sslmode,
      sslnegotiation: t.sslnegotiation ?? 'postgres',
      sslsni: t.sslsni === false ? '0' : '1',
      connect_timeout: String(t.connectTimeout ?? 0),
      target_session_attrs: t.targetSessionAttrs ?? 'any',
      load_balance_hosts: t.loadBalanceHosts ?? 'disable',
      gssencmode: 'disable',
      ...(t.sslrootcert ? { sslrootcert: t.sslrootcert } : {}),
      ...(t.sslcert ? { sslcert: t.sslcert } : {}),
      ...(t.sslkey ? { sslkey: t.sslkey } : {}),
    },
    {},
    { homedir: '', osUser: 'pgtls' },
  );
}

/** Check a target the way libpq checks its options before connecting; the message is libpq's. */
export function checkTarget(t: UpstreamTarget): string | undefined {
  try {
    planFor(t);
    return undefined;
  } catch (e) {
    if (e instanceof ClientError) return e.message;
    throw e;
  }
}

// The walk over several hosts lives beside this file (./upstream-walk.ts); connectUpstream re-exported for callers.
export { connectUpstream } from './upstream-walk.js';

function rawConnect(t: UpstreamHost): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = t.host.startsWith('/')
      ? netConnect({ path: join(t.host, `.s.PGSQL.${t.port}`) })
      : netConnect({ host: t.host, port: t.port });
    sock.setNoDelay(true);
    const onError = (err: Error) =>
      reject(new PgtlsError(ERR_UPSTREAM, `could not connect to upstream: ${err.message}`, { cause: err }));
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      resolve(sock);
    });
  });
}

/**
 * Forward a CancelRequest to the backend at `t.host`/`t.port` — the host the session is on (callers pass the
 * concrete host a walk landed on). Plaintext: PostgreSQL handles cancels before any hba check.
 */
export async function sendCancel(t: UpstreamHost, pid: number, key: Buffer): Promise<void> {
  const sock = await rawConnect(t);
  await new Promise<void>((resolve) => {
    sock.end(encodeCancelRequest(pid, key), () => resolve());
    sock.on('error', () => resolve());
  });
  sock.destroy();
}
