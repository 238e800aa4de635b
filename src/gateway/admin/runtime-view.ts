/**
 * Everything the operator modules (admin console, metrics listener, status page) need from the running gateway, in one
 * narrow interface. The Gateway implements it; tests implement it over real data (certificates, an hba file parsed by
 * src/hba/hba.ts). Nothing here is a secret: no keys, no passwords, no message contents.
 */
import type { GatewayConfig } from '../../config/load.js';
import type { HbaLine } from '../../hba/hba.js';
import type { WouldRefuseEntry } from '../report-policy.js';
import type { ConnectionRecord } from '../runtime.js';
import type { TlsFacts } from '../transport.js';
import type { Gathered, WorkerQuery, WorkerValue } from '../worker-ipc.js';

/** Where a client connection is in its life (the connection phases of ../shared/design.md). */
export type ClientState = 'negotiating' | 'startup' | 'authenticating' | 'active' | 'closing';

/** One live client connection: the connection's log record so far, plus what only a live connection has. */
export interface LiveClient extends ConnectionRecord {
  /** Gateway-wide connection number, from 1, never reused while the process lives (KILL CLIENT takes it). */
  readonly id: number;
  readonly connect_time: Date;
  readonly state: ClientState;
  /** The backend's pid from BackendKeyData, once the session is relayed. */
  readonly backend_pid?: number;
  /** The full TLS facts (group, ALPN, bits, the peer certificate's DER) when the session is TLS. */
  readonly tls?: TlsFacts;
}

/** A file the gateway serves or trusts, for SHOW CERTS, the not-after gauges and the status page. */
export interface ServedFile {
  readonly path: string;
  /** server: ssl_cert_file (and per-host certificates); ca: ssl_ca_file / upstream_sslrootcert; crl: ssl_crl_file and the files of ssl_crl_dir. */
  readonly kind: 'server' | 'ca' | 'crl';
}

/** The settings an operator may change at runtime with SET (Azure's "Enforce SSL connection" / "Minimum TLS version"). */
export const RUNTIME_SETTINGS = ['require_secure_transport', 'ssl_min_protocol_version'] as const;
export type RuntimeSetting = (typeof RUNTIME_SETTINGS)[number];

/** A value set at runtime; it holds until the next reload or restart. */
export interface RuntimeOverride {
  readonly value: string;
  readonly since: Date;
}

/** The outcome of a reload, with the error's message (never a secret) when it failed. */
export type ReloadResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

/** Gateway-wide counters (SHOW STATS); the Metrics class of ../metrics.ts produces them. */
export interface StatsSnapshot {
  readonly started_at: Date;
  readonly connections_total: number;
  readonly relayed_total: number;
  readonly refused_total: number;
  readonly active_sessions: number;
  readonly bytes_from_clients: number;
  readonly bytes_from_backends: number;
  readonly reloads_ok: number;
  readonly reloads_failed: number;
  readonly would_refuse_total: number;
  /** Counts by label value (TLS version, negotiation, outcome, refusal reason), for SHOW STATS and the status page. */
  readonly by_tls_version: Readonly<Record<string, number>>;
  readonly by_negotiation: Readonly<Record<string, number>>;
  readonly by_outcome: Readonly<Record<string, number>>;
  readonly refusals_by_reason: Readonly<Record<string, number>>;
}

/** One pool for SHOW POOLS. */
export interface PoolRow {
  readonly database: string;
  readonly user: string;
  readonly idle: number;
  readonly active: number;
  readonly opening: number;
  readonly waiting: number;
  /** Logged-in clients, waiting or not. */
  readonly clients: number;
  /** The oldest waiting client's wait so far, in ms (0: none waits). */
  readonly maxWaitMs: number;
}

/** One pooled server for SHOW SERVERS. */
export interface ServerRow {
  readonly id: number;
  readonly user: string;
  readonly database: string;
  readonly state: string;
  readonly addr: string;
  readonly port: number | undefined;
  readonly connectTime: Date;
  readonly requestTime: Date;
  readonly remotePid: number | undefined;
  readonly tls: string;
  readonly preparedStatements: number;
}

/** pool_mode, its pools and their servers. */
export interface PoolsView {
  readonly mode: string;
  readonly rows: readonly PoolRow[];
  readonly servers: readonly ServerRow[];
}

/** With `workers = N`: the worker this view runs in, and a bounded way to reach every worker (../worker-ipc.ts). */
export interface ClusterView {
  readonly worker: number;
  readonly count: number;
  ask<T extends WorkerValue>(q: WorkerQuery, only?: number): Promise<Gathered<T>>;
  reloadAll(): Promise<ReloadResult>;
}

export interface OperatorView {
  /** The package version ("0.1.0"). */
  readonly version: string;
  /** Set in a worker of `workers = N`: the console and the metrics listener then show and act on every worker. */
  readonly cluster?: ClusterView | undefined;
  /** pool_mode and its pools (undefined without pooling). */
  pools?(): PoolsView | undefined;
  /** Live client connections, in id order. */
  clients(): Iterable<LiveClient>;
  /** The configuration in force (the one loaded at start or by the last reload, without runtime overrides). */
  config(): GatewayConfig;
  /** Values set with SET since the last reload. */
  overrides(): ReadonlyMap<RuntimeSetting, RuntimeOverride>;
  /** The hba lines in force (for the built-in default when hba_file is empty). */
  hba(): readonly HbaLine[];
  /** Every certificate / CA / CRL file the gateway serves or trusts. */
  servedFiles(): readonly ServedFile[];
  /** Re-read the configuration, hba and TLS files, as SIGHUP does; clears runtime overrides. */
  reload(): Promise<ReloadResult>;
  /** Apply a validated runtime value to new connections (the value is the schema's canonical spelling). */
  setRuntime(key: RuntimeSetting, value: string): void;
  /** Close client connection `id` (and its backend); false when there is no such client. */
  kill(id: number): boolean;
  stats(): StatsSnapshot;
  /** Recent connections the report-only policy would have refused, oldest first. */
  wouldRefuse(): readonly WouldRefuseEntry[];
}

/** Who may do what on the console: stats_users may only look, admin_users may also act. */
export type ConsoleRole = 'admin' | 'stats';
