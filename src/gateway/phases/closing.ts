/**
 * Phase 6, closing: whatever happened, the client's socket and its backend connection are closed (never left
 * half-open: each holds a descriptor) and exactly one record is logged.
 */
import type { ClientConnection } from '../client-connection.js';

export function closing(c: ClientConnection): void {
  c.finish();
  // Whatever the outcome: a pooled session counted as started may end refused (query_wait_timeout after its
  // welcome); sessionEnded uncounts only what was counted.
  c.rt.operator.hooks.sessionEnded(c.record, c.record.backend_pid);
  c.rt.operator.hooks.connectionEnded(c.record);
  if (c.record.outcome === 'relayed') c.destroy();
  // A refused connection may still be flushing its FATAL (ClientConnection.closeAfter closes it after that); any
  // other end closes now.
  else if (!c.closingAfterFatal) c.destroy();
  c.rt.emitConnection(c.record);
}
