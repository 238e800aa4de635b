/**
 * The server role of SCRAM-SHA-256[-PLUS], as PostgreSQL 18 runs it (auth-sasl.c CheckSASLAuth + auth-scram.c), for
 * the gateway's `authenticate` phase: the same mechanisms advertised, the same checks in the same order, the same
 * SQLSTATEs and texts, and the same refusal to tell an unknown user from a wrong password.
 *
 * Why src/auth/ (and not protocol/ or hba/): this is where credentials are judged — stored secrets, mock
 * authentication, the md5 and cleartext verifiers (./password.ts). It holds per-exchange state and policy, which the
 * pure codec in protocol/ must not, and it is not about *which* method applies (that is hba/). It sits in the same
 * pure layer as hba/ and config/: no sockets, no timers; it imports only protocol/.
 *
 * Usage (one exchange per connection):
 *   const s = new ScramServer({ user, secret, mockSecret, tls, serverCertificate });
 *   send(s.start());                        // AuthenticationSASL
 *   on each 'p' message: const step = s.receive(type, body);
 *     continue → send(step.message); success → send(step.message), then AuthenticationOk …;
 *     failure → send FATAL ErrorResponse built from step.error (and log step.logDetail).
 * A success carries the recovered ClientKey and the secret's ServerKey/salt/iterations, for SCRAM pass-through to a
 * backend (protocol/scram-client.ts, mode `keys`).
 */
import { SqlState } from '../protocol/constants.js';
import type { WireError } from '../protocol/error-response.js';
import {
  type ChannelBindingFlag,
  MAX_SASL_MESSAGE_LENGTH,
  SCRAM_DEFAULT_ITERATIONS,
  SCRAM_KEY_LEN,
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  type ScramFailure,
  authMessage,
  b64decode,
  buildServerFinalMessage,
  buildServerFirstMessage,
  deriveKeys,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeAuthenticationSASLFinal,
  makeNonce,
  mockSalt,
  parseClientFinalMessage,
  parseClientFirstMessage,
  parseSASLInitialResponse,
  recoverClientKey,
  serverSignature,
  tlsServerEndPoint,
} from '../protocol/scram.js';
import { classifySecret, passwordAuthFailed } from './password.js';

export interface ScramServerOptions {
  /** The user of the StartupMessage: the identity (SCRAM's own n= is ignored, as PostgreSQL does). */
  readonly user: string;
  /**
   * The role's stored secret: `SCRAM-SHA-256$…`, `md5…` or a plaintext password (PgBouncer's auth_file allows it);
   * undefined when the user is unknown. Anything but a usable secret gives a mock exchange that fails at the end.
   */
  readonly secret: string | undefined;
  /** A per-gateway random secret (≥ 32 bytes) for mock salts; keep it stable so repeated probes see one salt. */
  readonly mockSecret: Uint8Array;
  /** TLS is in use on this connection: SCRAM-SHA-256-PLUS is offered, and a "y" client is refused. */
  readonly tls: boolean;
  /**
   * Offer channel binding when TLS is in use (default true, as PostgreSQL built with OpenSSL does). false behaves like
   * a server that cannot bind: no PLUS in the list, PLUS refused as an unknown mechanism, a "y" client accepted.
   */
  readonly offerChannelBinding?: boolean;
  /** The DER certificate this connection presented (leaf): its tls-server-end-point hash is the binding data. */
  readonly serverCertificate?: Uint8Array | undefined;
  /** Iterations for mock secrets and secrets made from a plaintext password (default 4096, PostgreSQL's). */
  readonly iterations?: number;
  /** Server nonce source, for test vectors only. */
  readonly nonce?: () => string;
}

export interface ScramSuccessKeys {
  /** The ClientKey the client proved it has: what a pass-through login to the backend uses. */
  readonly clientKey: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
  /** Salt (base64) and iterations of the secret: a backend must have the very same for pass-through to work. */
  readonly salt: string;
  readonly iterations: number;
}

export type ScramServerStep =
  | { readonly kind: 'continue'; readonly message: Buffer }
  | {
      readonly kind: 'success';
      /** AuthenticationSASLFinal, to be followed by AuthenticationOk. */
      readonly message: Buffer;
      readonly keys: ScramSuccessKeys;
      /** SCRAM-SHA-256-PLUS was used and the binding checked. */
      readonly channelBound: boolean;
    }
  | {
      readonly kind: 'failure';
      readonly error: ScramFailure;
      /** For the server log only (PostgreSQL's logdetail); never contains a secret. */
      readonly logDetail?: string;
    };

type State = 'init' | 'initial-sent-empty' | 'salt-sent' | 'finished';

/** A SCRAM failure as the FATAL ErrorResponse PostgreSQL sends (errors during authentication are FATAL). */
export function scramFailureToWire(f: ScramFailure): WireError {
  return {
    severity: 'FATAL',
    code: f.sqlstate,
    message: f.message,
    ...(f.detail !== undefined ? { detail: f.detail } : {}),
  };
}

export class ScramServer {
  private state: State = 'init';
  private readonly salt: string;
  private readonly iterations: number;
  private readonly storedKey: Buffer;
  private readonly serverKey: Buffer;
  private readonly doomed: boolean;
  private readonly logDetail: string | undefined;
  private readonly binding: Buffer | undefined;
  private plus = false;
  private flag: ChannelBindingFlag = 'n';
  private clientFirstBare = '';
  private clientNonce = '';
  private serverNonce = '';
  private serverFirst = '';

  constructor(private readonly opts: ScramServerOptions) {
    const iterations = opts.iterations ?? SCRAM_DEFAULT_ITERATIONS;
    const known = opts.secret === undefined || opts.secret === '' ? undefined : classifySecret(opts.secret);
    this.binding = opts.tls && opts.serverCertificate ? tlsServerEndPoint(opts.serverCertificate) : undefined;
    if (known?.kind === 'scram') {
      const s = known.scram;
      [this.salt, this.iterations, this.storedKey, this.serverKey, this.doomed] = [
        s.salt,
        s.iterations,
        s.storedKey,
        s.serverKey,
        false,
      ];
      this.logDetail = undefined;
    } else if (known?.kind === 'plain') {
      // PgBouncer's "ad hoc" secret for a plaintext auth_file password. The salt is the mock salt, so it is stable
      // across attempts (like a stored one) and looks no different from an unknown user's.
      const salt = mockSalt(opts.user, opts.mockSecret);
      const keys = deriveKeys(known.password, b64decode(salt)!, iterations);
      [this.salt, this.iterations, this.storedKey, this.serverKey, this.doomed] = [
        salt,
        iterations,
        keys.storedKey,
        keys.serverKey,
        false,
      ];
      this.logDetail = undefined;
    } else {
      // mock_scram_secret(): a plausible salt and iteration count, keys that match nothing
      [this.salt, this.iterations, this.storedKey, this.serverKey, this.doomed] = [
        mockSalt(opts.user, opts.mockSecret),
        iterations,
        Buffer.alloc(SCRAM_KEY_LEN),
        Buffer.alloc(SCRAM_KEY_LEN),
        true,
      ];
      // get_role_password()'s and scram_init()'s log details
      this.logDetail =
        opts.secret === undefined
          ? `Role "${opts.user}" does not exist.`
          : opts.secret === ''
            ? `User "${opts.user}" has no password assigned.`
            : `User "${opts.user}" does not have a valid SCRAM secret.`;
    }
  }

  /** Channel binding is possible on this connection: TLS, and not turned off. */
  private get binds(): boolean {
    return this.opts.tls && this.opts.offerChannelBinding !== false;
  }

  /** scram_get_mechanisms(): the PLUS variant first, and only over TLS. */
  mechanisms(): readonly string[] {
    return this.binds ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256];
  }

  /** AuthenticationSASL, the first message of the exchange. */
  start(): Buffer {
    return encodeAuthenticationSASL(this.mechanisms());
  }

  private fail(error: ScramFailure, logDetail?: string): ScramServerStep {
    this.state = 'finished';
    return { kind: 'failure', error, ...(logDetail !== undefined ? { logDetail } : {}) };
  }

  /** One message from the client: `type` is its type byte, `body` what follows the length word. */
  receive(type: number, body: Uint8Array): ScramServerStep {
    if (this.state === 'finished') {
      return this.fail({ sqlstate: SqlState.InternalError, message: 'invalid SCRAM exchange state' });
    }
    if (type !== 0x70) {
      return this.fail({
        sqlstate: SqlState.ProtocolViolation,
        message: `expected SASL response, got message type ${type}`,
      });
    }
    // pq_getmessage() refuses a longer message; CheckSASLAuth() then fails the authentication like a wrong password
    if (body.length + 4 > MAX_SASL_MESSAGE_LENGTH) {
      return this.fail(passwordAuthFailed(this.opts.user), 'invalid message length');
    }
    let input: string | undefined;
    if (this.state === 'init') {
      const parsed = parseSASLInitialResponse(body);
      if (parsed.mechanism === undefined) return this.fail(parsed.error!);
      // scram_init(): PLUS only when it was offered (TLS), otherwise only the plain mechanism
      if (parsed.mechanism === SCRAM_SHA_256_PLUS && this.binds) this.plus = true;
      else if (parsed.mechanism !== SCRAM_SHA_256) {
        return this.fail({
          sqlstate: SqlState.ProtocolViolation,
          message: 'client selected an invalid SASL authentication mechanism',
        });
      }
      if (parsed.error) return this.fail(parsed.error);
      if (parsed.data === undefined) {
        // no Initial Client Response: an empty challenge, answered by the client-first-message
        this.state = 'initial-sent-empty';
        return { kind: 'continue', message: encodeAuthenticationSASLContinue('') };
      }
      input = parsed.data;
    } else {
      input = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('latin1');
    }
    if (input.length === 0) {
      return this.fail({
        sqlstate: SqlState.ProtocolViolation,
        message: 'malformed SCRAM message',
        detail: 'The message is empty.',
      });
    }
    if (input.includes('\0')) {
      return this.fail({
        sqlstate: SqlState.ProtocolViolation,
        message: 'malformed SCRAM message',
        detail: 'Message length does not match input length.',
      });
    }
    return this.state === 'salt-sent' ? this.final(input) : this.first(input);
  }

  private first(input: string): ScramServerStep {
    const first = parseClientFirstMessage(input, { plusSelected: this.plus, serverSupportsBinding: this.binds });
    if ('sqlstate' in first) return this.fail(first);
    this.flag = first.flag;
    this.clientFirstBare = first.bare;
    this.clientNonce = first.nonce;
    this.serverNonce = this.opts.nonce ? this.opts.nonce() : makeNonce();
    this.serverFirst = buildServerFirstMessage(this.clientNonce + this.serverNonce, this.salt, this.iterations);
    this.state = 'salt-sent';
    return { kind: 'continue', message: encodeAuthenticationSASLContinue(this.serverFirst) };
  }

  private final(input: string): ScramServerStep {
    const final = parseClientFinalMessage(input, {
      flag: this.flag,
      plusSelected: this.plus,
      expectedBinding: this.binding,
    });
    if ('sqlstate' in final) return this.fail(final);
    // verify_final_nonce(): client nonce + server nonce, exactly
    if (final.nonce !== this.clientNonce + this.serverNonce) {
      return this.fail({
        sqlstate: SqlState.ProtocolViolation,
        message: 'invalid SCRAM response',
        detail: 'Nonce does not match.',
      });
    }
    const message = authMessage(this.clientFirstBare, this.serverFirst, final.withoutProof);
    // the proof is checked even when doomed, so that an unknown user costs the same time as a known one
    const { valid, clientKey } = recoverClientKey(this.storedKey, message, final.proof);
    if (!valid || this.doomed) return this.fail(passwordAuthFailed(this.opts.user), this.logDetail);
    this.state = 'finished';
    return {
      kind: 'success',
      message: encodeAuthenticationSASLFinal(buildServerFinalMessage(serverSignature(this.serverKey, message))),
      keys: {
        clientKey,
        storedKey: this.storedKey,
        serverKey: this.serverKey,
        salt: this.salt,
        iterations: this.iterations,
      },
      channelBound: this.plus,
    };
  }
}

/** Whether a stored secret could serve SCRAM (a SCRAM secret, or a plaintext password PgBouncer-style). */
export function scramUsable(secret: string | undefined): boolean {
  if (secret === undefined || secret === '') return false;
  const kind = classifySecret(secret).kind;
  return kind === 'scram' || kind === 'plain';
}
