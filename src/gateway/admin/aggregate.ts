/**
 * Merging what the workers of `workers = N` answered into the whole gateway's view (pure: no IPC here).
 * - counters (SHOW STATS, the status page) are summed; the start time is the oldest worker's;
 * - per-session rows keep their worker (a `worker` column, added by the console);
 * - Prometheus series get a `worker="N"` label, so every process's series stays exact (process_* memory, CPU) and
 *   `sum without (worker) (...)` gives the gateway's totals; prom-client's AggregatorRegistry.aggregate() merges them.
 */
import { AggregatorRegistry, Gauge, type MetricObjectWithValues, type MetricValue, Registry } from 'prom-client';
import type { WouldRefuseEntry } from '../report-policy.js';
import type { SerializedStats, SerializedWouldRefuse } from '../worker-ipc.js';
import type { StatsSnapshot } from './runtime-view.js';

export function serializeStats(s: StatsSnapshot): SerializedStats {
  return { ...s, started_at: s.started_at.toISOString() };
}

const sumMaps = (maps: readonly Readonly<Record<string, number>>[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const m of maps) for (const [k, v] of Object.entries(m)) out[k] = (out[k] ?? 0) + v;
  return out;
};

/** The workers' counters summed; started_at the earliest (the gateway is up as long as its oldest worker). */
export function sumStats(list: readonly SerializedStats[], now = new Date()): StatsSnapshot {
  const sum = (f: (s: SerializedStats) => number) => list.reduce((a, s) => a + f(s), 0);
  const starts = list.map((s) => Date.parse(s.started_at)).filter((t) => Number.isFinite(t));
  return {
    started_at: new Date(starts.length > 0 ? Math.min(...starts) : now.getTime()),
    connections_total: sum((s) => s.connections_total),
    relayed_total: sum((s) => s.relayed_total),
    refused_total: sum((s) => s.refused_total),
    active_sessions: sum((s) => s.active_sessions),
    bytes_from_clients: sum((s) => s.bytes_from_clients),
    bytes_from_backends: sum((s) => s.bytes_from_backends),
    reloads_ok: sum((s) => s.reloads_ok),
    reloads_failed: sum((s) => s.reloads_failed),
    would_refuse_total: sum((s) => s.would_refuse_total),
    by_tls_version: sumMaps(list.map((s) => s.by_tls_version)),
    by_negotiation: sumMaps(list.map((s) => s.by_negotiation)),
    by_outcome: sumMaps(list.map((s) => s.by_outcome)),
    refusals_by_reason: sumMaps(list.map((s) => s.refusals_by_reason)),
  };
}

export function serializeWouldRefuse(list: readonly WouldRefuseEntry[]): SerializedWouldRefuse[] {
  return list.map((e) => ({ ...e, at: e.at.toISOString() }));
}

/** Every worker's would-be refusals, oldest first (as one worker's list is). */
export function mergeWouldRefuse(lists: readonly (readonly SerializedWouldRefuse[])[]): WouldRefuseEntry[] {
  return lists
    .flat()
    .map((e) => ({ ...e, at: new Date(e.at) }))
    .sort((a, b) => a.at.getTime() - b.at.getTime());
}

/** One worker's metrics (getMetricsAsJSON()) with `worker="N"` on every series. */
export function labelWorker(
  metrics: readonly MetricObjectWithValues<MetricValue<string>>[],
  worker: number,
): MetricObjectWithValues<MetricValue<string>>[] {
  return metrics.map((m) => ({
    ...m,
    values: m.values.map((v) => ({ ...v, labels: { ...v.labels, worker: String(worker) } })),
    // Series of different workers never collide, so there is nothing to combine: 'first' passes each through. (prom-
    // client marks process_start_time_seconds 'omit', which would drop it; per worker it is exact and kept.)
    aggregator: 'first' as const,
  }));
}

export interface WorkerCounts {
  readonly configured: number;
  readonly answered: number;
  readonly missing: number;
  readonly restarts: number;
}

/**
 * The gateway's exposition: each worker's series (already labelled by labelWorker) merged, plus the workers'
 * own gauges. Series from different workers never collide (the worker label differs), so the merge only
 * concatenates them under one HELP/TYPE per family.
 */
export async function mergeMetrics(
  perWorker: readonly (readonly MetricObjectWithValues<MetricValue<string>>[])[],
  counts: WorkerCounts,
): Promise<{ text: string; contentType: string }> {
  const merged = AggregatorRegistry.aggregate(perWorker as MetricObjectWithValues<MetricValue<string>>[][]);
  const own = new Registry();
  const workers = new Gauge({
    name: 'pgtls_workers',
    help: 'Worker processes of the gateway (workers = N), by state: up (answered this scrape within 1 s) or missing.',
    labelNames: ['state'],
    registers: [own],
  });
  workers.set({ state: 'up' }, counts.answered);
  workers.set({ state: 'missing' }, counts.missing);
  new Gauge({
    name: 'pgtls_worker_restarts',
    help: 'Worker processes replaced after exiting since the gateway started (a counter kept by the primary).',
    registers: [own],
  }).set(counts.restarts);
  const a = await merged.metrics();
  const text = a === '' || a.endsWith('\n') ? a + (await own.metrics()) : `${a}\n${await own.metrics()}`;
  return { text, contentType: merged.contentType };
}
