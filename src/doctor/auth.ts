/**
 * The last step of a connection: StartupMessage, then the server's authentication exchange, as libpq answers it
 * (trust, cleartext password, MD5, SCRAM-SHA-256) — enough to tell whether the connection would succeed, and with
 * which server message it would not. Channel binding (SCRAM-SHA-256-PLUS) is not offered: libpq's default
 * channel_binding=prefer connects either way; with channel_binding=require the doctor says it could not check.
 *
 * LOCAL: pgtls/client negotiates the socket but does not authenticate (drivers do). If it gains an authenticate()
 * step, this file should go.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
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

/** SASLprep is skipped: libpq also falls back to the raw password when it is not valid UTF-8 normalised input. */
function scramClient(password: string) {
  const nonce = randomBytes(18).toString('base64');
  const first = `n=,r=${nonce}`;
  let serverSignature: Buffer | undefined;
  return {
    initial: () => Buffer.from(`n,,${first}`),
    respond(serverFirst: string): Buffer {
      const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
      const r = attrs.r ?? '';
      if (!r.startsWith(nonce)) throw new Error('invalid SCRAM response (nonce mismatch)');
      const salt = Buffer.from(attrs.s ?? '', 'base64');
      const iterations = Number(attrs.i);
      const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
      const clientKey = createHmac('sha256', salted).update('Client Key').digest();
      const storedKey = createHash('sha256').update(clientKey).digest();
      const finalNoProof = `c=biws,r=${r}`;
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
    timeoutMs: number;
  },
): Promise<AuthOutcome> {
  return new Promise((resolve) => {
    const reader = new MessageReader(1 << 20);
    let method: string | undefined;
    let scram: ReturnType<typeof scramClient> | undefined;
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
          done({ ok: false, method, error, message: `${error.S ?? 'FATAL'}:  ${error.M ?? ''}` });
          return;
        }
        if (m.type === BackendMessage.ReadyForQuery) {
          done({ ok: true, method: method ?? 'trust' });
          return;
        }
        if (m.type !== BackendMessage.Authentication) continue;
        const code = m.body.readInt32BE(0);
        if (code === AUTH.Ok) {
          method ??= 'trust';
          continue;
        }
        if (code === AUTH.CleartextPassword || code === AUTH.MD5Password) {
          method = code === AUTH.CleartextPassword ? 'password' : 'md5';
          if (opts.password === undefined) return noPassword();
          let pw = opts.password;
          if (code === AUTH.MD5Password) {
            const salt = m.body.subarray(4, 8);
            const inner = createHash('md5')
              .update(pw + opts.user)
              .digest('hex');
            pw = `md5${createHash('md5')
              .update(Buffer.concat([Buffer.from(inner), salt]))
              .digest('hex')}`;
          }
          socket.write(frame('p', cstr(pw)));
        } else if (code === AUTH.SASL) {
          const mechs = m.body.subarray(4).toString('utf8').split('\0').filter(Boolean);
          method = 'SCRAM-SHA-256';
          if (opts.channelBinding === 'require') {
            return done({
              ok: false,
              method,
              message: 'channel binding required, but the doctor does not implement SCRAM-SHA-256-PLUS',
            });
          }
          if (!mechs.includes('SCRAM-SHA-256')) {
            return done({
              ok: false,
              method,
              message: `none of the server's SASL authentication mechanisms are supported (${mechs.join(', ')})`,
            });
          }
          if (opts.password === undefined) return noPassword();
          scram = scramClient(opts.password);
          const initial = scram.initial();
          const len = Buffer.alloc(4);
          len.writeInt32BE(initial.length);
          socket.write(frame('p', Buffer.concat([cstr('SCRAM-SHA-256'), len, initial])));
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
