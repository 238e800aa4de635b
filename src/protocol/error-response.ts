import { ErrorField } from './constants.js';

/**
 * An error the gateway sends to a client. Built only from explicit fields (conventions §5): nothing from an
 * exception's message reaches the wire unless a caller put it here on purpose.
 */
export interface WireError {
  readonly severity: 'FATAL' | 'ERROR' | 'PANIC';
  readonly code: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
}

/** Every field of an ErrorResponse or NoticeResponse, keyed by its one-letter field code. */
export type ServerErrorFields = Readonly<Record<string, string>>;

/**
 * Encode an ErrorResponse ('E'): Byte1('E') Int32(len) { Byte1(field) String(value) }* Byte1(0).
 * Both S (localized) and V (non-localized, since 9.6) carry the severity, as a real backend sends them.
 */
export function encodeErrorResponse(err: WireError): Buffer {
  const fields: [string, string][] = [
    [ErrorField.Severity, err.severity],
    [ErrorField.SeverityNonLocalized, err.severity],
    [ErrorField.Code, err.code],
    [ErrorField.Message, err.message],
  ];
  if (err.detail !== undefined) fields.push([ErrorField.Detail, err.detail]);
  if (err.hint !== undefined) fields.push([ErrorField.Hint, err.hint]);
  let size = 4 + 1; // length word + final terminator
  const encoded = fields.map(([k, v]) => {
    const value = Buffer.from(v, 'utf8');
    size += 1 + value.length + 1;
    return [k, value] as const;
  });
  const out = Buffer.allocUnsafe(1 + size);
  out[0] = 0x45; // 'E'
  out.writeInt32BE(size, 1);
  let at = 5;
  for (const [k, value] of encoded) {
    out[at++] = k.charCodeAt(0);
    at += value.copy(out, at);
    out[at++] = 0;
  }
  out[at] = 0;
  return out;
}

/**
 * A FATAL in protocol 2.0 format: Byte1('E') String("FATAL:  message\n"). PostgreSQL answers a StartupMessage asking
 * for protocol 1.x/2.x this way (FrontendProtocol is set before the version check), so old clients can read it.
 */
export function encodeErrorResponseV2(err: WireError): Buffer {
  return Buffer.concat([Buffer.from('E'), Buffer.from(`${err.severity}:  ${err.message}\n`, 'utf8'), Buffer.from([0])]);
}

/**
 * Decode the body (after type byte and length) of an ErrorResponse or NoticeResponse into its fields.
 * Unknown field codes are kept: the protocol says frontends should ignore them, and we pass them on.
 */
export function decodeErrorFields(body: Uint8Array): ServerErrorFields {
  const fields: Record<string, string> = {};
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let at = 0;
  while (at < buf.length && buf[at] !== 0) {
    const code = String.fromCharCode(buf[at]!);
    const end = buf.indexOf(0, at + 1);
    if (end < 0) break;
    fields[code] = buf.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return Object.freeze(fields);
}
