/**
 * A client waiting for a server: what it is told when it cannot have one (PoolRefusal: a FATAL, as PgBouncer
 * disconnects such clients), and how its leaving is signalled (ClientGone).
 */
import type { WireError } from '../../protocol/error-response.js';
import * as refuse from '../refusals.js';
import { UpstreamUnavailable } from '../upstream-walk.js';
import { ServerLoginError } from './login.js';

/** Why a client could not get a server: what it is sent (a FATAL, as PgBouncer disconnects such clients). */
export class PoolRefusal extends Error {
  constructor(
    readonly wire: WireError,
    /** For the log: the gateway's own words (never secrets). */
    readonly reason: string,
  ) {
    super(reason);
  }
}

/**
 * "The client left": what a wait for a server listens to. (AbortController would do, but it costs microseconds per
 * connection in Node 20, measurable with a connection per transaction.)
 */
export class ClientGone {
  #aborted = false;
  readonly #fns = new Set<() => void>();

  get aborted(): boolean {
    return this.#aborted;
  }

  /** Call `fn` when the client leaves; returns the function that stops listening. */
  on(fn: () => void): () => void {
    this.#fns.add(fn);
    return () => this.#fns.delete(fn);
  }

  fire(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    for (const fn of [...this.#fns]) fn();
    this.#fns.clear();
  }
}

/** PgBouncer's text and SQLSTATE (janitor.c: disconnect_client(…, "query_wait_timeout"), 08P01 by default). */
export const QUERY_WAIT_TIMEOUT: WireError = { severity: 'FATAL', code: '08P01', message: 'query_wait_timeout' };

/**
 * What a client is told when its server login failed: the backend's own FATAL, "could not log in" (the gateway had
 * no credential, or the login failed), or "could not connect".
 */
export function loginRefusal(e: Error): PoolRefusal {
  const be = e instanceof ServerLoginError ? e.backendError : undefined;
  if (be?.C && be.M) {
    const wire: WireError = {
      severity: 'FATAL',
      code: be.C,
      message: be.M,
      ...(be.D ? { detail: be.D } : {}),
      ...(be.H ? { hint: be.H } : {}),
    };
    return new PoolRefusal(wire, e.message);
  }
  if (e instanceof ServerLoginError && e.failure === 'no-credential') {
    return new PoolRefusal(refuse.backendLoginNoCredential(), e.message);
  }
  if (e instanceof ServerLoginError && e.failure === 'failed')
    return new PoolRefusal(refuse.backendLoginFailed(), e.message);
  const cause = (e as { cause?: unknown }).cause;
  const detail = cause instanceof UpstreamUnavailable ? cause.clientDetail : undefined;
  return new PoolRefusal(refuse.upstreamUnavailable(detail), e.message);
}
