import { lookup } from 'node:dns/promises';
/**
 * The gateway: listeners, the state in force (config, hba, ident, TLS, upstream), reload and shutdown.
 * Reload builds a complete new state first and swaps it only when every part loaded; on any error the old state
 * stays in force. Established sessions are never touched by a reload: each connection read the state it needed.
 */
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import { type ConfigInput, type GatewayConfig, loadConfig } from '../config/load.js';
import { PgtlsError } from '../errors.js';
import { type HbaLine, readHbaFile } from '../hba/hba.js';
import { parseHba } from '../hba/hba.js';
import { type IdentLine, readIdentFile } from '../hba/ident.js';
import { type TrustedRange, parseTrustedList } from '../hba/proxy-trusted.js';
import { hbaError, tokenizeAuthText } from '../hba/tokenize.js';
import { type TlsMaterial, TlsStore, loadTlsMaterial } from '../tls/context.js';
import { assertHandshakePossible } from '../tls/self-check.js';
import { type SniSelector, loadSniSelector } from '../tls/sni.js';
import { handleConnection } from './connection.js';
import { watchFileDescriptors } from './fd-watch.js';
import { type FileWatch, watchFiles } from './file-watch.js';
import { ensureLocalCa } from './local-ca.js';
import type { ConnectionRecord, GatewayRuntime } from './runtime.js';
import { type UpstreamTarget, parseUpstreamUrl, sendCancel } from './upstream.js';

export const ERR_LISTEN = 'PGTLS_ERR_LISTEN';

interface State {
  readonly config: GatewayConfig;
  readonly hba: readonly HbaLine[];
  readonly ident: readonly IdentLine[];
  readonly material: TlsMaterial | undefined;
  /** ssl_sni = on with pg_hosts.conf entries; undefined otherwise (material serves everyone). */
  readonly sni: SniSelector | undefined;
  readonly proxyTrusted: readonly TrustedRange[];
  readonly upstream: UpstreamTarget;
}

/** hosts_file, or PostgreSQL 19's default name, pg_hosts.conf, beside the config file (else in data_directory). */
function hostsFile(config: GatewayConfig): string {
  if (config.hosts_file !== '') return config.hosts_file;
  return join(config.config_file ? dirname(config.config_file) : resolve(config.data_directory), 'pg_hosts.conf');
}

/** Settings that need a restart, as PostgreSQL's PGC_POSTMASTER parameters do. */
const RESTART_ONLY = ['listen_addresses', 'port', 'unix_socket_directories', 'data_directory', 'ssl'] as const;

export interface GatewayOptions {
  /** The upstream to use when the config has none (the embedded cluster). */
  readonly defaultUpstream?: { host: string; port: number };
}

/** Built-in rules when no hba_file is given: TLS for everyone (or anything, when TLS is not required). */
function builtinHba(config: GatewayConfig): HbaLine[] {
  // `local` matches only the optional Unix socket; `trust` at the gateway means the backend authenticates.
  const text = `local all all trust\n${config.require_secure_transport ? 'hostssl' : 'host'} all all all trust\n`;
  return parseHba(tokenizeAuthText(text, '(built-in pg_hba.conf)'));
}

async function buildState(input: ConfigInput, opts: GatewayOptions, previous?: State): Promise<State> {
  let config = loadConfig(input);
  if (config.ssl && (config.ssl_cert_file === '' || config.ssl_key_file === '')) {
    if (config.ssl_cert_file !== config.ssl_key_file && (config.ssl_cert_file === '' || config.ssl_key_file === '')) {
      throw new PgtlsError('PGTLS_ERR_CONFIG_CONFLICT', 'ssl_cert_file and ssl_key_file must be set together', {
        details: { hint: 'Set both, or neither to use the generated local CA under data_directory.' },
      });
    }
    const local = await ensureLocalCa(config.data_directory);
    config = Object.freeze({ ...config, ssl_cert_file: local.serverCert, ssl_key_file: local.serverKey });
  }
  const material = config.ssl
    ? loadTlsMaterial(config, {
        isReload: previous !== undefined,
        ...(previous?.material ? { previous: previous.material } : {}),
      })
    : undefined;
  if (material) await assertHandshakePossible(material);
  let sni: SniSelector | undefined;
  if (config.ssl && config.ssl_sni) {
    const selector = loadSniSelector(
      { ...config, hosts_file: hostsFile(config) },
      { isReload: previous !== undefined, ...(previous?.sni ? { previous: previous.sni } : {}) },
    );
    // A missing or empty pg_hosts.conf: the ssl_* files serve everyone, as in PostgreSQL 19.
    if (selector.source === 'ok') sni = selector;
  }
  const trusted = parseTrustedList(config.proxy_protocol_trusted);
  const proxyTrusted = trusted.ok ? trusted.ranges : [];
  const hba = config.hba_file ? readHbaFile(config.hba_file) : builtinHba(config);
  for (const line of hba) {
    if (line.method === 'peer' || (line.method === 'ident' && line.type === 'local')) {
      // PostgreSQL asks the kernel who the socket's peer is; the backend would see the gateway, not the client.
      throw hbaError(
        "peer authentication needs the client's operating-system user, which the gateway cannot pass on to the backend",
        line.file,
        line.line,
        'Use trust (the backend then authenticates), a password method or cert on this line.',
      );
    }
    if (line.clientcert !== 'off' && !material?.requestCert) {
      throw hbaError(
        'client certificates can only be checked if a root certificate store is available',
        line.file,
        line.line,
        'Make sure the configuration parameter "ssl_ca_file" is set.',
      );
    }
  }
  const ident = config.ident_file ? readIdentFile(config.ident_file) : [];
  const up = config.upstream ? parseUpstreamUrl(config.upstream) : opts.defaultUpstream;
  if (!up) {
    throw new PgtlsError('PGTLS_ERR_CONFIG_VALUE', 'no upstream configured', {
      details: { hint: "Set upstream = 'postgres://host:port', or run without one to start the embedded PostgreSQL." },
    });
  }
  const upstream: UpstreamTarget = {
    ...up,
    sslmode: config.upstream ? config.upstream_sslmode : 'disable',
    sslrootcert: config.upstream_sslrootcert,
    sslcert: config.upstream_sslcert,
    sslkey: config.upstream_sslkey,
  };
  return { config, hba, ident, material, sni, proxyTrusted, upstream };
}

/** What a configuration check found: the facts an operator wants to see before starting (or after a reload). */
export interface CheckReport {
  readonly config: GatewayConfig;
  readonly hbaLines: number;
  readonly identLines: number;
  readonly certificate?: { subject: string; issuer: string; validTo: string; daysLeft: number; chainLength: number };
  readonly upstream: string;
  readonly warnings: readonly string[];
}

/** Certificates expiring within this many days are reported at start and at every reload. */
const EXPIRY_WARNING_DAYS = 30;

function report(state: State): CheckReport {
  const warnings: string[] = [];
  let certificate: CheckReport['certificate'];
  if (state.material) {
    const leaf = state.material.leaf;
    const daysLeft = Math.floor((Date.parse(leaf.validTo) - Date.now()) / 86_400_000);
    certificate = {
      subject: leaf.subject.replace(/\n/g, ', '),
      issuer: leaf.issuer.replace(/\n/g, ', '),
      validTo: new Date(leaf.validTo).toISOString(),
      daysLeft,
      chainLength: state.material.chainLength,
    };
    if (daysLeft < 0) warnings.push(`the server certificate in ${state.config.ssl_cert_file} has expired`);
    else if (daysLeft <= EXPIRY_WARNING_DAYS) {
      warnings.push(`the server certificate in ${state.config.ssl_cert_file} expires in ${daysLeft} days`);
    }
  }
  if (!state.config.ssl) {
    warnings.push('ssl = off: every session is plaintext (development only)');
    // PostgreSQL logs the same warning for each such line when it loads pg_hba.conf.
    for (const l of state.hba.filter((h) => h.type === 'hostssl')) {
      warnings.push(
        `hostssl record cannot match because SSL is disabled (line ${l.line} of configuration file "${l.file}")`,
      );
    }
  } else if (!state.config.require_secure_transport)
    warnings.push('require_secure_transport = off: plaintext sessions are allowed');
  const u = state.upstream;
  return {
    config: state.config,
    hbaLines: state.hba.length,
    identLines: state.ident.length,
    ...(certificate ? { certificate } : {}),
    upstream: `${u.host}:${u.port} (upstream_sslmode=${u.sslmode})`,
    warnings,
  };
}

/**
 * Load and check everything a start would (config, hba, ident, certificate, key, CA, CRL) without listening:
 * `pgtls serve --check`. Throws the same errors a start would.
 */
export async function checkConfiguration(input: ConfigInput, opts: GatewayOptions = {}): Promise<CheckReport> {
  return report(await buildState(input, { defaultUpstream: { host: '(embedded)', port: 0 }, ...opts }));
}

export class Gateway extends EventEmitter implements GatewayRuntime {
  #state: State;
  #tls: TlsStore;
  #servers: Server[] = [];
  #unixSockets: string[] = [];
  #sockets = new Set<Socket>();
  #sessions = new Set<{ client: Duplex; backend: Duplex }>();
  #cancelKeys = new Map<string, number>();
  #shuttingDown = false;
  #nextId = 1;
  #stopFdWatch: () => void = () => undefined;
  #fileWatch: FileWatch | undefined;
  #acceptErrors = { count: 0, last: 0 };
  readonly #input: ConfigInput;
  readonly #opts: GatewayOptions;

  private constructor(state: State, input: ConfigInput, opts: GatewayOptions) {
    super();
    this.#state = state;
    this.#input = input;
    this.#opts = opts;
    // With ssl = off there is no material; a store is still needed by the type, never used for handshakes.
    this.#tls = new TlsStore(state.material as TlsMaterial);
  }

  /** Load and check everything, then listen. Throws PgtlsError (naming the file/line/key) on any problem. */
  static async start(input: ConfigInput, opts: GatewayOptions = {}): Promise<Gateway> {
    const state = await buildState(input, opts);
    const gw = new Gateway(state, input, opts);
    await gw.#listen();
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
  get proxyTrusted(): readonly TrustedRange[] {
    return this.#state.proxyTrusted;
  }
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }
  get clientCount(): number {
    return this.#sockets.size;
  }
  nextConnectionId(): number {
    return this.#nextId++;
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
    return report(this.#state);
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

  #accept(sock: Socket): void {
    this.#sockets.add(sock);
    sock.once('close', () => this.#sockets.delete(sock));
    handleConnection(sock, this).catch((err: unknown) => {
      this.emit('warning', { msg: 'connection handler failed', error: (err as Error).message });
      sock.destroy();
    });
  }

  /** Re-read config, hba, ident, certificate, key, CA and CRL. On error the old state stays in force. */
  async reload(
    why: { trigger: 'signal' | 'file change' | 'admin'; files?: string[] } = { trigger: 'signal' },
  ): Promise<{ ok: true; warnings: string[] } | { ok: false; error: PgtlsError | Error }> {
    try {
      const next = await buildState(this.#input, this.#opts, this.#state);
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
      this.emit('reload', { ok: true, warnings, ...why });
      return { ok: true, warnings };
    } catch (error) {
      this.emit('reload', { ok: false, error, ...why });
      return { ok: false, error: error as Error };
    }
  }

  async cancel(pid: number, key: Buffer, record: ConnectionRecord): Promise<void> {
    const id = `${pid}:${key.toString('hex')}`;
    if (!this.#cancelKeys.has(id)) {
      // PostgreSQL ignores unknown cancel keys silently (and logs); so do we.
      record.reason = 'cancel request for an unknown backend';
      return;
    }
    record.reason = `cancel forwarded for backend pid ${pid}`;
    await sendCancel(this.#state.upstream, pid, key).catch((err: Error) => {
      record.upstream_error = err.message;
    });
  }

  registerCancelKey(pid: number, key: Buffer): () => void {
    const id = `${pid}:${key.toString('hex')}`;
    this.#cancelKeys.set(id, (this.#cancelKeys.get(id) ?? 0) + 1);
    return () => {
      const n = (this.#cancelKeys.get(id) ?? 1) - 1;
      if (n <= 0) this.#cancelKeys.delete(id);
      else this.#cancelKeys.set(id, n);
    };
  }

  trackSession(client: Duplex, backend: Duplex): () => void {
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
      s.backend.destroy();
    }
    for (const sock of this.#sockets) sock.destroy();
    await listenersClosed;
    // Destroyed sessions unregister on their 'close' events, a tick later.
    if (this.#sessions.size > 0) await new Promise<void>((resolve) => this.once('drained', resolve));
  }
}

/** listen_addresses as PostgreSQL reads it: comma-separated host names/IPs, '*' for all, 'localhost' resolved. */
async function listenHosts(value: string): Promise<string[]> {
  const out: string[] = [];
  for (const item of value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (item === '*') out.push('0.0.0.0', '::');
    else if (item === 'localhost') {
      const addrs = await lookup('localhost', { all: true }).catch(() => [{ address: '127.0.0.1' }]);
      out.push(...new Set(addrs.map((a) => a.address)));
    } else out.push(item);
  }
  return [...new Set(out)];
}
