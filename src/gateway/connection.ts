/**
 * One client connection through its phases (../../shared/design.md): negotiate → startup → authenticate → attach →
 * relay → closing. Mirrors ProcessSSLStartup() + ProcessStartupPacket() + ClientAuthentication() of PostgreSQL 18;
 * each phase is its own module under ./phases/, and the state they share is a ClientConnection.
 */
import type { Socket } from 'node:net';
import { encodeErrorResponse } from '../protocol/error-response.js';
import { ClientConnection } from './client-connection.js';
import { attach } from './phases/attach.js';
import { authenticateAtBackend } from './phases/authenticate.js';
import { closing } from './phases/closing.js';
import { negotiate } from './phases/negotiate.js';
import { relay } from './phases/relay.js';
import { startup } from './phases/startup.js';
import * as refuse from './refusals.js';
import type { GatewayRuntime } from './runtime.js';

export async function handleConnection(socket: Socket, rt: GatewayRuntime): Promise<void> {
  const c = new ClientConnection(socket, rt);
  try {
    const negotiated = await negotiate(c);
    if (!negotiated) return;
    const admitted = await startup(c, negotiated.packet);
    if (!admitted) return;
    // authenticate + attach: the backend authenticates, so it is attached first and the exchange relayed to it.
    if (!(await attach(c))) return;
    const auth = await authenticateAtBackend(c, negotiated.packet.raw, negotiated.pipelined);
    if (!auth.ok) return;
    c.authenticated();
    c.record.outcome = 'relayed';
    if (auth.key) c.record.backend_pid = auth.key.pid;
    const unregister = auth.key ? rt.registerCancelKey(auth.key.pid, auth.key.key) : () => undefined;
    const end = rt.trackSession(c.stream, c.backend!);
    try {
      const stats = await relay(c);
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
