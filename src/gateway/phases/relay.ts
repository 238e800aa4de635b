/**
 * Phase 5, relay: bytes spliced both ways with no parsing, backpressure respected; a transport that can relay
 * natively (TlsSession.splice) does it off the JavaScript path.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { countNativeTlsSplice } from '../../tls/native-upstream.js';
import type { ClientConnection } from '../client-connection.js';
import type { RelayStats } from '../transport.js';

export async function relay(c: ClientConnection, stats: RelayStats): Promise<RelayStats> {
  const backend = c.backend!;
  const native = c.tls?.splice;
  // TLS on both hops, both native: the relay runs in C (TlsSession.spliceTls says undefined for any other backend).
  const tlsToTls = c.tls?.spliceTls?.(backend, stats);
  if (tlsToTls) {
    countNativeTlsSplice();
    await tlsToTls;
  } else if (native && isPlainSocket(backend)) await native(backend, stats);
  else await splice(c.stream, backend, stats);
  return stats;
}

function isPlainSocket(d: Duplex): d is Socket {
  return typeof (d as Socket).setNoDelay === 'function' && !('encrypted' in d);
}

/**
 * Splice two streams: each chunk read from one is written to the other; when a write reports a full buffer the
 * reading side pauses until 'drain'. Ends propagate (half-close), errors and closes tear both down.
 */
export function splice(client: Duplex, backend: Duplex, stats: RelayStats): Promise<void> {
  return new Promise((resolve) => {
    let closed = 0;
    const pipeOne = (from: Duplex, to: Duplex, count: keyof RelayStats) => {
      from.on('data', (d: Buffer) => {
        stats[count] += d.length;
        if (!to.write(d)) from.pause();
      });
      to.on('drain', () => from.resume());
      from.once('end', () => to.end());
    };
    const onClose = () => {
      closed++;
      client.destroy();
      backend.destroy();
      if (closed === 1) resolve();
    };
    // Either side may have closed while the session was being set up.
    if (client.destroyed || backend.destroyed) {
      onClose();
      return;
    }
    pipeOne(client, backend, 'bytesFromClient');
    pipeOne(backend, client, 'bytesFromBackend');
    client.once('close', onClose);
    backend.once('close', onClose);
    client.on('error', () => client.destroy());
    backend.on('error', () => backend.destroy());
    client.resume();
    backend.resume();
  });
}
