/**
 * The relay phases of a session once the gateway has let it through: `authenticate` (backend messages are framed
 * only to learn BackendKeyData and to see ReadyForQuery) and then `relay` (bytes spliced both ways, no parsing,
 * backpressure respected). The relay does not care how the backend socket was obtained, so pooling can slot in.
 */
import type { Duplex } from 'node:stream';
import { BackendMessage } from '../protocol/constants.js';
import { decodeErrorFields } from '../protocol/error-response.js';
import { MessageReader, parseBackendKeyData } from '../protocol/framing.js';

/** Generous: during authentication the backend sends small messages; a SASL/GSS token is the largest. */
const MAX_AUTH_MESSAGE = 1 << 20;

export interface AuthOutcome {
  readonly ok: boolean;
  readonly key?: { pid: number; key: Buffer };
  /** SQLSTATE and message of an ErrorResponse the backend sent during authentication (not secret). */
  readonly error?: { code: string; message: string };
}

/**
 * Forward the authentication exchange unchanged in both directions until the backend sends ReadyForQuery (ok) or an
 * ErrorResponse / closes (not ok). Resolves with the cancel key seen on the way.
 */
export function relayAuthentication(client: Duplex, backend: Duplex): Promise<AuthOutcome> {
  return new Promise((resolve) => {
    const reader = new MessageReader(MAX_AUTH_MESSAGE);
    let key: AuthOutcome['key'];
    let done = false;
    const finish = (o: AuthOutcome) => {
      if (done) return;
      done = true;
      client.off('data', fromClient);
      backend.off('data', fromBackend);
      backend.off('close', onClose);
      client.off('close', onClose);
      client.pause();
      backend.pause();
      resolve(o);
    };
    const fromClient = (d: Buffer) => {
      backend.write(d);
    };
    const fromBackend = (d: Buffer) => {
      client.write(d);
      reader.push(d);
      try {
        for (let m = reader.next(); m; m = reader.next()) {
          if (m.type === BackendMessage.BackendKeyData) key = parseBackendKeyData(m.body);
          else if (m.type === BackendMessage.ErrorResponse) {
            const fields = decodeErrorFields(m.body);
            finish({ ok: false, ...(key ? { key } : {}), error: { code: fields.C ?? '', message: fields.M ?? '' } });
            return;
          } else if (m.type === BackendMessage.ReadyForQuery) {
            // Anything after ReadyForQuery in this chunk has been forwarded already; the raw relay takes over.
            finish({ ok: true, ...(key ? { key } : {}) });
            return;
          }
        }
      } catch {
        finish({ ok: false, error: { code: '08P01', message: 'invalid message from the backend' } });
      }
    };
    const onClose = () => finish({ ok: false, ...(key ? { key } : {}) });
    client.on('data', fromClient);
    backend.on('data', fromBackend);
    backend.once('close', onClose);
    client.once('close', onClose);
    client.resume();
    backend.resume();
  });
}

export interface RelayStats {
  bytesFromClient: number;
  bytesFromBackend: number;
}

/**
 * Splice two streams: each chunk read from one is written to the other; when a write reports a full buffer the
 * reading side pauses until 'drain'. Ends propagate (half-close), errors and closes tear both down.
 */
export function splice(client: Duplex, backend: Duplex, stats: RelayStats): Promise<void> {
  return new Promise((resolve) => {
    let closed = 0;
    const pipeOne = (from: Duplex, to: Duplex, count: 'bytesFromClient' | 'bytesFromBackend') => {
      from.on('data', (d: Buffer) => {
        stats[count] += d.length;
        if (!to.write(d)) from.pause();
      });
      to.on('drain', () => from.resume());
      from.once('end', () => to.end());
    };
    pipeOne(client, backend, 'bytesFromClient');
    pipeOne(backend, client, 'bytesFromBackend');
    const onClose = () => {
      closed++;
      client.destroy();
      backend.destroy();
      if (closed === 1) resolve();
    };
    client.once('close', onClose);
    backend.once('close', onClose);
    client.on('error', () => client.destroy());
    backend.on('error', () => backend.destroy());
    client.resume();
    backend.resume();
  });
}
