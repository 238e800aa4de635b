/**
 * Where the gateway finds a user's stored secret when it authenticates clients itself, with PgBouncer's names:
 * `auth_file` (userlist.txt: SCRAM secrets, md5 secrets or plaintext passwords) and `auth_user` + `auth_query` (the
 * secret fetched from the backend, e.g. pg_authid's rolpassword; then SCRAM pass-through logs the client in to the
 * backend without the gateway ever holding a password). Lookups through auth_query are cached briefly.
 */
import type { Duplex } from 'node:stream';
import type { AuthFile } from '../config/auth-file.js';
import { BackendQuery } from './backend-query.js';

/** How long an auth_query answer (found or not) is reused. */
const CACHE_MS = 10_000;
const CACHE_MAX = 10_000;

export interface SecretSource {
  /** The stored secret of `user` (undefined: no such user, or no password). Never logged. */
  lookup(user: string, database: string): Promise<string | undefined>;
}

export interface AuthQuerySettings {
  readonly authUser: string;
  readonly authQuery: string;
  /** Database to run the query in; empty: the client's. */
  readonly authDbname: string;
  /** Opens a connection to the backend (the gateway's upstream, with its TLS settings). */
  readonly connect: () => Promise<Duplex>;
  /** auth_user's password when auth_file has none (the embedded cluster's superuser, whose password pgtls made). */
  readonly password?: string;
}

export class AuthQuery implements SecretSource {
  readonly #cache = new Map<string, { secret: string | undefined; until: number }>();

  constructor(
    private readonly s: AuthQuerySettings,
    private readonly authFile: AuthFile | undefined,
  ) {}

  async lookup(user: string, database: string): Promise<string | undefined> {
    const key = `${database}\0${user}`;
    const hit = this.#cache.get(key);
    if (hit && hit.until > Date.now()) return hit.secret;
    const secret = await this.#query(user, database);
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(key, { secret, until: Date.now() + CACHE_MS });
    return secret;
  }

  async #query(user: string, database: string): Promise<string | undefined> {
    const own = this.authFile?.get(this.s.authUser)?.secret ?? this.s.password;
    const q = new BackendQuery(
      this.s.connect,
      { user: this.s.authUser, ...(own !== undefined ? { password: own, md5Secret: own } : {}) },
      this.s.authDbname || database,
      'pgtls auth_query',
    );
    try {
      const rows = await q.query(this.s.authQuery, [user]);
      // Two columns: the user name and its secret (NULL: no password, or expired).
      const secret = rows[0] ? Object.values(rows[0])[1] : undefined;
      return typeof secret === 'string' ? secret : undefined;
    } catch (err) {
      throw new Error(`auth_query as "${this.s.authUser}" failed: ${(err as Error).message}`);
    } finally {
      q.close();
    }
  }
}

/** auth_file first (when it lists the user), then auth_query (when configured). */
export function secretSource(authFile: AuthFile | undefined, authQuery: AuthQuery | undefined): SecretSource {
  return {
    async lookup(user, database) {
      const entry = authFile?.get(user);
      if (entry) return entry.secret;
      return authQuery ? authQuery.lookup(user, database) : undefined;
    },
  };
}
