/**
 * One client in a pooled mode, from the moment it is authenticated to its end: its GUC values (startup parameters,
 * then whatever the backend reports), its gateway-made cancel key, and its relay — a raw splice to a server borrowed
 * for the whole session, or the transaction relay.
 */
import type { Duplex } from 'node:stream';
import { type WireError, encodeErrorResponse } from '../../protocol/error-response.js';
import {
  encodeBackendKeyData,
  encodeParameterStatus,
  encodeReadyForQuery,
  quoteIdent,
  quoteLiteral,
} from '../../protocol/messages.js';
import type { RelayStats } from '../transport.js';
import type { TxRelayPort } from '../transport.js';
import type { ServerCredentials } from './login.js';
import { ClientGone, type Pool, PoolRefusal, QUERY_WAIT_TIMEOUT } from './pool.js';
import type { ClientStatement, StatementNames } from './prepared.js';
import type { ServerConnection } from './server-connection.js';
import { relaySession } from './session-relay.js';
import { TxRelay } from './tx-relay.js';

/** What every welcome from one pool login shares (Pool.welcomeParams is replaced on each login, never changed). */
interface KnownWelcome {
  /** Lower-case name → the name as the backend spelled it (the first, in the backend's order). */
  readonly nameOf: ReadonlyMap<string, string>;
  /** ParameterStatus of every parameter, in order. */
  readonly encoded: Buffer;
}

const knownWelcomes = new WeakMap<ReadonlyMap<string, string>, KnownWelcome>();

function knownWelcome(known: ReadonlyMap<string, string>): KnownWelcome {
  let w = knownWelcomes.get(known);
  if (!w) {
    const nameOf = new Map<string, string>();
    const parts: Buffer[] = [];
    for (const [name, value] of known) {
      if (!nameOf.has(name.toLowerCase())) nameOf.set(name.toLowerCase(), name);
      parts.push(encodeParameterStatus(name, value));
    }
    w = { nameOf, encoded: Buffer.concat(parts) };
    knownWelcomes.set(known, w);
  }
  return w;
}

/** A client's value of one GUC: the name as the client or backend spelled it, and the value. */
interface Var {
  readonly name: string;
  value: string;
}

/** The GUCs PgBouncer keeps per client (its varcache.c), by lower-case name. */
const TRACKED = new Set([
  'client_encoding',
  'datestyle',
  'timezone',
  'intervalstyle',
  'standard_conforming_strings',
  'application_name',
]);

export interface SessionStats extends RelayStats {
  /** The client was told it gets no server (query_wait_timeout, the backend refused the login, …): for its record. */
  refused?: { readonly reason: string; readonly code: string };
  /** Transactions relayed (transaction mode); 1 for a session. */
  transactions: number;
}

/**
 * GUC signatures: the same number for the same values of the same GUCs, so that the native lane can tell whether a
 * server that another client used has this client's values by comparing two integers. Bounded: past the bound each
 * new signature gets a number of its own (such clients then always go through the pool's own acquire).
 */
const signatures = new Map<string, number>();
const MAX_SIGNATURES = 10_000;
let nextSignature = 1;

function signatureOf(vars: ReadonlyMap<string, Var>): number {
  const key = [...vars]
    .map(([lower, v]) => `${lower}=${v.value}`)
    .sort()
    .join('\0');
  let id = signatures.get(key);
  if (id === undefined) {
    id = nextSignature++;
    if (signatures.size < MAX_SIGNATURES) signatures.set(key, id);
  }
  return id;
}

export class PooledSession {
  /** Lower-case GUC name → the client's value. */
  readonly #vars = new Map<string, Var>();
  /** signatureOf(#vars), computed when first asked after a change. */
  #gucId = 0;
  readonly #statements = new Map<string, ClientStatement>();
  #server: ServerConnection | undefined;
  #tx: TxRelay | undefined;
  #client: Duplex | undefined;

  constructor(
    readonly pool: Pool,
    readonly mode: 'session' | 'transaction',
    /** The gateway-made BackendKeyData the client gets (never the backend's). */
    readonly cancelKey: { readonly pid: number; readonly key: Buffer },
    startupVars: ReadonlyArray<readonly [string, string]>,
    private readonly credentials: ServerCredentials | undefined,
    private readonly names: StatementNames,
    private readonly onEnd: () => void,
  ) {
    for (const [name, value] of startupVars) this.#vars.set(name.toLowerCase(), { name, value });
  }

  /** The server running this client's work right now (a CancelRequest goes to it). */
  get server(): ServerConnection | undefined {
    return this.mode === 'session' ? this.#server : this.#tx?.server;
  }

  #startupMap(): Map<string, string> {
    const m = new Map<string, string>();
    for (const v of this.#vars.values()) m.set(v.name, v.value);
    return m;
  }

  /**
   * Borrow a server, make its GUCs the client's (SET where they differ, as PgBouncer's varcache), and take the
   * values the backend reports back (it normalises some: DateStyle 'ISO' becomes 'ISO, MDY').
   */
  checkout(signal?: ClientGone): Promise<ServerConnection> {
    return this.pool
      .acquire(this.credentials, () => this.#startupMap(), signal)
      .then((server) => (this.#differs(server) ? this.#ready(server) : server));
  }

  /**
   * checkout() for the transaction relay, without promises: an idle server that already has the client's GUC
   * values is returned at once; otherwise undefined, and `done` is called later (always asynchronously, as a
   * promise would) with the server or the refusal.
   */
  checkoutNow(
    signal: ClientGone,
    done: (err: unknown, server?: ServerConnection) => void,
  ): ServerConnection | undefined {
    const got = (server: ServerConnection) => {
      if (!this.#differs(server)) queueMicrotask(() => done(undefined, server));
      else
        this.#ready(server).then(
          (s) => done(undefined, s),
          (e: unknown) => done(e),
        );
    };
    const idle = this.pool.takeIdle();
    if (idle) {
      if (!this.#differs(idle)) return idle;
      got(idle);
      return undefined;
    }
    this.pool.enqueue(
      this.credentials,
      () => this.#startupMap(),
      signal,
      got,
      (e) => queueMicrotask(() => done(e)),
    );
    return undefined;
  }

  async #ready(server: ServerConnection): Promise<ServerConnection> {
    try {
      await this.#applyVars(server);
    } catch (e) {
      this.pool.release(server, false, false);
      throw e;
    }
    return server;
  }

  /** Whether any of the client's GUC values is not in effect on `server` (every transaction: no allocation). */
  #differs(server: ServerConnection): boolean {
    for (const [lower, v] of this.#vars) if (server.vars.get(lower) !== v.value) return true;
    return false;
  }

  #sets(server: ServerConnection): string[] {
    const sets: string[] = [];
    for (const [lower, v] of this.#vars) {
      if (server.vars.get(lower) !== v.value) sets.push(`SET ${quoteIdent(v.name)} = ${quoteLiteral(v.value)}`);
    }
    return sets;
  }

  async #applyVars(server: ServerConnection): Promise<void> {
    const sets = this.#sets(server);
    if (sets.length === 0) return;
    const r = await server.query(sets.join('; ')).catch((e: Error) => {
      throw new PoolRefusal(
        { severity: 'FATAL', code: '08006', message: 'server connection failed while applying session parameters' },
        e.message,
      );
    });
    if (r.error) {
      // An invalid value (TimeZone = 'nowhere'): PostgreSQL refuses the startup packet with the same error.
      const wire: WireError = { severity: 'FATAL', code: r.error.C ?? '22023', message: r.error.M ?? 'invalid value' };
      throw new PoolRefusal(wire, `SET of a client parameter failed: ${r.error.M ?? ''}`);
    }
    for (const [lower, v] of this.#vars) {
      const reported = server.params.get(v.name) ?? [...server.params].find(([k]) => k.toLowerCase() === lower)?.[1];
      v.value = reported ?? v.value;
      server.vars.set(lower, v.value);
    }
    this.#gucId = 0;
  }

  /**
   * Everything a client gets after AuthenticationOk: ParameterStatus for every reported GUC, the gateway's
   * BackendKeyData, ReadyForQuery. Both modes answer from the pool's last login with the client's own values on
   * top (PgBouncer's welcome message), so a client can log in while every server is busy and then waits for one
   * under query_wait_timeout, not under authentication_timeout (a session-mode client borrows its server in run()).
   * Only a pool that never logged in borrows a server first (session mode keeps it).
   * `signal`: aborted when the client leaves while it waits (it leaves the queue).
   */
  async welcome(signal?: ClientGone): Promise<Buffer> {
    const parts: Buffer[] = [];
    const known = this.pool.welcomeParams;
    let params: ReadonlyMap<string, string>;
    if (known) {
      const w = knownWelcome(known);
      let m: Map<string, string> | undefined;
      for (const v of this.#vars.values()) {
        const name = w.nameOf.get(v.name.toLowerCase());
        if (name !== undefined && (m ? m.get(name) : known.get(name)) !== v.value) {
          m ??= new Map(known);
          m.set(name, v.value);
        }
      }
      // Most clients repeat what the last login reported (or say nothing of it): the encoded messages are reused.
      if (m) for (const [name, value] of m) parts.push(encodeParameterStatus(name, value));
      else parts.push(w.encoded);
      params = m ?? known;
    } else {
      let server: ServerConnection;
      try {
        server = await this.checkout(signal);
      } catch (e) {
        this.onEnd();
        throw e;
      }
      params = server.params;
      parts.push(server.encodedParams());
      if (this.mode === 'session') this.#server = server;
      else this.pool.release(server, true, false);
    }
    // PgBouncer's varcache: the client's value of each tracked GUC is what it was told, so that a server another
    // client SET differently is SET back before this client's next transaction.
    for (const [name, value] of params) {
      const lower = name.toLowerCase();
      if (TRACKED.has(lower) && !this.#vars.has(lower)) this.#vars.set(lower, { name, value });
    }
    this.#gucId = 0;
    parts.push(encodeBackendKeyData(this.cancelKey.pid, this.cancelKey.key));
    parts.push(encodeReadyForQuery('I'));
    return Buffer.concat(parts);
  }

  /**
   * Relay until the client leaves (`pipelined`: bytes it sent already; `native`: the client session's native relay,
   * used by both modes when the transport has one). The server is returned or discarded.
   */
  async run(client: Duplex, pipelined: Buffer = Buffer.alloc(0), native?: TxRelayPort): Promise<SessionStats> {
    this.#client = client;
    try {
      if (this.mode === 'session') return this.#withRefusal(await this.#runSession(client, pipelined, native));
      const tx = new TxRelay(
        client,
        {
          acquire: (signal, done) =>
            this.checkoutNow(signal, (err, server) => {
              if (err === undefined) done(server);
              else {
                this.#tell(err);
                done(undefined);
              }
            }),
          release: (s, clean) => this.pool.release(s, clean, false),
          noteClientParam: (name, value) => {
            // Only the client's own GUCs: a reported read-only one (is_superuser, in_hot_standby) cannot be SET.
            const lower = name.toLowerCase();
            const v = this.#vars.get(lower);
            if (v) v.value = value;
            else if (TRACKED.has(lower)) this.#vars.set(lower, { name, value });
            this.#gucId = 0;
          },
          fatal: (message, code) => this.#send({ severity: 'FATAL', code, message }),
          statements: this.#statements,
          nameFor: (rest) => this.names.nameFor(rest),
          maxPrepared: this.pool.settings.max_prepared_statements,
          lane: (port) => this.pool.lane(port.lanes),
          serverById: (id) => this.pool.serverById(id),
          lifetimeLeftMs: (server) => this.pool.lifetimeLeftMs(server),
          gucId: () => {
            if (this.#gucId === 0) this.#gucId = signatureOf(this.#vars);
            return this.#gucId;
          },
          waitTimedOut: () => {
            const ms = this.pool.settings.query_wait_timeout;
            this.pool.noteWaitTimeout();
            this.#tell(new PoolRefusal(QUERY_WAIT_TIMEOUT, `query_wait_timeout (${ms} ms) expired`));
          },
        },
        native,
      );
      this.#tx = tx;
      await tx.run(pipelined);
      return this.#withRefusal({ ...tx.stats });
    } finally {
      this.onEnd();
    }
  }

  #send(err: WireError): void {
    const c = this.#client;
    if (c && !c.destroyed) c.write(encodeErrorResponse(err));
  }

  /** Tell the client why it gets no server. */
  #tell(e: unknown): PoolRefusal {
    const r = e instanceof PoolRefusal ? e : new PoolRefusal(refusalInternal, (e as Error).message);
    this.#send(r.wire);
    this.#refusal = r;
    return r;
  }

  /** The refusal told to the client after its welcome, if any (the relay's stats carry it to the record). */
  #refusal: PoolRefusal | undefined;

  #withRefusal(stats: SessionStats): SessionStats {
    const r = this.#refusal;
    return r ? { ...stats, refused: { reason: r.reason, code: r.wire.code } } : stats;
  }

  async #runSession(client: Duplex, pipelined: Buffer, native: TxRelayPort | undefined): Promise<SessionStats> {
    const stats: SessionStats = { bytesFromClient: 0, bytesFromBackend: 0, transactions: 1 };
    if (!this.#server) {
      // Logged in from the pool's welcome: wait for a server now (what the client sends meanwhile stays in its
      // stream, which is not read until the splice). A refusal (query_wait_timeout) is told to the client.
      const gone = new ClientGone();
      const onClose = () => gone.fire();
      client.once('close', onClose);
      if (client.destroyed) gone.fire();
      try {
        this.#server = await this.checkout(gone);
      } catch (e) {
        if (!gone.aborted) {
          this.#tell(e);
          client.end();
        }
        return stats;
      } finally {
        client.off('close', onClose);
      }
    }
    const server = this.#server;
    const idle = await relaySession(client, server, stats, pipelined, native);
    this.#server = undefined;
    const clean = !server.broken && idle;
    this.pool.release(server, clean, true);
    return stats;
  }
}

const refusalInternal: WireError = {
  severity: 'FATAL',
  code: 'XX000',
  message: 'internal error in the pgtls gateway',
  hint: 'The gateway log has the details.',
};
