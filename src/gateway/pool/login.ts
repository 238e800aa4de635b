import type { Socket } from 'node:net';
/**
 * How a pool gets a new backend session: the `ServerLogin` seam, and the default implementation that connects with
 * connectUpstream (TLS per upstream_sslmode) and answers the backend's authentication request with a password
 * (trust, cleartext, md5, SCRAM-SHA-256) or with SCRAM keys (pass-through: a ClientKey recovered from the client's
 * own SCRAM proof, as PgBouncer does since 1.14).
 *
 * The pool calls `open` with the credentials of the client that needs the server (PgBouncer issue #1186: never
 * wait for keys another client might bring), so a login failure is that client's, not every waiting client's.
 */
import type { Duplex } from 'node:stream';
import { md5PasswordMessage, passwordMessage } from '../../client/auth.js';
import { formatServerError, targetRejection } from '../../client/login-rules.js';
import { PgtlsError } from '../../errors.js';
import { decodeErrorFields } from '../../protocol/error-response.js';
import { MessageReader, parseBackendKeyData } from '../../protocol/framing.js';
import { BackendType } from '../../protocol/messages.js';
import type { ScramClient } from '../../protocol/scram-client.js';
import { encodeStartupMessage } from '../../protocol/startup.js';
import { backendScram } from '../backend-scram.js';
import { UpstreamWalk, reportedFrom } from '../upstream-walk.js';
import { type UpstreamTarget, sendCancel } from '../upstream.js';
import { type PoolKey, ServerConnection } from './server-connection.js';

export const ERR_SERVER_LOGIN = 'PGTLS_ERR_SERVER_LOGIN';

/** What a client brings that lets the gateway log in to the backend as that client's user. */
export interface ServerCredentials {
  /** The user's password in clear (from auth_file plain entries, a cleartext/md5 client login, or config). */
  readonly password?: string;
  /** SCRAM pass-through: ClientKey and ServerKey of the user's SCRAM secret (ServerKey checks the backend). */
  readonly scramKeys?: { readonly clientKey: Buffer; readonly serverKey: Buffer };
}

export interface LoginRequest {
  readonly key: PoolKey;
  /** The upstream of the pool's route (undefined: the login's configured upstream). */
  readonly upstream?: UpstreamTarget;
  /** GUCs for the StartupMessage besides user and database (client_encoding, DateStyle, …). */
  readonly params: ReadonlyMap<string, string>;
  /** The credentials of the client this server is opened for; undefined for min_pool_size fill-up. */
  readonly credentials: ServerCredentials | undefined;
}

/**
 * The one thing a pool needs from the outside: a logged-in ServerConnection (ReadyForQuery seen, idle), or a
 * rejection. A rejection carrying `backendError` (the backend's ErrorResponse fields) is shown to the client as
 * the backend sent it ("password authentication failed …", "database … does not exist").
 */
export interface ServerLogin {
  open(req: LoginRequest): Promise<ServerConnection>;
  /** undefined when a pooled server may still be handed out; else why not (checked after server_check_query). */
  fits?(server: ServerConnection): string | undefined;
}

/**
 * Why a server login failed, for what the waiting client is told (./waiting.ts loginRefusal): the backend could not
 * be reached or went away during the login (`unreachable`), the gateway has no credential for the user
 * (`no-credential`), or the login itself failed (`failed`: SCRAM, a method the gateway lacks, a bad message). A
 * backend's own ErrorResponse (`backendError`) is passed on as it is whatever the kind.
 */
export type ServerLoginFailure = 'unreachable' | 'no-credential' | 'failed';

/** A server login that failed; when the backend refused it, its ErrorResponse fields are kept for the client. */
export class ServerLoginError extends PgtlsError {
  constructor(
    message: string,
    readonly backendError?: Readonly<Record<string, string>>,
    options: { cause?: unknown; failure?: ServerLoginFailure } = {},
  ) {
    super(ERR_SERVER_LOGIN, message, options.cause !== undefined ? { cause: options.cause } : {});
    this.failure = options.failure ?? 'failed';
  }

  readonly failure: ServerLoginFailure;
}

export interface PasswordLoginOptions {
  readonly upstream: UpstreamTarget;
  /** Password for a user when the client brought none (a configured backend credential). */
  readonly password?: (user: string) => string | undefined;
  /** Milliseconds for connect + authentication (PgBouncer's server_connect_timeout + server_login). */
  readonly timeoutMs?: number;
}

/** The default ServerLogin: connectUpstream, then a libpq-style password exchange. */
export class PasswordLogin implements ServerLogin {
  constructor(private readonly opts: PasswordLoginOptions) {}

  /** A CancelRequest for a server's backend, to the same upstream (PostgreSQL reads it before any TLS). */
  async cancel(server: ServerConnection): Promise<void> {
    const at = server.upstreamHost ?? this.opts.upstream;
    if (server.cancelKey) await sendCancel(at, server.cancelKey.pid, server.cancelKey.key);
  }

  /**
   * Whether a pooled server still suits upstream_target_session_attrs, from what its backend has reported since
   * (ParameterStatus for default_transaction_read_only after a reload, in_hot_standby after a promotion, seen by
   * server_check_query). A reason when it does not: the pool drops it instead of handing it out.
   */
  fits(server: ServerConnection): string | undefined {
    const mode = (server.target ?? this.opts.upstream).targetSessionAttrs ?? 'any';
    // prefer-standby accepts any server in the end: a promoted standby is still acceptable.
    if (mode === 'any' || mode === 'prefer-standby') return undefined;
    return targetRejection(mode, reportedFrom(server.params));
  }

  /**
   * libpq's walk over the upstream's hosts: log in on each, check target_session_attrs after the login, skip hosts
   * that are down or of the wrong kind; a login the backend refuses ends the walk as it ends libpq's.
   */
  async open(req: LoginRequest): Promise<ServerConnection> {
    const target = req.upstream ?? this.opts.upstream;
    const walk = new UpstreamWalk(target);
    for (let guard = 0; guard < 1000; guard++) {
      let socket: Duplex;
      let at: UpstreamTarget;
      try {
        const landed = await walk.next();
        socket = landed.socket;
        at = landed.at;
      } catch (e) {
        throw new ServerLoginError(`could not connect to the backend: ${(e as Error).message}`, undefined, {
          cause: e,
          failure: 'unreachable',
        });
      }
      socket.on('error', () => undefined);
      let server: ServerConnection;
      try {
        server = await this.#authenticate(socket, req);
      } catch (e) {
        socket.destroy();
        const be = e instanceof ServerLoginError ? e.backendError : undefined;
        if (be?.C && walk.loginFailed(formatServerError(be), be.C)) continue;
        throw e;
      }
      if ((await walk.check(socket as Socket, reportedFrom(server.params))) !== undefined) continue;
      server.upstreamHost = { host: at.host, port: at.port };
      if (req.upstream) server.target = req.upstream;
      return server;
    }
    throw new ServerLoginError('could not connect to the backend: too many attempts', undefined, {
      failure: 'unreachable',
    });
  }

  #authenticate(socket: Duplex, req: LoginRequest): Promise<ServerConnection> {
    const password = req.credentials?.password ?? this.opts.password?.(req.key.user);
    const scramKeys = req.credentials?.scramKeys;
    const startup: [string, string][] = [
      ['user', req.key.user],
      ['database', req.key.database],
    ];
    for (const [k, v] of req.params) startup.push([k, v]);
    return new Promise((resolve, reject) => {
      const reader = new MessageReader(1 << 20);
      let scram: ScramClient | undefined;
      /** How the backend authenticated the gateway (for the log and SHOW SERVERS). */
      let authMethod: string | undefined;
      let cancelKey: { pid: number; key: Buffer } | undefined;
      const params: [string, string][] = [];
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        cleanup();
        reject(err);
      };
      const cleanup = () => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.pause();
      };
      const needPassword = (): string | undefined => {
        if (password === undefined) {
          fail(new ServerLoginError(`no password for user "${req.key.user}"`, undefined, { failure: 'no-credential' }));
        }
        return password;
      };
      const onData = (d: Buffer) => {
        reader.push(d);
        try {
          for (let m = reader.next(); m; m = reader.next()) {
            if (m.type === BackendType.Authentication) {
              const code = m.body.readInt32BE(0);
              if (code === 0) {
                authMethod ??= 'trust';
                continue; // AuthenticationOk
              }
              if (code === 3) {
                authMethod = 'password';
                const pw = needPassword();
                if (pw === undefined) return;
                socket.write(passwordMessage(pw));
              } else if (code === 5) {
                authMethod = 'md5';
                const pw = needPassword();
                if (pw === undefined) return;
                socket.write(md5PasswordMessage(req.key.user, pw, m.body.subarray(4, 8)));
              } else if (code === 10) {
                const mechs = m.body.toString('utf8', 4).split('\0').filter(Boolean);
                if (!scramKeys && needPassword() === undefined) return;
                // The shared SCRAM client, as libpq with channel_binding=prefer: PLUS on a TLS hop. A password works
                // whatever salt the backend uses; pass-through keys only if they came from the backend's own secret
                // (a SCRAM login at the gateway against a plain auth_file password derives keys with another salt).
                const started = backendScram(
                  mechs,
                  socket,
                  password !== undefined ? { password } : { keys: scramKeys },
                );
                if ('error' in started) {
                  fail(new ServerLoginError(`SCRAM with the backend: ${started.error}`));
                  return;
                }
                scram = started.scram;
                authMethod = started.plus ? 'scram-sha-256-plus' : 'scram-sha-256';
                socket.write(scram.initialResponse());
              } else if (code === 11 && scram) {
                const r = scram.serverFirstMessage(m.body.toString('utf8', 4));
                if (!r.ok) {
                  fail(new ServerLoginError(`SCRAM with the backend: ${r.error}`));
                  return;
                }
                socket.write(r.message);
              } else if (code === 12 && scram) {
                // Checking the backend's signature proves it knows the secret (no rogue server in between).
                const r = scram.serverFinalMessage(m.body.toString('utf8', 4));
                if (!r.ok) {
                  fail(new ServerLoginError(`SCRAM with the backend: ${r.error}`));
                  return;
                }
              } else {
                fail(new ServerLoginError(`backend asks for an authentication method the gateway lacks (${code})`));
                return;
              }
            } else if (m.type === BackendType.BackendKeyData) {
              cancelKey = parseBackendKeyData(m.body);
            } else if (m.type === BackendType.ParameterStatus) {
              const nul = m.body.indexOf(0);
              params.push([m.body.toString('utf8', 0, nul), m.body.toString('utf8', nul + 1, m.body.length - 1)]);
            } else if (m.type === BackendType.ErrorResponse) {
              const fields = decodeErrorFields(m.body);
              fail(new ServerLoginError(`backend refused the login: ${fields.M ?? ''}`, fields));
              return;
            } else if (m.type === BackendType.ReadyForQuery) {
              if (settled) return;
              settled = true;
              cleanup();
              const server = new ServerConnection(socket, req.key, cancelKey, req.params);
              server.authMethod = authMethod;
              for (const [k, v] of params) {
                server.params.set(k, v);
                server.vars.set(k.toLowerCase(), v);
              }
              resolve(server);
              return;
            }
            // NoticeResponse, NegotiateProtocolVersion: nothing to do.
          }
        } catch (e) {
          fail(new ServerLoginError(`invalid message from the backend: ${(e as Error).message}`));
        }
      };
      const onClose = () =>
        fail(new ServerLoginError('backend closed the connection during login', undefined, { failure: 'unreachable' }));
      const timer = setTimeout(
        () => fail(new ServerLoginError('backend login timed out', undefined, { failure: 'unreachable' })),
        this.opts.timeoutMs ?? 15_000,
      );
      timer.unref();
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.write(encodeStartupMessage(startup));
      socket.resume();
    });
  }
}
