/**
 * The client role of SCRAM-SHA-256[-PLUS], as libpq 18 plays it (fe-auth.c pg_SASL_init, fe-auth-scram.c), with
 * libpq's messages. Pure: the caller moves the bytes and supplies the server certificate's binding data.
 *
 * Two ways to prove identity:
 * - a password (SASLprep'd as libpq does, raw bytes when SASLprep fails);
 * - SCRAM pass-through keys: the ClientKey (and ServerKey, to check the server) instead of a password, as PgBouncer
 *   (since 1.14) and libpq 18's scram_client_key/scram_server_key do. The proof is computed from the ClientKey, which
 *   the server only accepts if the server-first-message's salt and iteration count are those the keys were derived
 *   with: the backend's secret must be *the same secret* (same salt, same iterations), not merely the same password.
 *   Pass `expect` to refuse early, with a clear message, when the backend's secret differs.
 */
import {
  type ChannelBindingFlag,
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  authMessage,
  buildClientFinalMessage,
  buildClientFirstMessage,
  clientProof,
  constantTimeEqual,
  deriveKeys,
  encodeSASLInitialResponse,
  encodeSASLResponse,
  makeNonce,
  parseServerFinalMessage,
  parseServerFirstMessage,
  serverSignature,
} from './scram.js';

/** libpq's channel_binding setting. */
export type ChannelBindingMode = 'disable' | 'prefer' | 'require';

export interface MechanismChoice {
  readonly mechanism: typeof SCRAM_SHA_256 | typeof SCRAM_SHA_256_PLUS;
  /** The gs2 flag libpq sends: p with PLUS, y when it could bind but the server offers no PLUS (TLS), else n. */
  readonly flag: ChannelBindingFlag;
}

/** pg_SASL_init(): the mechanism libpq picks from AuthenticationSASL's list, or libpq's refusal. */
export function selectScramMechanism(
  offered: readonly string[],
  opts: { readonly tls: boolean; readonly channelBinding: ChannelBindingMode },
): MechanismChoice | { readonly error: string } {
  if (opts.channelBinding === 'require' && !opts.tls) return { error: 'channel binding required, but SSL not in use' };
  let selected: MechanismChoice['mechanism'] | undefined;
  for (const mech of offered) {
    if (mech === SCRAM_SHA_256_PLUS) {
      if (!opts.tls) {
        // a server offering binding on a plaintext connection: TLS stripped on the way? libpq stops here
        return { error: 'server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection' };
      }
      if (opts.channelBinding !== 'disable') selected = SCRAM_SHA_256_PLUS;
    } else if (mech === SCRAM_SHA_256 && !selected) {
      selected = SCRAM_SHA_256;
    }
  }
  if (!selected) return { error: "none of the server's SASL authentication mechanisms are supported" };
  if (opts.channelBinding === 'require' && selected !== SCRAM_SHA_256_PLUS) {
    return {
      error:
        'channel binding is required, but server did not offer an authentication method that supports channel binding',
    };
  }
  const flag: ChannelBindingFlag =
    selected === SCRAM_SHA_256_PLUS ? 'p' : opts.tls && opts.channelBinding !== 'disable' ? 'y' : 'n';
  return { mechanism: selected, flag };
}

export interface ScramClientOptions extends MechanismChoice {
  /** The password; or give `keys`. */
  readonly password?: string | Uint8Array | undefined;
  /** SCRAM pass-through: log in with the ClientKey, check the server with the ServerKey. */
  readonly keys?: { readonly clientKey: Uint8Array; readonly serverKey: Uint8Array } | undefined;
  /** With `keys`: the salt (base64) and iterations they were derived with; a server offering others is refused. */
  readonly expect?: { readonly salt: string; readonly iterations: number } | undefined;
  /** tls-server-end-point data of the server's certificate (protocol/scram-crypto tlsServerEndPoint): needed for p. */
  readonly channelBinding?: Uint8Array | undefined;
  /** For test vectors only. */
  readonly nonce?: string;
  readonly username?: string;
}

export type ScramClientStep =
  | { readonly ok: true; readonly message: Buffer }
  | { readonly ok: false; readonly error: string };

export class ScramClient {
  readonly nonce: string;
  readonly clientFirst: string;
  readonly clientFirstBare: string;
  private expectedServerSignature: Buffer | undefined;
  private done = false;
  /** The server-first-message, once received (for replays that need the exchange's texts). */
  serverFirst: string | undefined;
  /** client-final-message-without-proof, once built. */
  clientFinalWithoutProof: string | undefined;

  constructor(private readonly opts: ScramClientOptions) {
    this.nonce = opts.nonce ?? makeNonce();
    const first = buildClientFirstMessage(opts.flag, this.nonce, opts.username ?? '');
    this.clientFirst = first.message;
    this.clientFirstBare = first.bare;
  }

  /** SASLInitialResponse carrying the client-first-message. */
  initialResponse(): Buffer {
    return encodeSASLInitialResponse(this.opts.mechanism, this.clientFirst);
  }

  /** AuthenticationSASLContinue's data (server-first-message) → SASLResponse (client-final-message). */
  serverFirstMessage(data: string): ScramClientStep {
    if (data.length === 0) return { ok: false, error: 'malformed SCRAM message (empty message)' };
    if (data.includes('\0')) return { ok: false, error: 'malformed SCRAM message (length mismatch)' };
    const first = parseServerFirstMessage(data, this.nonce);
    if ('error' in first) return { ok: false, error: first.error };
    const { opts } = this;
    if (opts.flag === 'p' && !opts.channelBinding) {
      // pgtls_get_peer_certificate_hash() found no digest (e.g. an Ed25519 certificate)
      return { ok: false, error: 'could not find digest for NID UNDEF' };
    }
    let clientKey: Uint8Array;
    let serverKey: Uint8Array;
    if (opts.keys) {
      if (
        opts.expect &&
        (first.iterations !== opts.expect.iterations || first.salt.toString('base64') !== opts.expect.salt)
      ) {
        return {
          ok: false,
          error:
            'SCRAM pass-through impossible: the server uses another salt or iteration count than the secret the keys come from',
        };
      }
      clientKey = opts.keys.clientKey;
      serverKey = opts.keys.serverKey;
    } else if (opts.password !== undefined) {
      ({ clientKey, serverKey } = deriveKeys(opts.password, first.salt, first.iterations));
    } else {
      return { ok: false, error: 'fe_sendauth: no password supplied' };
    }
    this.serverFirst = data;
    const final = buildClientFinalMessage(opts.flag, first.nonce, opts.channelBinding);
    this.clientFinalWithoutProof = final.withoutProof;
    const message = authMessage(this.clientFirstBare, data, final.withoutProof);
    this.expectedServerSignature = serverSignature(serverKey, message);
    return { ok: true, message: encodeSASLResponse(final.finish(clientProof(clientKey, message))) };
  }

  /** AuthenticationSASLFinal's data (server-final-message): the server must prove it knows the secret. */
  serverFinalMessage(data: string): { readonly ok: true } | { readonly ok: false; readonly error: string } {
    if (!this.expectedServerSignature) return { ok: false, error: 'invalid SCRAM exchange state' };
    if (data.length === 0) return { ok: false, error: 'malformed SCRAM message (empty message)' };
    if (data.includes('\0')) return { ok: false, error: 'malformed SCRAM message (length mismatch)' };
    const final = parseServerFinalMessage(data);
    if ('error' in final) return { ok: false, error: final.error };
    if (!constantTimeEqual(final.signature, this.expectedServerSignature)) {
      return { ok: false, error: 'incorrect server signature' };
    }
    this.done = true;
    return { ok: true };
  }

  /** scram_channel_bound(): the exchange completed with SCRAM-SHA-256-PLUS. */
  get channelBound(): boolean {
    return this.done && this.opts.mechanism === SCRAM_SHA_256_PLUS;
  }
}
