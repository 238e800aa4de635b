/**
 * The errors the gateway sends, built only from explicit fields (conventions §5). With error_style = postgres the
 * texts and SQLSTATEs are PostgreSQL's own (src/backend/libpq/auth.c, backend_startup.c); with error_style = azure the
 * plaintext refusal is Azure Database for PostgreSQL's text, everything else stays PostgreSQL's.
 */
import type { HbaMethod } from '../hba/hba.js';
import { SqlState } from '../protocol/constants.js';
import type { WireError } from '../protocol/error-response.js';

export type ErrorStyle = 'postgres' | 'azure';

export interface Who {
  readonly host: string;
  readonly user: string;
  readonly database: string;
  readonly ssl: boolean;
  readonly replication: 'none' | 'physical' | 'logical';
}

const fatal = (code: string, message: string, extra: { detail?: string; hint?: string } = {}): WireError => ({
  severity: 'FATAL',
  code,
  message,
  ...extra,
});

/** PostgreSQL's encryption_state words in hba messages (PostgreSQL 14+). */
const encryption = (w: Who) => (w.ssl ? 'SSL encryption' : 'no encryption');

export const AZURE_SSL_REQUIRED = 'SSL connection is required. Please specify SSL options and retry.';

/** require_secure_transport = on and the session is plaintext. */
export function plaintextRefused(w: Who, style: ErrorStyle): WireError {
  if (style === 'azure') return fatal(SqlState.InvalidAuthorizationSpecification, AZURE_SSL_REQUIRED);
  // PostgreSQL's own text (clients and scripts match on it), with a DETAIL saying which rule refused: a matching
  // `host` line may well exist.
  return {
    ...noHbaEntry(w),
    detail: 'The gateway refuses connections without SSL (require_secure_transport = on).',
  };
}

/**
 * Too many connections: PostgreSQL's text when max_connections is reached, for the gateway's own limits —
 * max_client_conn, or no file descriptor left to reach the backend with (limit undefined).
 */
export function tooManyClients(limit: number | undefined): WireError {
  return fatal(SqlState.TooManyConnections, 'sorry, too many clients already', {
    detail:
      limit === undefined
        ? 'The gateway has no file descriptor left to open a backend connection.'
        : `The gateway accepts at most ${limit} client connections (max_client_conn).`,
  });
}

/** No pg_hba.conf line matched: ClientAuthentication()'s implicit reject. */
export function noHbaEntry(w: Who): WireError {
  if (w.replication === 'physical') {
    return fatal(
      SqlState.InvalidAuthorizationSpecification,
      `no pg_hba.conf entry for replication connection from host "${w.host}", user "${w.user}", ${encryption(w)}`,
    );
  }
  return fatal(
    SqlState.InvalidAuthorizationSpecification,
    `no pg_hba.conf entry for host "${w.host}", user "${w.user}", database "${w.database}", ${encryption(w)}`,
  );
}

/** A matching line with method `reject`. */
export function hbaRejects(w: Who): WireError {
  if (w.replication === 'physical') {
    return fatal(
      SqlState.InvalidAuthorizationSpecification,
      `pg_hba.conf rejects replication connection for host "${w.host}", user "${w.user}", ${encryption(w)}`,
    );
  }
  return fatal(
    SqlState.InvalidAuthorizationSpecification,
    `pg_hba.conf rejects connection for host "${w.host}", user "${w.user}", database "${w.database}", ${encryption(w)}`,
  );
}

/** clientcert=verify-ca/verify-full (or method cert) and no valid client certificate. */
export function clientCertRequired(): WireError {
  return fatal(SqlState.InvalidAuthorizationSpecification, 'connection requires a valid client certificate');
}

/** clientcert is set but no ssl_ca_file is loaded (PostgreSQL checks this at hba load and again at login). */
export function noRootStore(): WireError {
  return fatal(
    SqlState.ConfigFileError,
    'client certificates can only be checked if a root certificate store is available',
  );
}

/** auth_failed(): the text PostgreSQL sends when a method (or the clientcert=verify-full check after it) fails. */
export function authFailed(method: HbaMethod, user: string): WireError {
  const texts: Partial<Record<HbaMethod, string>> = {
    trust: `"trust" authentication failed for user "${user}"`,
    cert: `certificate authentication failed for user "${user}"`,
    ident: `Ident authentication failed for user "${user}"`,
    peer: `Peer authentication failed for user "${user}"`,
    gss: `GSSAPI authentication failed for user "${user}"`,
    sspi: `SSPI authentication failed for user "${user}"`,
    pam: `PAM authentication failed for user "${user}"`,
    bsd: `BSD authentication failed for user "${user}"`,
    ldap: `LDAP authentication failed for user "${user}"`,
    radius: `RADIUS authentication failed for user "${user}"`,
    oauth: `OAuth bearer authentication failed for user "${user}"`,
  };
  if (method === 'password' || method === 'md5' || method === 'scram-sha-256') {
    return fatal(SqlState.InvalidPassword, `password authentication failed for user "${user}"`);
  }
  return fatal(SqlState.InvalidAuthorizationSpecification, texts[method] ?? `authentication failed for user "${user}"`);
}

/** Bytes arrived in plaintext between SSLRequest and the handshake (CVE-2021-23214). */
export function unencryptedAfterSSLRequest(): WireError {
  return fatal(SqlState.ProtocolViolation, 'received unencrypted data after SSL request', {
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  });
}

export function unencryptedAfterGSSRequest(): WireError {
  return fatal(SqlState.ProtocolViolation, 'received unencrypted data after GSSAPI encryption request', {
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  });
}

/**
 * A client certificate was presented and did not verify. PostgreSQL fails the handshake with an alert; Node's TLS
 * cannot fail a server handshake on a verification result, so the gateway completes it and sends PostgreSQL's own
 * log text for this case as the FATAL, with OpenSSL's reason as the detail (docs/gateway.md, "Differences").
 */
export function clientCertVerifyFailed(reason: string): WireError {
  return fatal(SqlState.ProtocolViolation, 'could not accept SSL connection: certificate verify failed', {
    detail: reason,
  });
}

/**
 * No backend session. `detail`: libpq's text naming each host tried and why, given when the upstream has several
 * hosts (host names and addresses, never a secret).
 */
export function upstreamUnavailable(detail?: string): WireError {
  return fatal(SqlState.ConnectionFailure, 'could not connect to the database server behind the gateway', {
    ...(detail ? { detail } : {}),
    hint: 'The gateway is up but its upstream is not reachable; the gateway log has the reason.',
  });
}

/** The gateway authenticated the client but could not log in to the backend with what it has. */
/**
 * A pooled client whose server login needs a password or SCRAM keys the gateway does not have (a trust or cert line
 * at the gateway, and no backend credential for the user).
 */
export function backendLoginNoCredential(): WireError {
  return fatal(SqlState.ConnectionFailure, 'could not log in to the database server behind the gateway', {
    hint: 'The gateway has no password for this user to log in to the backend with; the gateway log has the reason.',
  });
}

export function backendLoginFailed(): WireError {
  return fatal(SqlState.ConnectionFailure, 'could not log in to the database server behind the gateway', {
    hint: 'The gateway authenticated you but the backend refused its login; the gateway log has the reason.',
  });
}

/** The admin console is reachable only over TLS (or the local Unix socket). */
export function consoleNeedsTls(): WireError {
  return fatal(SqlState.InvalidAuthorizationSpecification, 'the admin console requires an SSL connection', {
    hint: 'Connect with sslmode=require or stronger.',
  });
}

export function shuttingDown(): WireError {
  return fatal(SqlState.CannotConnectNow, 'the database system is shutting down');
}

export function internalError(): WireError {
  return fatal(SqlState.InternalError, 'internal error in the pgtls gateway', {
    hint: 'The gateway log has the details.',
  });
}
