/**
 * One client connection through its phases (../../shared/design.md): negotiate → startup → authenticate → attach →
 * relay → closing. Mirrors ProcessSSLStartup() + ProcessStartupPacket() + ClientAuthentication() of PostgreSQL 18;
 * each phase is its own module under ./phases/, and the state they share is a ClientConnection.
 */
import type { Socket } from 'node:net';
import { encodeErrorResponse } from '../protocol/error-response.js';
import { encodeStartupMessage } from '../protocol/startup.js';
import type { AcceptedSocket } from './accepted-socket.js';
import { ClientConnection } from './client-connection.js';
import { attach, attachLoggedIn } from './phases/attach.js';
import { authenticateAtGateway, gatewayChecks } from './phases/authenticate-gateway.js';
import { authenticateAtBackend } from './phases/authenticate.js';
import { closing } from './phases/closing.js';
import { maybeConsole } from './phases/console.js';
import { negotiate } from './phases/negotiate.js';
import { pooledSession } from './phases/pooled.js';
import { relay } from './phases/relay.js';
import { startup } from './phases/startup.js';
import * as refuse from './refusals.js';
import type { GatewayRuntime } from './runtime.js';
import { stripClientFacts, tlsFactsAsStartupOptions } from './ssl-view.js';
import type { RelayStats } from './transport.js';

/**
 * The StartupMessage for the backend: the client's own, byte for byte — unless the gateway must add the client's TLS
 * facts as pgtls.* settings (client_tls_facts_to_backend), or drop pgtls.* settings the client sent itself (a
 * client must not be able to claim TLS facts it does not have).
 */
function backendStartupPacket(
  c: ClientConnection,
  raw: Buffer,
  params: ReadonlyArray<readonly [string, string]>,
): Buffer {
  const mode = c.cfg.client_tls_facts_to_backend;
  const renamed = c.backendUser;
  const own = stripClientFacts(params).map(([k, v]): [string, string] => [
    k,
    k === 'user' && renamed !== undefined ? renamed : v,
  ]);
  const add = mode === 'startup' || mode === 'both';
  if (!add && own.length === params.length && renamed === undefined) return raw;
  const code = raw.readUInt32BE(4);
  return encodeStartupMessage([...own, ...(add ? tlsFactsAsStartupOptions(c.tls?.facts, c.record) : [])], code);
}

export async function handleConnection(socket: Socket | AcceptedSocket, rt: GatewayRuntime): Promise<void> {
  const c = new ClientConnection(socket, rt);
  try {
    const negotiated = await negotiate(c);
    if (!negotiated) return;
    const admitted = await startup(c, negotiated.packet);
    if (!admitted) return;
    if (await maybeConsole(c, admitted, negotiated.pipelined)) return;
    if (rt.pools) {
      await pooledSession(c, rt.pools, admitted, negotiated.pipelined);
      return;
    }
    const startupPacket = backendStartupPacket(c, negotiated.packet.raw, admitted.params.params);
    let auth: { ok: boolean; key?: { pid: number; key: Buffer } | undefined };
    if (gatewayChecks(admitted.line, rt.secrets)) {
      // authenticate at the gateway, then attach a backend the gateway logs in to itself.
      const done = await authenticateAtGateway(c, admitted.line, admitted.who.user, admitted.who.database, rt.secrets!);
      if (!done) return;
      const login = await attachLoggedIn(c, startupPacket, done.credentials);
      if (!login) return;
      if (!login.ok) {
        c.fatal(
          login.fromBackend
            ? { severity: 'FATAL', code: login.error.code, message: login.error.message }
            : refuse.backendLoginFailed(),
          `backend login: ${login.error.message}`,
        );
        return;
      }
      c.record.backend_auth = login.method;
      c.stream.write(login.afterAuth);
      const pending = Buffer.concat([negotiated.pipelined, done.pending]);
      if (pending.length > 0) c.backend!.write(pending);
      auth = { ok: true, key: login.key };
    } else {
      // authenticate + attach: the backend authenticates, so it is attached first and the exchange relayed to it.
      if (!(await attach(c))) return;
      auth = await authenticateAtBackend(c, startupPacket, negotiated.pipelined);
      if (!auth.ok) return;
    }
    c.authenticated();
    c.record.outcome = 'relayed';
    if (auth.key) {
      c.record.backend_pid = auth.key.pid;
      c.live.setBackendPid(auth.key.pid);
    }
    const stats: RelayStats = { bytesFromClient: 0, bytesFromBackend: 0 };
    c.live.setRelayStats(stats);
    c.live.setState('active');
    const wouldRefuse = rt.operator.hooks.sessionRelayed(c.record, c.tls?.facts, auth.key?.pid);
    if (wouldRefuse.length > 0) c.record.would_refuse = wouldRefuse.map((r) => r.message);
    const unregister = auth.key ? rt.registerCancelKey(auth.key.pid, auth.key.key, c.upstream) : () => undefined;
    const end = rt.trackSession(c.stream, c.backend!);
    try {
      await relay(c, stats);
      c.record.bytes_from_client = stats.bytesFromClient;
      c.record.bytes_from_backend = stats.bytesFromBackend;
    } finally {
      unregister();
      end();
    }
  } catch (err) {
    // Conventions §5: any other exception is a generic FATAL to the client and a log line with the detail.
    c.record.outcome = 'error';
    c.record.reason = (err as Error).message;
    c.closeAfter(encodeErrorResponse(refuse.internalError()));
  } finally {
    closing(c);
  }
}
