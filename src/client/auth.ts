/**
 * Just enough of libpq's password authentication (fe-auth.c, fe-auth-scram.c) for PgtlsSocket to redo a login on the
 * connection libpq falls back to (sslmode=prefer: TLS login refused → plaintext; allow: the reverse), after the
 * driver already went through an authentication exchange on the first connection:
 *
 * - cleartext and MD5 password responses;
 * - SCRAM-SHA-256 (RFC 5802/7677) as a client, and the server-final message the driver expects for *its* exchange
 *   (computable from what passed on the wire and the password), so the driver finishes its login unchanged.
 *
 * Pure: bytes in, bytes out.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/** PasswordMessage / SASLInitialResponse / SASLResponse all use type 'p'. */
function frame(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0x70; // 'p'
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export function passwordMessage(password: string): Buffer {
  return frame(Buffer.from(`${password}\0`, 'utf8'));
}

/** "md5" + md5(md5(password + user) + salt), as pg_password_sendauth() computes it. */
export function md5PasswordMessage(user: string, password: string, salt: Buffer): Buffer {
  const inner = createHash('md5')
    .update(password + user, 'utf8')
    .digest('hex');
  const outer = createHash('md5')
    .update(Buffer.concat([Buffer.from(inner, 'utf8'), salt]))
    .digest('hex');
  return passwordMessage(`md5${outer}`);
}

export interface ScramClient {
  readonly nonce: string;
  readonly clientFirstBare: string;
  readonly initial: Buffer;
}

/** SASLInitialResponse for SCRAM-SHA-256 without channel binding ("n,,"), user name empty as libpq sends it. */
export function scramStart(): ScramClient {
  const nonce = randomBytes(18).toString('base64');
  const clientFirstBare = `n=,r=${nonce}`;
  const data = Buffer.from(`n,,${clientFirstBare}`, 'utf8');
  const mech = Buffer.from('SCRAM-SHA-256\0', 'utf8');
  const len = Buffer.allocUnsafe(4);
  len.writeInt32BE(data.length, 0);
  return { nonce, clientFirstBare, initial: frame(Buffer.concat([mech, len, data])) };
}

function attrs(message: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) m.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return m;
}

function keys(password: string, serverFirst: string): { salted: Buffer } | undefined {
  const a = attrs(serverFirst);
  const salt = a.get('s');
  const iterations = Number(a.get('i'));
  if (!salt || !Number.isInteger(iterations) || iterations < 1) return undefined;
  // libpq applies SASLprep; passwords that are plain ASCII (the usual case) are unchanged by it.
  return { salted: pbkdf2Sync(password.normalize('NFKC'), Buffer.from(salt, 'base64'), iterations, 32, 'sha256') };
}

const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text, 'utf8').digest();

/** SASLResponse (client-final-message) for the server-first-message; undefined if the server's nonce is wrong. */
export function scramFinal(client: ScramClient, password: string, serverFirst: string): Buffer | undefined {
  const a = attrs(serverFirst);
  const r = a.get('r');
  if (!r?.startsWith(client.nonce)) return undefined;
  const k = keys(password, serverFirst);
  if (!k) return undefined;
  const withoutProof = `c=biws,r=${r}`;
  const authMessage = `${client.clientFirstBare},${serverFirst},${withoutProof}`;
  const clientKey = hmac(k.salted, 'Client Key');
  const storedKey = createHash('sha256').update(clientKey).digest();
  const signature = hmac(storedKey, authMessage);
  const proof = Buffer.alloc(clientKey.length);
  for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ signature[i]!;
  return frame(Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8'));
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
  const k = keys(password, serverFirst);
  if (!k) return undefined;
  const authMessage = `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
  const serverKey = hmac(k.salted, 'Server Key');
  const data = Buffer.from(`v=${hmac(serverKey, authMessage).toString('base64')}`, 'utf8');
  const out = Buffer.allocUnsafe(9 + data.length);
  out[0] = 0x52; // 'R'
  out.writeInt32BE(8 + data.length, 1);
  out.writeInt32BE(12, 5);
  data.copy(out, 9);
  return out;
}

/** Parse the driver's SASLInitialResponse body: mechanism, then the client-first-message without its GS2 header. */
export function parseSaslInitial(body: Buffer): { mechanism: string; clientFirstBare: string } | undefined {
  const nul = body.indexOf(0);
  if (nul < 0 || body.length < nul + 5) return undefined;
  const mechanism = body.toString('utf8', 0, nul);
  const len = body.readInt32BE(nul + 1);
  const data = body.toString('utf8', nul + 5, nul + 5 + Math.max(0, len));
  // GS2 header: "n,," / "y,," / "p=tls-server-end-point,," — the bare message follows the second comma.
  const first = data.indexOf(',');
  const second = first < 0 ? -1 : data.indexOf(',', first + 1);
  if (second < 0) return undefined;
  return { mechanism, clientFirstBare: data.slice(second + 1) };
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
        this.scram = scramStart();
        return this.scram.initial;
      case 11: {
        const final = this.scram ? scramFinal(this.scram, password ?? '', body.toString('utf8', 4)) : undefined;
        return final ?? { refusal: 'invalid SCRAM response (nonce mismatch)' };
      }
      case 12:
        return undefined;
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
