/**
 * The gateway's pools: one Pool per (database, user), the gateway-wide prepared-statement names, the janitor, and
 * the cancel-key table that maps the BackendKeyData a pooled client was given to the server running its work.
 *
 * The connection phases call, after the client is authenticated (see docs/pooling.md):
 *
 *   const session = pools.open({ user, database, startup, minor, credentials });   // PooledSession
 *   const welcome = await session.welcome();   // rejects with PoolRefusal (send .wire, close)
 *   client.write(AUTHENTICATION_OK + welcome); await session.run(client, pipelined);
 *
 * and, for a CancelRequest, `await pools.cancel(pid, key)`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { settingsFromOptions } from '../../protocol/startup-options.js';
import type { PoolRow, ServerRow } from '../admin/runtime-view.js';
import type { UpstreamTarget } from '../upstream.js';
import type { ServerCredentials, ServerLogin } from './login.js';
import { DatabaseCounts, Pool } from './pool.js';
import { PooledSession } from './pooled-session.js';
import { StatementNames } from './prepared.js';
import type { ServerConnection } from './server-connection.js';
import type { PoolSettings } from './settings.js';

/** How often the janitor looks at idle servers (PgBouncer's janitor runs every few seconds too). */
const JANITOR_MS = 1000;

/** Startup parameters that are not GUCs of the session and are never SET. */
const NOT_GUCS = new Set(['user', 'database', 'replication', 'options']);

export interface OpenRequest {
  readonly user: string;
  readonly database: string;
  /** The client's StartupMessage parameters, in order (GUCs among them are applied to every server it uses). */
  readonly startup: ReadonlyArray<readonly [string, string]>;
  /** Protocol minor version the client asked for: 3.2 clients get a 32-byte cancel key, 3.0 clients 4 bytes. */
  readonly minor: number;
  /** What the gateway can log the server in with as this user (undefined: the login's own configuration). */
  readonly credentials?: ServerCredentials;
  /** The routes_file line that chose this session's upstream (undefined: the configured `upstream`). */
  readonly route?: PoolRoute;
}

export interface PoolRoute {
  /** file:line of the route: pools of different routes are different pools. */
  readonly where: string;
  readonly upstream: UpstreamTarget;
}

/** Sends a CancelRequest for a server's backend (the default login knows the upstream address). */
export type CancelSender = (server: ServerConnection) => Promise<void>;

export class Pools {
  readonly #pools = new Map<string, Pool>();
  readonly #db = new DatabaseCounts();
  readonly #names = new StatementNames();
  readonly #sessions = new Map<number, PooledSession>();
  readonly #janitor: NodeJS.Timeout;
  /** Random bytes drawn 4 KiB at a time: one call into OpenSSL per ~100 clients instead of two per client. */
  #entropy = Buffer.alloc(0);
  #entropyAt = 0;

  constructor(
    readonly settings: PoolSettings,
    private readonly login: ServerLogin,
    private readonly sendCancel: CancelSender,
    private readonly log: (event: string, detail: Record<string, unknown>) => void = () => undefined,
  ) {
    this.#janitor = setInterval(() => this.maintain(), JANITOR_MS);
    this.#janitor.unref(); // never what keeps the process alive
  }

  /** The pool of (database, user) on the configured upstream, or on a route's (`route`). */
  pool(user: string, database: string, route?: PoolRoute): Pool {
    const k = `${route?.where ?? ''}\0${database}\0${user}`;
    let p = this.#pools.get(k);
    if (!p) {
      const key = { database, user, ...(route ? { route: route.where } : {}) };
      p = new Pool(key, this.settings, this.login, this.#db, this.log, route?.upstream);
      this.#pools.set(k, p);
    }
    return p;
  }

  /** Every pool with its counts, for the console's SHOW POOLS. */
  list(now = Date.now()): PoolRow[] {
    return [...this.#pools.values()].map((p) => ({
      database: p.key.database,
      user: p.key.user,
      ...p.counts,
      clients: p.clients,
      maxWaitMs: p.maxWaitMs(now),
    }));
  }

  /** Every logged-in server of every pool, for the console's SHOW SERVERS. */
  servers(): ServerRow[] {
    const out: ServerRow[] = [];
    for (const p of this.#pools.values()) {
      for (const { server, state } of p.servers()) {
        const sock = server.socket as Duplex & {
          remoteAddress?: string;
          remotePort?: number;
          getProtocol?: () => string | null;
          getCipher?: () => { standardName?: string; name: string } | undefined;
        };
        const tlsVersion = sock.getProtocol?.();
        const cipher = sock.getCipher?.();
        out.push({
          id: server.id,
          user: p.key.user,
          database: p.key.database,
          state,
          addr: sock.remoteAddress ?? 'unix',
          port: sock.remotePort ?? server.upstreamHost?.port,
          connectTime: new Date(server.created),
          requestTime: new Date(server.lastUsed),
          remotePid: server.cancelKey?.pid,
          tls: tlsVersion && cipher ? `${tlsVersion}/${cipher.standardName ?? cipher.name}` : '',
          preparedStatements: server.prepared.size,
        });
      }
    }
    return out;
  }

  /** A session for an authenticated client; call welcome() then run() on it. */
  open(req: OpenRequest): PooledSession {
    const mode = this.settings.pool_mode === 'transaction' ? 'transaction' : 'session';
    let pid: number;
    let guard = 0;
    do pid = this.#random(4).readUInt32BE(0) & 0x7fffffff;
    while ((pid === 0 || this.#sessions.has(pid)) && ++guard < 100);
    const key = Buffer.from(this.#random(req.minor >= 2 ? 32 : 4));
    // As PostgreSQL: the settings in `options` first, then the startup parameters (which win over them).
    const options = req.startup.find(([k]) => k === 'options')?.[1];
    const fromOptions = options !== undefined ? settingsFromOptions(options) : { settings: [] };
    const vars = [
      ...('settings' in fromOptions ? fromOptions.settings : []),
      ...req.startup.filter(([k]) => !NOT_GUCS.has(k) && !k.startsWith('_pq_.')),
    ];
    const pool = this.pool(req.user, req.database, req.route);
    pool.clients++;
    let ended = false;
    const session = new PooledSession(pool, mode, { pid, key }, vars, req.credentials, this.#names, () => {
      if (ended) return;
      ended = true;
      pool.clients--;
      this.#sessions.delete(pid);
    });
    this.#sessions.set(pid, session);
    return session;
  }

  #random(n: number): Buffer {
    if (this.#entropyAt + n > this.#entropy.length) {
      this.#entropy = randomBytes(4096);
      this.#entropyAt = 0;
    }
    const out = this.#entropy.subarray(this.#entropyAt, this.#entropyAt + n);
    this.#entropyAt += n;
    return out;
  }

  /**
   * A CancelRequest with a pooled client's key: forwarded to the backend of the server running that client's query
   * now. Resolves false for an unknown key or an idle client (nothing to cancel), as PostgreSQL ignores those.
   */
  async cancel(pid: number, key: Buffer): Promise<boolean> {
    const s = this.#sessions.get(pid);
    if (!s || s.cancelKey.key.length !== key.length || !timingSafeEqual(s.cancelKey.key, key)) return false;
    const server = s.server;
    if (!server?.cancelKey) return false;
    await this.sendCancel(server);
    return true;
  }

  /** Janitor tick (also callable from tests). */
  maintain(): void {
    const pools = [...this.#pools.values()];
    // A pool whose clients wait only because its database is full takes an idle server of another pool of the
    // same database (as PgBouncer evicts one for max_db_connections).
    for (const p of pools) {
      if (!p.starved) continue;
      pools.find((o) => o !== p && o.key.database === p.key.database && o.evictIdle());
    }
    for (const p of pools) p.maintain();
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  /** All pools, for SHOW POOLS-style reporting. */
  all(): Pool[] {
    return [...this.#pools.values()];
  }

  close(): void {
    clearInterval(this.#janitor);
    for (const p of this.#pools.values()) p.close();
  }
}
