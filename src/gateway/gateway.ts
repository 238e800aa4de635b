/**
 * The gateway: listeners, the state in force (config, hba, ident, TLS, upstream), reload and shutdown.
 * Reload builds a complete new state first (./state.ts) and swaps it only when every part loaded; on any error the
 * old state stays in force. Established sessions are never touched by a reload: each connection read the state it
 * needed.
 */
import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import type { ConfigInput, GatewayConfig } from '../config/load.js';
import { PgtlsError } from '../errors.js';
import type { HbaLine } from '../hba/hba.js';
import type { IdentLine } from '../hba/ident.js';
import type { TrustedRange } from '../hba/proxy-trusted.js';
import { type TlsMaterial, TlsStore } from '../tls/context.js';
import { createNativeServerContext, loadNativeTransport, nativeUnavailableReason } from '../tls/native.js';
import type { SniSelector } from '../tls/sni.js';
import { type AcceptedHandle, AcceptedSocket } from './accepted-socket.js';
import { handleConnection } from './connection.js';
import { watchFileDescriptors } from './fd-watch.js';
import { type FileWatch, watchFiles } from './file-watch.js';
import { listenHosts } from './listen-hosts.js';
import { Operator } from './operator.js';
import { poolsForGateway } from './pool/for-gateway.js';
import type { Pools } from './pool/pools.js';
import type { Route } from './routes.js';
import type { ConnectionRecord, GatewayRuntime } from './runtime.js';
import type { SecretSource } from './secrets.js';
import {
  type CheckReport,
  type GatewayOptions,
  type State,
  buildState,
  checkConfiguration,
  hostsFile,
  loadMockSecret,
  report,
} from './state.js';
import type { ClientTransport } from './transport.js';
import { type UpstreamTarget, connectUpstream, sendCancel } from './upstream.js';

export { type CheckReport, type GatewayOptions, checkConfiguration };

export const ERR_LISTEN = 'PGTLS_ERR_LISTEN';

/** How long shutdown waits, after destroying the sessions left at shutdown_timeout, for them to unregister. */
const SESSION_END_GRACE_MS = 2000;

/**
 * native_data_plane: the native transport when asked for and built; `on` refuses to start without it (the reason
 * says why: not built, unsupported platform), `auto` (the default) falls back to Node's tls with a warning, which
 * the gateway's report() carries, so `pgtls serve` logs it once when it is ready.
 */
function chooseTransport(setting: 'off' | 'on' | 'auto'): { transport?: ClientTransport; warning?: string } {
  if (setting === 'off') return {};
  const t = loadNativeTransport();
  if (t) return { transport: t };
  const why = nativeUnavailableReason() ?? 'the addon is not built';
  if (setting === 'on') {
    throw new PgtlsError(
      'PGTLS_ERR_NATIVE',
      `native_data_plane = on, but the native data plane is unavailable: ${why}`,
      {
        details: {
          hint: 'Build it with `npm run build:native` (needs g++ and make), or set native_data_plane = auto.',
        },
      },
    );
  }
  return { warning: `native_data_plane = auto: using Node's tls (${why})` };
}

/** Settings that need a restart, as PostgreSQL's PGC_POSTMASTER parameters do. */
const RESTART_ONLY = [
  'listen_addresses',
  'port',
  'unix_socket_directories',
  'data_directory',
  'ssl',
  'native_data_plane',
  'workers',
  'pool_mode',
] as const;

export class Gateway extends EventEmitter implements GatewayRuntime {
  #state: State;
  #tls: TlsStore;
  #servers: Server[] = [];
  #unixSockets: string[] = [];
  #sockets = new Set<Socket | AcceptedSocket>();
  #sessions = new Set<{ client: Duplex; backend: Duplex | undefined }>();
  /** Cancel keys of relayed sessions → how many sessions hold them, and the upstream they run on (routes). */
  #cancelKeys = new Map<string, { n: number; upstream: UpstreamTarget | undefined }>();
  #shuttingDown = false;
  #nextId = 1;
  /** Connections whose handler has not finished (and so whose log record is not written yet). */
  #inFlight = 0;
  #stopFdWatch: () => void = () => undefined;
  #fileWatch: FileWatch | undefined;
  #acceptErrors = { count: 0, last: 0 };
  readonly #input: ConfigInput;
  readonly mockSecret: Buffer;
  readonly operator: Operator;
  readonly pools: Pools | undefined;
  /** The client-side TLS transport (native_data_plane); undefined: Node's tls. */
  readonly transport: ClientTransport | undefined;
  /** Why native_data_plane = auto fell back to Node's tls (undefined: it did not). */
  readonly #transportWarning: string | undefined;
  readonly #opts: GatewayOptions;

  private constructor(state: State, input: ConfigInput, opts: GatewayOptions) {
    super();
    const gw = this;
    this.#state = state;
    this.#input = input;
    // With ssl = off there is no material; a store is still needed by the type, never used for handshakes.
    this.#tls = new TlsStore(state.material as TlsMaterial);
    this.mockSecret = loadMockSecret(state.config.data_directory);
    const chosen = chooseTransport(state.config.native_data_plane);
    this.transport = chosen.transport;
    this.#transportWarning = chosen.warning;
    // Pools live as long as the gateway; pool_mode and the pool settings are read at start (restart to change them).
    this.pools = poolsForGateway(
      () => gw.#state,
      (event, detail) => this.emit('notice', { msg: `pool: ${event}`, ...detail }),
    );
    this.operator = new Operator({
      get config() {
        return gw.#state.config;
      },
      get hba() {
        return gw.#state.hba;
      },
      currentMaterial: () => (gw.#state.material ? gw.#tls.current() : undefined),
      swapMaterial: (m) => gw.#tls.swap(m),
      reload: (why) => gw.reload(why),
      backendFor: () => {
        const c = gw.#state.config;
        if (c.auth_user === '') return undefined;
        const own = gw.#state.authFile?.get(c.auth_user)?.secret;
        return {
          connect: () => connectUpstream(gw.#state.upstream),
          creds: { user: c.auth_user, ...(own !== undefined ? { password: own, md5Secret: own } : {}) },
        };
      },
      log: (level, w) => gw.emit(level === 'warn' ? 'warning' : 'notice', w),
      pools: () =>
        gw.pools
          ? { mode: gw.pools.settings.pool_mode, rows: gw.pools.list(), servers: gw.pools.servers() }
          : undefined,
    });
    this.#opts = opts;
    this.#nextId = opts.connectionIds?.first ?? 1;
  }

  /** Load and check everything, then listen. Throws PgtlsError (naming the file/line/key) on any problem. */
  static async start(input: ConfigInput, opts: GatewayOptions = {}): Promise<Gateway> {
    const state = await buildState(input, opts);
    const gw = new Gateway(state, input, opts);
    gw.#prepareTransport(state);
    await gw.#listen();
    try {
      await gw.operator.start();
    } catch (err) {
      await gw.close(0);
      throw err;
    }
    gw.#stopFdWatch = watchFileDescriptors((e) =>
      gw.emit(
        'warning',
        e.atLimit
          ? {
              msg: `could not accept new connections: ${e.open} of ${e.limit} file descriptors in use (EMFILE); new connections are being dropped`,
              hint: 'Raise the open-files limit (ulimit -n, LimitNOFILE=) or set max_client_conn below it.',
            }
          : { msg: `accepting connections again: ${e.open} of ${e.limit} file descriptors in use` },
      ),
    );
    gw.#armFileWatch();
    return gw;
  }

  /**
   * With the native data plane, build its TLS contexts now, from the material just loaded: a problem then fails the
   * start or the reload (all-or-nothing), never a client's handshake later.
   */
  #prepareTransport(state: State): void {
    if (this.transport?.name !== 'native') return;
    if (state.material) createNativeServerContext(state.material);
    for (const m of state.sni?.materials() ?? []) createNativeServerContext(m.material);
  }

  /** The files whose change triggers a reload under watch_files. */
  #watchedFiles(): string[] {
    const c = this.#state.config;
    return [
      c.config_file,
      c.ssl_cert_file,
      c.ssl_key_file,
      c.ssl_ca_file,
      c.ssl_crl_file,
      c.ssl_crl_dir,
      c.ssl_dh_params_file,
      c.hba_file,
      c.ident_file,
      ...(c.ssl_sni
        ? [
            hostsFile(c),
            ...(this.#state.sni?.materials() ?? []).flatMap((m) => [
              m.material.settings.ssl_cert_file,
              m.material.settings.ssl_key_file,
              m.material.settings.ssl_ca_file,
            ]),
          ]
        : []),
      // include/include_dir targets of pg_hba.conf and of the config file are covered by their own lines' files
      ...new Set(this.#state.hba.map((l) => l.file).filter((f) => f.startsWith('/'))),
    ].filter((f) => f !== '');
  }

  #armFileWatch(): void {
    if (!this.#state.config.watch_files || this.#shuttingDown) {
      this.#fileWatch?.close();
      this.#fileWatch = undefined;
      return;
    }
    if (this.#fileWatch) {
      this.#fileWatch.update(this.#watchedFiles());
      return;
    }
    this.#fileWatch = watchFiles(this.#watchedFiles(), (changed) => {
      void this.reload({ trigger: 'file change', files: changed });
    });
  }

  get config(): GatewayConfig {
    return this.#state.config;
  }
  get hba(): readonly HbaLine[] {
    return this.#state.hba;
  }
  get ident(): readonly IdentLine[] {
    return this.#state.ident;
  }
  get tls(): TlsStore {
    return this.#tls;
  }
  get upstream(): UpstreamTarget {
    return this.#state.upstream;
  }
  get sni(): SniSelector | undefined {
    return this.#state.sni;
  }
  get secrets(): SecretSource | undefined {
    return this.#state.secrets;
  }
  get routes(): readonly Route[] {
    return this.#state.routes;
  }
  get proxyTrusted(): readonly TrustedRange[] {
    return this.#state.proxyTrusted;
  }
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }
  /** Connections still being handled; 0 once every connection so far has been logged. */
  get inFlight(): number {
    return this.#inFlight;
  }
  get clientCount(): number {
    return this.#sockets.size;
  }
  nextConnectionId(): number {
    const id = this.#nextId;
    this.#nextId += this.#opts.connectionIds?.step ?? 1;
    return id;
  }

  /** Addresses actually listened on (port resolved when 0 was configured). */
  addresses(): { host: string; port: number }[] {
    return this.#servers
      .filter((s) => typeof s.address() !== 'string')
      .map((s) => {
        const a = s.address() as { address: string; port: number };
        return { host: a.address, port: a.port };
      });
  }

  /** The facts and warnings about the configuration in force (certificate expiry, plaintext allowed, …). */
  report(): CheckReport {
    const r = report(this.#state);
    return this.#transportWarning ? { ...r, warnings: [...r.warnings, this.#transportWarning] } : r;
  }

  get port(): number {
    return this.addresses()[0]?.port ?? 0;
  }

  async #listen(): Promise<void> {
    const c = this.#state.config;
    const hosts = await listenHosts(c.listen_addresses);
    let port = c.port;
    for (const host of hosts) {
      const server = createServer({ noDelay: true }, (sock) => this.#accept(sock));
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) =>
          reject(new PgtlsError(ERR_LISTEN, `could not listen on ${host}:${port}: ${err.message}`, { cause: err })),
        );
        server.listen({ host, port, ipv6Only: host.includes(':') }, () => resolve());
      });
      this.#onAcceptError(server);
      this.#acceptWithoutSocket(server);
      // With port 0 every address shares the port the first one got.
      port = (server.address() as { port: number }).port;
      this.#servers.push(server);
    }
    // Unix sockets, named as PostgreSQL names them so libpq's host=/dir finds them.
    for (const dir of c.unix_socket_directories
      .split(',')
      .map((d) => d.trim())
      .filter(Boolean)) {
      const path = join(resolve(dir), `.s.PGSQL.${port}`);
      rmSync(path, { force: true }); // a socket file left by a gateway that was killed
      const server = createServer((sock) => this.#accept(sock));
      await new Promise<void>((done, reject) => {
        server.once('error', (err) =>
          reject(new PgtlsError(ERR_LISTEN, `could not create Unix socket "${path}": ${err.message}`, { cause: err })),
        );
        server.listen({ path }, () => done());
      });
      this.#onAcceptError(server);
      this.#unixSockets.push(path);
      this.#servers.push(server);
    }
  }

  /** Unix socket files the gateway listens on. */
  get unixSockets(): readonly string[] {
    return this.#unixSockets;
  }

  /**
   * accept() can fail after listening started — above all EMFILE, when every file descriptor is in use: libuv then
   * drops the connection it could not accept. The listener keeps going; the log says what happened, at most once a
   * second with a count, as PostgreSQL logs "could not accept new connection".
   */
  #onAcceptError(server: Server): void {
    server.removeAllListeners('error');
    server.on('error', (err: NodeJS.ErrnoException) => {
      const e = this.#acceptErrors;
      e.count++;
      const now = Date.now();
      if (now - e.last < 1000) return;
      e.last = now;
      const hint =
        err.code === 'EMFILE' || err.code === 'ENFILE'
          ? 'the gateway is out of file descriptors: raise its open-files limit (ulimit -n) or set max_client_conn'
          : undefined;
      this.emit('warning', {
        msg: `could not accept new connection: ${err.message}`,
        code: err.code,
        dropped: e.count,
        ...(hint ? { hint } : {}),
      });
      e.count = 0;
    });
  }

  /**
   * The native transport's fast path (./accepted-socket.ts): a TCP listener hands over the accepted handle itself,
   * and no net.Socket is made unless the connection needs one. Only where the transport's negotiation applies to
   * every connection (TLS on, no PROXY protocol, no ssl_sni) — read per connection, so a reload that changes them
   * takes effect at once — and not in a cluster worker, whose listener is the primary's. Errors (EMFILE) and
   * everything else take Node's own path.
   */
  #acceptWithoutSocket(server: Server): void {
    if (!this.transport?.negotiate || cluster.isWorker) return;
    type OnConnection = (this: unknown, err: number, handle: AcceptedHandle | undefined) => void;
    const listening = (server as unknown as { _handle?: { onconnection?: OnConnection } })._handle;
    const node = listening?.onconnection;
    if (!listening || typeof node !== 'function') return;
    listening.onconnection = function (this: unknown, err, handle) {
      const c = gateway.#state.config;
      if (err || !handle || typeof handle.fd !== 'number' || !c.ssl || c.proxy_protocol || gateway.#state.sni) {
        node.call(this, err, handle);
        return;
      }
      gateway.#accept(new AcceptedSocket(handle));
    };
    const gateway = this;
  }

  #accept(sock: Socket | AcceptedSocket): void {
    this.#sockets.add(sock);
    sock.once('close', () => this.#sockets.delete(sock));
    this.#inFlight++;
    handleConnection(sock, this)
      .catch((err: unknown) => {
        this.emit('warning', { msg: 'connection handler failed', error: (err as Error).message });
        sock.destroy();
      })
      .finally(() => {
        this.#inFlight--;
      });
  }

  /** Re-read config, hba, ident, certificate, key, CA and CRL. On error the old state stays in force. */
  async reload(
    why: { trigger: 'signal' | 'file change' | 'admin'; files?: string[] } = { trigger: 'signal' },
  ): Promise<{ ok: true; warnings: string[] } | { ok: false; error: PgtlsError | Error }> {
    try {
      const next = await buildState(this.#input, this.#opts, this.#state);
      this.#prepareTransport(next);
      const warnings: string[] = [];
      for (const key of RESTART_ONLY) {
        if (next.config[key] !== this.#state.config[key]) {
          warnings.push(`parameter "${key}" cannot be changed without restarting the gateway`);
        }
      }
      const kept = Object.fromEntries(RESTART_ONLY.map((k) => [k, this.#state.config[k]]));
      this.#state = { ...next, config: Object.freeze({ ...next.config, ...kept }) };
      if (next.material) this.#tls.swap(next.material);
      warnings.push(...report(this.#state).warnings);
      this.#armFileWatch();
      this.operator.reloaded(true);
      this.emit('reload', { ok: true, warnings, ...why });
      return { ok: true, warnings };
    } catch (error) {
      this.operator.reloaded(false);
      this.emit('reload', { ok: false, error, ...why });
      return { ok: false, error: error as Error };
    }
  }

  /** Set in a worker: hands a cancel this worker cannot place to the other workers (see workers.ts). */
  forwardCancel: ((pid: number, key: Buffer) => void) | undefined;

  async cancel(pid: number, key: Buffer, record: ConnectionRecord): Promise<void> {
    const id = `${pid}:${key.toString('hex')}`;
    if (this.pools && (await this.pools.cancel(pid, key))) {
      record.reason = `cancel forwarded for pooled client ${pid}`;
      return;
    }
    if (!this.#cancelKeys.has(id)) {
      if (this.forwardCancel) {
        this.forwardCancel(pid, key);
        record.reason = 'cancel request passed to the other workers';
        return;
      }
      // PostgreSQL ignores unknown cancel keys silently (and logs); so do we.
      record.reason = 'cancel request for an unknown backend';
      return;
    }
    record.reason = `cancel forwarded for backend pid ${pid}`;
    const target = this.#cancelKeys.get(id)?.upstream ?? this.#state.upstream;
    await sendCancel(target, pid, key).catch((err: Error) => {
      record.upstream_error = err.message;
    });
  }

  /** A cancel another worker received: forwarded if this worker owns the session, ignored otherwise. */
  async cancelFromPeer(pid: number, key: Buffer): Promise<void> {
    if (!this.#cancelKeys.has(`${pid}:${key.toString('hex')}`)) return;
    const record: ConnectionRecord = {
      id: this.nextConnectionId(),
      client: '(another worker)',
      client_port: 0,
      negotiation: 'plaintext',
      outcome: 'cancel',
    };
    await this.cancel(pid, key, record);
    record.reason = `cancel from another worker forwarded for backend pid ${pid}`;
    this.emitConnection(record);
  }

  registerCancelKey(pid: number, key: Buffer, upstream?: UpstreamTarget): () => void {
    const id = `${pid}:${key.toString('hex')}`;
    const e = this.#cancelKeys.get(id);
    this.#cancelKeys.set(id, { n: (e?.n ?? 0) + 1, upstream });
    return () => {
      const cur = this.#cancelKeys.get(id);
      if (!cur || cur.n <= 1) this.#cancelKeys.delete(id);
      else this.#cancelKeys.set(id, { ...cur, n: cur.n - 1 });
    };
  }

  trackSession(client: Duplex, backend?: Duplex): () => void {
    const s = { client, backend };
    this.#sessions.add(s);
    return () => {
      this.#sessions.delete(s);
      if (this.#shuttingDown && this.#sessions.size === 0) this.emit('drained');
    };
  }

  emitConnection(record: ConnectionRecord): void {
    this.emit('connection', record);
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Stop accepting, let established sessions finish for up to `timeoutMs`, then close what is left.
   * New logins during the wait are refused with 57P03 ("the database system is shutting down").
   */
  async close(timeoutMs = this.#state.config.shutdown_timeout): Promise<void> {
    this.#shuttingDown = true;
    this.#stopFdWatch();
    this.#fileWatch?.close();
    await this.operator.close().catch(() => undefined);
    this.pools?.close();
    // net.Server#close stops accepting now but calls back only once every connection has ended: do not wait here.
    const listenersClosed = Promise.all(this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    if (this.#sessions.size > 0 && timeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.once('drained', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    for (const s of this.#sessions) {
      s.client.destroy();
      s.backend?.destroy();
    }
    for (const sock of this.#sockets) sock.destroy();
    await listenersClosed;
    // Destroyed sessions unregister on their 'close' events, a tick later. Bounded: a session that missed its
    // destroy must not keep the gateway running after SIGINT (it is reported instead).
    const left = this.#sessions.size;
    if (left > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.emit('warning', {
            msg: 'sessions still open after shutdown closed them',
            sessions: this.#sessions.size,
          });
          resolve();
        }, SESSION_END_GRACE_MS);
        this.once('drained', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
