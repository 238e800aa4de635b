/**
 * SCRAM-SHA-256 messages (RFC 5802 section 7) as PostgreSQL exchanges them, and the SASL protocol messages that
 * carry them (https://www.postgresql.org/docs/current/sasl-authentication.html). Pure: text in, values out.
 *
 * Each parser reads a message the way the PostgreSQL peer that receives it does, with that peer's error texts:
 * client-first and client-final as the server does (auth-scram.c read_client_first_message / read_client_final_
 * message, SQLSTATE + message + detail), server-first and server-final as libpq does (fe-auth-scram.c, one message).
 * Parsers never throw; they return the value or the error.
 *
 * This module re-exports ./scram-crypto.ts, so `protocol/scram.js` is the one import for SCRAM.
 */
import { SqlState } from './constants.js';
import {
  CHANNEL_BINDING_TYPE,
  type ChannelBindingFlag,
  GS2_HEADER,
  SCRAM_KEY_LEN,
  b64decode,
  b64encode,
  channelBindingAttribute,
} from './scram-crypto.js';

export * from './scram-crypto.js';
export { saslprep, scramPasswordBytes, type SaslprepResult } from './saslprep.js';

/** An error the server role reports; the gateway sends it as a FATAL ErrorResponse. */
export interface ScramFailure {
  readonly sqlstate: string;
  readonly message: string;
  readonly detail?: string;
}

export const isScramFailure = (v: unknown): v is ScramFailure =>
  typeof v === 'object' && v !== null && 'sqlstate' in v && 'message' in v;

const malformed = (detail: string): ScramFailure => ({
  sqlstate: SqlState.ProtocolViolation,
  message: 'malformed SCRAM message',
  detail,
});

/** sanitize_char(): a printable ASCII character quoted, anything else in hex (0x00 for the end of the string). */
function sanitizeChar(c: string | undefined): string {
  const code = c === undefined ? 0 : c.charCodeAt(0);
  return code >= 0x21 && code <= 0x7e ? `'${c}'` : `0x${code.toString(16).padStart(2, '0')}`;
}

/** sanitize_str(): printable ASCII kept, the rest replaced by '?', at most 30 characters. */
function sanitizeStr(s: string): string {
  let out = '';
  for (const ch of s.slice(0, 30)) {
    const code = ch.charCodeAt(0);
    out += code >= 0x21 && code <= 0x7e ? ch : '?';
  }
  return out;
}

/** printable = %x21-2B / %x2D-7E (RFC 5802): is_scram_printable(). */
const isPrintable = (s: string) => /^[\x21-\x2b\x2d-\x7e]*$/.test(s);

/** A read position in a message, with the server's read_attr_value / read_any_attr semantics. */
class Cursor {
  constructor(
    readonly s: string,
    public p = 0,
  ) {}
  get ch(): string | undefined {
    return this.s[this.p];
  }
  private value(): string {
    const comma = this.s.indexOf(',', this.p);
    const end = comma < 0 ? this.s.length : comma;
    const v = this.s.slice(this.p, end);
    this.p = comma < 0 ? end : end + 1;
    return v;
  }
  attr(attr: string): string | ScramFailure {
    if (this.ch !== attr) return malformed(`Expected attribute "${attr}" but found "${sanitizeChar(this.ch)}".`);
    this.p++;
    if (this.ch !== '=') return malformed(`Expected character "=" for attribute "${attr}".`);
    this.p++;
    return this.value();
  }
  any(): { attr: string; value: string } | ScramFailure {
    const attr = this.ch;
    if (attr === undefined) return malformed('Attribute expected, but found end of string.');
    if (!/^[A-Za-z]$/.test(attr)) {
      return malformed(`Attribute expected, but found invalid character "${sanitizeChar(attr)}".`);
    }
    this.p++;
    if (this.ch !== '=') return malformed(`Expected character "=" for attribute "${attr}".`);
    this.p++;
    return { attr, value: this.value() };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// client-first-message = gs2-header client-first-message-bare

export interface ClientFirstMessage {
  readonly flag: ChannelBindingFlag;
  /** client-first-message-bare: what AuthMessage starts with. */
  readonly bare: string;
  /** Ignored by PostgreSQL (the StartupMessage's user counts); kept for logs. */
  readonly username: string;
  readonly nonce: string;
}

/** `n,,n=,r=<nonce>` as libpq builds it (user name empty: the server takes the StartupMessage's). */
export function buildClientFirstMessage(
  flag: ChannelBindingFlag,
  nonce: string,
  username = '',
): { readonly message: string; readonly bare: string } {
  const bare = `n=${username},r=${nonce}`;
  return { message: `${GS2_HEADER[flag]}${bare}`, bare };
}

/**
 * read_client_first_message(). `plusSelected`: the client chose SCRAM-SHA-256-PLUS; `serverSupportsBinding`: this
 * server offers channel binding on this connection (TLS), so a client answering "y" has been downgraded.
 */
export function parseClientFirstMessage(
  message: string,
  ctx: { readonly plusSelected: boolean; readonly serverSupportsBinding: boolean },
): ClientFirstMessage | ScramFailure {
  const c = new Cursor(message);
  const flag = c.ch;
  const noBindingData =
    'The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.';
  switch (flag) {
    case 'n':
    case 'y':
      if (ctx.plusSelected) return malformed(noBindingData);
      if (flag === 'y' && ctx.serverSupportsBinding) {
        return {
          sqlstate: SqlState.InvalidAuthorizationSpecification,
          message: 'SCRAM channel binding negotiation error',
          detail:
            'The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding.',
        };
      }
      c.p++;
      if (c.ch !== ',') return malformed(`Comma expected, but found character "${sanitizeChar(c.ch)}".`);
      c.p++;
      break;
    case 'p': {
      if (!ctx.plusSelected) {
        return malformed(
          'The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.',
        );
      }
      const type = c.attr('p');
      if (typeof type !== 'string') return type;
      if (type !== CHANNEL_BINDING_TYPE) {
        return {
          sqlstate: SqlState.ProtocolViolation,
          message: `unsupported SCRAM channel-binding type "${sanitizeStr(type)}"`,
        };
      }
      break;
    }
    default:
      return malformed(`Unexpected channel-binding flag "${sanitizeChar(flag)}".`);
  }
  if (c.ch === 'a') {
    return {
      sqlstate: SqlState.FeatureNotSupported,
      message: 'client uses authorization identity, but it is not supported',
    };
  }
  if (c.ch !== ',') return malformed(`Unexpected attribute "${sanitizeChar(c.ch)}" in client-first-message.`);
  c.p++;
  const bare = message.slice(c.p);
  if (message[c.p] === 'm') {
    return { sqlstate: SqlState.FeatureNotSupported, message: 'client requires an unsupported SCRAM extension' };
  }
  const username = c.attr('n');
  if (typeof username !== 'string') return username;
  const nonce = c.attr('r');
  if (typeof nonce !== 'string') return nonce;
  if (!isPrintable(nonce)) {
    return { sqlstate: SqlState.ProtocolViolation, message: 'non-printable characters in SCRAM nonce' };
  }
  for (let guard = 0; c.ch !== undefined && guard <= message.length; guard++) {
    const ext = c.any();
    if ('sqlstate' in ext) return ext;
  }
  return { flag: flag as ChannelBindingFlag, bare, username, nonce };
}

// ---------------------------------------------------------------------------------------------------------------
// server-first-message = nonce "," salt "," iteration-count

export function buildServerFirstMessage(nonce: string, salt: string, iterations: number): string {
  return `r=${nonce},s=${salt},i=${iterations}`;
}

export interface ServerFirstMessage {
  readonly nonce: string;
  readonly salt: Buffer;
  readonly iterations: number;
}

/** Like libpq's read_attr_value(): its own texts, one message string. */
function clientAttr(c: Cursor, attr: string): string | { error: string } {
  if (c.ch !== attr) return { error: `malformed SCRAM message (attribute "${attr}" expected)` };
  c.p++;
  if (c.ch !== '=') return { error: `malformed SCRAM message (expected character "=" for attribute "${attr}")` };
  c.p++;
  const comma = c.s.indexOf(',', c.p);
  const end = comma < 0 ? c.s.length : comma;
  const v = c.s.slice(c.p, end);
  c.p = comma < 0 ? end : end + 1;
  return v;
}

/**
 * read_server_first_message(): the nonce must extend ours. libpq notes but ignores garbage after the iteration count
 * (it appends an error message and goes on), so this does too.
 */
export function parseServerFirstMessage(message: string, clientNonce: string): ServerFirstMessage | { error: string } {
  const c = new Cursor(message);
  const nonce = clientAttr(c, 'r');
  if (typeof nonce !== 'string') return nonce;
  if (nonce.length < clientNonce.length || !nonce.startsWith(clientNonce)) {
    return { error: 'invalid SCRAM response (nonce mismatch)' };
  }
  const encodedSalt = clientAttr(c, 's');
  if (typeof encodedSalt !== 'string') return encodedSalt;
  const salt = b64decode(encodedSalt);
  if (!salt) return { error: 'malformed SCRAM message (invalid salt)' };
  const iter = clientAttr(c, 'i');
  if (typeof iter !== 'string') return iter;
  // strtol(…, &end, 10) with *end == '\0' and a value of at least 1
  if (!/^[ \t\n\v\f\r]*[+-]?\d+$/.test(iter) || Number(iter.trim()) < 1 || Number(iter.trim()) > 0x7fffffff) {
    return { error: 'malformed SCRAM message (invalid iteration count)' };
  }
  return { nonce, salt, iterations: Number(iter.trim()) };
}

// ---------------------------------------------------------------------------------------------------------------
// client-final-message = channel-binding "," nonce ["," extensions] "," proof

export function buildClientFinalMessage(
  flag: ChannelBindingFlag,
  nonce: string,
  bindingData?: Uint8Array,
): { readonly withoutProof: string; finish(proof: Uint8Array): string } {
  const withoutProof = `c=${channelBindingAttribute(flag, bindingData)},r=${nonce}`;
  return { withoutProof, finish: (proof) => `${withoutProof},p=${b64encode(proof)}` };
}

export interface ClientFinalMessage {
  readonly nonce: string;
  readonly proof: Buffer;
  /** client-final-message-without-proof, as AuthMessage needs it. */
  readonly withoutProof: string;
}

/**
 * read_client_final_message(). `expectedBinding` is this server's certificate hash when the client selected
 * SCRAM-SHA-256-PLUS (undefined if the certificate has none PostgreSQL can compute).
 */
export function parseClientFinalMessage(
  message: string,
  ctx: {
    readonly flag: ChannelBindingFlag;
    readonly plusSelected: boolean;
    readonly expectedBinding?: Uint8Array | undefined;
  },
): ClientFinalMessage | ScramFailure {
  const c = new Cursor(message);
  const binding = c.attr('c');
  if (typeof binding !== 'string') return binding;
  if (ctx.plusSelected) {
    if (!ctx.expectedBinding || ctx.expectedBinding.length === 0) {
      return { sqlstate: SqlState.InternalError, message: 'could not get server certificate hash' };
    }
    if (binding !== channelBindingAttribute('p', ctx.expectedBinding)) {
      return { sqlstate: SqlState.InvalidAuthorizationSpecification, message: 'SCRAM channel binding check failed' };
    }
  } else if (!(binding === 'biws' && ctx.flag === 'n') && !(binding === 'eSws' && ctx.flag === 'y')) {
    return {
      sqlstate: SqlState.ProtocolViolation,
      message: 'unexpected SCRAM channel-binding attribute in client-final-message',
    };
  }
  const nonce = c.attr('r');
  if (typeof nonce !== 'string') return nonce;
  // extensions are skipped until "p"; what precedes its comma is client-final-message-without-proof
  let proofAt = c.p - 1;
  let proofValue: string | undefined;
  for (let guard = 0; proofValue === undefined && guard <= message.length; guard++) {
    proofAt = c.p - 1;
    const a = c.any();
    if ('sqlstate' in a) return a;
    if (a.attr === 'p') proofValue = a.value;
  }
  const proof = b64decode(proofValue ?? '');
  if (proof?.length !== SCRAM_KEY_LEN) return malformed('Malformed proof in client-final-message.');
  if (c.ch !== undefined) return malformed('Garbage found at the end of client-final-message.');
  return { nonce, proof, withoutProof: message.slice(0, proofAt) };
}

// ---------------------------------------------------------------------------------------------------------------
// server-final-message = server-error / verifier

export function buildServerFinalMessage(signature: Uint8Array): string {
  return `v=${b64encode(signature)}`;
}

/** read_server_final_message(): the ServerSignature, or libpq's message (including a server's e=… error). */
export function parseServerFinalMessage(message: string): { readonly signature: Buffer } | { error: string } {
  const c = new Cursor(message);
  if (c.ch === 'e') {
    const e = clientAttr(c, 'e');
    if (typeof e !== 'string') return e;
    return { error: `error received from server in SCRAM exchange: ${e}` };
  }
  const v = clientAttr(c, 'v');
  if (typeof v !== 'string') return v;
  const signature = b64decode(v);
  if (signature?.length !== SCRAM_KEY_LEN) return { error: 'malformed SCRAM message (invalid server signature)' };
  return { signature };
}

// ---------------------------------------------------------------------------------------------------------------
// The protocol messages around them

/** Authentication request codes ('R' messages). */
export const AuthRequest = {
  Ok: 0,
  CleartextPassword: 3,
  MD5Password: 5,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

function authRequest(code: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  out[0] = 0x52; // 'R'
  out.writeInt32BE(8 + payload.length, 1);
  out.writeInt32BE(code, 5);
  payload.copy(out, 9);
  return out;
}

/** AuthenticationSASL: the mechanisms, each NUL-terminated, then an empty name. */
export const encodeAuthenticationSASL = (mechanisms: readonly string[]): Buffer =>
  authRequest(AuthRequest.SASL, Buffer.from(`${mechanisms.map((m) => `${m}\0`).join('')}\0`, 'latin1'));
export const encodeAuthenticationSASLContinue = (data: string): Buffer =>
  authRequest(AuthRequest.SASLContinue, Buffer.from(data, 'latin1'));
export const encodeAuthenticationSASLFinal = (data: string): Buffer =>
  authRequest(AuthRequest.SASLFinal, Buffer.from(data, 'latin1'));
export const encodeAuthenticationOk = (): Buffer => authRequest(AuthRequest.Ok);
/** AuthenticationMD5Password with its 4-byte salt. */
export const encodeAuthenticationMD5Password = (salt: Uint8Array): Buffer =>
  authRequest(AuthRequest.MD5Password, Buffer.from(salt));
export const encodeAuthenticationCleartextPassword = (): Buffer => authRequest(AuthRequest.CleartextPassword);

/** 'p' messages: PasswordMessage, SASLInitialResponse and SASLResponse share the type byte. */
export function encodePasswordPacket(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0x70; // 'p'
  out.writeInt32BE(4 + body.length, 1);
  out.set(body, 5);
  return out;
}

/** SASLInitialResponse: mechanism, Int32 length of the initial response (-1 for none), the response. */
export function encodeSASLInitialResponse(mechanism: string, data: string | undefined): Buffer {
  const mech = Buffer.from(`${mechanism}\0`, 'latin1');
  const payload = data === undefined ? Buffer.alloc(0) : Buffer.from(data, 'latin1');
  const len = Buffer.allocUnsafe(4);
  len.writeInt32BE(data === undefined ? -1 : payload.length, 0);
  return encodePasswordPacket(Buffer.concat([mech, len, payload]));
}

export const encodeSASLResponse = (data: string): Buffer => encodePasswordPacket(Buffer.from(data, 'latin1'));

/**
 * The body of a SASLInitialResponse, read as CheckSASLAuth() does: the mechanism name first (the caller checks it
 * before anything else, as mech->init() does), then the length and the data — `undefined` data is "no initial
 * response" (-1). `error` is what the server reports for a malformed remainder.
 */
export function parseSASLInitialResponse(body: Uint8Array): {
  readonly mechanism: string | undefined;
  readonly data?: string | undefined;
  readonly error?: ScramFailure;
} {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const nul = buf.indexOf(0);
  const violation = (message: string) => ({ sqlstate: SqlState.ProtocolViolation, message });
  if (nul < 0) return { mechanism: undefined, error: violation('invalid string in message') };
  const mechanism = buf.toString('latin1', 0, nul);
  let at = nul + 1;
  if (at + 4 > buf.length) return { mechanism, error: violation('insufficient data left in message') };
  const len = buf.readInt32BE(at);
  at += 4;
  if (len === -1) {
    if (at !== buf.length) return { mechanism, error: violation('invalid message format') };
    return { mechanism, data: undefined };
  }
  if (len < 0 || len > buf.length - at) return { mechanism, error: violation('insufficient data left in message') };
  const data = buf.toString('latin1', at, at + len);
  if (at + len !== buf.length) return { mechanism, error: violation('invalid message format') };
  return { mechanism, data };
}
