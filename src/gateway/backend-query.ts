/**
 * The gateway's own backend connection for its bookkeeping (auth_query, the pgtls.pg_stat_ssl view): one connection,
 * one query at a time, logged in like any other backend login, reopened on the next query after it breaks. Queries
 * without parameters use the simple protocol (several statements allowed); with parameters, the extended protocol
 * binds them as text — no quoting, no injection. Results come back as text values by column name.
 */
import type { Duplex } from 'node:stream';
import { decodeErrorFields } from '../protocol/error-response.js';
import { encodeStartupMessage } from '../protocol/startup.js';
import { type BackendCredentials, loginToBackend } from './backend-login.js';
import { MessageStream } from './message-stream.js';

function message(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
const int16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** Parse/Bind/Execute/Sync with text parameters (null for SQL NULL). */
export function encodeExtendedQuery(sql: string, params: readonly unknown[]): Buffer {
  const values = params.map((p) =>
    p === null || p === undefined ? undefined : Buffer.from(typeof p === 'string' ? p : JSON.stringify(p), 'utf8'),
  );
  const bind = Buffer.concat([
    cstr(''),
    cstr(''),
    int16(0),
    int16(values.length),
    ...values.flatMap((v) => (v === undefined ? [int32(-1)] : [int32(v.length), v])),
    int16(0),
  ]);
  return Buffer.concat([
    message('P', Buffer.concat([cstr(''), cstr(sql), int16(0)])),
    message('B', bind),
    message('D', Buffer.concat([Buffer.from('P'), cstr('')])),
    message('E', Buffer.concat([cstr(''), int32(0)])),
    message('S', Buffer.alloc(0)),
  ]);
}

/** Values are text, except bool (→ boolean) and the integer types (→ number), as node-postgres returns them. */
export type Row = Record<string, string | number | boolean | null>;

const OID = { bool: 16, int8: 20, int2: 21, int4: 23 } as const;

function typed(oid: number, text: string): string | number | boolean {
  if (oid === OID.bool) return text === 't';
  if (oid === OID.int2 || oid === OID.int4 || oid === OID.int8) return Number(text);
  return text;
}

/** A server error, with its SQLSTATE as `code` (as node-postgres reports it). */
export class BackendQueryError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export class BackendQuery {
  #conn: { socket: Duplex; reader: MessageStream } | undefined;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly connect: () => Promise<Duplex>,
    private readonly creds: BackendCredentials,
    private readonly database: string,
    private readonly applicationName: string,
  ) {}

  /** Run one query (serialized with the others). Rejects with the server's message on an error. */
  query(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    const run = this.#chain.then(() => this.#run(sql, params));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #open(): Promise<{ socket: Duplex; reader: MessageStream }> {
    if (this.#conn && !this.#conn.socket.destroyed) return this.#conn;
    const socket = await this.connect();
    socket.on('error', () => undefined);
    const login = await loginToBackend(
      socket,
      encodeStartupMessage([
        ['user', this.creds.user],
        ['database', this.database],
        ['application_name', this.applicationName],
      ]),
      this.creds,
    );
    if (!login.ok) {
      socket.destroy();
      throw new Error(`could not log in as "${this.creds.user}": ${login.error.message}`);
    }
    this.#conn = { socket, reader: new MessageStream(socket, 64 << 20) };
    return this.#conn;
  }

  async #run(sql: string, params: readonly unknown[]): Promise<Row[]> {
    const { socket, reader } = await this.#open();
    socket.write(params.length === 0 ? message('Q', cstr(sql)) : encodeExtendedQuery(sql, params));
    let columns: string[] = [];
    let types: number[] = [];
    const rows: Row[] = [];
    let failure: BackendQueryError | undefined;
    for (;;) {
      const m = await reader.next();
      if (!m || 'error' in m) {
        socket.destroy();
        this.#conn = undefined;
        throw new Error('the backend connection closed during a query');
      }
      const t = String.fromCharCode(m.type);
      if (t === 'T') {
        const n = m.body.readInt16BE(0);
        columns = [];
        types = [];
        let at = 2;
        for (let i = 0; i < n; i++) {
          const end = m.body.indexOf(0, at);
          columns.push(m.body.toString('utf8', at, end));
          types.push(m.body.readInt32BE(end + 1 + 6)); // after table OID (4) and column number (2)
          at = end + 1 + 18;
        }
      } else if (t === 'D') {
        const n = m.body.readInt16BE(0);
        const row: Row = {};
        let at = 2;
        for (let i = 0; i < n; i++) {
          const len = m.body.readInt32BE(at);
          at += 4;
          row[columns[i] ?? String(i)] = len < 0 ? null : typed(types[i] ?? 0, m.body.toString('utf8', at, at + len));
          at += Math.max(len, 0);
        }
        rows.push(row);
      } else if (t === 'E') {
        const f = decodeErrorFields(m.body);
        failure ??= new BackendQueryError(f.M ?? 'error', f.C ?? '');
      } else if (t === 'Z') {
        if (failure !== undefined) throw failure;
        return rows;
      }
    }
  }

  close(): void {
    this.#conn?.socket.destroy();
    this.#conn = undefined;
  }
}
