/**
 * Phase 3, authenticate. Today the backend authenticates (trust / password methods at the gateway mean "the
 * backend checks"): the exchange is relayed unchanged both ways, and backend messages are framed only to learn
 * BackendKeyData and to see ReadyForQuery or an ErrorResponse. For `cert` the gateway has already authenticated the
 * certificate in the startup phase and the backend must trust the gateway for that user.
 */
import type { Duplex } from 'node:stream';
import { BackendMessage } from '../../protocol/constants.js';
import { decodeErrorFields } from '../../protocol/error-response.js';
import { MessageReader, parseBackendKeyData } from '../../protocol/framing.js';
import type { ClientConnection } from '../client-connection.js';

/** Generous: during authentication the backend sends small messages; a SASL/GSS token is the largest. */
const MAX_AUTH_MESSAGE = 1 << 20;

export interface AuthOutcome {
  readonly ok: boolean;
  readonly key?: { pid: number; key: Buffer };
  /** SQLSTATE and message of an ErrorResponse the backend sent during authentication (not secret). */
  readonly error?: { code: string; message: string };
}

/**
 * Send the client's StartupMessage (and whatever it pipelined behind it) to the backend and relay the exchange until
 * the backend sends ReadyForQuery. Resolves true when the session may be relayed; otherwise the record says why and
 * the connection is being closed.
 */
export async function authenticateAtBackend(
  c: ClientConnection,
  startupPacket: Buffer,
  pipelined: Buffer,
): Promise<AuthOutcome> {
  const backend = c.backend!;
  backend.write(startupPacket);
  if (pipelined.length > 0) backend.write(pipelined);
  const auth = await relayAuthentication(c.stream, backend);
  if (auth.ok) return auth;
  const { record } = c;
  if (c.timedOut) {
    // authentication_timeout already wrote the record (slowloris after the StartupMessage).
  } else if (auth.error) {
    record.outcome = 'refused';
    record.reason = `backend: ${auth.error.message}`;
    record.sqlstate = auth.error.code;
  } else if (c.gone) {
    record.outcome = 'closed';
    record.reason = 'client closed the connection during authentication';
  } else {
    record.outcome = 'refused';
    record.reason = 'backend closed the connection during authentication';
  }
  // The backend's ErrorResponse, if any, has been forwarded: close after it.
  c.closeAfter();
  return auth;
}

/**
 * Forward the authentication exchange unchanged in both directions until the backend sends ReadyForQuery (ok) or an
 * ErrorResponse / either side closes (not ok). Resolves with the cancel key seen on the way.
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
    // Either side may be gone already (its 'close' came and went while we awaited something else).
    if (client.destroyed || backend.destroyed) {
      onClose();
      return;
    }
    client.on('data', fromClient);
    backend.on('data', fromBackend);
    backend.once('close', onClose);
    client.once('close', onClose);
    client.resume();
    backend.resume();
  });
}
