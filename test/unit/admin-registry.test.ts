/** The live-client registry (SHOW CLIENTS, KILL_CLIENT) and the hooks that keep metrics and the recorder together. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClientRegistry } from '../../src/gateway/admin/client-registry.js';
import { OperatorHooks } from '../../src/gateway/admin/operator-hooks.js';
import { GatewayMetrics } from '../../src/gateway/metrics.js';
import { WouldRefuseRecorder, compileReportPolicy } from '../../src/gateway/report-policy.js';
import type { ConnectionRecord } from '../../src/gateway/runtime.js';

test('ids from 1, snapshots copy the record with live byte counters, kill closes once, end forgets', () => {
  const reg = new ClientRegistry();
  const closed: number[] = [];
  const r1: ConnectionRecord = {
    id: 1,
    client: '127.0.0.1',
    client_port: 1,
    negotiation: 'sslrequest',
    outcome: 'closed',
  };
  const r2: ConnectionRecord = { ...r1, id: 2, client_port: 2 };
  const h1 = reg.register(r1, () => closed.push(1));
  const h2 = reg.register(r2, () => closed.push(2));
  assert.deepEqual([h1.id, h2.id], [1, 2]);
  const stats = { bytesFromClient: 0, bytesFromBackend: 0 };
  h1.setState('active');
  h1.setBackendPid(777);
  h1.setRelayStats(stats);
  r1.user = 'alice';
  stats.bytesFromClient = 42;
  const [c1, c2] = reg.clients();
  assert.equal(c1?.user, 'alice');
  assert.equal(c1?.state, 'active');
  assert.equal(c1?.backend_pid, 777);
  assert.equal(c1?.bytes_from_client, 42);
  assert.equal(c2?.state, 'negotiating');
  assert.equal(c2?.backend_pid, undefined);
  assert.equal(reg.kill(2), true);
  assert.deepEqual(closed, [2]);
  assert.equal(r2.reason, 'closed by KILL_CLIENT on the admin console');
  assert.equal(reg.kill(99), false);
  h2.end();
  h2.end();
  assert.equal(reg.size, 1);
  assert.deepEqual(
    reg.clients().map((c) => c.id),
    [1],
  );
});

test('sessionRelayed counts the session, lists and counts a would-be refusal together', async () => {
  const metrics = new GatewayMetrics({ defaultMetrics: false });
  const recorder = new WouldRefuseRecorder(10);
  const policy = compileReportPolicy({
    report_min_protocol_version: 'TLSv1.3',
    report_ciphers: '',
    report_tls13_ciphers: '',
    report_require_client_cert: false,
    report_require_secure_transport: false,
  });
  const hooks = new OperatorHooks({ metrics, recorder, policy: () => policy });
  const rec: ConnectionRecord = {
    id: 5,
    client: '127.0.0.1',
    client_port: 5,
    negotiation: 'sslrequest',
    tls_version: 'TLSv1.2',
    cipher: 'ECDHE-RSA-AES128-GCM-SHA256',
    outcome: 'relayed',
  };
  assert.deepEqual(
    hooks.sessionRelayed(rec, undefined, 100).map((r) => r.code),
    ['version'],
  );
  assert.deepEqual(hooks.sessionRelayed({ ...rec, tls_version: 'TLSv1.3' }, undefined, 101), []);
  assert.equal(metrics.snapshot().active_sessions, 2);
  assert.equal(metrics.snapshot().would_refuse_total, 1);
  assert.equal(recorder.entries().length, 1);
  hooks.sessionEnded(rec, 100);
  hooks.sessionEnded({ ...rec }, 102); // never counted (a console or pooled session): the gauge stays
  hooks.connectionEnded(rec);
  assert.equal(metrics.snapshot().active_sessions, 1);
  assert.equal(metrics.snapshot().relayed_total, 1);
  assert.match(await metrics.exposition(), /pgtls_report_would_refuse_total\{reason="version"\} 1/);
});
