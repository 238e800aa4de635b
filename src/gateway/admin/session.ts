/**
 * An admin console session after authentication: the greeting a client needs before its first query, then the
 * simple-query loop until the client leaves. The connection phases call runConsoleSession() instead of attaching a
 * backend when the StartupMessage asked for dbname=pgtls and the user is in admin_users or stats_users.
 */
import type { Duplex } from 'node:stream';
import { encodeErrorResponse } from '../../protocol/error-response.js';
import { MessageReader } from '../../protocol/framing.js';
import {
  decodeQuery,
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../../protocol/rows.js';
import { handleConsoleQuery } from './console.js';
import type { ConsoleRole, OperatorView } from './runtime-view.js';

/** The database name that reaches the console, as PgBouncer's `pgbouncer`. */
export const CONSOLE_DATABASE = 'pgtls';

/** PgBouncer's list syntax for admin_users / stats_users: comma-separated, blanks around names ignored. */
function userList(value: string): string[] {
  return value
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
}

/**
 * Who may use the console: admin_users everything, stats_users the SHOW commands, anyone else nothing (undefined:
 * the gateway answers with PostgreSQL's usual refusal for the database). User names compare exactly, as roles do.
 */
export function consoleRole(
  config: { readonly admin_users: string; readonly stats_users: string },
  user: string,
): ConsoleRole | undefined {
  if (userList(config.admin_users).includes(user)) return 'admin';
  if (userList(config.stats_users).includes(user)) return 'stats';
  return undefined;
}

/**
 * ParameterStatus values a client expects after authentication. pgjdbc refuses a server whose client_encoding is not
 * UTF8 and reads integer_datetimes and standard_conforming_strings; node-postgres and psql read server_version and
 * DateStyle to parse values. The console's timestamps are sent in ISO format with UTC offsets, as these say.
 */
export function consoleParameters(version: string): [string, string][] {
  return [
    ['server_version', `18.0 (pgtls ${version} admin console)`],
    ['server_encoding', 'UTF8'],
    ['client_encoding', 'UTF8'],
    ['DateStyle', 'ISO, MDY'],
    ['TimeZone', 'UTC'],
    ['IntervalStyle', 'postgres'],
    ['integer_datetimes', 'on'],
    ['standard_conforming_strings', 'on'],
    ['is_superuser', 'off'],
    ['application_name', ''],
  ];
}

export interface ConsoleSessionOptions {
  readonly view: OperatorView;
  readonly role: ConsoleRole;
  /** Send AuthenticationOk first (true when the gateway authenticated without sending it yet). */
  readonly sendAuthenticationOk: boolean;
  /** BackendKeyData for the session (a CancelRequest for it has nothing to cancel, but clients expect one). */
  readonly backendKey: { readonly pid: number; readonly key: Buffer };
  /** Bytes already read after the StartupMessage (pipelined queries). */
  readonly pending?: Buffer;
  /** Longest message accepted; default 1 MiB (console commands are short). */
  readonly maxMessageLength?: number;
  /** Counts bytes each way, for SHOW CLIENTS (the relay's RelayStats object can be passed). */
  readonly stats?: { bytesFromClient: number; bytesFromBackend: number };
}

const fatal = (message: string) => encodeErrorResponse({ severity: 'FATAL', code: '08P01', message });

/** Run the session until the client sends Terminate or the stream closes. Never throws. */
export async function runConsoleSession(stream: Duplex, o: ConsoleSessionOptions): Promise<void> {
  const stats = o.stats ?? { bytesFromClient: 0, bytesFromBackend: 0 };
  const send = (b: Buffer) => {
    stats.bytesFromBackend += b.length;
    if (!stream.destroyed && stream.writable) stream.write(b);
  };
  let chain = Promise.resolve();
  // Closing waits for the answers to the queries before it, so a client that pipelines gets them all.
  const close = (last?: Buffer) => {
    chain = chain.then(() => {
      if (last) stats.bytesFromBackend += last.length;
      stream.end(last);
    });
  };
  send(
    Buffer.concat([
      ...(o.sendAuthenticationOk ? [encodeAuthenticationOk()] : []),
      ...consoleParameters(o.view.version).map(([k, v]) => encodeParameterStatus(k, v)),
      encodeBackendKeyData(o.backendKey.pid, o.backendKey.key),
      encodeReadyForQuery('I'),
    ]),
  );
  const reader = new MessageReader(o.maxMessageLength ?? 1 << 20);
  let done = false;
  await new Promise<void>((resolve) => {
    const pump = () => {
      for (;;) {
        let m: ReturnType<MessageReader['next']>;
        try {
          m = reader.next();
        } catch {
          done = true;
          close(fatal('invalid message length'));
          return;
        }
        if (!m || done) return;
        stats.bytesFromClient += m.frame.length;
        const type = String.fromCharCode(m.type);
        if (type === 'X') {
          done = true;
          close();
          return;
        }
        if (type !== 'Q') {
          // PgBouncer's console answers the extended protocol with this text and closes; so does this one.
          done = true;
          close(fatal('extended query protocol not supported by admin console'));
          return;
        }
        let sql: string;
        try {
          sql = decodeQuery(m.body);
        } catch (e) {
          done = true;
          close(fatal((e as Error).message));
          return;
        }
        // Queries are answered in order, one at a time (RELOAD is asynchronous).
        chain = chain.then(async () => {
          const out = await handleConsoleQuery(sql, o.view, o.role).catch(() =>
            encodeErrorResponse({
              severity: 'ERROR',
              code: 'XX000',
              message: 'internal error in the pgtls admin console',
            }),
          );
          send(Buffer.concat([out, encodeReadyForQuery('I')]));
        });
      }
    };
    stream.on('data', (d: Buffer) => {
      if (done) return;
      reader.push(d);
      pump();
    });
    stream.once('close', () => resolve());
    stream.once('end', () => {
      if (!stream.destroyed) stream.end();
    });
    stream.on('error', () => undefined);
    if (o.pending && o.pending.length > 0) {
      reader.push(o.pending);
      pump();
    }
    stream.resume();
  });
  await chain;
}
