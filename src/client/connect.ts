/**
 * connect(): libpq's connection state machine up to the point where the StartupMessage is sent — host by host,
 * address by address, encryption method by encryption method (PQconnectPoll in fe-connect.c, PostgreSQL 17/18) —
 * returning the negotiated socket (TLS or plain) and the facts of how it was obtained. What happens after each kind
 * of failure (next method, next address, give up) is libpq's; the attempts themselves are in negotiate.ts.
 */
import { randomInt } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { UpstreamTlsConnector } from '../tls/native-upstream.js';
import { type AttemptFailure, connectError } from './errors.js';
import {
  AttemptError,
  type Candidate,
  type ConnectionFacts,
  type Method,
  type Negotiated,
  prefixFor,
  sslRequest,
  tcpConnect,
  tlsHandshake,
} from './negotiate.js';
import { type ConnectionPlan, DEFAULT_PORT, type HostTarget, parseIntParam } from './resolve.js';
import { type TlsMaterial, loadTlsMaterial } from './tls-files.js';

export type { ConnectionFacts, Method, Negotiated, TlsFacts } from './negotiate.js';

/**
 * Walks libpq's attempts in order. `next()` yields the next negotiated socket; after a login failure on it, call
 * `fail(message)` so the next `next()` continues exactly where libpq would (next encryption method, address, host).
 */
export class ConnectionAttempts<S extends Duplex = Socket | TLSSocket> {
  readonly failures: AttemptFailure[] = [];
  private hostIndex = 0;
  private candidates: Candidate[] | undefined;
  private candidateIndex = 0;
  private methodIndex = 0;
  private current: { candidate: Candidate; method: Method } | undefined;

  private readonly hosts: readonly HostTarget[];

  /**
   * `native`: TLS done by the gateway's addon (../tls/native-upstream.ts), whose sockets are Duplexes — the gateway
   * alone passes it, with S widened to Duplex; the client library and doctor get Node's tls.
   */
  constructor(
    readonly plan: ConnectionPlan,
    private readonly native?: UpstreamTlsConnector,
  ) {
    // load_balance_hosts=random: libpq shuffles the hosts (and each host's addresses) once per connection.
    this.hosts = plan.params.load_balance_hosts === 'random' ? shuffle(plan.hosts) : plan.hosts;
  }

  /**
   * Record that the connection returned by the last next() failed after negotiation (the login was rejected).
   * As libpq: SQLSTATE 57P03 (cannot connect now) moves on to the next host; anything else tries the next encryption
   * method on the same address, and when there is none the whole connection fails (`exhausted` becomes true).
   */
  fail(message: string, sqlstate?: string): void {
    const cur = this.current;
    if (!cur) return;
    this.failures.push(this.failure(cur.candidate, cur.method, message));
    this.current = undefined;
    if (sqlstate === '57P03') {
      this.candidates = undefined;
      this.hostIndex++;
      return;
    }
    this.methodIndex++;
    const methods = cur.candidate.path !== undefined ? ['plain'] : this.plan.methods;
    if (!methods[this.methodIndex]) this.exhausted = true;
  }

  /** True once libpq would have given up (no further attempt after a failed login). */
  exhausted = false;

  /** prefer-standby's second pass (no standby found): any server will do. */
  private secondPass = false;

  /** What the session must be for target_session_attrs, for the attempt in progress. */
  targetCheck(): string {
    const mode = this.plan.targetSessionAttrs;
    return mode === 'prefer-standby' && this.secondPass ? 'any' : mode;
  }

  /**
   * The server in use does not satisfy target_session_attrs: record libpq's message and move on to the next host
   * (not the next address of this one). prefer-standby starts over accepting any server when none was a standby.
   */
  failHost(message: string): void {
    const cur = this.current;
    if (cur) this.failures.push(this.failure(cur.candidate, cur.method, message));
    this.current = undefined;
    this.candidates = undefined;
    this.hostIndex++;
    if (this.hostIndex >= this.hosts.length && this.plan.targetSessionAttrs === 'prefer-standby' && !this.secondPass) {
      this.secondPass = true;
      this.hostIndex = 0;
    }
  }

  /** A failure after which libpq gives up at once (error_return), whatever attempts remain. */
  abort(message: string): void {
    const cur = this.current;
    if (cur) this.failures.push(this.failure(cur.candidate, cur.method, message));
    this.current = undefined;
    this.exhausted = true;
  }

  private failure(c: Candidate, method: Method, message: string, reason?: string, prefix = c.prefix): AttemptFailure {
    return Object.freeze({
      host: c.target.host,
      ...(c.address ? { address: c.address } : {}),
      port: String(c.port),
      method,
      message,
      ...(reason === undefined ? {} : { reason }),
      prefix,
    });
  }

  private async loadCandidates(target: HostTarget): Promise<Candidate[]> {
    let port: number;
    if (target.port === '') port = 5432;
    else {
      port = parseIntParam(target.port, 'port');
      if (port < 1 || port > 65535) throw new AttemptError(`invalid port number: "${target.port}"`);
    }
    if (target.kind === 'socket') {
      const path = `${target.host.replace(/\/$/, '')}/.s.PGSQL.${port}`;
      return [{ target, address: '', family: 0, port, path, prefix: prefixFor(target, '', String(port), path) }];
    }
    if (target.kind === 'address') {
      const { isIP } = await import('node:net');
      const family = isIP(target.hostaddr);
      if (!family)
        throw new AttemptError(`could not parse network address "${target.hostaddr}": Name or service not known`);
      return [
        { target, address: target.hostaddr, family, port, prefix: prefixFor(target, target.hostaddr, String(port)) },
      ];
    }
    let addrs: { address: string; family: number }[];
    try {
      addrs = await lookup(target.host, { all: true, verbatim: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const text = code === 'EAI_AGAIN' ? 'Temporary failure in name resolution' : 'Name or service not known';
      throw new AttemptError(`could not translate host name "${target.host}" to address: ${text}`);
    }
    if (this.plan.params.load_balance_hosts === 'random') addrs = shuffle(addrs);
    return addrs.map((a) => ({
      target,
      address: a.address,
      family: a.family,
      port,
      prefix: prefixFor(target, a.address, String(port)),
    }));
  }

  /** The next negotiated connection, or a ClientError carrying every attempt's message once all have failed. */
  async next(): Promise<Negotiated<S>> {
    const plan = this.plan;
    if (this.exhausted) throw connectError(this.failures);
    const timeoutMs = plan.connectTimeoutSeconds * 1000;
    for (let guard = 0; guard < 10_000; guard++) {
      if (this.candidates === undefined) {
        const target = this.hosts[this.hostIndex];
        if (!target) throw connectError(this.failures);
        try {
          this.candidates = await this.loadCandidates(target);
        } catch (err) {
          if (!(err instanceof AttemptError)) throw err;
          this.failures.push(
            Object.freeze({
              host: target.host,
              port: target.port || DEFAULT_PORT,
              method: 'plain',
              message: err.message,
              prefix: '',
            }),
          );
          this.hostIndex++;
          continue;
        }
        this.candidateIndex = 0;
        this.methodIndex = 0;
      }
      const candidate = this.candidates[this.candidateIndex];
      if (!candidate) {
        this.candidates = undefined;
        this.hostIndex++;
        continue;
      }
      // No TLS over Unix-domain sockets, whatever sslmode says (libpq does the same).
      const methods: readonly Method[] = candidate.path !== undefined ? ['plain'] : plan.methods;
      const method = methods[this.methodIndex];
      if (!method) {
        this.candidateIndex++;
        this.methodIndex = 0;
        continue;
      }
      try {
        const result = await this.attempt(candidate, method, methods, timeoutMs);
        return result as Negotiated<S>;
      } catch (err) {
        if (!(err instanceof AttemptError)) throw err;
        this.failures.push(this.failure(candidate, method, err.message, err.reason));
        if (err.then === 'stop') throw connectError(this.failures);
        if (err.then === 'method') {
          // libpq (CONNECTION_FAILED): the next encryption method on a new connection, or give up — a TLS or
          // negotiation failure does not move on to other addresses or hosts.
          this.methodIndex++;
          if (!methods[this.methodIndex]) throw connectError(this.failures);
        } else {
          this.candidateIndex++;
          this.methodIndex = 0;
        }
      }
    }
    throw connectError(this.failures);
  }

  private async attempt(
    c: Candidate,
    method: Method,
    methods: readonly Method[],
    timeoutMs: number,
  ): Promise<Negotiated<Socket | TLSSocket | Duplex>> {
    const plan = this.plan;
    let material: TlsMaterial | undefined;
    if (plan.deferredError) throw new AttemptError(plan.deferredError, undefined, 'stop');
    if (method === 'direct') {
      // Direct TLS: the files are read before anything is sent.
      const m = loadTlsMaterial(plan);
      if (!m.ok) {
        // libpq connects first, then fails initialising SSL.
        const s = await tcpConnect(c, timeoutMs, plan);
        s.destroy();
        throw new AttemptError(m.message, m.reason);
      }
      material = m.value;
    }
    const socket = await tcpConnect(c, timeoutMs, plan);
    const base = {
      host: c.target.host,
      hostaddr: c.target.hostaddr,
      address: c.address || (c.path ?? ''),
      port: c.port,
      prefix: c.prefix,
    };
    try {
      if (method === 'plain') {
        this.current = { candidate: c, method };
        return { socket, facts: Object.freeze({ ...base, method, fallbacks: Object.freeze([...this.failures]) }) };
      }
      if (method === 'direct') {
        const { socket: tlsSocket, tls } = await tlsHandshake(plan, c, socket, material!, true, timeoutMs, this.native);
        this.current = { candidate: c, method };
        return {
          socket: tlsSocket,
          facts: Object.freeze({ ...base, method, tls, fallbacks: Object.freeze([...this.failures]) }),
        };
      }
      const { answer, extra } = await sslRequest(socket, timeoutMs);
      if (answer === 'N') {
        if (plan.ssl.mode === 'require' || plan.ssl.mode === 'verify-ca' || plan.ssl.mode === 'verify-full') {
          throw new AttemptError('server does not support SSL, but SSL was required', undefined, 'stop');
        }
        // prefer: go on in plaintext on the same connection.
        socket.resume();
        const plainIndex = methods.indexOf('plain');
        this.methodIndex = plainIndex >= 0 ? plainIndex : this.methodIndex;
        this.current = { candidate: c, method: 'plain' };
        return {
          socket,
          facts: Object.freeze({
            ...base,
            method: 'plain',
            sslResponse: 'N',
            fallbacks: Object.freeze([...this.failures]),
          }),
        };
      }
      const m = loadTlsMaterial(plan);
      if (!m.ok) throw new AttemptError(m.message, m.reason);
      material = m.value;
      const { socket: tlsSocket, tls } = await tlsHandshake(plan, c, socket, material, false, timeoutMs, this.native);
      if (extra) {
        tlsSocket.destroy();
        throw new AttemptError('received unencrypted data after SSL response', undefined, 'stop');
      }
      this.current = { candidate: c, method };
      return {
        socket: tlsSocket,
        facts: Object.freeze({ ...base, method, sslResponse: 'S', tls, fallbacks: Object.freeze([...this.failures]) }),
      };
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }
}

function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Negotiate one connection for `plan` (TLS or plaintext, as libpq would), trying hosts and fallbacks in order. */
export function connect(plan: ConnectionPlan): Promise<Negotiated> {
  return new ConnectionAttempts(plan).next();
}
