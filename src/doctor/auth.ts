/**
 * The last step of a connection: StartupMessage, then the server's authentication exchange, as libpq answers it
 * (trust, cleartext password, MD5, SCRAM-SHA-256) — enough to tell whether the connection would succeed, and with
 * which server message it would not. Like libpq, SCRAM-SHA-256-PLUS (tls-server-end-point) is used over TLS when the
 * server offers it (channel_binding=prefer, the default, or require), and require_auth is enforced.
 *
 * Password messages come from pgtls/client (client/auth.ts), SCRAM (with channel binding and libpq's mechanism choice
 * and messages) from the shared protocol/scram-client.ts. LOCAL: the exchange itself; if pgtls/client gains an
 * authenticate() step, this file should shrink to a call to it.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { md5PasswordMessage, passwordMessage } from '../client/auth.js';
import { formatServerError } from '../client/login-rules.js';
import {
  BackendMessage,
  MessageReader,
  type ServerErrorFields,
  decodeErrorFields,
  encodeStartupMessage,
} from '../protocol/index.js';
import { type ChannelBindingMode, ScramClient, selectScramMechanism } from '../protocol/scram-client.js';
import { tlsServerEndPoint } from '../protocol/scram.js';

export type AuthOutcome =
  | { readonly ok: true; readonly method: string }
  | {
      readonly ok: false;
      readonly method?: string | undefined;
      readonly error?: ServerErrorFields;
      readonly message: string;
      /** The server had already sent AuthenticationOk: libpq gives up here instead of trying another host/method. */
      readonly afterAuthOk?: boolean;
    };

const AUTH = { Ok: 0, CleartextPassword: 3, MD5Password: 5, SASL: 10, SASLContinue: 11, SASLFinal: 12 } as const;

function frame(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

/** TLS in use on the socket, and the server certificate's tls-server-end-point data (shared SCRAM module). */
function tlsBinding(socket: Socket | TLSSocket): { tls: boolean; binding: Buffer | undefined } {
  const t = socket as TLSSocket;
  if (typeof t.getPeerCertificate !== 'function' || !t.encrypted) return { tls: false, binding: undefined };
  const raw = t.getPeerCertificate()?.raw;
  return { tls: true, binding: raw ? tlsServerEndPoint(raw) : undefined };
}

/** libpq's require_auth check (PostgreSQL 16+): a comma list of methods, or of !methods. */
function authAllowed(requireAuth: string | undefined, method: string): boolean {
  if (!requireAuth) return true;
  const items = requireAuth.split(',').map((x) => x.trim());
  const negated = items.every((x) => x.startsWith('!'));
  const names = items.map((x) => x.replace(/^!/, ''));
  return negated ? !names.includes(method) : names.includes(method);
}

const REQUESTED: Readonly<Record<string, string>> = {
  password: 'a cleartext password',
  md5: 'a hashed password',
  'scram-sha-256': 'SASL authentication',
  none: 'no authentication',
};

/**
 * Send the StartupMessage and authenticate. Resolves once the server sends ReadyForQuery (success) or an
 * ErrorResponse (failure), or the connection ends. Never throws.
 */
export function authenticate(
  socket: Socket | TLSSocket,
  opts: {
    user: string;
    database: string;
    password?: string | undefined;
    channelBinding?: string | undefined;
    requireAuth?: string | undefined;
    timeoutMs: number;
  },
): Promise<AuthOutcome> {
  return new Promise((resolve) => {
    const reader = new MessageReader(1 << 20);
    let method: string | undefined;
    let scram: ScramClient | undefined;
    let authOk = false;
    let settled = false;
    const done = (r: AuthOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.on('error', () => undefined); // the server may reset the connection after its FATAL
      try {
        socket.write(frame('X', Buffer.alloc(0)));
        socket.end();
      } catch {
        // already closed
      }
      setTimeout(() => socket.destroy(), 100).unref();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, method, message: 'timeout expired' }), opts.timeoutMs);
    const noPassword = () => done({ ok: false, method, message: 'fe_sendauth: no password supplied' });
    const onData = (chunk: Buffer) => {
      reader.push(chunk);
      for (let m = reader.next(); m; m = reader.next()) {
        if (m.type === BackendMessage.ErrorResponse) {
          const error = decodeErrorFields(m.body);
          done({
            ok: false,
            method,
            error,
            message: formatServerError(error),
            ...(authOk ? { afterAuthOk: true } : {}),
          });
          return;
        }
        if (m.type === BackendMessage.ReadyForQuery) {
          done({ ok: true, method: method ?? 'trust' });
          return;
        }
        if (m.type !== BackendMessage.Authentication) continue;
        const code = m.body.readInt32BE(0);
        if (code === AUTH.Ok) {
          if (method === undefined && !authAllowed(opts.requireAuth, 'none')) {
            return done({
              ok: false,
              message: `authentication method requirement "${opts.requireAuth}" failed: server did not complete authentication`,
            });
          }
          method ??= 'trust';
          authOk = true;
          continue;
        }
        const wanted =
          code === AUTH.CleartextPassword
            ? 'password'
            : code === AUTH.MD5Password
              ? 'md5'
              : code === AUTH.SASL
                ? 'scram-sha-256'
                : undefined;
        if (wanted && !authAllowed(opts.requireAuth, wanted)) {
          return done({
            ok: false,
            method: wanted,
            message: `authentication method requirement "${opts.requireAuth}" failed: server requested ${REQUESTED[wanted]}`,
          });
        }
        if (code === AUTH.CleartextPassword || code === AUTH.MD5Password) {
          method = code === AUTH.CleartextPassword ? 'password' : 'md5';
          if (opts.password === undefined) return noPassword();
          socket.write(
            code === AUTH.MD5Password
              ? md5PasswordMessage(opts.user, opts.password, m.body.subarray(4, 8))
              : passwordMessage(opts.password),
          );
        } else if (code === AUTH.SASL) {
          const mechs = m.body.subarray(4).toString('utf8').split('\0').filter(Boolean);
          const { tls, binding } = tlsBinding(socket);
          const choice = selectScramMechanism(mechs, {
            tls,
            channelBinding: (opts.channelBinding ?? 'prefer') as ChannelBindingMode,
          });
          if ('error' in choice) {
            // report the mechanism libpq was about to use, as before the refusal
            const plus = mechs.includes('SCRAM-SHA-256-PLUS') && tls && opts.channelBinding !== 'disable';
            return done({ ok: false, method: plus ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256', message: choice.error });
          }
          method = choice.mechanism;
          if (opts.password === undefined) return noPassword();
          scram = new ScramClient({ ...choice, password: opts.password, channelBinding: binding });
          socket.write(scram.initialResponse());
        } else if (code === AUTH.SASLContinue && scram) {
          const step = scram.serverFirstMessage(m.body.toString('latin1', 4));
          if (!step.ok) return done({ ok: false, method, message: step.error });
          socket.write(step.message);
        } else if (code === AUTH.SASLFinal && scram) {
          const final = scram.serverFinalMessage(m.body.toString('latin1', 4));
          if (!final.ok) return done({ ok: false, method, message: final.error });
        } else {
          return done({
            ok: false,
            method: `authentication request ${code}`,
            message: `authentication method ${code} not supported by the doctor`,
          });
        }
      }
    };
    const onError = (err: Error & { reason?: string }) =>
      done({ ok: false, method, message: `SSL error: ${err.reason ?? err.message}` });
    const onClose = () =>
      done({
        ok: false,
        method,
        message:
          'server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.',
      });
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.resume();
    socket.write(
      encodeStartupMessage([
        ['user', opts.user],
        ['database', opts.database],
        ['application_name', 'pgtls-doctor'],
      ]),
    );
  });
}
