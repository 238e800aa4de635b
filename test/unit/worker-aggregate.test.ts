/**
 * Issue 12, workers: the pure parts of the aggregation — counters summed, would-be refusals merged in time order,
 * series labelled by worker and merged without collisions, ids mapped to their worker, and the bounded waits
 * (a gathering that gives up after its timeout naming the missing workers; a worker that answers alone when the
 * primary does not reply).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import {
  labelWorker,
  mergeMetrics,
  mergeWouldRefuse,
  serializeStats,
  sumStats,
} from '../../src/gateway/admin/aggregate.js';
import { ownerOf } from '../../src/gateway/admin/console-workers.js';
import { GatewayMetrics } from '../../src/gateway/metrics.js';
import { Gathering, WorkerLink } from '../../src/gateway/worker-ipc.js';
import { parseExposition } from '../support/prom-parse.js';

const record = (outcome: 'relayed' | 'refused', tls_version: string) =>
  ({
    id: 1,
    client: '127.0.0.1',
    client_port: 5000,
    negotiation: 'sslrequest',
    tls_version,
    cipher: 'TLS_AES_256_GCM_SHA384',
    outcome,
    reason: outcome === 'refused' ? 'SSL connection is required' : undefined,
    bytes_from_client: 10,
    bytes_from_backend: 20,
  }) as never;

test('sumStats: counters and by-label counts summed; the start is the oldest worker', () => {
  const a = new GatewayMetrics({ defaultMetrics: false });
  const b = new GatewayMetrics({ defaultMetrics: false });
  a.observe(record('relayed', 'TLSv1.3'));
  a.observe(record('refused', 'TLSv1.2'));
  b.observe(record('relayed', 'TLSv1.3'));
  b.sessionStarted();
  const sa = serializeStats(a.snapshot());
  const sb = { ...serializeStats(b.snapshot()), started_at: '2020-01-01T00:00:00.000Z' };
  const s = sumStats([sa, sb]);
  assert.equal(s.connections_total, 3);
  assert.equal(s.relayed_total, 2);
  assert.equal(s.refused_total, 1);
  assert.equal(s.active_sessions, 1);
  assert.equal(s.bytes_from_clients, 30);
  assert.deepEqual(s.by_tls_version, { 'TLSv1.3': 2, 'TLSv1.2': 1 });
  assert.deepEqual(s.refusals_by_reason, { plaintext: 1 });
  assert.equal(s.started_at.toISOString(), '2020-01-01T00:00:00.000Z');
  assert.equal(sumStats([]).connections_total, 0);
});

test('mergeWouldRefuse: entries of all workers, oldest first, dates revived', () => {
  const e = (at: string, client: string) =>
    ({ at, client, client_port: 1, reasons: [] }) as unknown as Parameters<typeof mergeWouldRefuse>[0][number][number];
  const m = mergeWouldRefuse([
    [e('2026-01-02T00:00:00Z', 'b')],
    [e('2026-01-01T00:00:00Z', 'a'), e('2026-01-03T00:00:00Z', 'c')],
  ]);
  assert.deepEqual(
    m.map((x) => x.client),
    ['a', 'b', 'c'],
  );
  assert.ok(m[0]!.at instanceof Date);
});

test("mergeMetrics: each worker's series labelled, none merged away; the workers gauges added; strict exposition", async () => {
  const perWorker = [];
  for (const [w, n] of [
    [1, 3],
    [2, 4],
  ] as const) {
    const r = new Registry();
    new Counter({ name: 'pgtls_connections_total', help: 'h', labelNames: ['outcome'], registers: [r] }).inc(
      { outcome: 'relayed' },
      n,
    );
    perWorker.push(labelWorker(await r.getMetricsAsJSON(), w));
  }
  const { text } = await mergeMetrics(perWorker, { configured: 2, answered: 2, missing: 0, restarts: 1 });
  const f = parseExposition(text);
  const samples = f.get('pgtls_connections_total')!.samples.map((s) => [s.labels.worker, s.value]);
  assert.deepEqual(samples.sort(), [
    ['1', 3],
    ['2', 4],
  ]);
  assert.deepEqual(
    f.get('pgtls_workers')!.samples.map((s) => [s.labels.state, s.value]),
    [
      ['up', 2],
      ['missing', 0],
    ],
  );
  assert.equal(f.get('pgtls_worker_restarts')!.samples[0]!.value, 1);
  // Without the worker label the two workers' series collide and one worker's count is lost: the label keeps them apart.
  const unlabelled = await mergeMetrics(
    perWorker.map((m) =>
      m.map((x) => ({ ...x, values: x.values.map((v) => ({ ...v, labels: { outcome: v.labels.outcome! } })) })),
    ),
    { configured: 2, answered: 2, missing: 0, restarts: 0 },
  );
  assert.deepEqual(
    parseExposition(unlabelled.text)
      .get('pgtls_connections_total')!
      .samples.map((s) => s.value),
    [3],
  );
});

test('mergeMetrics keeps per-process series prom-client would omit (process_start_time_seconds), one per worker', async () => {
  const per = [];
  for (const w of [1, 2]) {
    const m = new GatewayMetrics();
    m.handshake(0.003 * w, 'ok');
    per.push(labelWorker(await m.registry.getMetricsAsJSON(), w));
  }
  const f = parseExposition((await mergeMetrics(per, { configured: 2, answered: 2, missing: 0, restarts: 0 })).text);
  assert.deepEqual(
    f
      .get('process_start_time_seconds')
      ?.samples.map((s) => s.labels.worker)
      .sort(),
    ['1', '2'],
  );
  const hist = f.get('pgtls_tls_handshake_duration_seconds')!.samples;
  assert.ok(hist.some((s) => s.labels.worker === '1') && hist.some((s) => s.labels.worker === '2'));
});

test('ownerOf: interleaved ids map back to their worker', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((id) => ownerOf(id, 2)),
    [1, 2, 1, 2, 1, 2],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 7].map((id) => ownerOf(id, 3)),
    [1, 2, 3, 1, 1],
  );
});

test('Gathering: resolves as soon as every target answered; after the timeout names the missing', async () => {
  const all = new Gathering([1, 2], [1, 2]);
  all.answer(2, true);
  all.answer(1, false);
  all.answer(3, true); // not a target: ignored
  const t0 = Date.now();
  const r = await all.result(5000);
  assert.ok(Date.now() - t0 < 1000);
  assert.deepEqual(r, {
    answers: [
      { worker: 1, value: false },
      { worker: 2, value: true },
    ],
    missing: [],
  });
  const late = new Gathering([1, 2], [1, 2, 3]);
  late.answer(1, true);
  const t1 = Date.now();
  const r2 = await late.result(200);
  assert.ok(Date.now() - t1 >= 190, 'waited for the bound');
  assert.deepEqual(r2.missing, [2, 3]);
});

test('WorkerLink: with no reply from the primary, the worker answers alone and names the others missing', async () => {
  const sent: unknown[] = [];
  const link = new WorkerLink(
    2,
    3,
    (m) => {
      sent.push(m);
      return false; // the channel is closed
    },
    async () => [['row']],
  );
  const g = await link.ask({ k: 'rows', table: 'clients' });
  assert.equal(sent.length, 1);
  assert.deepEqual(g.answers, [{ worker: 2, value: [['row']] }]);
  assert.deepEqual(g.missing, [1, 3]);
  const only = await link.ask({ k: 'kill', id: 1 }, 1);
  assert.deepEqual(only.answers, []);
  assert.deepEqual(only.missing, [1]);
  // A reply settles the matching request.
  const live = new WorkerLink(
    1,
    2,
    () => true,
    async () => null,
  );
  const p = live.ask({ k: 'stats' });
  live.settle({ t: 'gathered', req: 1, answers: [{ worker: 1, value: true }], missing: [2], slots: [] });
  assert.deepEqual((await p).missing, [2]);
  assert.deepEqual(await link.reloadAll(), { ok: false, error: 'the primary process did not answer the reload' });
});
