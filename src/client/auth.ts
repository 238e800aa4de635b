/**
 * Just enough of libpq's password authentication (fe-auth.c, fe-auth-scram.c) for PgtlsSocket to redo a login on the
 * connection libpq falls back to (sslmode=prefer: TLS login refused → plaintext; allow: the reverse), after the
 * driver already went through an authentication exchange on the first connection:
 *
 * - cleartext and MD5 password responses;
 * - SCRAM-SHA-256 (RFC 5802/7677) as a client, and the server-final message the driver expects for *its* exchange
 *   (computable from what passed on the wire and the password), so the driver finishes its login unchanged.
 *
 * Pure: bytes in, bytes out. The SCRAM itself is protocol/scram*.ts, shared with the doctor and the gateway.
 */
import { md5Response } from '../auth/password.js';
import { ScramClient } from '../protocol/scram-client.js';
import {
  SCRAM_SHA_256,
  buildServerFinalMessage,
  deriveKeys,
  encodeAuthenticationSASLFinal,
  encodePasswordPacket,
  parseSASLInitialResponse,
  parseServerFirstMessage,
  authMessage as scramAuthMessage,
  serverSignature,
} from '../protocol/scram.js';

export function passwordMessage(password: string): Buffer {
  return encodePasswordPacket(Buffer.from(`${password}\0`, 'utf8'));
}

/** "md5" + md5(md5(password + user) + salt), as pg_password_sendauth() computes it. */
export function md5PasswordMessage(user: string, password: string, salt: Buffer): Buffer {
  return passwordMessage(md5Response(user, password, salt));
}

/**
 * AuthenticationSASLFinal ('R', 12, "v=<server signature>") for an exchange the driver made: what the server would
 * have sent had that login succeeded.
 */
export function scramServerFinalFor(
  password: string,
  clientFirstBare: string,
  serverFirst: string,
  clientFinalWithoutProof: string,
): Buffer | undefined {
  const first = parseServerFirstMessage(serverFirst, '');
  if ('error' in first) return undefined;
  const { serverKey } = deriveKeys(password, first.salt, first.iterations);
  const message = scramAuthMessage(clientFirstBare, serverFirst, clientFinalWithoutProof);
  return encodeAuthenticationSASLFinal(buildServerFinalMessage(serverSignature(serverKey, message)));
}

/** Parse the driver's SASLInitialResponse body: mechanism, then the client-first-message without its GS2 header. */
export function parseSaslInitial(body: Buffer): { mechanism: string; clientFirstBare: string } | undefined {
  const parsed = parseSASLInitialResponse(body);
  if (parsed.mechanism === undefined || parsed.error || parsed.data === undefined) return undefined;
  const data = parsed.data;
  // GS2 header: "n,," / "y,," / "p=tls-server-end-point,," — the bare message follows the second comma.
  const first = data.indexOf(',');
  const second = first < 0 ? -1 : data.indexOf(',', first + 1);
  if (second < 0) return undefined;
  return { mechanism: parsed.mechanism, clientFirstBare: data.slice(second + 1) };
}

/**
 * What a driver did in its authentication exchange, followed message by message, so a fallback connection can
 * complete the same exchange for it.
 */
export class DriverExchange {
  /** What the driver waits for from the server next. */
  awaiting: 'first' | 'ok' | 'sasl-continue' | 'sasl-final' = 'first';
  cleartext: string | undefined;
  clientFirstBare: string | undefined;
  serverFirst: string | undefined;
  clientFinalWithoutProof: string | undefined;
  private lastRequest = -1;

  /** An authentication request ('R', code ≠ 0) forwarded to the driver. */
  serverRequest(code: number, body: Buffer): void {
    this.lastRequest = code;
    if (code === 11) this.serverFirst = body.toString('utf8', 4);
    if (code === 12) this.awaiting = 'ok';
  }

  /** Bytes the driver wrote after its StartupMessage: its answers ('p' messages). */
  clientBytes(chunk: Buffer): void {
    for (let at = 0; at + 5 <= chunk.length; ) {
      const type = chunk[at]!;
      const len = chunk.readInt32BE(at + 1);
      const body = chunk.subarray(at + 5, at + 1 + len);
      at += 1 + len;
      if (type !== 0x70) continue;
      if (this.lastRequest === 3) {
        this.cleartext = body.toString('utf8').replace(/\0$/, '');
        this.awaiting = 'ok';
      } else if (this.lastRequest === 5) {
        this.awaiting = 'ok';
      } else if (this.lastRequest === 10) {
        const init = parseSaslInitial(body);
        if (init) this.clientFirstBare = init.clientFirstBare;
        this.awaiting = 'sasl-continue';
      } else if (this.lastRequest === 11) {
        const text = body.toString('utf8');
        const p = text.lastIndexOf(',p=');
        this.clientFinalWithoutProof = p >= 0 ? text.slice(0, p) : text;
        this.awaiting = 'sasl-final';
      } else {
        // an authentication method pgtls cannot redo (GSS, SSPI, OAuth …): no replay
        this.awaiting = 'sasl-continue';
      }
    }
  }

  /** The SASLFinal the driver waits for, computed for its own exchange (undefined if it waits for something else). */
  serverFinalFor(password: string | undefined): Buffer | undefined {
    if (this.awaiting !== 'sasl-final' || password === undefined) return undefined;
    if (!this.clientFirstBare || !this.serverFirst || !this.clientFinalWithoutProof) return undefined;
    return scramServerFinalFor(password, this.clientFirstBare, this.serverFirst, this.clientFinalWithoutProof);
  }
}

/** pgtls answering the server's authentication requests itself, on a fallback connection. */
export class SelfAuthentication {
  private scram: ScramClient | undefined;

  constructor(
    private readonly user: string,
    private readonly password: string | undefined,
  ) {}

  /** The message to send for request `code`, nothing (SASLFinal), or libpq's message when it cannot answer. */
  answer(code: number, body: Buffer): Buffer | undefined | { readonly refusal: string } {
    const password = this.password;
    if ((code === 3 || code === 5 || code === 10) && (password === undefined || password === '')) {
      return { refusal: 'fe_sendauth: no password supplied' };
    }
    switch (code) {
      case 3:
        return passwordMessage(password!);
      case 5:
        return md5PasswordMessage(this.user, password!, body.subarray(4, 8));
      case 10:
        // without channel binding ("n,,"): the fallback connection's certificate is not at hand here
        this.scram = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password });
        return this.scram.initialResponse();
      case 11: {
        if (!this.scram) return { refusal: 'invalid SCRAM exchange state' };
        const step = this.scram.serverFirstMessage(body.toString('latin1', 4));
        return step.ok ? step.message : { refusal: step.error };
      }
      case 12: {
        // libpq checks the server's signature before it accepts AuthenticationOk
        const final = this.scram?.serverFinalMessage(body.toString('latin1', 4));
        if (final && !final.ok) return { refusal: final.error };
        return undefined;
      }
      default:
        return {
          refusal: `authentication method requested by server is not supported by pgtls on a fallback connection (${code})`,
        };
    }
  }
}

/** The `user` parameter of a StartupMessage. */
export function startupUser(packet: Buffer | undefined): string {
  if (!packet) return '';
  const parts = packet.toString('utf8', 8).split('\0');
  for (let i = 0; i + 1 < parts.length; i += 2) if (parts[i] === 'user') return parts[i + 1]!;
  return '';
}
