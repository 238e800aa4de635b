/**
 * The gateway logs in to its backend itself — when it authenticated the client (gateway authentication) and, later,
 * for pooled server connections. It answers the backend's authentication request with what it has: the client's
 * password (cleartext or a plaintext auth_file secret), an md5 secret (enough for md5, as for any client), or the
 * ClientKey the client proved in its own SCRAM exchange (pass-through, as PgBouncer does since 1.14; the backend
 * must hold the same secret: same salt and iterations). Channel binding is used on a TLS hop.
 */
import type { Duplex } from 'node:stream';
import { md5Response } from '../auth/password.js';
import { BackendMessage } from '../protocol/constants.js';
import { decodeErrorFields } from '../protocol/error-response.js';
import { parseBackendKeyData } from '../protocol/framing.js';
import type { ScramClient } from '../protocol/scram-client.js';
import { backendScram } from './backend-scram.js';
import { MessageStream } from './message-stream.js';

export interface BackendCredentials {
  readonly user: string;
  /** A password (what the client typed, or a plaintext secret). */
  readonly password?: string | Buffer;
  /** An md5 secret ("md5…"): answers AuthenticationMD5Password. */
  readonly md5Secret?: string;
  /** SCRAM pass-through. */
  readonly scram?: {
    readonly clientKey: Uint8Array;
    readonly serverKey: Uint8Array;
    readonly salt: string;
    readonly iterations: number;
  };
}

export type BackendLogin =
  | {
      readonly ok: true;
      /** Backend messages after AuthenticationOk up to and including ReadyForQuery, for the client. */
      readonly afterAuth: Buffer;
      readonly key?: { pid: number; key: Buffer };
      /** What the backend asked for: 'trust', 'password', 'md5', 'scram', 'scram-plus'. */
      readonly method: string;
    }
  | {
      readonly ok: false;
      /** The backend's own ErrorResponse (SQLSTATE, message), or the gateway's reason. */
      readonly error: { readonly code: string; readonly message: string };
      readonly fromBackend: boolean;
    };

const AUTH = { Ok: 0, Cleartext: 3, MD5: 5, SASL: 10, SASLContinue: 11, SASLFinal: 12 } as const;

function passwordMessage(text: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(text), Buffer.from([0])]);
  const b = Buffer.alloc(5 + body.length);
  b[0] = 0x70; // 'p' PasswordMessage
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

/** Send `startup` (a StartupMessage) and authenticate; the backend socket is paused when this resolves. */
export async function loginToBackend(
  backend: Duplex,
  startup: Buffer,
  creds: BackendCredentials,
): Promise<BackendLogin> {
  const reader = new MessageStream(backend, 1 << 20);
  const fail = (code: string, message: string, fromBackend = false): BackendLogin => ({
    ok: false,
    error: { code, message },
    fromBackend,
  });
  backend.write(startup);
  let scram: ScramClient | undefined;
  let method = 'trust';
  const after: Buffer[] = [];
  let authOk = false;
  let key: { pid: number; key: Buffer } | undefined;
  for (let guard = 0; guard < 10_000; guard++) {
    const m = await reader.next();
    if (!m) return fail('08006', 'the backend closed the connection during authentication');
    if ('error' in m) return fail('08P01', `invalid message from the backend: ${m.error}`);
    if (m.type === BackendMessage.ErrorResponse) {
      const f = decodeErrorFields(m.body);
      return fail(f.C ?? '08P01', f.M ?? 'error from the backend', true);
    }
    if (authOk) {
      after.push(m.frame);
      if (m.type === BackendMessage.BackendKeyData) key = parseBackendKeyData(m.body);
      if (m.type === BackendMessage.ReadyForQuery) {
        const rest = reader.detach();
        if (rest.length > 0) backend.unshift(rest);
        return { ok: true, afterAuth: Buffer.concat(after), ...(key ? { key } : {}), method };
      }
      continue;
    }
    if (m.type === BackendMessage.NegotiateProtocolVersion) continue;
    if (m.type !== BackendMessage.Authentication) {
      return fail(
        '08P01',
        `unexpected message "${String.fromCharCode(m.type)}" from the backend during authentication`,
      );
    }
    const code = m.body.readInt32BE(0);
    switch (code) {
      case AUTH.Ok:
        authOk = true;
        break;
      case AUTH.Cleartext:
        method = 'password';
        if (creds.password === undefined) {
          return fail('28000', `the backend asks for a password for user "${creds.user}" and the gateway has none`);
        }
        backend.write(passwordMessage(creds.password));
        break;
      case AUTH.MD5: {
        method = 'md5';
        const secret = creds.md5Secret ?? (creds.password !== undefined ? creds.password.toString() : undefined);
        if (secret === undefined) {
          return fail('28000', `the backend asks for md5 for user "${creds.user}" and the gateway has no md5 secret`);
        }
        backend.write(passwordMessage(md5Response(creds.user, secret, m.body.subarray(4, 8))));
        break;
      }
      case AUTH.SASL: {
        const offered = m.body.toString('utf8', 4).split('\0').filter(Boolean);
        if (creds.password === undefined && !creds.scram) {
          return fail('28000', `the backend asks for SCRAM for user "${creds.user}" and the gateway has no key for it`);
        }
        const started = backendScram(
          offered,
          backend,
          creds.password !== undefined
            ? { password: creds.password }
            : {
                keys: { clientKey: creds.scram!.clientKey, serverKey: creds.scram!.serverKey },
                expect: { salt: creds.scram!.salt, iterations: creds.scram!.iterations },
              },
        );
        if ('error' in started) return fail('28000', started.error);
        method = started.plus ? 'scram-plus' : 'scram';
        scram = started.scram;
        backend.write(started.scram.initialResponse());
        break;
      }
      case AUTH.SASLContinue: {
        if (!scram) return fail('08P01', 'SASL continuation without a SASL exchange');
        const step = scram.serverFirstMessage(m.body.toString('utf8', 4));
        if (!step.ok) return fail('28000', step.error);
        backend.write(step.message);
        break;
      }
      case AUTH.SASLFinal: {
        if (!scram) return fail('08P01', 'SASL final without a SASL exchange');
        const fin = scram.serverFinalMessage(m.body.toString('utf8', 4));
        if (!fin.ok) return fail('28000', fin.error);
        break;
      }
      default:
        return fail(
          '28000',
          `the backend asks for an authentication method the gateway cannot answer (request ${code})`,
        );
    }
  }
  return fail('08P01', 'too many messages from the backend during authentication');
}
