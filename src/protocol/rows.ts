/**
 * The backend messages of a simple-query answer, and the frontend Query message, for a server that answers queries
 * itself (the admin console). Text format only: every value is sent as text, and the type OID tells clients how to
 * parse it (node-postgres turns int4 into a number, bool into a boolean, timestamptz into a Date, text[] into an array).
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { PgtlsError } from '../errors.js';
import { type WireError, encodeErrorResponse } from './error-response.js';
import { encodeReadyForQuery as readyForQuery } from './messages.js';

// One encoder per message in the protocol layer: these live in messages.ts (and AuthenticationOk with the other
// authentication requests in scram.ts); the console's callers import them from here.
export { encodeBackendKeyData, encodeParameterStatus, encodeQuery } from './messages.js';
export { encodeAuthenticationOk } from './scram.js';

/** ReadyForQuery ('Z'): Byte1 status — 'I' idle, 'T' in a transaction block, 'E' in a failed one. */
export const encodeReadyForQuery = (status: 'I' | 'T' | 'E' = 'I'): Buffer => readyForQuery(status);

export const ERR_QUERY_MESSAGE = 'PGTLS_ERR_PROTOCOL_QUERY';

/** Type OIDs from pg_type.dat that console columns use. */
export const TypeOid = {
  bool: 16,
  int8: 20,
  int4: 23,
  text: 25,
  float8: 701,
  numeric: 1700,
  /** _text */
  textArray: 1009,
  timestamptz: 1184,
} as const;
export type ColumnType = keyof typeof TypeOid;

/** typlen of each type (-1: variable length), as RowDescription carries it. */
const TYPE_SIZE: Readonly<Record<ColumnType, number>> = {
  bool: 1,
  int8: 8,
  int4: 4,
  text: -1,
  float8: 8,
  numeric: -1,
  textArray: -1,
  timestamptz: 8,
};

export interface Column {
  readonly name: string;
  readonly type: ColumnType;
}

/** A value in text format; null is SQL NULL (length -1). */
export type Cell = string | null;

/** A message: Byte1 type · Int32 length (counting itself) · body. */
function message(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

const cstring = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);

/**
 * RowDescription ('T'): Int16 count, then per field: String name · Int32 table OID (0) · Int16 column number (0) ·
 * Int32 type OID · Int16 type size · Int32 type modifier (-1) · Int16 format code (0 = text).
 */
export function encodeRowDescription(columns: readonly Column[]): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.allocUnsafe(2);
  count.writeInt16BE(columns.length, 0);
  parts.push(count);
  for (const c of columns) {
    parts.push(cstring(c.name));
    const f = Buffer.allocUnsafe(18);
    f.writeInt32BE(0, 0);
    f.writeInt16BE(0, 4);
    f.writeInt32BE(TypeOid[c.type], 6);
    f.writeInt16BE(TYPE_SIZE[c.type], 10);
    f.writeInt32BE(-1, 12);
    f.writeInt16BE(0, 16);
    parts.push(f);
  }
  return message('T', Buffer.concat(parts));
}

/** DataRow ('D'): Int16 count, then per column Int32 length (-1 for NULL) · bytes. */
export function encodeDataRow(cells: readonly Cell[]): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.allocUnsafe(2);
  count.writeInt16BE(cells.length, 0);
  parts.push(count);
  for (const c of cells) {
    const len = Buffer.allocUnsafe(4);
    if (c === null) {
      len.writeInt32BE(-1, 0);
      parts.push(len);
    } else {
      const v = Buffer.from(c, 'utf8');
      len.writeInt32BE(v.length, 0);
      parts.push(len, v);
    }
  }
  return message('D', Buffer.concat(parts));
}

/** CommandComplete ('C'): String tag ("SHOW", "SELECT 3", "RELOAD"). */
export function encodeCommandComplete(tag: string): Buffer {
  return message('C', cstring(tag));
}

/** EmptyQueryResponse ('I'): the answer to a query string holding no command. */
export function encodeEmptyQueryResponse(): Buffer {
  return message('I', Buffer.alloc(0));
}

/** NoticeResponse ('N') with severity NOTICE: the ErrorResponse layout, S and V fields saying NOTICE. */
export function encodeNotice(text: string, detail?: string, code = '00000'): Buffer {
  const fields: [string, string][] = [
    ['S', 'NOTICE'],
    ['V', 'NOTICE'],
    ['C', code],
    ['M', text],
  ];
  if (detail !== undefined) fields.push(['D', detail]);
  const body = Buffer.concat([
    ...fields.map(([k, v]) => Buffer.concat([Buffer.from(k), cstring(v)])),
    Buffer.from([0]),
  ]);
  return message('N', body);
}

/** An ERROR (not FATAL: the session goes on) with a hint, as a console answers a command it cannot run. */
export function encodeQueryError(code: string, message: string, hint?: string, detail?: string): Buffer {
  const err: WireError = {
    severity: 'ERROR',
    code,
    message,
    ...(detail === undefined ? {} : { detail }),
    ...(hint === undefined ? {} : { hint }),
  };
  return encodeErrorResponse(err);
}

/** A whole result set: RowDescription, one DataRow per row, CommandComplete with `tag` (PgBouncer says "SHOW"). */
export function encodeResultSet(columns: readonly Column[], rows: readonly (readonly Cell[])[], tag: string): Buffer {
  const parts = [encodeRowDescription(columns)];
  for (const r of rows) {
    if (r.length !== columns.length) {
      throw new PgtlsError(ERR_QUERY_MESSAGE, `a row has ${r.length} cells for ${columns.length} columns`);
    }
    parts.push(encodeDataRow(r));
  }
  parts.push(encodeCommandComplete(tag));
  return Buffer.concat(parts);
}

/**
 * The body of a Query ('Q') message: String query, NUL-terminated, nothing after. Returns the query text; throws a
 * PgtlsError (the caller answers FATAL 08P01, as PostgreSQL's "invalid message format") when the terminator is
 * missing, misplaced, or the text is not UTF-8.
 */
export function decodeQuery(body: Uint8Array): string {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const nul = buf.indexOf(0);
  if (nul < 0 || nul !== buf.length - 1) {
    throw new PgtlsError(ERR_QUERY_MESSAGE, 'invalid message format', { details: { length: buf.length } });
  }
  const text = buf.subarray(0, nul);
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(text);
  } catch (cause) {
    throw new PgtlsError(ERR_QUERY_MESSAGE, 'invalid byte sequence for encoding "UTF8"', { cause });
  }
  return decoded;
}
