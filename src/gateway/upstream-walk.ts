/**
 * Walking an upstream's hosts as libpq 18 does (fe-connect.c, PQconnectPoll): hosts in order (shuffled with
 * load_balance_hosts=random), each host's addresses, each encryption method; a host that is down or times out is
 * skipped; after a login, CONNECTION_CHECK_TARGET — the session must be what target_session_attrs asks for
 * (read-write/read-only from default_transaction_read_only and in_hot_standby as reported at startup by PostgreSQL
 * 14+, else `SHOW transaction_read_only`; primary/standby from in_hot_standby, else `SELECT
 * pg_catalog.pg_is_in_recovery()`), or it is closed with Terminate and the next host is tried; prefer-standby goes
 * round once more accepting any server when no standby answered. A login the backend refuses ends the walk (libpq
 * tries no further host after an authentication failure) unless it is 57P03 "cannot connect now" (see loginFailed
 * for the one place the gateway stops earlier than libpq).
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ConnectionAttempts } from '../client/connect.js';
import { type AttemptFailure, ClientError } from '../client/errors.js';
import { targetRejection } from '../client/login-rules.js';
import type { ConnectionPlan } from '../client/resolve.js';
import { PgtlsError } from '../errors.js';
import { decodeErrorFields } from '../protocol/error-response.js';
import { MessageReader } from '../protocol/framing.js';
import { BackendType, TERMINATE, encodeQuery } from '../protocol/messages.js';
import type { UpstreamTlsConnector } from '../tls/native-upstream.js';
import { ERR_UPSTREAM, type UpstreamTarget, hostsOf, planFor } from './upstream.js';

/** What the backend reported at startup that target_session_attrs looks at (ParameterStatus, PostgreSQL 14+). */
export interface Reported {
  readonly in_hot_standby?: string;
  readonly default_transaction_read_only?: string;
  readonly server_version?: string;
}

/** Pick the reported values out of ParameterStatus pairs. */
export function reportedFrom(params: Iterable<readonly [string, string]>): Reported {
  const r: Record<string, string> = {};
  for (const [k, v] of params) {
    if (k === 'in_hot_standby' || k === 'default_transaction_read_only' || k === 'server_version') r[k] = v;
  }
  return r;
}

/** Every host failed: the libpq text naming each host and why, for the log and the client's DETAIL. */
export class UpstreamUnavailable extends PgtlsError {
  /** libpq's accumulated message: one "connection to server at … failed: …" line per attempt. */
  readonly detail: string;
  /** The errno-like reason of the last attempt (EMFILE, ECONNREFUSED, …), when there is one. */
  readonly reason: string | undefined;
  /** The DETAIL for the client: libpq's text when the upstream has several hosts, else undefined (as before). */
  readonly clientDetail: string | undefined;
  constructor(
    readonly attempts: readonly AttemptFailure[],
    single: boolean,
  ) {
    const detail = attempts.map((a) => `${a.prefix}${a.message}`).join('\n');
    const last = attempts[attempts.length - 1];
    // One host tried once: the bare reason, as the gateway has always logged it; several: libpq's whole text.
    super(ERR_UPSTREAM, single && attempts.length === 1 && last ? last.message : detail || 'no upstream host');
    this.detail = detail;
    this.reason = last?.reason;
    this.clientDetail = single || detail === '' ? undefined : detail;
  }
}

/** Where a walk landed: the socket, and the one host it is on (for CancelRequests and the log). */
export interface Landed {
  /** A Duplex when the walk was given the native TLS connector and the hop is TLS. */
  readonly socket: Socket | TLSSocket | Duplex;
  readonly at: UpstreamTarget;
}

/** Plans are resolved once per configured target (the configuration is frozen; a reload builds new targets). */
const plans = new WeakMap<UpstreamTarget, ConnectionPlan>();

/** One libpq-style walk over an upstream's hosts; the caller logs in on each socket next() gives it. */
export class UpstreamWalk {
  readonly #attempts: ConnectionAttempts<Socket | TLSSocket | Duplex>;
  readonly #single: boolean;
  #current: Landed | undefined;

  /** `native`: TLS to the backend by the native addon (the 1:1 relay; pools keep Node's tls). */
  constructor(
    readonly target: UpstreamTarget,
    native?: UpstreamTlsConnector,
  ) {
    let plan = plans.get(target);
    if (!plan) {
      plan = planFor(target);
      plans.set(target, plan);
    }
    this.#attempts = new ConnectionAttempts<Socket | TLSSocket | Duplex>(plan, native);
    this.#single = hostsOf(target).length === 1;
  }

  /** True when the upstream lists several hosts (a refusal may then move on to the next one). */
  get several(): boolean {
    return !this.#single;
  }

  /** The next negotiated socket; throws UpstreamUnavailable when libpq would have given up. */
  async next(): Promise<Landed> {
    try {
      const n = await this.#attempts.next();
      const f = n.facts;
      const port = f.port;
      // The address connected to (not the name, which may resolve to others): where this session's cancels go.
      const host = f.address && !f.address.startsWith('/') ? f.address : f.host;
      const at: UpstreamTarget = { ...this.target, host, port, hosts: [{ host, port }] };
      this.#current = { socket: n.socket, at };
      return this.#current;
    } catch (e) {
      if (e instanceof ClientError) throw new UpstreamUnavailable(e.attempts, this.#single);
      throw e;
    }
  }

  /**
   * The backend refused the login. True when the walk goes on: 57P03 ("the database system is starting up", a
   * standby not yet in hot standby) moves to the next host, as in libpq. Where libpq would also retry the same
   * address with the next encryption method (sslmode=prefer after a refused login over TLS), the gateway stops: the
   * backend's refusal is what the client must see, not the plaintext attempt's. With a single host the refusal is
   * passed on as it always was.
   */
  loginFailed(message: string, sqlstate?: string): boolean {
    // `message` is libpq's rendering of the server's error ("FATAL:  …", DETAIL, HINT lines): it goes into the DETAIL.
    this.#current?.socket.destroy();
    if (sqlstate === '57P03' && !this.#single) {
      this.#attempts.fail(message, sqlstate);
      return true;
    }
    this.#attempts.abort(message);
    return false;
  }

  /** target_session_attrs for the attempt in progress ('any' on prefer-standby's second pass). */
  mode(): string {
    return this.#attempts.targetCheck();
  }

  /**
   * CONNECTION_CHECK_TARGET on a logged-in socket (ReadyForQuery seen, nothing pending). undefined: the session will
   * do. Otherwise libpq's reason; the socket has been sent Terminate and closed, and the walk moves to the next host.
   */
  async check(socket: Duplex, reported: Reported): Promise<string | undefined> {
    const why = await sessionRejection(this.mode(), reported, socket);
    if (why !== undefined) {
      // libpq's sendTerminateConn: a polite goodbye (no "unexpected EOF" in the server log), then the socket goes.
      socket.on('error', () => undefined);
      socket.end(TERMINATE);
      setTimeout(() => socket.destroy(), 1000).unref();
      this.#attempts.failHost(why);
    }
    return why;
  }

  /** The error for a walk that ended without a session. */
  unavailable(): UpstreamUnavailable {
    return new UpstreamUnavailable(this.#attempts.failures, this.#single);
  }
}

/** libpq's CONNECTION_CHECK_TARGET verdict, querying the server when it did not report what is needed. */
export async function sessionRejection(mode: string, reported: Reported, socket: Duplex): Promise<string | undefined> {
  if (mode === 'any') return undefined;
  let r: Reported = reported;
  if (
    (mode === 'read-write' || mode === 'read-only') &&
    (r.default_transaction_read_only === undefined || r.in_hot_standby === undefined)
  ) {
    const v = await queryValue(socket, 'SHOW transaction_read_only');
    if (v === undefined) return '"SHOW transaction_read_only" failed';
    // As libpq: "on" proves one of the two is on; either way both are set to what the server answered.
    const on = v.startsWith('on') ? 'on' : 'off';
    r = { default_transaction_read_only: on, in_hot_standby: on };
  }
  if ((mode === 'primary' || mode === 'standby' || mode === 'prefer-standby') && r.in_hot_standby === undefined) {
    // Servers before 9.0 have no standby mode (and no pg_is_in_recovery()).
    const major = Number.parseInt(r.server_version ?? '', 10);
    if (Number.isFinite(major) && major < 9) r = { ...r, in_hot_standby: 'off' };
    else {
      const v = await queryValue(socket, 'SELECT pg_catalog.pg_is_in_recovery()');
      if (v === undefined) return '"SELECT pg_is_in_recovery()" failed';
      r = { ...r, in_hot_standby: v.startsWith('t') ? 'on' : 'off' };
    }
  }
  return targetRejection(mode, r);
}

/**
 * Run one simple query on an idle, paused, logged-in socket and return the first column of its first row (undefined on
 * an error, no row, a close or 30 s without an answer). Reads exactly up to ReadyForQuery; the socket is paused again.
 */
export function queryValue(socket: Duplex, sql: string, timeoutMs = 30_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const reader = new MessageReader(1 << 20);
    let value: string | undefined;
    let failed = false;
    let settled = false;
    const done = (v: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      resolve(v);
    };
    const onData = (d: Buffer) => {
      reader.push(d);
      try {
        for (let m = reader.next(); m; m = reader.next()) {
          if (m.type === BackendType.ErrorResponse) {
            failed = true;
            decodeErrorFields(m.body);
          } else if (m.type === BackendType.DataRow && value === undefined && m.body.readInt16BE(0) > 0) {
            const len = m.body.readInt32BE(2);
            value = len < 0 ? undefined : m.body.toString('utf8', 6, 6 + len);
          } else if (m.type === BackendType.ReadyForQuery) {
            done(failed ? undefined : value);
            return;
          }
        }
      } catch {
        done(undefined);
      }
    };
    const onClose = () => done(undefined);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    timer.unref();
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(encodeQuery(sql));
    socket.resume();
  });
}

/**
 * Open a socket to the first host that answers, without logging in (the backend authenticates the client itself, or
 * the caller logs in and needs no target check). Throws UpstreamUnavailable.
 */
export async function connectUpstream(t: UpstreamTarget): Promise<Socket | TLSSocket> {
  // No native connector: Node's sockets.
  return (await new UpstreamWalk(t).next()).socket as Socket | TLSSocket;
}
