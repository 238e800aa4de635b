/**
 * Phase 4, attach: the client gets its backend connection — today a fresh one per session (the 1:1 relay); pools
 * slot in here. The upstream's hosts are walked as libpq walks them (./../upstream-walk.ts): one that is down is
 * skipped. A backend that cannot be reached gets the client a PostgreSQL-style FATAL (with a DETAIL naming each host
 * tried when there are several), and the log says why in the gateway's words (an exhausted descriptor table is not
 * an unreachable upstream).
 */
import type { Socket } from 'node:net';
import { BackendMessage } from '../../protocol/constants.js';
import { decodeParameterStatus } from '../../protocol/messages.js';
import { nativeUpstreamTls } from '../../tls/native-upstream.js';
import { type BackendCredentials, type BackendLogin, loginToBackend } from '../backend-login.js';
import type { ClientConnection } from '../client-connection.js';
import * as refuse from '../refusals.js';
import { UpstreamUnavailable, UpstreamWalk, reportedFrom } from '../upstream-walk.js';
import { hostLabel, hostsOf } from '../upstream.js';

/** Resolves true when c.backend is set; otherwise the client has been refused or has left. */
export async function attach(c: ClientConnection): Promise<boolean> {
  const { record, rt } = c;
  try {
    // With the native transport the TLS hop to the backend is native too, so the relay can splice TLS<->TLS in C.
    const native = rt.transport?.name === 'native' ? nativeUpstreamTls() : undefined;
    const walk = c.upstreamWalk ?? new UpstreamWalk(c.upstream ?? rt.upstream, native);
    c.upstreamWalk = walk;
    const landed = await walk.next();
    // CancelRequests for this session go to the host it landed on; the log says which one it was.
    c.upstream = landed.at;
    if (hostsOf(walk.target).length > 1) record.upstream_host = hostLabel(landed.at);
    if (!c.attachBackend(landed.socket)) {
      record.outcome = 'closed';
      record.reason = 'client closed the connection before its backend connection was open';
      return false;
    }
    return true;
  } catch (e) {
    refuseUnavailable(c, e as Error & { cause?: NodeJS.ErrnoException });
    return false;
  }
}

/** The client's FATAL for a walk that gave no backend (or an out-of-descriptors gateway). */
export function refuseUnavailable(c: ClientConnection, err: Error & { cause?: NodeJS.ErrnoException }): void {
  c.record.upstream_error = err.message;
  const code = err instanceof UpstreamUnavailable ? err.reason : err.cause?.code;
  if (code === 'EMFILE' || code === 'ENFILE') {
    c.fatal(
      refuse.tooManyClients(undefined),
      `gateway out of file descriptors (${code}) while connecting to the upstream; raise the open-files limit`,
    );
  } else {
    c.fatal(
      refuse.upstreamUnavailable(err instanceof UpstreamUnavailable ? err.clientDetail : undefined),
      `upstream: ${err.message}`,
    );
  }
}

/** ParameterStatus pairs in a run of backend frames (what loginToBackend collected after AuthenticationOk). */
export function parameterStatuses(frames: Buffer): [string, string][] {
  const out: [string, string][] = [];
  for (let at = 0; at + 5 <= frames.length; ) {
    const len = frames.readInt32BE(at + 1);
    if (len < 4 || at + 1 + len > frames.length) break;
    const p =
      frames[at] === BackendMessage.ParameterStatus
        ? decodeParameterStatus(frames.subarray(at + 5, at + 1 + len))
        : undefined;
    if (p) out.push([p.name, p.value]);
    at += 1 + len;
  }
  return out;
}

/**
 * Attach and log in as the gateway (gateway authentication): libpq's walk with the login on each host and the
 * target_session_attrs check after it. Resolves with the login (ok, or the backend's refusal libpq would stop at), or
 * undefined when the client has been refused (no host) or has left.
 */
export async function attachLoggedIn(
  c: ClientConnection,
  startupPacket: Buffer,
  creds: BackendCredentials,
): Promise<BackendLogin | undefined> {
  for (let guard = 0; guard < 1000; guard++) {
    if (!(await attach(c))) return undefined;
    const walk = c.upstreamWalk!;
    const login = await loginToBackend(c.backend!, startupPacket, creds);
    if (!login.ok) {
      if (login.fromBackend && walk.loginFailed(`FATAL:  ${login.error.message}`, login.error.code)) continue;
      return login;
    }
    // A session of the wrong kind: the walk goes on (the log gets every host's reason if none will do).
    if ((await walk.check(c.backend as Socket, reportedFrom(parameterStatuses(login.afterAuth)))) === undefined) {
      return login;
    }
  }
  return undefined;
}
