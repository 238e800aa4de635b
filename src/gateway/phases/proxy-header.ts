/**
 * The PROXY protocol header (v1 or v2) a trusted load balancer sends before anything else (docs/edge.md). Read
 * before negotiation; the client address it carries replaces the peer's for pg_hba.conf, the log and the console.
 * An invalid header closes the connection without an answer, as HAProxy's specification asks.
 */
import { normalizeAddress } from '../../hba/match.js';
import { decodeProxyHeader } from '../../protocol/proxy.js';
import type { ClientConnection } from '../client-connection.js';

/** Resolves true when the header was read (and applied); false when the connection ended here. */
export function readProxyHeader(c: ClientConnection): Promise<boolean> {
  const { record } = c;
  const socket = c.netSocket();
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (ok: boolean) => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      resolve(ok);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = decodeProxyHeader(buf);
      if (r.status === 'need-more') return;
      if (r.status === 'invalid') {
        record.outcome = 'refused';
        record.reason = `invalid PROXY protocol header from ${record.client}: ${r.reason}`;
        done(false);
        c.destroy();
        return;
      }
      const h = r.header;
      record.proxy = { peer: record.client, peer_port: record.client_port, version: h.version, command: h.command };
      if (h.command === 'PROXY' && h.source && (h.family === 'INET' || h.family === 'INET6')) {
        record.client = normalizeAddress(h.source.address);
        record.client_port = h.source.port;
      }
      const rest = buf.subarray(r.consumed);
      done(true);
      if (rest.length > 0) socket.unshift(rest);
    };
    const onEnd = () => {
      record.reason ??= 'client closed the connection before its PROXY protocol header was complete';
      done(false);
      c.destroy();
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}
