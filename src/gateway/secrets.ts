/**
 * Where the gateway finds a user's stored secret when it authenticates clients itself, with PgBouncer's names:
 * `auth_file` (userlist.txt: SCRAM secrets, md5 secrets or plaintext passwords) and `auth_user` + `auth_query` (the
 * secret fetched from the backend, e.g. pg_authid's rolpassword; then SCRAM pass-through logs the client in to the
 * backend without the gateway ever holding a password). Lookups through auth_query are cached briefly.
 */
import type { Duplex } from 'node:stream';
import type { AuthFile } from '../config/auth-file.js';
import { decodeErrorFields } from '../protocol/error-response.js';
import { encodeStartupMessage } from '../protocol/startup.js';
import { loginToBackend } from './backend-login.js';
import { MessageStream } from './message-stream.js';

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
}

function message(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);

/** The extended protocol with the user name as a bound parameter: no quoting, no injection. */
function queryWithParameter(sql: string, value: string): Buffer {
  const v = Buffer.from(value, 'utf8');
  const len = Buffer.alloc(4);
  len.writeInt32BE(v.length);
  const bind = Buffer.concat([
    cstr(''),
    cstr(''),
    Buffer.from([0, 0]), // no parameter format codes: text
    Buffer.from([0, 1]), // one parameter
    len,
    v,
    Buffer.from([0, 0]), // result columns: text
  ]);
  return Buffer.concat([
    message('P', Buffer.concat([cstr(''), cstr(sql), Buffer.from([0, 0])])),
    message('B', bind),
    message('E', Buffer.concat([cstr(''), Buffer.from([0, 0, 0, 0])])),
    message('S', Buffer.alloc(0)),
  ]);
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
    const backend = await this.s.connect();
    backend.on('error', () => undefined);
    try {
      const own = this.authFile?.get(this.s.authUser)?.secret;
      const login = await loginToBackend(
        backend,
        encodeStartupMessage([
          ['user', this.s.authUser],
          ['database', this.s.authDbname || database],
          ['application_name', 'pgtls auth_query'],
        ]),
        { user: this.s.authUser, ...(own !== undefined ? { password: own, md5Secret: own } : {}) },
      );
      if (!login.ok) throw new Error(`auth_user "${this.s.authUser}" could not log in: ${login.error.message}`);
      backend.write(queryWithParameter(this.s.authQuery, user));
      const reader = new MessageStream(backend, 1 << 20);
      let secret: string | undefined;
      let failure: string | undefined;
      for (let guard = 0; guard < 1000; guard++) {
        const m = await reader.next();
        if (!m || 'error' in m) throw new Error('the backend closed the connection during auth_query');
        if (m.type === 0x44 /* D DataRow */) {
          // Two columns: user name, secret (NULL: no password).
          const n = m.body.readInt16BE(0);
          if (n >= 2) {
            let at = 2;
            const l1 = m.body.readInt32BE(at);
            at += 4 + Math.max(l1, 0);
            const l2 = m.body.readInt32BE(at);
            secret = l2 < 0 ? undefined : m.body.toString('utf8', at + 4, at + 4 + l2);
          }
        } else if (m.type === 0x45 /* E */) {
          failure = decodeErrorFields(m.body).M ?? 'error';
        } else if (m.type === 0x5a /* Z */) break;
      }
      backend.write(message('X', Buffer.alloc(0)));
      if (failure) throw new Error(`auth_query failed: ${failure}`);
      return secret;
    } finally {
      backend.destroy();
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
