/**
 * The gateway's own connection to its backend: TCP or a Unix socket, with libpq's sslmode semantics for the hop
 * (upstream_sslmode). The gateway speaks to the backend like a libpq client would: SSLRequest first when TLS may be
 * used, 'N' tolerated only where libpq would tolerate it.
 */
import { readFileSync } from 'node:fs';
import { type Socket, isIP, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { SslMode } from '../config/schema.js';
import { PgtlsError } from '../errors.js';
import { verifyHostName } from '../pki/hostname.js';
import { encodeCancelRequest, encodeSSLRequest } from '../protocol/startup.js';

export const ERR_UPSTREAM = 'PGTLS_ERR_UPSTREAM';

export interface UpstreamTarget {
  /** Host name/IP, or an absolute directory for a Unix socket (as libpq's host=/dir). */
  readonly host: string;
  readonly port: number;
  readonly sslmode: SslMode;
  readonly sslrootcert: string;
  readonly sslcert: string;
  readonly sslkey: string;
}

/** Parse `postgres://host:port` (host may be percent-encoded "/dir" for a Unix socket, or [v6]). */
export function parseUpstreamUrl(url: string): { host: string; port: number } {
  const m = /^postgres(?:ql)?:\/\/(\[[^\]]+\]|[^:/?]*)(?::(\d+))?\/?(?:\?.*)?$/.exec(url);
  if (!m)
    throw new PgtlsError(ERR_UPSTREAM, `invalid upstream "${url}"`, {
      details: { hint: "Use 'postgres://host:port'." },
    });
  let host = decodeURIComponent(m[1] ?? '');
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host: host || 'localhost', port: m[2] ? Number(m[2]) : 5432 };
}

function rawConnect(t: { host: string; port: number }): Promise<Socket> {
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

function readByte(sock: Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      cleanup();
      if (d.length > 1) sock.unshift(d.subarray(1));
      resolve(d[0]!);
    };
    const onEnd = () => {
      cleanup();
      reject(new PgtlsError(ERR_UPSTREAM, 'upstream closed the connection during SSL negotiation'));
    };
    const cleanup = () => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onEnd);
      sock.pause();
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onEnd);
  });
}

/** Open a session socket to the backend, negotiated per upstream_sslmode. */
export async function connectUpstream(t: UpstreamTarget): Promise<Socket | TLSSocket> {
  const sock = await rawConnect(t);
  const unix = t.host.startsWith('/');
  // libpq never negotiates TLS over a Unix socket; `allow` starts in plaintext.
  if (unix || t.sslmode === 'disable' || t.sslmode === 'allow') return sock;
  sock.write(encodeSSLRequest());
  const answer = await readByte(sock);
  if (answer === 0x4e /* N */) {
    if (t.sslmode === 'prefer') return sock;
    sock.destroy();
    throw new PgtlsError(ERR_UPSTREAM, 'server does not support SSL, but SSL was required');
  }
  if (answer !== 0x53 /* S */) {
    sock.destroy();
    throw new PgtlsError(ERR_UPSTREAM, `received invalid response to SSL negotiation: ${String.fromCharCode(answer)}`);
  }
  const verify = t.sslmode === 'verify-ca' || t.sslmode === 'verify-full' || t.sslrootcert !== '';
  const ca = t.sslrootcert !== '' ? readFileSync(t.sslrootcert, 'utf8') : undefined;
  const tlsSock = tlsConnect({
    socket: sock,
    ...(ca ? { ca } : {}),
    ...(t.sslcert ? { cert: readFileSync(t.sslcert), key: readFileSync(t.sslkey) } : {}),
    rejectUnauthorized: verify,
    ...(isIP(t.host) === 0 ? { servername: t.host } : {}),
    // libpq's host-name rules (not Node's): checked against the configured host, as libpq checks `host`.
    checkServerIdentity: (_host, cert) => {
      if (t.sslmode !== 'verify-full') return undefined;
      const r = verifyHostName(cert.raw, t.host);
      return r.ok ? undefined : new Error(r.message);
    },
  });
  await new Promise<void>((resolve, reject) => {
    tlsSock.once('secureConnect', resolve);
    tlsSock.once('error', (err) => reject(new PgtlsError(ERR_UPSTREAM, `SSL error: ${err.message}`, { cause: err })));
  });
  tlsSock.setNoDelay(true);
  return tlsSock;
}

/** Forward a CancelRequest to the backend (plaintext: PostgreSQL handles cancels before any hba check). */
export async function sendCancel(t: UpstreamTarget, pid: number, key: Buffer): Promise<void> {
  const sock = await rawConnect(t);
  await new Promise<void>((resolve) => {
    sock.end(encodeCancelRequest(pid, key), () => resolve());
    sock.on('error', () => resolve());
  });
  sock.destroy();
}
