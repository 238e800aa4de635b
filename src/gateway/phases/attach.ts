/**
 * Phase 4, attach: the client gets its backend connection — today a fresh one per session (the 1:1 relay); pools
 * slot in here. A backend that cannot be reached gets the client a PostgreSQL-style FATAL, and the log says why in
 * the gateway's words (an exhausted descriptor table is not an unreachable upstream).
 */
import type { ClientConnection } from '../client-connection.js';
import * as refuse from '../refusals.js';
import { connectUpstream } from '../upstream.js';

/** Resolves true when c.backend is set; otherwise the client has been refused or has left. */
export async function attach(c: ClientConnection): Promise<boolean> {
  const { record, rt } = c;
  try {
    const backend = await connectUpstream(c.upstream ?? rt.upstream);
    if (!c.attachBackend(backend)) {
      record.outcome = 'closed';
      record.reason = 'client closed the connection before its backend connection was open';
      return false;
    }
    return true;
  } catch (e) {
    const err = e as Error & { cause?: NodeJS.ErrnoException };
    record.upstream_error = err.message;
    const code = err.cause?.code;
    if (code === 'EMFILE' || code === 'ENFILE') {
      c.fatal(
        refuse.tooManyClients(undefined),
        `gateway out of file descriptors (${code}) while connecting to the upstream; raise the open-files limit`,
      );
    } else {
      c.fatal(refuse.upstreamUnavailable(), `upstream: ${err.message}`);
    }
    return false;
  }
}
