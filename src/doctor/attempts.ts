/**
 * Which of libpq's attempts a failed connection is to be explained by. libpq tries every address of every host in
 * turn (fe-connect.c: a failed connect() or an unanswered one sets try_next_addr / try_next_host), appends one
 * "connection to server at … failed: …" paragraph per attempt to the error message and psql prints them all. The
 * attempts that only could not reach a server come first; the one that ended the connection — a certificate, a
 * password, a pg_hba.conf line — comes last, and that is what the user has to fix. Pure: no I/O.
 */
import { isIP } from 'node:net';
import type { AttemptFailure } from '../client/errors.js';

/** Failures after which libpq moves on to the next address or host: no server was reached there. */
const UNREACHED =
  /^(?:Connection refused|timeout expired|No route to host|Network is unreachable|could not translate host name|could not parse network address)/;

export function unreached(f: AttemptFailure): boolean {
  return UNREACHED.test(f.message);
}

/**
 * The attempt to explain: libpq's last one that reached a server; when libpq tried TLS and then plaintext on that
 * same address (sslmode=prefer/allow), the encrypted attempt, whose reason is the one worth fixing. When no attempt
 * reached a server, the first one.
 */
export function explainedFailure(failures: readonly AttemptFailure[]): AttemptFailure | undefined {
  const reached = failures.filter((f) => !unreached(f));
  const last = reached[reached.length - 1];
  if (!last) return failures[0];
  const sameServer = reached.filter((f) => f.host === last.host && f.address === last.address && f.port === last.port);
  return sameServer.find((f) => f.method !== 'plain') ?? last;
}

/** host:port as a reader types it ([v6]:port). */
export function endpointText(address: string, port: string | number): string {
  return `${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

/** Every distinct address:port that refused the connection, in libpq's order. */
export function refusedEndpoints(failures: readonly AttemptFailure[]): string[] {
  const out: string[] = [];
  for (const f of failures) {
    if (!/^Connection refused/.test(f.message)) continue;
    const e = endpointText(f.address || f.host, f.port);
    if (!out.includes(e)) out.push(e);
  }
  return out;
}

/** Evidence lines for the addresses libpq gave up on before the explained attempt ("libpq tried ::1 … first"). */
export function skippedAttempts(failures: readonly AttemptFailure[], explained: AttemptFailure): string[] {
  const out: string[] = [];
  for (const f of failures) {
    if (f === explained) break;
    if (!unreached(f) || (f.address === explained.address && f.host === explained.host)) continue;
    const line = `libpq tried ${f.address || f.host} port ${f.port} first: ${f.message.split('\n')[0]}`;
    if (!out.includes(line)) out.push(line);
  }
  return out;
}
