/**
 * Server pools, one per (database, user) as PgBouncer's PgPool (its objects.c / janitor.c): idle servers handed out
 * newest first, clients queued FIFO while every server is busy, new servers logged in up to default_pool_size (and
 * reserve_pool_size for a client that waited reserve_pool_timeout, and never beyond max_db_connections for the
 * database), query_wait_timeout for a queued client, server_reset_query on release in session mode,
 * server_check_query before reusing a server idle longer than server_check_delay, server_idle_timeout and
 * server_lifetime enforced by a janitor whose timer never keeps the process alive.
 *
 * A server that failed, ended or answered a check or reset with an error is discarded and never handed out, so a
 * backend restart heals the pool: the dead servers go, the next client's request logs in a new one.
 */
import * as refuse from '../refusals.js';
import type { LaneHandle, LaneOps } from '../transport.js';
import type { UpstreamTarget } from '../upstream.js';
import { type LoginRequest, type ServerCredentials, type ServerLogin, ServerLoginError } from './login.js';
import type { PoolKey, ServerConnection } from './server-connection.js';
import type { PoolSettings } from './settings.js';
import { type ClientGone, PoolRefusal, QUERY_WAIT_TIMEOUT, loginRefusal } from './waiting.js';

/** For the log when a server login needs a password the gateway does not have (docs/pooling.md, "Logging servers in"). */
const NO_CREDENTIAL_HINT =
  'authenticate this user at the gateway (a scram-sha-256 or md5 hba line with auth_file or auth_user + auth_query: ' +
  'its SCRAM keys or password then log the server in), or give the pool a credential (auth_file with the password)';

export { ClientGone, PoolRefusal, QUERY_WAIT_TIMEOUT, loginRefusal } from './waiting.js';

interface Waiter {
  readonly credentials: ServerCredentials | undefined;
  /** The client's startup GUCs for a server logged in for it (built only then). */
  readonly vars: () => ReadonlyMap<string, string>;
  readonly since: number;
  reserveOk: boolean;
  opening: boolean;
  resolve(s: ServerConnection): void;
  reject(e: PoolRefusal): void;
  unlisten?: () => void;
}

export interface PoolCounts {
  readonly idle: number;
  readonly active: number;
  readonly opening: number;
  readonly waiting: number;
}

/** Shared across the pools of one gateway: the per-database count behind max_db_connections. */
export class DatabaseCounts {
  readonly #n = new Map<string, number>();
  get(db: string): number {
    return this.#n.get(db) ?? 0;
  }
  add(db: string, d: number): void {
    this.#n.set(db, this.get(db) + d);
  }
}

export class Pool {
  /** Idle servers; the most recently released last (handed out first: warm caches, as server_round_robin = 0). */
  readonly #idle: ServerConnection[] = [];
  /** Handed out, being checked, or being reset. */
  readonly #busy = new Set<ServerConnection>();
  readonly #queue: Waiter[] = [];
  #opening = 0;
  /** Credentials of the last client whose login succeeded: min_pool_size fills up with them. */
  #lastCredentials: ServerCredentials | undefined;
  #lastVars: ReadonlyMap<string, string> = new Map();
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  /** ParameterStatus of the last server logged in: the welcome for a transaction-mode client (as PgBouncer's). */
  welcomeParams: ReadonlyMap<string, string> | undefined;
  /**
   * The native lane (native/src/lane.h), made by the first native transaction relay that asks: servers it holds
   * (idle between transactions, or relaying for a client) count as busy here; laneStats tells them apart.
   */
  #lane: { readonly ops: LaneOps; readonly handle: LaneHandle } | undefined;
  #laneFull = false;
  #laneJsWaiting = false;
  #laneJsIdle = false;
  /** Every logged-in server of the pool by id (the lane names servers by id). */
  readonly #byId = new Map<number, ServerConnection>();

  constructor(
    readonly key: PoolKey,
    readonly settings: PoolSettings,
    private readonly login: ServerLogin,
    private readonly dbCounts: DatabaseCounts,
    private readonly log: (event: string, detail: Record<string, unknown>) => void = () => undefined,
    /** The route's upstream (undefined: the login's configured one). */
    readonly upstream?: UpstreamTarget,
  ) {}

  /** max_db_connections counts per database of an upstream: a route's "sales" is not the default upstream's. */
  get #dbKey(): string {
    return this.key.route === undefined ? this.key.database : `${this.key.route}\0${this.key.database}`;
  }

  /** Logged-in clients of this pool (PooledSessions between open and end). */
  clients = 0;

  get counts(): PoolCounts {
    const l = this.#laneStats();
    const laneIdle = l?.[0] ?? 0;
    return {
      idle: this.#idle.length + laneIdle,
      active: this.#busy.size - laneIdle,
      opening: this.#opening,
      waiting: this.#queue.length + (l?.[1] ?? 0),
    };
  }

  /** How long the oldest waiting client has waited, in ms (0: none waits) — SHOW POOLS' maxwait. */
  maxWaitMs(now = Date.now()): number {
    const head = this.#queue[0];
    return Math.max(head ? now - head.since : 0, this.#laneStats()?.[2] ?? 0);
  }

  /** Every logged-in server with its PgBouncer state ('active': lent to a client or running a check or reset). */
  servers(): { server: ServerConnection; state: 'active' | 'idle' }[] {
    const l = this.#laneStats() ?? [];
    const laneIdle = new Set<number>();
    const now = Date.now();
    for (let i = 7; i + 1 < l.length; i += 2) {
      laneIdle.add(l[i]!);
      const srv = this.#byId.get(l[i]!);
      if (srv) srv.lastUsed = now - l[i + 1]!;
    }
    return [
      ...[...this.#busy].map((server) => ({
        server,
        state: laneIdle.has(server.id) ? ('idle' as const) : ('active' as const),
      })),
      ...this.#idle.map((server) => ({ server, state: 'idle' as const })),
    ];
  }

  /** The lane's counters: [idle, waiting, oldest wait ms, servers, boundaries, hand-offs, waits, (id, ms idle)…]. */
  #laneStats(): number[] | undefined {
    const l = this.#lane;
    return l ? l.ops.stats(l.handle) : undefined;
  }

  /** The pool's lane for a native transaction relay using `ops` (made on first use); undefined once closed. */
  lane(ops: LaneOps): LaneHandle | undefined {
    // server_reset_query_always runs the reset at every release: a release the lane makes would skip it.
    if (this.#closed || this.settings.server_reset_query_always) return undefined;
    if (!this.#lane) {
      const s = this.settings;
      const checkDelay = s.server_check_query === '' ? -1 : s.server_check_delay;
      const handle = ops.create(s.query_wait_timeout, checkDelay, (event, id) => this.#laneEvent(event, id));
      this.#lane = { ops, handle };
      this.#laneFull = this.#laneJsWaiting = this.#laneJsIdle = false;
      this.#syncLane();
    }
    return this.#lane.ops === ops ? this.#lane.handle : undefined;
  }

  serverById(id: number): ServerConnection | undefined {
    return this.#byId.get(id);
  }

  /** A client of the lane waited query_wait_timeout (the lane's own timer): logged as the pool's own waits are. */
  noteWaitTimeout(): void {
    this.log('query_wait_timeout', { ...this.key, waited_ms: this.settings.query_wait_timeout });
  }

  /** What is left of server_lifetime for `srv` in ms (0: no limit), for the lane. */
  lifetimeLeftMs(srv: ServerConnection): number {
    const l = this.settings.server_lifetime;
    return l > 0 ? Math.max(1, srv.created + l - Date.now()) : 0;
  }

  /**
   * 1: a server broke while idle in the lane; 2: a client died holding one mid-transaction (either way it goes);
   * 3: a transaction ended while clients wait in this pool's queue: the server is for them.
   */
  #laneEvent(event: number, id: number): void {
    const srv = this.#byId.get(id);
    if (!srv || !this.#busy.has(srv)) return;
    srv.leftLane();
    this.release(srv, event === 3, false);
  }

  /**
   * Tell the lane whether clients may wait in it (the pool cannot open another server and JavaScript holds no idle
   * one; never with reserve_pool_size or max_db_connections, whose waits only this pool's queue can see) and
   * whether clients wait in this pool's queue (released servers go to them first).
   */
  #syncLane(): void {
    const l = this.#lane;
    if (!l) return;
    const s = this.settings;
    const full =
      !this.#closed && s.reserve_pool_size === 0 && s.max_db_connections === 0 && this.size >= s.default_pool_size;
    const jsWaiting = this.#queue.length > 0;
    const jsIdle = this.#idle.length > 0;
    if (full === this.#laneFull && jsWaiting === this.#laneJsWaiting && jsIdle === this.#laneJsIdle) return;
    this.#laneFull = full;
    this.#laneJsWaiting = jsWaiting;
    this.#laneJsIdle = jsIdle;
    l.ops.set(l.handle, full, jsWaiting, jsIdle);
  }

  /** A server nobody in this pool's queue wants: to the client waiting first in the lane, if one does. */
  #giveToLane(srv: ServerConnection): boolean {
    const l = this.#lane;
    const fd = srv.laneFd;
    if (!l || fd === undefined || srv.laneGucId === 0 || srv.broken || !srv.suspend()) return false;
    srv.detach();
    srv.inLane = true;
    if (l.ops.give(l.handle, srv.id, fd, this.lifetimeLeftMs(srv), srv.laneGucId, srv.preparedNames())) return true;
    srv.inLane = false;
    srv.resumeReads();
    return false;
  }

  /** The lane's newest idle server, back in JavaScript's hands (still counted busy), or undefined. */
  #fromLane(): ServerConnection | undefined {
    const l = this.#lane;
    if (!l) return undefined;
    for (let i = 0; i < 10_000; i++) {
      const got = l.ops.take(l.handle);
      if (!got) return undefined;
      const srv = this.#byId.get(got[0]);
      if (!srv) continue;
      srv.leftLane();
      srv.lastUsed = Date.now() - got[1];
      return srv;
    }
    return undefined;
  }

  /** Servers that exist or are being opened (what default_pool_size bounds). */
  get size(): number {
    return this.#idle.length + this.#busy.size + this.#opening;
  }

  /**
   * A server for a client: an idle one (checked first if it idled longer than server_check_delay), a new one logged
   * in with this client's credentials and startup GUCs, or the next one released — waiting at most
   * query_wait_timeout. Rejects with a PoolRefusal.
   */
  acquire(
    credentials: ServerCredentials | undefined,
    vars: () => ReadonlyMap<string, string>,
    signal?: ClientGone,
  ): Promise<ServerConnection> {
    return new Promise((resolve, reject) => this.enqueue(credentials, vars, signal, resolve, reject));
  }

  /**
   * acquire() with callbacks instead of a promise (the transaction relay waits once per transaction when clients
   * outnumber servers; a promise chain costs several microtasks each time). `resolve`/`reject` may be called before
   * this returns (a refusal, or a server already idle): callers defer their work as a promise would.
   */
  enqueue(
    credentials: ServerCredentials | undefined,
    vars: () => ReadonlyMap<string, string>,
    signal: ClientGone | undefined,
    resolve: (s: ServerConnection) => void,
    reject: (e: PoolRefusal) => void,
  ): void {
    if (this.#closed || signal?.aborted) {
      reject(
        new PoolRefusal(
          this.#closed ? refuse.shuttingDown() : refuse.internalError(),
          this.#closed ? 'pool closed' : 'client left',
        ),
      );
      return;
    }
    const w: Waiter = {
      credentials,
      vars,
      since: Date.now(),
      reserveOk: this.settings.reserve_pool_timeout === 0,
      opening: false,
      resolve,
      reject,
    };
    this.#queue.push(w);
    // A client that leaves while it waits leaves the queue (PgBouncer closes waiting clients the same way). The
    // listener goes when the wait ends: a transaction-mode client waits with the same signal every transaction.
    if (signal) {
      w.unlisten = signal.on(() => {
        if (this.#dequeue(w)) w.reject(new PoolRefusal(refuse.internalError(), 'client left while waiting'));
      });
    }
    this.#pump();
    this.#arm();
  }

  /**
   * One timer per pool, for the oldest waiting client (the queue is FIFO, so it is the first to reach
   * query_wait_timeout or reserve_pool_timeout) — not one per wait, which transaction pooling does per transaction.
   */
  #arm(): void {
    const head = this.#queue[0];
    if (this.#timer || !head) return;
    const s = this.settings;
    let at = Number.POSITIVE_INFINITY;
    if (s.query_wait_timeout > 0) at = head.since + s.query_wait_timeout;
    if (!head.reserveOk && s.reserve_pool_size > 0) at = Math.min(at, head.since + s.reserve_pool_timeout);
    if (at === Number.POSITIVE_INFINITY) return;
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, at - Date.now()) + 1);
    this.#timer.unref();
  }

  #sweep(): void {
    this.#timer = undefined;
    const s = this.settings;
    const now = Date.now();
    for (const w of [...this.#queue]) {
      const waited = now - w.since;
      if (s.query_wait_timeout > 0 && waited >= s.query_wait_timeout) {
        this.#dequeue(w);
        this.log('query_wait_timeout', { ...this.key, waited_ms: waited });
        w.reject(new PoolRefusal(QUERY_WAIT_TIMEOUT, `query_wait_timeout (${s.query_wait_timeout} ms) expired`));
      } else if (waited >= s.reserve_pool_timeout) w.reserveOk = true;
    }
    this.#pump();
    this.#arm();
  }

  /**
   * The fast path of acquire(), without a promise or a timer: an idle server when no client is queued before this
   * one and the server needs no check. undefined: take the queue (acquire()).
   */
  takeIdle(): ServerConnection | undefined {
    if (this.#queue.length > 0 || this.#closed) return undefined;
    const s = this.settings;
    while (this.#idle.length > 0) {
      const srv = this.#idle[this.#idle.length - 1]!;
      if (s.server_check_query !== '' && Date.now() - srv.lastUsed >= s.server_check_delay) return undefined;
      this.#idle.pop();
      if (srv.broken) this.#drop(srv, 'broken while idle');
      else if (this.#overLifetime(srv)) this.#drop(srv, 'server lifetime over');
      else {
        this.#busy.add(srv);
        this.#syncLane();
        return srv;
      }
    }
    for (let srv = this.#fromLane(); srv; srv = this.#fromLane()) {
      if (s.server_check_query !== '' && Date.now() - srv.lastUsed >= s.server_check_delay) {
        // Due for a check: the queue's pump runs it.
        this.#busy.delete(srv);
        this.#idle.push(srv);
        this.#syncLane();
        return undefined;
      }
      if (srv.broken || this.#overLifetime(srv)) {
        this.#busy.delete(srv);
        this.#drop(srv, srv.broken ? 'broken while idle' : 'server lifetime over');
        continue;
      }
      return srv;
    }
    return undefined;
  }

  /**
   * Give a server back. `clean` is false when the client left it in a state no reset can undo (inside a
   * transaction, a query still running, a protocol error): it is closed. Otherwise it is reset (session mode, or
   * server_reset_query_always) and handed to the next waiting client.
   */
  release(server: ServerConnection, clean: boolean, sessionMode: boolean): void {
    this.#busy.delete(server);
    server.lastUsed = Date.now();
    if (!clean || server.broken || this.#closed || this.#overLifetime(server)) {
      const why = !clean || server.broken ? 'released dirty' : this.#closed ? 'pool closed' : 'server lifetime over';
      this.#drop(server, why);
      this.#pump();
      return;
    }
    const reset = this.settings.server_reset_query;
    // Without a reset, what a session-mode client SET is unknown (the raw relay does not read it): forget the
    // server's values so that the next client's are all SET.
    if (reset === '' && sessionMode) server.vars.clear();
    if (reset !== '' && (sessionMode || this.settings.server_reset_query_always)) {
      this.#busy.add(server);
      server.query(reset).then(
        (r) => {
          this.#busy.delete(server);
          if (r.error || r.status !== 'I') this.#drop(server, `server_reset_query failed: ${r.error?.M ?? r.status}`);
          else this.#offer(server);
          this.#pump();
        },
        (e: Error) => {
          this.#busy.delete(server);
          this.#drop(server, `server_reset_query: ${e.message}`);
          this.#pump();
        },
      );
      return;
    }
    this.#offer(server);
    this.#pump();
  }

  /** Janitor tick: idle and lifetime limits, then min_pool_size. */
  maintain(now = Date.now()): void {
    const s = this.settings;
    // The lane's idle servers come back for the limits below (and go out again with the next transactions).
    const back: ServerConnection[] = [];
    for (let srv = this.#fromLane(); srv; srv = this.#fromLane()) back.push(srv);
    for (const srv of back.reverse()) {
      this.#busy.delete(srv);
      this.#idle.push(srv);
    }
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const srv = this.#idle[i]!;
      const idleFor = now - srv.lastUsed;
      if (srv.broken) this.#removeIdle(i, 'broken while idle');
      else if (s.server_idle_timeout > 0 && idleFor > s.server_idle_timeout && this.size > s.min_pool_size)
        this.#removeIdle(i, 'server idle timeout');
      else if (this.#overLifetime(srv, now)) this.#removeIdle(i, 'server lifetime over');
    }
    if (!this.#closed && this.#lastCredentials && this.size < s.min_pool_size && this.#dbRoom()) this.#open(undefined);
    // Room may have come from another pool of the database (max_db_connections).
    this.#pump();
  }

  /** Clients wait here and no server may be added because the database is at max_db_connections. */
  get starved(): boolean {
    return this.#queue.length > 0 && this.#idle.length === 0 && !this.#dbRoom();
  }

  /** Close the longest-idle server to make room for another pool of the database. */
  evictIdle(): boolean {
    const srv = this.#idle.shift();
    if (!srv) return false;
    this.#drop(srv, 'evicted for another pool (max_db_connections)');
    return true;
  }

  /** Close idle servers and refuse new requests; busy servers close when released. */
  close(): void {
    this.#closed = true;
    const l = this.#lane;
    if (l) {
      l.ops.close(l.handle);
      for (let srv = this.#fromLane(); srv; srv = this.#fromLane()) {
        this.#busy.delete(srv);
        this.#drop(srv, 'pool closed');
      }
    }
    for (let i = this.#idle.length - 1; i >= 0; i--) this.#removeIdle(i, 'pool closed');
    clearTimeout(this.#timer);
    for (const w of this.#queue.splice(0)) {
      w.unlisten?.();
      w.reject(new PoolRefusal(refuse.shuttingDown(), 'pool closed'));
    }
  }

  #overLifetime(srv: ServerConnection, now = Date.now()): boolean {
    return this.settings.server_lifetime > 0 && now - srv.created >= this.settings.server_lifetime;
  }

  #dbRoom(): boolean {
    const max = this.settings.max_db_connections;
    return max === 0 || this.dbCounts.get(this.#dbKey) < max;
  }

  #removeIdle(i: number, why: string): void {
    const [srv] = this.#idle.splice(i, 1);
    if (srv) this.#drop(srv, why);
  }

  #drop(srv: ServerConnection, why: string): void {
    const l = this.#lane;
    if (srv.inLane && l) l.ops.remove(l.handle, srv.id);
    srv.leftLane();
    this.#byId.delete(srv.id);
    this.dbCounts.add(this.#dbKey, -1);
    this.log('server closed', { ...this.key, server: srv.id, reason: why });
    srv.discard();
  }

  #dequeue(w: Waiter): boolean {
    const i = this.#queue.indexOf(w);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    w.unlisten?.();
    if (this.#queue.length === 0 && this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#syncLane();
    return true;
  }

  /** A usable server: to the first waiting client, else idle. */
  #offer(srv: ServerConnection): void {
    const w = this.#queue[0];
    if (w) {
      this.#busy.add(srv); // before #dequeue: the lane's view of the pool's size must not dip
      this.#dequeue(w);
      w.resolve(srv);
      return;
    }
    srv.lastUsed = Date.now();
    if (this.#giveToLane(srv)) return; // stays busy: the lane holds it
    this.#idle.push(srv);
    this.#syncLane();
  }

  /** Serve waiting clients from idle servers, then open new servers for those still waiting. */
  #pump(): void {
    while (this.#queue.length > 0) {
      let srv = this.#idle.pop();
      if (!srv) {
        srv = this.#fromLane();
        if (!srv) break;
        this.#busy.delete(srv);
      }
      if (srv.broken) {
        this.#drop(srv, 'broken while idle');
        continue;
      }
      if (this.#overLifetime(srv)) {
        this.#drop(srv, 'server lifetime over');
        continue;
      }
      const s = this.settings;
      if (s.server_check_query !== '' && Date.now() - srv.lastUsed >= s.server_check_delay) {
        this.#check(srv);
        continue;
      }
      this.#offer(srv);
    }
    // One login per waiting client at most; the waiter whose credentials a login uses is the first without one.
    const s = this.settings;
    for (const w of this.#queue) {
      if (w.opening) continue;
      const limit = s.default_pool_size + (w.reserveOk ? s.reserve_pool_size : 0);
      if (this.size >= limit || !this.#dbRoom()) break;
      this.#open(w);
    }
    this.#syncLane();
  }

  #check(srv: ServerConnection): void {
    this.#busy.add(srv);
    // `<empty>` in PgBouncer's docs means an empty query string: the cheapest round trip there is.
    const sql = this.settings.server_check_query === '<empty>' ? '' : this.settings.server_check_query;
    srv.query(sql, 10_000).then(
      (r) => {
        this.#busy.delete(srv);
        const misfit = r.error || r.status !== 'I' ? undefined : this.login.fits?.(srv);
        if (r.error || r.status !== 'I') this.#drop(srv, `server_check_query failed: ${r.error?.M ?? r.status}`);
        else if (misfit !== undefined) this.#drop(srv, `upstream_target_session_attrs: ${misfit}`);
        else this.#offer(srv);
        this.#pump();
      },
      (e: Error) => {
        this.#busy.delete(srv);
        this.#drop(srv, `server_check_query: ${e.message}`);
        this.#pump();
      },
    );
  }

  #open(w: Waiter | undefined): void {
    this.#opening++;
    this.dbCounts.add(this.#dbKey, 1);
    if (w) w.opening = true;
    const credentials = w ? w.credentials : this.#lastCredentials;
    const params = w ? w.vars() : this.#lastVars;
    const req: LoginRequest = {
      key: this.key,
      params,
      credentials,
      ...(this.upstream ? { upstream: this.upstream } : {}),
    };
    this.login.open(req).then(
      (srv) => {
        this.#opening--;
        if (w) w.opening = false;
        this.#lastCredentials = credentials;
        if (w) this.#lastVars = params;
        this.welcomeParams = new Map(srv.params);
        this.#byId.set(srv.id, srv);
        this.log('server opened', { ...this.key, server: srv.id, pid: srv.cancelKey?.pid, auth: srv.authMethod });
        if (this.#closed) {
          this.#drop(srv, 'pool closed');
          return;
        }
        this.#offer(srv);
        this.#pump();
      },
      (e: Error) => {
        this.#opening--;
        this.dbCounts.add(this.#dbKey, -1);
        if (w) w.opening = false;
        this.log('server login failed', {
          ...this.key,
          error: e.message,
          ...(e instanceof ServerLoginError && e.failure === 'no-credential' ? { hint: NO_CREDENTIAL_HINT } : {}),
        });
        // The client whose credentials were used gets the failure; the others keep waiting (issue #1186).
        if (w && this.#dequeue(w)) w.reject(loginRefusal(e));
        this.#pump();
      },
    );
  }
}
