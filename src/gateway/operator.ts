/**
 * The gateway's operator side (issue 9), in one place: the live-client registry, metrics, the report-only policy,
 * runtime SETs from the admin console, the metrics listener with its status page, and the pgtls.pg_stat_ssl writer.
 * It implements the console's OperatorView over the Gateway, and gives the connection phases one small API.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import type { GatewayConfig } from '../config/load.js';
import { PgtlsError } from '../errors.js';
import type { HbaLine } from '../hba/hba.js';
import { type TlsMaterial, loadTlsMaterial } from '../tls/context.js';
import { mergeMetrics, mergeWouldRefuse, sumStats } from './admin/aggregate.js';
import { servedFilesOf } from './admin/cert-files.js';
import { readServedFiles } from './admin/cert-files.js';
import { ClientRegistry, type LiveHandle } from './admin/client-registry.js';
import { OperatorHooks } from './admin/operator-hooks.js';
import { withOverrides } from './admin/overrides.js';
import type {
  ClusterView,
  LiveClient,
  OperatorView,
  PoolsView,
  ReloadResult,
  RuntimeOverride,
  RuntimeSetting,
  ServedFile,
  StatsSnapshot,
} from './admin/runtime-view.js';
import type { BackendCredentials } from './backend-login.js';
import { BackendQuery } from './backend-query.js';
import { type MetricsListener, readMetricsAuthFile, startMetricsListener } from './http/listener.js';
import { renderStatusPage } from './http/status-page.js';
import { GatewayMetrics } from './metrics.js';
import { type ReportPolicy, type WouldRefuseEntry, WouldRefuseRecorder, compileReportPolicy } from './report-policy.js';
import type { ConnectionRecord } from './runtime.js';
import { SslViewWriter } from './ssl-view.js';
import type { SerializedStats, SerializedWouldRefuse } from './worker-ipc.js';

/** What the operator side needs from the gateway. */
export interface OperatorHost {
  readonly config: GatewayConfig;
  readonly hba: readonly HbaLine[];
  currentMaterial(): TlsMaterial | undefined;
  swapMaterial(m: TlsMaterial): void;
  reload(why: { trigger: 'admin' }): Promise<{ ok: true } | { ok: false; error: Error }>;
  /** Connections to the backend for the gateway's own bookkeeping, with their credentials (auth_user). */
  backendFor(): { connect: () => Promise<Duplex>; creds: BackendCredentials } | undefined;
  /** The pools, when pool_mode is session or transaction. */
  pools(): PoolsView | undefined;
  log(level: 'info' | 'warn', w: Record<string, unknown>): void;
}

const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;

export class Operator implements OperatorView {
  readonly version = VERSION;
  readonly metrics = new GatewayMetrics();
  readonly registry = new ClientRegistry();
  readonly #overrides = new Map<RuntimeSetting, RuntimeOverride>();
  readonly #recorder: WouldRefuseRecorder;
  #policy: ReportPolicy;
  readonly hooks: OperatorHooks;
  #listener: MetricsListener | undefined;
  #sslView: SslViewWriter | undefined;
  #viewQuery: BackendQuery | undefined;
  /** Set in a worker of `workers = N` (workers.ts): the console and the metrics listener then cover every worker. */
  cluster: ClusterView | undefined;

  constructor(private readonly host: OperatorHost) {
    const c = host.config;
    this.#recorder = new WouldRefuseRecorder(c.report_list_size);
    this.#policy = compileReportPolicy(c);
    this.hooks = new OperatorHooks({
      metrics: this.metrics,
      recorder: this.#recorder,
      policy: () => this.#policy,
      ...(this.#viewWanted() ? { sslView: this.#viewWriter() } : {}),
    });
    this.metrics.certificates(this.servedFiles());
  }

  #viewWanted(): boolean {
    const v = this.host.config.client_tls_facts_to_backend;
    return v === 'view' || v === 'both';
  }

  #viewWriter(): SslViewWriter {
    const b = this.host.backendFor();
    if (!b) {
      throw new PgtlsError(
        'PGTLS_ERR_CONFIG_CONFLICT',
        `client_tls_facts_to_backend = ${this.host.config.client_tls_facts_to_backend} needs auth_user: the role that writes pgtls.pg_stat_ssl`,
        {
          details: { hint: 'Set auth_user (its password in auth_file), or use client_tls_facts_to_backend = startup.' },
        },
      );
    }
    this.#viewQuery = new BackendQuery(b.connect, b.creds, this.host.config.auth_dbname || 'postgres', 'pgtls view');
    const q = this.#viewQuery;
    this.#sslView = new SslViewWriter((sql, params) => q.query(sql, params ?? []), {
      onError: (err) => this.host.log('warn', { msg: `pgtls.pg_stat_ssl: ${err.message}` }),
    });
    return this.#sslView;
  }

  /** Start what listens or writes (metrics listener, the view's schema). Throws on a configuration that cannot work. */
  async start(): Promise<void> {
    const c = this.host.config;
    if (this.#sslView) await this.#sslView.install();
    if (c.metrics_port > 0) {
      this.#listener = await startMetricsListener({
        listenAddresses: c.metrics_listen_addresses,
        port: c.metrics_port,
        ...(c.metrics_ssl_cert_file
          ? {
              tls: {
                cert: readFileSync(c.metrics_ssl_cert_file),
                key: readFileSync(c.metrics_ssl_key_file),
              },
            }
          : {}),
        ...(c.metrics_auth_file ? { users: readMetricsAuthFile(c.metrics_auth_file) } : {}),
        metrics: this.metrics,
        view: this,
        exposition: () => this.exposition(),
        statusPage: () => this.statusPage(),
      });
    }
  }

  /** /metrics: this process's registry, or with workers every worker's series labelled worker="N". */
  async exposition(): Promise<{ text: string; contentType: string }> {
    this.metrics.certificates(this.servedFiles());
    if (!this.cluster) return { text: await this.metrics.exposition(), contentType: this.metrics.contentType };
    const g = await this.cluster.ask<unknown[]>({ k: 'metrics' });
    return mergeMetrics(
      g.answers.map((a) => a.value as Parameters<typeof mergeMetrics>[0][number]),
      {
        configured: this.cluster.count,
        answered: g.answers.length,
        missing: g.missing.length,
        restarts: g.slots.reduce((n, s) => n + s.restarts, 0),
      },
    );
  }

  /** The status page at `/`: counters summed over the workers, would-be refusals merged. */
  async statusPage(): Promise<string> {
    const certs = readServedFiles(this.servedFiles());
    if (!this.cluster) return renderStatusPage(this, certs);
    const [stats, would] = await Promise.all([
      this.cluster.ask<SerializedStats>({ k: 'stats' }),
      this.cluster.ask<SerializedWouldRefuse[]>({ k: 'would_refuse' }),
    ]);
    const summed = sumStats(stats.answers.map((a) => a.value));
    const merged = mergeWouldRefuse(would.answers.map((a) => a.value));
    return renderStatusPage(
      { version: this.version, stats: () => summed, wouldRefuse: () => merged },
      certs,
      new Date(),
      {
        up: stats.answers.length,
        missing: stats.missing,
      },
    );
  }

  get metricsPort(): number | undefined {
    return this.#listener?.port;
  }

  async close(): Promise<void> {
    await this.#listener?.close();
    await this.#sslView?.close();
    this.#viewQuery?.close();
  }

  /** The configuration a new connection uses: the one in force with the console's runtime SETs applied. */
  connectionConfig(): GatewayConfig {
    return withOverrides(this.host.config, this.#overrides);
  }

  /** A new connection: registered for SHOW CLIENTS / KILL_CLIENT. */
  register(record: ConnectionRecord, close: () => void): LiveHandle {
    return this.registry.register(record, close);
  }

  /** After a successful reload: runtime SETs are dropped, the report policy recompiled, certificate gauges redone. */
  reloaded(ok: boolean): void {
    this.hooks.reload(ok);
    if (!ok) return;
    this.#overrides.clear();
    const c = this.host.config;
    this.#policy = compileReportPolicy(c);
    this.metrics.certificates(this.servedFiles());
  }

  // OperatorView
  pools(): PoolsView | undefined {
    return this.host.pools();
  }
  clients(): Iterable<LiveClient> {
    return this.registry.clients();
  }
  config(): GatewayConfig {
    return this.host.config;
  }
  overrides(): ReadonlyMap<RuntimeSetting, RuntimeOverride> {
    return this.#overrides;
  }
  hba(): readonly HbaLine[] {
    return this.host.hba;
  }
  servedFiles(): readonly ServedFile[] {
    const m = this.host.currentMaterial();
    if (!m) return [];
    return servedFilesOf({ ...m.settings, upstream_sslrootcert: this.host.config.upstream_sslrootcert });
  }
  async reload(): Promise<ReloadResult> {
    const r = await this.host.reload({ trigger: 'admin' });
    return r.ok ? { ok: true } : { ok: false, error: r.error.message };
  }
  setRuntime(key: RuntimeSetting, value: string): void {
    this.#overrides.set(key, { value, since: new Date() });
    if (key === 'ssl_min_protocol_version') {
      // New handshakes need material with the new minimum; sessions keep theirs. A reload rebuilds from the file.
      const m = this.host.currentMaterial();
      if (m) {
        const settings = { ...m.settings, ssl_min_protocol_version: this.connectionConfig().ssl_min_protocol_version };
        this.host.swapMaterial(loadTlsMaterial(settings, { isReload: true, previous: m }));
      }
    }
    this.host.log('info', { msg: `runtime SET ${key} = '${value}' (until the next reload or restart)` });
  }
  kill(id: number): boolean {
    return this.registry.kill(id);
  }
  stats(): StatsSnapshot {
    return this.metrics.snapshot();
  }
  wouldRefuse(): readonly WouldRefuseEntry[] {
    return this.#recorder.entries();
  }
}
