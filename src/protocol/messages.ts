/**
 * Frontend and backend messages a pooler reads, rewrites or makes up after authentication: the extended-query
 * messages whose statement names it rewrites (Parse, Bind, Describe, Close), the boundaries it watches (Sync, Query,
 * ReadyForQuery) and the session facts it keeps (ParameterStatus, BackendKeyData). Pure: bytes in, bytes out.
 * Layouts: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Message type bytes a frontend sends after the startup phase. */
export const FrontendType = {
  /** 'Q' Query */
  Query: 0x51,
  /** 'P' Parse */
  Parse: 0x50,
  /** 'B' Bind */
  Bind: 0x42,
  /** 'D' Describe */
  Describe: 0x44,
  /** 'E' Execute */
  Execute: 0x45,
  /** 'C' Close */
  Close: 0x43,
  /** 'S' Sync */
  Sync: 0x53,
  /** 'H' Flush */
  Flush: 0x48,
  /** 'X' Terminate */
  Terminate: 0x58,
  /** 'F' FunctionCall */
  FunctionCall: 0x46,
  /** 'd' CopyData */
  CopyData: 0x64,
  /** 'c' CopyDone */
  CopyDone: 0x63,
  /** 'f' CopyFail */
  CopyFail: 0x66,
} as const;

/** Message type bytes a backend sends after the startup phase. */
export const BackendType = {
  /** '1' ParseComplete */
  ParseComplete: 0x31,
  /** '2' BindComplete */
  BindComplete: 0x32,
  /** '3' CloseComplete */
  CloseComplete: 0x33,
  /** 'C' CommandComplete */
  CommandComplete: 0x43,
  /** 'D' DataRow */
  DataRow: 0x44,
  /** 'E' ErrorResponse */
  ErrorResponse: 0x45,
  /** 'G' CopyInResponse */
  CopyInResponse: 0x47,
  /** 'H' CopyOutResponse */
  CopyOutResponse: 0x48,
  /** 'W' CopyBothResponse */
  CopyBothResponse: 0x57,
  /** 'I' EmptyQueryResponse */
  EmptyQueryResponse: 0x49,
  /** 'K' BackendKeyData */
  BackendKeyData: 0x4b,
  /** 'n' NoData */
  NoData: 0x6e,
  /** 'N' NoticeResponse */
  NoticeResponse: 0x4e,
  /** 'A' NotificationResponse */
  NotificationResponse: 0x41,
  /** 't' ParameterDescription */
  ParameterDescription: 0x74,
  /** 'S' ParameterStatus */
  ParameterStatus: 0x53,
  /** 'T' RowDescription */
  RowDescription: 0x54,
  /** 's' PortalSuspended */
  PortalSuspended: 0x73,
  /** 'Z' ReadyForQuery */
  ReadyForQuery: 0x5a,
  /** 'R' Authentication* */
  Authentication: 0x52,
  /** 'V' FunctionCallResponse */
  FunctionCallResponse: 0x56,
} as const;

/** Byte1 type · Int32 length (counting itself) · body. */
export function frameMessage(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, 'utf8');
}

/** Read a NUL-terminated string at `at`; undefined when the NUL is missing (a malformed message). */
function readCString(body: Buffer, at: number): { value: string; next: number } | undefined {
  const end = body.indexOf(0, at);
  if (end < 0) return undefined;
  return { value: body.toString('utf8', at, end), next: end + 1 };
}

/** Query: String query. */
export function encodeQuery(sql: string): Buffer {
  return frameMessage(FrontendType.Query, cstr(sql));
}

export const SYNC = Buffer.from([FrontendType.Sync, 0, 0, 0, 4]);
export const TERMINATE = Buffer.from([FrontendType.Terminate, 0, 0, 0, 4]);
export const PARSE_COMPLETE = Buffer.from([BackendType.ParseComplete, 0, 0, 0, 4]);
export const CLOSE_COMPLETE = Buffer.from([BackendType.CloseComplete, 0, 0, 0, 4]);
export const AUTHENTICATION_OK = Buffer.from([BackendType.Authentication, 0, 0, 0, 8, 0, 0, 0, 0]);

/** Parse: String name · String query · Int16 n · Int32[n] parameter type OIDs. `rest` is everything after the name. */
export interface ParseMessage {
  readonly name: string;
  readonly query: string;
  /** The body after the statement name (query, then parameter types): what makes two statements the same. */
  readonly rest: Buffer;
}

export function decodeParse(body: Buffer): ParseMessage | undefined {
  const name = readCString(body, 0);
  if (!name) return undefined;
  const query = readCString(body, name.next);
  if (!query) return undefined;
  return { name: name.value, query: query.value, rest: body.subarray(name.next) };
}

/** A Parse under another statement name, the rest of the body unchanged. */
export function encodeParse(name: string, rest: Buffer): Buffer {
  return frameMessage(FrontendType.Parse, Buffer.concat([cstr(name), rest]));
}

/** Bind: String portal · String statement · (formats, parameters, result formats: kept as they are). */
export interface BindMessage {
  readonly portal: string;
  readonly statement: string;
  /** Offset in the body where the part after the statement name starts. */
  readonly restAt: number;
}

export function decodeBind(body: Buffer): BindMessage | undefined {
  const portal = readCString(body, 0);
  if (!portal) return undefined;
  const statement = readCString(body, portal.next);
  if (!statement) return undefined;
  return { portal: portal.value, statement: statement.value, restAt: statement.next };
}

export function encodeBind(body: Buffer, bind: BindMessage, statement: string): Buffer {
  return frameMessage(
    FrontendType.Bind,
    Buffer.concat([cstr(bind.portal), cstr(statement), body.subarray(bind.restAt)]),
  );
}

/** Describe and Close: Byte1 'S' (statement) or 'P' (portal) · String name. */
export interface TargetMessage {
  readonly kind: 'S' | 'P';
  readonly name: string;
}

export function decodeTarget(body: Buffer): TargetMessage | undefined {
  const k = body[0];
  if (k !== 0x53 && k !== 0x50) return undefined;
  const name = readCString(body, 1);
  if (!name) return undefined;
  return { kind: k === 0x53 ? 'S' : 'P', name: name.value };
}

export function encodeTarget(type: number, kind: 'S' | 'P', name: string): Buffer {
  return frameMessage(type, Buffer.concat([Buffer.from(kind), cstr(name)]));
}

/** ParameterStatus: String name · String value. */
export function encodeParameterStatus(name: string, value: string): Buffer {
  return frameMessage(BackendType.ParameterStatus, Buffer.concat([cstr(name), cstr(value)]));
}

export function decodeParameterStatus(body: Buffer): { name: string; value: string } | undefined {
  const name = readCString(body, 0);
  if (!name) return undefined;
  const value = readCString(body, name.next);
  if (!value) return undefined;
  return { name: name.value, value: value.value };
}

/** ReadyForQuery: Byte1 status — 'I' idle, 'T' in a transaction block, 'E' in a failed transaction block. */
export function encodeReadyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return Buffer.from([BackendType.ReadyForQuery, 0, 0, 0, 5, status.charCodeAt(0)]);
}

/** BackendKeyData: Int32 process id · Byte[n] secret key (4 bytes in protocol 3.0, up to 256 since 3.2). */
export function encodeBackendKeyData(pid: number, key: Buffer): Buffer {
  const body = Buffer.allocUnsafe(4 + key.length);
  body.writeInt32BE(pid, 0);
  key.copy(body, 4);
  return frameMessage(BackendType.BackendKeyData, body);
}

/** CommandComplete: String tag ("SELECT 1", "DISCARD ALL", …). */
export function decodeCommandTag(body: Buffer): string {
  const end = body.indexOf(0);
  return body.toString('utf8', 0, end < 0 ? body.length : end);
}

/** Quote a value as a SQL string literal (standard_conforming_strings on or off: E'' with doubled specials). */
export function quoteLiteral(value: string): string {
  const escaped = value.replace(/\\/g, '\\\\').replace(/'/g, "''");
  return escaped.includes('\\') ? `E'${escaped}'` : `'${escaped}'`;
}

/** Quote an identifier (a GUC name such as "DateStyle") the way quote_ident() does when it must. */
export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_.]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}
