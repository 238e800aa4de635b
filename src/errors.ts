/**
 * The one error base class of the library (conventions §4). Every error the library throws carries a stable
 * `code` (`PGTLS_ERR_…`) listed in docs/errors.md, a message for humans and, where there was one, the `cause`.
 *
 * Errors the gateway *sends* to a PostgreSQL client are not exceptions: they are built explicitly as
 * {@link import('./protocol/error-response.js').WireError} values (conventions §5).
 */
export class PgtlsError extends Error {
  readonly code: string;
  /** Structured, secret-free facts that help a user act on the error (file, line, key, …). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PgtlsError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }
}

export function isPgtlsError(err: unknown, code?: string): err is PgtlsError {
  return err instanceof PgtlsError && (code === undefined || err.code === code);
}

/** Message of any thrown value, for logs; never includes stack or secrets beyond what the message already holds. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
