/**
 * Errors of pgtls/client. The message is libpq's, verbatim (what PQerrorMessage() would hold, without the final
 * newline); what libpq does not say — *why* OpenSSL refused a certificate, which file was read — is a separate field,
 * `reason`, so it can be shown without changing the text users search for.
 */
import { PgtlsError } from '../errors.js';

export const ClientErrorCode = {
  /** The connection string or URI is malformed, or names an unknown parameter. */
  Conninfo: 'PGTLS_ERR_CLIENT_CONNINFO',
  /** A parameter has an invalid value or contradicts another one. */
  Option: 'PGTLS_ERR_CLIENT_OPTION',
  /** Every host and address was tried and none gave a usable connection. */
  Connect: 'PGTLS_ERR_CLIENT_CONNECT',
} as const;

export type ClientErrorCodeValue = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** One failed attempt (one host, one address, one encryption method), as libpq reports it. */
export interface AttemptFailure {
  readonly host: string;
  readonly address?: string;
  readonly port: string;
  /** `ssl` (SSLRequest), `direct` (direct TLS) or `plain`. */
  readonly method: 'ssl' | 'direct' | 'plain';
  /** libpq's text for this attempt, without the "connection to server … failed: " prefix. */
  readonly message: string;
  /** The underlying reason when libpq's text hides it (OpenSSL verify error, errno, …). */
  readonly reason?: string;
  /** The libpq "connection to server … failed: " prefix, or '' for errors libpq reports without one. */
  readonly prefix: string;
}

export class ClientError extends PgtlsError {
  /** Exactly what libpq's PQerrorMessage() would return, final newline included. */
  readonly libpqMessage: string;
  readonly reason: string | undefined;
  readonly attempts: readonly AttemptFailure[];

  constructor(
    code: ClientErrorCodeValue,
    libpqMessage: string,
    opts: {
      reason?: string;
      attempts?: readonly AttemptFailure[];
      cause?: unknown;
      details?: Record<string, unknown>;
    } = {},
  ) {
    super(code, libpqMessage.replace(/\n$/, ''), {
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
      details: { ...(opts.details ?? {}), ...(opts.reason === undefined ? {} : { reason: opts.reason }) },
    });
    this.name = 'ClientError';
    this.libpqMessage = libpqMessage;
    this.reason = opts.reason;
    this.attempts = Object.freeze([...(opts.attempts ?? [])]);
  }
}

/** A parse or option error: libpq reports these without any host prefix. */
export function optionError(code: ClientErrorCodeValue, message: string): ClientError {
  return new ClientError(code, `${message}\n`);
}

/** The error for a whole connect(): every attempt's prefixed message, in order, as libpq accumulates them. */
export function connectError(attempts: readonly AttemptFailure[]): ClientError {
  const text = attempts.map((a) => `${a.prefix}${a.message}\n`).join('');
  const last = attempts[attempts.length - 1];
  return new ClientError(ClientErrorCode.Connect, text, {
    attempts,
    ...(last?.reason === undefined ? {} : { reason: last.reason }),
  });
}
