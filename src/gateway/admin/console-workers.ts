/**
 * The admin console with `workers = N`: the session runs in one worker, the answers cover them all. SHOW tables are
 * gathered from every worker (./tables.ts says per table how: a `worker` column, rows merged, or counters summed);
 * KILL_CLIENT goes to the worker that owns the id (ids are interleaved: worker k of N numbers its connections
 * k, k+N, k+2N, …); SET goes to every worker. A worker that does not answer within 1 s is named in a NOTICE and
 * SHOW WORKERS shows it missing; the console never waits longer.
 */
import {
  type Cell,
  type Column,
  encodeCommandComplete,
  encodeNotice,
  encodeQueryError,
  encodeResultSet,
} from '../../protocol/rows.js';
import { GATHER_TIMEOUT_MS, type SerializedStats, type WorkerSelf } from '../worker-ipc.js';
import { sumStats } from './aggregate.js';
import type { ClusterView } from './runtime-view.js';
import { TABLES, WORKERS_COLUMNS, pgTimestamp, statsRows } from './tables.js';

/** SQLSTATE for "the worker that owns this did not answer" (system_error: the gateway's own process, not the client). */
const WORKER_UNREACHABLE = '58000';

/** The worker that numbered connection `id` (ids interleave across workers, see above). */
export const ownerOf = (id: number, count: number): number => ((id - 1) % count) + 1;

function missingNotice(missing: readonly number[]): Buffer[] {
  if (missing.length === 0) return [];
  const which = missing.length === 1 ? `worker ${missing[0]} did` : `workers ${missing.join(', ')} did`;
  return [
    encodeNotice(
      `${which} not answer within ${GATHER_TIMEOUT_MS / 1000} s`,
      'Their rows are missing from this result; SHOW WORKERS shows each worker process and its state.',
    ),
  ];
}

/** SHOW <name> across the workers; undefined when the table is the same in every worker (answer it locally). */
export async function showAcrossWorkers(name: string, cluster: ClusterView, now: Date): Promise<Buffer | undefined> {
  if (name === 'workers') return showWorkers(cluster);
  const table = TABLES[name];
  const scope = table?.scope ?? 'gateway';
  if (!table || scope === 'gateway') return undefined;
  if (scope === 'sum') {
    const g = await cluster.ask<SerializedStats>({ k: 'stats' });
    const summed = sumStats(
      g.answers.map((a) => a.value),
      now,
    );
    const rows: Cell[][] = [
      ...statsRows(summed, now),
      ['workers_up', String(g.answers.length)],
      ['workers_missing', String(g.missing.length)],
      ['worker_restarts', String(g.slots.reduce((n, s) => n + s.restarts, 0))],
    ];
    return Buffer.concat([...missingNotice(g.missing), encodeResultSet(table.columns, rows, 'SHOW')]);
  }
  const g = await cluster.ask<Cell[][]>({ k: 'rows', table: name });
  let columns: readonly Column[] = table.columns;
  let rows: Cell[][];
  if (scope === 'worker') {
    columns = [...table.columns, { name: 'worker', type: 'int4' }];
    rows = g.answers.flatMap((a) => a.value.map((r) => [...r, String(a.worker)]));
  } else {
    rows = g.answers.flatMap((a) => a.value);
  }
  return Buffer.concat([...missingNotice(g.missing), encodeResultSet(columns, rows, 'SHOW')]);
}

async function showWorkers(cluster: ClusterView): Promise<Buffer> {
  const g = await cluster.ask<WorkerSelf>({ k: 'info' });
  const answered = new Map(g.answers.map((a) => [a.worker, a.value]));
  const slots = g.slots.length > 0 ? g.slots : [...answered.keys()].map((worker) => ({ worker }));
  const rows: Cell[][] = slots.map((s) => {
    const self = answered.get(s.worker);
    const slot = 'state' in s ? s : undefined;
    const state = self ? 'up' : slot?.state === 'starting' ? 'starting' : 'missing';
    return [
      String(s.worker),
      self ? String(self.pid) : slot?.pid !== undefined ? String(slot.pid) : null,
      state,
      slot ? pgTimestamp(new Date(slot.started_at)) : null,
      slot ? String(slot.restarts) : null,
      self ? String(self.clients) : null,
      self ? String(self.active_sessions) : null,
    ];
  });
  return encodeResultSet(WORKERS_COLUMNS, rows, 'SHOW');
}

/** KILL_CLIENT <id>: asked of the worker that owns the id only. */
export async function killAcrossWorkers(id: number, cluster: ClusterView): Promise<Buffer> {
  const owner = ownerOf(id, cluster.count);
  const g = await cluster.ask<boolean>({ k: 'kill', id }, owner);
  const answer = g.answers.find((a) => a.worker === owner);
  if (!answer) {
    return encodeQueryError(
      WORKER_UNREACHABLE,
      `worker ${owner}, which holds client ${id}, did not answer within ${GATHER_TIMEOUT_MS / 1000} s`,
      'SHOW WORKERS shows its state; a worker that died is replaced, and its clients are gone with it.',
    );
  }
  if (answer.value !== true) {
    return encodeQueryError('42704', 'client not found', 'SHOW CLIENTS lists the ids of live connections.');
  }
  return encodeCommandComplete('KILL_CLIENT');
}

/** SET key = value in every worker (validated by the caller). The primary replays it to a replacement worker. */
export async function setAcrossWorkers(key: string, value: string, cluster: ClusterView): Promise<Buffer> {
  const g = await cluster.ask<boolean>({ k: 'set', key, value });
  const notice =
    g.missing.length === 0
      ? []
      : [
          encodeNotice(
            `SET reached ${g.answers.length} of ${g.answers.length + g.missing.length} workers; ${g.missing.length === 1 ? `worker ${g.missing[0]}` : `workers ${g.missing.join(', ')}`} did not answer within ${GATHER_TIMEOUT_MS / 1000} s`,
            'A worker started after this SET gets the value from the primary; a worker that is alive but did not answer may not have it: SHOW CONFIG there, or SET again.',
          ),
        ];
  return Buffer.concat([...notice, encodeCommandComplete('SET')]);
}
