/**
 * A worker's answers to the primary's queries (./worker-ipc.ts): rows of its SHOW tables, its counters, its
 * metrics, and the actions it carries out for a console session running in another worker.
 */
import { labelWorker, serializeStats, serializeWouldRefuse } from './admin/aggregate.js';
import { RUNTIME_SETTINGS, type RuntimeSetting } from './admin/runtime-view.js';
import { TABLES } from './admin/tables.js';
import type { Operator } from './operator.js';
import type { WorkerQuery, WorkerValue } from './worker-ipc.js';

export async function answerQuery(
  op: Operator,
  worker: number,
  q: WorkerQuery,
  now = new Date(),
): Promise<WorkerValue> {
  switch (q.k) {
    case 'rows': {
      const table = TABLES[q.table];
      return table ? table.rows(op, now) : [];
    }
    case 'stats':
      return serializeStats(op.stats());
    case 'would_refuse':
      return serializeWouldRefuse(op.wouldRefuse());
    case 'metrics':
      // The not-after gauges are refreshed in every worker, as a single gateway does on each scrape.
      op.metrics.certificates(op.servedFiles());
      return labelWorker(await op.metrics.registry.getMetricsAsJSON(), worker);
    case 'info':
      return { pid: process.pid, clients: op.registry.size, active_sessions: op.stats().active_sessions };
    case 'kill':
      return op.kill(q.id);
    case 'set':
      // The console validated the value; a key outside the runtime list never comes from it.
      if (!(RUNTIME_SETTINGS as readonly string[]).includes(q.key)) return false;
      op.setRuntime(q.key as RuntimeSetting, q.value);
      return true;
  }
}
