/**
 * The first packets of a connection: SSLRequest, GSSENCRequest, CancelRequest and StartupMessage.
 * Layouts: https://www.postgresql.org/docs/current/protocol-message-formats.html
 * Behaviour mirrors ProcessStartupPacket() in src/backend/tcop/backend_startup.c (PostgreSQL 17/18).
 */
import {
  LATEST_PROTOCOL,
  MAX_CANCEL_KEY_LENGTH,
  MAX_STARTUP_PACKET_LENGTH,
  RequestCode,
  SqlState,
} from './constants.js';
import type { WireError } from './error-response.js';

export type InitialPacket =
  | { readonly kind: 'SSLRequest' }
  | { readonly kind: 'GSSENCRequest' }
  | { readonly kind: 'CancelRequest'; readonly pid: number; readonly key: Buffer }
  | { readonly kind: 'StartupMessage'; readonly code: number; readonly body: Buffer; readonly raw: Buffer };

export type InitialDecode =
  | { readonly status: 'incomplete' }
  | { readonly status: 'packet'; readonly packet: InitialPacket; readonly consumed: number }
  /** `error` is what to send before closing; PostgreSQL sends nothing (COMMERROR) for some of these. */
  | { readonly status: 'invalid'; readonly error: WireError; readonly reason: string };

/**
 * Decode one initial packet from the front of `buf` without copying it.
 *
 *   Int32 length (including itself) · Int32 code (protocol version or request code) · body
 *
 * PostgreSQL reads the length word, refuses lengths outside [8, 4 + MAX_STARTUP_PACKET_LENGTH] before reading the
 * body, and so do we: a hostile client cannot make the gateway buffer more than the limit.
 */
export function decodeInitialPacket(buf: Buffer): InitialDecode {
  if (buf.length < 4) return { status: 'incomplete' };
  const length = buf.readInt32BE(0);
  if (length - 4 < 4 || length - 4 > MAX_STARTUP_PACKET_LENGTH) {
    // PostgreSQL logs this as COMMERROR and closes; we also tell the client, which only adds clarity.
    return invalid('invalid length of startup packet');
  }
  if (buf.length < length) return { status: 'incomplete' };
  const code = buf.readUInt32BE(4);
  const raw = buf.subarray(0, length);
  const body = buf.subarray(8, length);
  switch (code) {
    case RequestCode.SSLRequest:
      return { status: 'packet', packet: { kind: 'SSLRequest' }, consumed: length };
    case RequestCode.GSSENCRequest:
      return { status: 'packet', packet: { kind: 'GSSENCRequest' }, consumed: length };
    case RequestCode.CancelRequest: {
      // Int32 pid · Byte[n] secret key: 4 bytes before protocol 3.2, up to 256 bytes since (PostgreSQL 18).
      if (body.length < 8 || body.length > 4 + MAX_CANCEL_KEY_LENGTH)
        return invalid('invalid length of startup packet');
      return {
        status: 'packet',
        packet: { kind: 'CancelRequest', pid: body.readInt32BE(0), key: Buffer.from(body.subarray(4)) },
        consumed: length,
      };
    }
    default:
      return { status: 'packet', packet: { kind: 'StartupMessage', code, body, raw }, consumed: length };
  }
}

function invalid(message: string): InitialDecode {
  return {
    status: 'invalid',
    reason: message,
    error: { severity: 'FATAL', code: SqlState.ProtocolViolation, message },
  };
}

/** The FATAL PostgreSQL sends for a protocol major version other than 3 (also for a repeated SSLRequest). */
export function unsupportedProtocolError(code: number): WireError {
  const major = code >>> 16;
  const minor = code & 0xffff;
  return {
    severity: 'FATAL',
    code: SqlState.FeatureNotSupported,
    message: `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to ${LATEST_PROTOCOL.major}.${LATEST_PROTOCOL.minor}`,
  };
}

export interface StartupParameters {
  readonly major: number;
  readonly minor: number;
  /** Every name/value pair in the order sent (GUCs, application_name, _pq_.* options, …). */
  readonly params: ReadonlyArray<readonly [string, string]>;
  readonly user: string;
  /** Defaults to the user name, as in PostgreSQL; empty for a physical replication connection. */
  readonly database: string;
  /** `replication=true` (physical, matches only the hba keyword `replication`) or `database` (logical). */
  readonly replication: 'none' | 'physical' | 'logical';
}

/** Parse the body of a StartupMessage with PostgreSQL's checks and messages, in PostgreSQL's order. */
export function parseStartupMessage(
  code: number,
  body: Buffer,
): { ok: true; value: StartupParameters } | { ok: false; error: WireError } {
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) return { ok: false, error: unsupportedProtocolError(code) };
  const params: [string, string][] = [];
  let user: string | undefined;
  let database: string | undefined;
  let replication: StartupParameters['replication'] = 'none';
  // PostgreSQL's offsets count from the protocol word; ours count from the body (4 bytes later).
  const len = body.length;
  let offset = 0;
  while (offset < len) {
    if (body[offset] === 0) break; // packet terminator
    const nameEnd = indexOfNul(body, offset);
    const valueOffset = nameEnd + 1;
    if (valueOffset >= len) break; // missing value: complained about below
    const valueEnd = indexOfNul(body, valueOffset);
    const name = body.toString('utf8', offset, nameEnd);
    const value = body.toString('utf8', valueOffset, valueEnd);
    if (name === 'user') user = value;
    else if (name === 'database') database = value;
    else if (name === 'replication') {
      if (value === 'database') replication = 'logical';
      else {
        const b = parsePgBool(value);
        if (b === undefined) {
          return {
            ok: false,
            error: {
              severity: 'FATAL',
              code: '22023',
              message: `invalid value for parameter "replication": "${value}"`,
              hint: 'Valid values are: "false", 0, "true", 1, "database".',
            },
          };
        }
        replication = b ? 'physical' : 'none';
      }
    }
    params.push([name, value]);
    offset = valueEnd + 1;
  }
  if (offset !== len - 1) {
    return {
      ok: false,
      error: {
        severity: 'FATAL',
        code: SqlState.ProtocolViolation,
        message: 'invalid startup packet layout: expected terminator as last byte',
      },
    };
  }
  if (user === undefined || user === '') {
    return {
      ok: false,
      error: {
        severity: 'FATAL',
        code: SqlState.InvalidAuthorizationSpecification,
        message: 'no PostgreSQL user name specified in startup packet',
      },
    };
  }
  let db = database === undefined || database === '' ? user : database;
  if (replication === 'physical') db = '';
  return { ok: true, value: { major, minor, params, user, database: db, replication } };
}

/** Strings in the packet end at a NUL or, as PostgreSQL's zeroed extra byte guarantees, at the packet's end. */
function indexOfNul(buf: Buffer, from: number): number {
  const at = buf.indexOf(0, from);
  return at < 0 ? buf.length : at;
}

/** PostgreSQL's parse_bool(): on/off, true/false, yes/no, 1/0 and unique prefixes of them, case-insensitive. */
export function parsePgBool(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (v.length === 0) return undefined;
  const prefixOf = (word: string) => word.startsWith(v);
  if (v === '1') return true;
  if (v === '0') return false;
  if (prefixOf('true') || prefixOf('yes')) return true;
  if (prefixOf('false') || (v.length >= 1 && prefixOf('no'))) return false;
  if (v.length >= 2 && prefixOf('on')) return true;
  if (v.length >= 2 && prefixOf('off')) return false;
  return undefined;
}

/** Encode an SSLRequest (used by the gateway's upstream connector and by pgtls/client). */
export function encodeSSLRequest(): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeInt32BE(8, 0);
  b.writeUInt32BE(RequestCode.SSLRequest, 4);
  return b;
}

/** Encode a CancelRequest for (pid, key); the key is 4 bytes before protocol 3.2 and up to 256 after. */
export function encodeCancelRequest(pid: number, key: Buffer): Buffer {
  const b = Buffer.allocUnsafe(12 + key.length);
  b.writeInt32BE(b.length, 0);
  b.writeUInt32BE(RequestCode.CancelRequest, 4);
  b.writeInt32BE(pid, 8);
  key.copy(b, 12);
  return b;
}

/** Encode a StartupMessage from ordered parameters (protocol 3.0 unless told otherwise). */
export function encodeStartupMessage(params: ReadonlyArray<readonly [string, string]>, code = 3 << 16): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of params) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const b = Buffer.allocUnsafe(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeUInt32BE(code, 4);
  body.copy(b, 8);
  return b;
}
