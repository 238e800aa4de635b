/**
 * ssl_sni: choose the TLS material for this connection from the server name in the client's ClientHello, as
 * PostgreSQL 19's ClientHello callback does (docs/edge.md). The ClientHello is read here, then handed to the TLS
 * layer untouched together with the chosen material; a refused name gets PostgreSQL's alert and the connection ends.
 */
import type { TlsMaterial } from '../../tls/context.js';
import type { SniSelector } from '../../tls/sni.js';
import type { ClientConnection } from '../client-connection.js';

export interface Chosen {
  readonly material: TlsMaterial;
  /** Every byte read so far: the TLS layer must see them first. */
  readonly bytes: Buffer;
}

export function chooseBySni(
  c: ClientConnection,
  sni: SniSelector,
  initial: Buffer | undefined,
): Promise<Chosen | undefined> {
  const { record } = c;
  const socket = c.netSocket();
  return new Promise((resolve) => {
    let buf: Buffer = initial ?? Buffer.alloc(0);
    let settled = false;
    const done = (r: Chosen | undefined) => {
      if (settled) return;
      settled = true;
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      resolve(r);
    };
    const decide = () => {
      const d = sni.decide(buf);
      if (d.status === 'need-more') return;
      if (d.status === 'refused') {
        record.outcome = 'refused';
        record.reason = `could not accept SSL connection: ${d.reason}`;
        socket.end(d.record);
        done(undefined);
        setImmediate(() => c.destroy());
        return;
      }
      if (d.entry) record.hosts_line = `${d.entry.file}:${d.entry.line}`;
      done({ material: d.material, bytes: buf });
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      decide();
    };
    const onClose = () => {
      record.reason ??= 'client closed the connection during the TLS handshake';
      done(undefined);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    if (buf.length > 0) decide();
    if (!settled) socket.resume();
  });
}
