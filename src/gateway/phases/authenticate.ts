import type { Socket } from 'node:net';
/**
 * Phase 3, authenticate. Today the backend authenticates (trust / password methods at the gateway mean "the
 * backend checks"): the exchange is relayed unchanged both ways, and backend messages are framed only to learn
 * BackendKeyData and to see ReadyForQuery or an ErrorResponse. For `cert` the gateway has already authenticated the
 * certificate in the startup phase and the backend must trust the gateway for that user.
 */
import type { Duplex } from 'node:stream';
import { formatServerError } from '../../client/login-rules.js';
import { BackendMessage } from '../../protocol/constants.js';
import { decodeErrorFields } from '../../protocol/error-response.js';
import { MessageReader, parseBackendKeyData } from '../../protocol/framing.js';
import { decodeParameterStatus } from '../../protocol/messages.js';
import type { ClientConnection } from '../client-connection.js';
import * as refuse from '../refusals.js';
import { type Reported, reportedFrom } from '../upstream-walk.js';
import { attach } from './attach.js';

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
  const mode = c.upstreamWalk?.mode() ?? 'any';
  let auth: AuthOutcome;
  if (mode === 'any' && !c.upstreamWalk?.several) {
    const backend = c.backend!;
    backend.write(startupPacket);
    if (pipelined.length > 0) backend.write(pipelined);
    auth = await relayAuthentication(c.stream, backend);
  } else {
    const checked = await authenticateForTarget(c, startupPacket, pipelined);
    if (checked === undefined) return { ok: false };
    auth = checked;
  }
  if (auth.ok) return auth;
  const { record } = c;
  if (c.timedOut) {
    // authentication_timeout already wrote the record (slowloris after the StartupMessage).
  } else if (auth.error) {
    record.outcome = 'refused';
    record.reason = `backend: ${auth.error.message}${channelBindingHint(c, auth.error.message)}`;
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
 * The backend authenticated the client over a TLS hop and refused its channel binding: the binding covers the
 * backend's certificate, which the client never saw (it bound to the gateway's, or was told binding is possible).
 * The log says what works instead; the client gets PostgreSQL's own error.
 */
function channelBindingHint(c: ClientConnection, message: string): string {
  const b = c.backend as { encrypted?: boolean; upstreamPeerCertificate?: Buffer } | undefined;
  const tlsHop = b !== undefined && (b.encrypted === true || b.upstreamPeerCertificate !== undefined);
  if (!tlsHop || !/channel binding/i.test(message)) return '';
  return ' (the backend authenticated the client over TLS to it, and SCRAM channel binding covers its certificate, which the client never sees: authenticate at the gateway (auth_file or auth_query) or have clients use channel_binding=disable)';
}

/**
 * Forward the authentication exchange unchanged in both directions until the backend sends ReadyForQuery (ok) or an
 * ErrorResponse / either side closes (not ok). Resolves with the cancel key seen on the way.
 */
export function relayAuthentication(client: Duplex, backend: Duplex): Promise<AuthOutcome> {
  const reader = new MessageReader(MAX_AUTH_MESSAGE);
  let key: AuthOutcome['key'];
  return relayUntil<AuthOutcome>(client, backend, {
    fromBackend: (d, finish) => {
      client.write(d);
      reader.push(d);
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
    },
    closed: () => ({ ok: false, ...(key ? { key } : {}) }),
    invalid: () => ({ ok: false, error: { code: '08P01', message: 'invalid message from the backend' } }),
  });
}

/**
 * The wiring both authentication relays share: the client's bytes go to the backend as they come, the backend's to
 * `fromBackend` (which calls `finish` when the exchange is over); either side closing finishes with `closed()`, a
 * framing error with `invalid()`. Both sockets are paused and unhooked when it is over, for the next phase.
 */
function relayUntil<T>(
  client: Duplex,
  backend: Duplex,
  h: {
    fromClient?: (d: Buffer) => void;
    fromBackend: (d: Buffer, finish: (o: T) => void) => void;
    closed: () => T;
    invalid: () => T;
  },
): Promise<T> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: T) => {
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
      h.fromClient?.(d);
      backend.write(d);
    };
    const fromBackend = (d: Buffer) => {
      try {
        h.fromBackend(d, finish);
      } catch {
        finish(h.invalid());
      }
    };
    const onClose = () => finish(h.closed());
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

/**
 * target_session_attrs with the backend authenticating the client: the exchange is relayed up to AuthenticationOk,
 * and what follows (ParameterStatus, BackendKeyData, ReadyForQuery) is held until the session has been checked as
 * libpq checks it. A session of the wrong kind is closed; the next host is tried when the client had nothing to say
 * during authentication (the backend asked for no credentials), since its StartupMessage alone can be replayed.
 * A password or SCRAM exchange cannot be replayed to another host: then the client is refused with libpq's reason
 * — gateway authentication (auth_file/auth_query) or pooling lets the gateway log in to each host itself.
 * Also used for `any` when the upstream has several hosts: a 57P03 refusal before the client said anything is not
 * passed on, and the next host is tried (libpq does the same).
 * Resolves undefined when the client has been refused here.
 */
async function authenticateForTarget(
  c: ClientConnection,
  startupPacket: Buffer,
  pipelined: Buffer,
): Promise<AuthOutcome | undefined> {
  const walk = c.upstreamWalk!;
  for (let guard = 0; guard < 1000; guard++) {
    const backend = c.backend!;
    backend.write(startupPacket);
    if (pipelined.length > 0) backend.write(pipelined);
    const auth = await relayAuthenticationHeld(c.stream, backend, walk.several);
    if (!auth.ok) {
      // 57P03 before the client said anything (a standby not accepting connections yet): the next host, as libpq.
      if (auth.notNow !== undefined && walk.loginFailed(auth.notNow, '57P03')) {
        if (!(await attach(c))) return undefined;
        continue;
      }
      if (auth.held.length > 0) c.stream.write(auth.held);
      return auth;
    }
    const why = await walk.check(backend as Socket, auth.reported);
    if (why === undefined) {
      c.stream.write(auth.held);
      return { ok: true, ...(auth.key ? { key: auth.key } : {}) };
    }
    if (auth.clientSpoke || pipelined.length > 0) {
      const failed = walk.unavailable();
      c.record.upstream_error = failed.message;
      c.fatal(
        refuse.upstreamUnavailable(failed.clientDetail),
        `upstream: ${why} (target_session_attrs = ${walk.target.targetSessionAttrs}; the backend authenticated the client, so the exchange cannot be replayed to the next host: use gateway authentication to fail over)`,
      );
      return undefined;
    }
    if (!(await attach(c))) return undefined;
  }
  return undefined;
}

/**
 * relayAuthentication, holding everything from AuthenticationOk on: resolves at ReadyForQuery with the held frames,
 * the values the backend reported, and whether the client sent anything (a password, SASL messages) meanwhile.
 */
function relayAuthenticationHeld(
  client: Duplex,
  backend: Duplex,
  several: boolean,
): Promise<AuthOutcome & { held: Buffer; reported: Reported; clientSpoke: boolean; notNow?: string }> {
  const reader = new MessageReader(MAX_AUTH_MESSAGE);
  const held: Buffer[] = [];
  const params: [string, string][] = [];
  let key: AuthOutcome['key'];
  let authOk = false;
  let clientSpoke = false;
  let notNow: string | undefined;
  const withHeld = (o: AuthOutcome) => ({
    ...o,
    held: Buffer.concat(held),
    reported: reportedFrom(params),
    clientSpoke,
    ...(notNow !== undefined ? { notNow } : {}),
  });
  return relayUntil(client, backend, {
    fromClient: () => {
      clientSpoke = true;
    },
    fromBackend: (d, finish) => {
      reader.push(d);
      for (let m = reader.next(); m; m = reader.next()) {
        const frame = Buffer.from(m.frame);
        if (m.type === BackendMessage.Authentication && m.body.readInt32BE(0) === 0) authOk = true;
        if (!authOk && !clientSpoke && several && m.type === BackendMessage.ErrorResponse) {
          const fields = decodeErrorFields(m.body);
          if (fields.C === '57P03') {
            // Not forwarded: the client will get the next host's answer instead.
            notNow = formatServerError(fields);
            finish(withHeld({ ok: false, error: { code: '57P03', message: fields.M ?? '' } }));
            return;
          }
        }
        if (authOk) held.push(frame);
        else client.write(frame);
        if (m.type === BackendMessage.BackendKeyData) key = parseBackendKeyData(m.body);
        else if (m.type === BackendMessage.ParameterStatus) {
          const p = decodeParameterStatus(m.body);
          if (p) params.push([p.name, p.value]);
        } else if (m.type === BackendMessage.ErrorResponse) {
          const fields = decodeErrorFields(m.body);
          finish(
            withHeld({ ok: false, ...(key ? { key } : {}), error: { code: fields.C ?? '', message: fields.M ?? '' } }),
          );
          return;
        } else if (m.type === BackendMessage.ReadyForQuery) {
          if (reader.buffered > 0) backend.unshift(reader.takeRemaining());
          finish(withHeld({ ok: true, ...(key ? { key } : {}) }));
          return;
        }
      }
    },
    closed: () => withHeld({ ok: false, ...(key ? { key } : {}) }),
    invalid: () => withHeld({ ok: false, error: { code: '08P01', message: 'invalid message from the backend' } }),
  });
}
