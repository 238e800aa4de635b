/**
 * The last step of a connection: StartupMessage, then the server's authentication exchange, as libpq answers it
 * (trust, cleartext password, MD5, SCRAM-SHA-256) — enough to tell whether the connection would succeed, and with
 * which server message it would not. Like libpq, SCRAM-SHA-256-PLUS (tls-server-end-point) is used over TLS when the
 * server offers it (channel_binding=prefer, the default, or require), and require_auth is enforced.
 *
 * Password messages come from pgtls/client (client/auth.ts). LOCAL: the exchange itself and SCRAM with channel binding
 * (client/auth.ts has SCRAM without it, for PgtlsSocket's replays); if pgtls/client gains an authenticate() step,
 * this file should shrink to a call to it.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { md5PasswordMessage, passwordMessage } from '../client/auth.js';
import { formatServerError } from '../client/login-rules.js';
import { toArrayBuffer } from '../pki/pem.js';
import { x509 } from '../pki/x509.js';
import {
  BackendMessage,
  MessageReader,
  type ServerErrorFields,
  decodeErrorFields,
  encodeStartupMessage,
} from '../protocol/index.js';

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

const cstr = (s: string) => Buffer.from(`${s}\0`, 'utf8');

/**
 * SCRAM-SHA-256 (RFC 5802/7677), with tls-server-end-point channel binding (RFC 5929) when `cbind` is given, as libpq
 * does over TLS when the server offers SCRAM-SHA-256-PLUS. SASLprep is skipped: libpq also uses the raw password when
 * normalisation does not apply.
 */
function scramClient(password: string, gs2: string, cbind?: Buffer) {
  const nonce = randomBytes(18).toString('base64');
  const first = `n=,r=${nonce}`;
  let serverSignature: Buffer | undefined;
  return {
    initial: () => Buffer.from(`${gs2}${first}`),
    respond(serverFirst: string): Buffer {
      const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
      const r = attrs.r ?? '';
      if (!r.startsWith(nonce)) throw new Error('invalid SCRAM response (nonce mismatch)');
      const salt = Buffer.from(attrs.s ?? '', 'base64');
      const iterations = Number(attrs.i);
      const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
      const clientKey = createHmac('sha256', salted).update('Client Key').digest();
      const storedKey = createHash('sha256').update(clientKey).digest();
      const c = Buffer.concat([Buffer.from(gs2), cbind ?? Buffer.alloc(0)]).toString('base64');
      const finalNoProof = `c=${c},r=${r}`;
      const authMessage = `${first},${serverFirst},${finalNoProof}`;
      const clientSig = createHmac('sha256', storedKey).update(authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ clientSig[i]!));
      const serverKey = createHmac('sha256', salted).update('Server Key').digest();
      serverSignature = createHmac('sha256', serverKey).update(authMessage).digest();
      return Buffer.from(`${finalNoProof},p=${proof.toString('base64')}`);
    },
    verify(serverFinal: string): boolean {
      const v = /v=([^,]+)/.exec(serverFinal)?.[1];
      if (!v || !serverSignature) return false;
      const got = Buffer.from(v, 'base64');
      return got.length === serverSignature.length && timingSafeEqual(got, serverSignature);
    },
  };
}

/** tls-server-end-point: the server certificate hashed with its signature's hash (SHA-256 for MD5 and SHA-1). */
function serverEndPoint(socket: Socket | TLSSocket): Buffer | undefined {
  const t = socket as TLSSocket;
  if (typeof t.getPeerCertificate !== 'function') return undefined;
  const raw = t.getPeerCertificate()?.raw;
  if (!raw) return undefined;
  let hash = 'sha256';
  try {
    const alg = new x509.X509Certificate(toArrayBuffer(raw)).signatureAlgorithm as { hash?: { name?: string } };
    const name = alg.hash?.name?.toLowerCase().replace('-', '');
    if (name === 'sha384' || name === 'sha512') hash = name;
  } catch {
    // keep SHA-256
  }
  return createHash(hash).update(raw).digest();
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
    let scram: ReturnType<typeof scramClient> | undefined;
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
          const cbind = opts.channelBinding === 'disable' ? undefined : serverEndPoint(socket);
          const plus = cbind !== undefined && mechs.includes('SCRAM-SHA-256-PLUS');
          method = plus ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256';
          if (opts.channelBinding === 'require' && !plus) {
            return done({
              ok: false,
              method,
              message:
                'channel binding is required, but server did not offer an authentication method that supports channel binding',
            });
          }
          if (!plus && !mechs.includes('SCRAM-SHA-256')) {
            return done({
              ok: false,
              method,
              message: `none of the server's SASL authentication mechanisms are supported`,
            });
          }
          if (opts.password === undefined) return noPassword();
          // gs2 header: p= when binding; y when TLS is in use but the server offers no PLUS; n without TLS.
          const gs2 = plus ? 'p=tls-server-end-point,,' : cbind ? 'y,,' : 'n,,';
          scram = scramClient(opts.password, gs2, plus ? cbind : undefined);
          const initial = scram.initial();
          const len = Buffer.alloc(4);
          len.writeInt32BE(initial.length);
          socket.write(frame('p', Buffer.concat([cstr(method), len, initial])));
        } else if (code === AUTH.SASLContinue && scram) {
          try {
            socket.write(frame('p', scram.respond(m.body.subarray(4).toString('utf8'))));
          } catch (err) {
            return done({ ok: false, method, message: (err as Error).message });
          }
        } else if (code === AUTH.SASLFinal && scram) {
          if (!scram.verify(m.body.subarray(4).toString('utf8'))) {
            return done({
              ok: false,
              method,
              message: 'invalid SCRAM server signature: the server does not know the password',
            });
          }
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
