/**
 * Prometheus metrics of the gateway (prom-client). Names follow the Prometheus conventions (base units, `_total` on
 * counters, `_seconds` for time); every label has a bounded set of values — TLS versions and ciphers come from what
 * the server's OpenSSL can negotiate, refusal reasons from a fixed list, files from the configuration — and no label
 * ever holds an address, a user or anything a client chose freely (SNI and application_name stay out).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { type CertFileEntry, readServedFiles } from './admin/cert-files.js';
import type { ServedFile, StatsSnapshot } from './admin/runtime-view.js';
import type { ReportReason } from './report-policy.js';
import type { ConnectionRecord } from './runtime.js';

/** The refusal reasons a metric may carry: a fixed set, so the label's cardinality is bounded. */
export const REFUSAL_REASONS = [
  'plaintext',
  'version',
  'cipher',
  'hba',
  'client_certificate_missing',
  'client_certificate_revoked',
  'client_certificate_unknown',
  'client_certificate_expired',
  'authentication',
  'timeout',
  'buffer_stuffing',
  'upstream',
  'shutting_down',
  'other',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/**
 * Map the gateway's refusal text (ConnectionRecord.reason — PostgreSQL's and OpenSSL's wording) to a reason label.
 * The order matters: the most specific texts first.
 */
export function refusalReason(r: Pick<ConnectionRecord, 'reason' | 'negotiation' | 'sqlstate'>): RefusalReason {
  const t = (r.reason ?? '').toLowerCase();
  if (t.includes('received unencrypted data after ssl request')) return 'buffer_stuffing';
  if (t.includes('timeout')) return 'timeout';
  if (t.includes('certificate revoked')) return 'client_certificate_revoked';
  if (t.includes('certificate has expired') || t.includes('certificate is not yet valid')) {
    return 'client_certificate_expired';
  }
  if (t.includes('requires a valid client certificate')) return 'client_certificate_missing';
  if (
    t.startsWith('client certificate:') ||
    t.includes('unable to get local issuer') ||
    t.includes('self-signed certificate') ||
    t.includes('self signed certificate') ||
    t.includes('unable to verify') ||
    t.includes('unknown ca') ||
    t.includes('certificate verify failed')
  ) {
    return 'client_certificate_unknown';
  }
  if (
    t.includes('unsupported protocol') ||
    t.includes('protocol version') ||
    t.includes('no protocols available') ||
    t.includes('wrong version number') ||
    t.includes('version too low')
  ) {
    return 'version';
  }
  if (
    t.includes('no shared cipher') ||
    t.includes('no cipher') ||
    t.includes('no suitable') ||
    t.includes('no shared group')
  ) {
    return 'cipher';
  }
  if (t.includes('ssl connection is required')) return 'plaintext';
  if (t.includes('pg_hba.conf')) {
    // A plaintext session with no matching line is what require_secure_transport = on produces.
    return r.negotiation === 'plaintext' && t.includes('no encryption') ? 'plaintext' : 'hba';
  }
  if (t.includes('authentication failed') || r.sqlstate === '28P01' || r.sqlstate === '28000') return 'authentication';
  if (t.startsWith('upstream:')) return 'upstream';
  if (t.includes('shutting down')) return 'shutting_down';
  return 'other';
}

const label = (v: string | undefined) => (v === undefined || v === '' ? 'none' : v);

export interface MetricsOptions {
  /** Node process metrics (process_*, nodejs_*) in the same registry; default true. */
  readonly defaultMetrics?: boolean;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #started = new Date();
  readonly #connections: Counter<'negotiation' | 'tls_version' | 'cipher' | 'outcome'>;
  readonly #refusals: Counter<'reason'>;
  readonly #handshake: Histogram<'outcome'>;
  readonly #active: Gauge;
  readonly #bytes: Counter<'direction'>;
  readonly #reloads: Counter<'result'>;
  readonly #notAfter: Gauge<'file' | 'kind'>;
  readonly #wouldRefuse: Counter<'reason'>;
  // Plain counters kept alongside for SHOW STATS and the status page (reading prom-client back is async).
  readonly #counts = {
    connections: 0,
    relayed: 0,
    refused: 0,
    active: 0,
    bytesFromClients: 0,
    bytesFromBackends: 0,
    reloadsOk: 0,
    reloadsFailed: 0,
    wouldRefuse: 0,
  };
  // What connections added since prom-client was last read. A connection's own updates are a Map lookup and an
  // addition; prom-client (label validation and hashing, its bucket search) runs when the metrics are read — in
  // each metric's collect(), before get() reads it — so the exposition is the same as with an update per call.
  /** pgtls_connections_total: label values joined with NUL → the labels and the count not yet handed over. */
  readonly #pendingConnections = new Map<string, { labels: Record<string, string>; n: number }>();
  /** pgtls_tls_handshake_duration_seconds: the durations not yet observed and their outcomes, in order (≤ 1024). */
  readonly #pendingHandshakes: number[] = [];
  readonly #pendingOutcomes: ('ok' | 'failed')[] = [];
  readonly #pendingBytes = { fromClient: 0, fromBackend: 0 };
  /** pgtls_active_sessions as sessionStarted/sessionEnded moved it (unclamped, as the gauge's inc/dec were). */
  #activeGauge = 0;
  readonly #byVersion = new Map<string, number>();
  readonly #byNegotiation = new Map<string, number>();
  readonly #byOutcome = new Map<string, number>();
  readonly #byReason = new Map<string, number>();

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const pendingConnections = this.#pendingConnections;
    this.#connections = new Counter({
      name: 'pgtls_connections_total',
      help: 'Client connections that ended, by negotiation (sslrequest, direct, plaintext), TLS version, cipher and outcome.',
      labelNames: ['negotiation', 'tls_version', 'cipher', 'outcome'],
      registers,
      collect() {
        for (const p of pendingConnections.values()) if (p.n > 0) this.inc(p.labels, p.n);
        for (const p of pendingConnections.values()) p.n = 0;
      },
    });
    this.#refusals = new Counter({
      name: 'pgtls_refusals_total',
      help: 'Client connections refused, by reason.',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of REFUSAL_REASONS) this.#refusals.inc({ reason }, 0);
    this.#handshake = new Histogram({
      name: 'pgtls_tls_handshake_duration_seconds',
      help: 'Server TLS handshake duration, by outcome (ok, failed).',
      labelNames: ['outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
      collect: () => this.#flushHandshakes(),
    });
    const active = () => this.#activeGauge;
    this.#active = new Gauge({
      name: 'pgtls_active_sessions',
      help: 'Sessions being relayed to a backend now.',
      registers,
      collect() {
        this.set(active());
      },
    });
    const pendingBytes = this.#pendingBytes;
    this.#bytes = new Counter({
      name: 'pgtls_relayed_bytes_total',
      help: 'Bytes relayed, by direction (from_client, from_backend).',
      labelNames: ['direction'],
      registers,
      collect() {
        if (pendingBytes.fromClient > 0) this.inc({ direction: 'from_client' }, pendingBytes.fromClient);
        if (pendingBytes.fromBackend > 0) this.inc({ direction: 'from_backend' }, pendingBytes.fromBackend);
        pendingBytes.fromClient = 0;
        pendingBytes.fromBackend = 0;
      },
    });
    this.#reloads = new Counter({
      name: 'pgtls_reloads_total',
      help: 'Configuration reloads, by result (ok, failed).',
      labelNames: ['result'],
      registers,
    });
    this.#reloads.inc({ result: 'ok' }, 0);
    this.#reloads.inc({ result: 'failed' }, 0);
    this.#notAfter = new Gauge({
      name: 'pgtls_certificate_not_after_seconds',
      help: 'Unix time after which a served certificate, CA or CRL file stops being valid (the earliest in the file; a CRL its nextUpdate).',
      labelNames: ['file', 'kind'],
      registers,
    });
    this.#wouldRefuse = new Counter({
      name: 'pgtls_report_would_refuse_total',
      help: 'Sessions the report-only policy (report_* settings) would have refused, by reason.',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({
      name: 'pgtls_start_time_seconds',
      help: 'Unix time the gateway started.',
      registers,
    }).set(this.#started.getTime() / 1000);
  }

  sessionStarted(): void {
    this.#activeGauge++;
    this.#counts.active++;
  }

  sessionEnded(): void {
    this.#activeGauge--;
    this.#counts.active = Math.max(0, this.#counts.active - 1);
  }

  handshake(durationSeconds: number, outcome: 'ok' | 'failed'): void {
    this.#pendingHandshakes.push(durationSeconds);
    this.#pendingOutcomes.push(outcome);
    if (this.#pendingHandshakes.length >= 1024) this.#flushHandshakes();
  }

  #flushHandshakes(): void {
    const values = this.#pendingHandshakes;
    const outcomes = this.#pendingOutcomes;
    for (let i = 0; i < values.length; i++) this.#handshake.observe({ outcome: outcomes[i]! }, values[i]!);
    values.length = 0;
    outcomes.length = 0;
  }

  /** A connection ended: its final log record. */
  observe(record: ConnectionRecord): void {
    const tls_version = label(record.tls_version);
    const negotiation = record.negotiation;
    const cipher = label(record.cipher);
    const key = `${negotiation}\0${tls_version}\0${cipher}\0${record.outcome}`;
    const pending = this.#pendingConnections.get(key);
    if (pending) pending.n++;
    else
      this.#pendingConnections.set(key, {
        labels: { negotiation, tls_version, cipher, outcome: record.outcome },
        n: 1,
      });
    this.#counts.connections++;
    bump(this.#byVersion, tls_version);
    bump(this.#byNegotiation, negotiation);
    bump(this.#byOutcome, record.outcome);
    if (record.outcome === 'relayed') this.#counts.relayed++;
    if (record.outcome === 'refused') {
      const reason = refusalReason(record);
      this.#refusals.inc({ reason });
      this.#counts.refused++;
      bump(this.#byReason, reason);
    }
    const fromClient = record.bytes_from_client ?? 0;
    const fromBackend = record.bytes_from_backend ?? 0;
    if (fromClient > 0) this.#pendingBytes.fromClient += fromClient;
    if (fromBackend > 0) this.#pendingBytes.fromBackend += fromBackend;
    this.#counts.bytesFromClients += fromClient;
    this.#counts.bytesFromBackends += fromBackend;
  }

  reload(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'ok' : 'failed' });
    if (ok) this.#counts.reloadsOk++;
    else this.#counts.reloadsFailed++;
  }

  wouldRefuse(reasons: readonly ReportReason[]): void {
    if (reasons.length === 0) return;
    this.#counts.wouldRefuse++;
    for (const r of reasons) this.#wouldRefuse.inc({ reason: r.code });
  }

  /**
   * Set the not-after gauges from the served files (call at start and after each reload). Files no longer served
   * disappear from the output. Returns the entries read, for callers that show them too.
   */
  certificates(files: readonly ServedFile[]): CertFileEntry[] {
    const entries = readServedFiles(files);
    this.#notAfter.reset();
    const earliest = new Map<string, { file: string; kind: string; t: number }>();
    for (const e of entries) {
      if (!e.notAfter) continue;
      const key = `${e.kind}\0${e.file}`;
      const t = e.notAfter.getTime() / 1000;
      const prev = earliest.get(key);
      if (!prev || t < prev.t) earliest.set(key, { file: e.file, kind: e.kind, t });
    }
    for (const v of earliest.values()) this.#notAfter.set({ file: v.file, kind: v.kind }, v.t);
    return entries;
  }

  snapshot(): StatsSnapshot {
    const c = this.#counts;
    return {
      started_at: this.#started,
      connections_total: c.connections,
      relayed_total: c.relayed,
      refused_total: c.refused,
      active_sessions: c.active,
      bytes_from_clients: c.bytesFromClients,
      bytes_from_backends: c.bytesFromBackends,
      reloads_ok: c.reloadsOk,
      reloads_failed: c.reloadsFailed,
      would_refuse_total: c.wouldRefuse,
      by_tls_version: Object.fromEntries(this.#byVersion),
      by_negotiation: Object.fromEntries(this.#byNegotiation),
      by_outcome: Object.fromEntries(this.#byOutcome),
      refusals_by_reason: Object.fromEntries(this.#byReason),
    };
  }

  /** The exposition text for /metrics. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function bump(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}
