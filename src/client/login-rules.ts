/**
 * libpq's decisions during the login, as pure functions: how it renders a server error, whether a session satisfies
 * target_session_attrs (fe-connect.c, CONNECTION_CHECK_TARGET) and the sslcertmode=require check at
 * AuthenticationOk (fe-auth.c).
 */
import { ErrorField } from '../protocol/constants.js';
import type { TlsFacts } from './negotiate.js';
import type { SslCertMode } from './options.js';

/** libpq's rendering of a server error during connection (default verbosity): "FATAL:  msg", DETAIL, HINT lines. */
export function formatServerError(fields: Readonly<Record<string, string>>): string {
  const lines = [`${fields[ErrorField.Severity] ?? 'FATAL'}:  ${fields[ErrorField.Message] ?? ''}`];
  if (fields[ErrorField.Detail]) lines.push(`DETAIL:  ${fields[ErrorField.Detail]}`);
  if (fields[ErrorField.Hint]) lines.push(`HINT:  ${fields[ErrorField.Hint]}`);
  return lines.join('\n');
}

/**
 * libpq's verdict on a session for target_session_attrs, from the in_hot_standby / default_transaction_read_only
 * values the server reported (PostgreSQL 14+). undefined: the session will do.
 */
export function targetRejection(
  mode: string,
  reported: { readonly in_hot_standby?: string; readonly default_transaction_read_only?: string },
): string | undefined {
  const standby = reported.in_hot_standby === 'on';
  const readOnly = reported.default_transaction_read_only === 'on' || standby;
  switch (mode) {
    case 'read-write':
      return readOnly ? 'session is read-only' : undefined;
    case 'read-only':
      return readOnly ? undefined : 'session is not read-only';
    case 'primary':
      return standby ? 'server is in hot standby mode' : undefined;
    case 'standby':
    case 'prefer-standby':
      return standby ? undefined : 'server is not in hot standby mode';
    default:
      return undefined;
  }
}

/**
 * sslcertmode=require at AuthenticationOk: no CertificateRequest from the server (or no TLS at all) → "did not
 * request"; requested but no certificate of ours → "accepted … without". Whether the server asked is read from its
 * handshake flight (cert-request.ts).
 */
export function certModeRefusal(mode: SslCertMode, tls: TlsFacts | undefined): string | undefined {
  if (mode !== 'require') return undefined;
  if (!tls || tls.certificateRequested === false) return 'server did not request an SSL certificate';
  if (!tls.clientCertificate) return 'server accepted connection without a valid SSL certificate';
  return undefined;
}
