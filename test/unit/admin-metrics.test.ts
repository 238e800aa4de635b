/** Metrics: scraped text parsed by a strict exposition parser; refusal texts mapped to the fixed reason set. */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { servedFilesOf } from '../../src/gateway/admin/cert-files.js';
import { GatewayMetrics, REFUSAL_REASONS, refusalReason } from '../../src/gateway/metrics.js';
import * as refuse from '../../src/gateway/refusals.js';
import type { ConnectionRecord } from '../../src/gateway/runtime.js';
import { writeCrlDirectory } from '../../src/pki/crl.js';
import { makeFixtures } from '../support/gateway-fixtures.js';
import { parseExposition, sampleValue } from '../support/prom-parse.js';

const who = { host: '10.1.2.3', user: 'alice', database: 'app', ssl: false, replication: 'none' as const };
const base: ConnectionRecord = {
  id: 1,
  client: '10.1.2.3',
  client_port: 5555,
  negotiation: 'sslrequest',
  outcome: 'refused',
};

test("the gateway's refusal texts map to the fixed reason set", () => {
  const cases: [Partial<ConnectionRecord>, string][] = [
    [
      { negotiation: 'plaintext', reason: refuse.plaintextRefused(who, 'postgres').message, sqlstate: '28000' },
      'plaintext',
    ],
    [{ negotiation: 'plaintext', reason: refuse.plaintextRefused(who, 'azure').message }, 'plaintext'],
    [{ reason: refuse.noHbaEntry({ ...who, ssl: true }).message }, 'hba'],
    [{ reason: refuse.hbaRejects({ ...who, ssl: true }).message }, 'hba'],
    [{ reason: 'could not accept SSL connection: unsupported protocol' }, 'version'],
    [{ reason: 'could not accept SSL connection: wrong version number' }, 'version'],
    [{ reason: 'could not accept SSL connection: no shared cipher' }, 'cipher'],
    [{ reason: refuse.clientCertRequired().message }, 'client_certificate_missing'],
    [{ reason: 'client certificate: certificate revoked' }, 'client_certificate_revoked'],
    [{ reason: 'client certificate: certificate has expired' }, 'client_certificate_expired'],
    [{ reason: 'client certificate: unable to get local issuer certificate' }, 'client_certificate_unknown'],
    [{ reason: 'backend: password authentication failed for user "alice"', sqlstate: '28P01' }, 'authentication'],
    [{ reason: refuse.authFailed('cert', 'alice').message }, 'authentication'],
    [{ reason: 'authentication timeout' }, 'timeout'],
    [{ reason: refuse.unencryptedAfterSSLRequest().message }, 'buffer_stuffing'],
    [{ reason: 'upstream: connect ECONNREFUSED 127.0.0.1:5432' }, 'upstream'],
    [{ reason: refuse.shuttingDown().message }, 'shutting_down'],
    [{ reason: 'something new' }, 'other'],
  ];
  for (const [r, want] of cases) {
    const got = refusalReason({ ...base, ...r });
    assert.equal(got, want, r.reason);
    assert.ok((REFUSAL_REASONS as readonly string[]).includes(got));
  }
});

test('/metrics text: strict exposition, bounded labels, counters and gauges from observed connections', async () => {
  const fx = await makeFixtures();
  const m = new GatewayMetrics();
  m.sessionStarted();
  m.sessionStarted();
  m.sessionEnded();
  m.handshake(0.004, 'ok');
  m.handshake(0.2, 'failed');
  m.observe({
    ...base,
    outcome: 'relayed',
    tls_version: 'TLSv1.3',
    cipher: 'TLS_AES_256_GCM_SHA384',
    bytes_from_client: 100,
    bytes_from_backend: 2000,
    user: 'alice',
    application_name: 'x"y\\z\n',
  });
  m.observe({ ...base, negotiation: 'plaintext', reason: refuse.plaintextRefused(who, 'postgres').message });
  m.observe({
    ...base,
    tls_version: 'TLSv1.2',
    cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384',
    reason: 'client certificate: certificate revoked',
  });
  m.reload(true);
  m.reload(false);
  m.reload(false);
  m.wouldRefuse([{ code: 'version', message: 'x' }]);
  const missing = join(fx.dir, 'missing.crt');
  m.certificates([
    { path: fx.server.cert, kind: 'server' },
    { path: fx.clientCa, kind: 'ca' },
    { path: fx.clientCrl, kind: 'crl' },
    { path: missing, kind: 'ca' },
  ]);
  const text = await m.exposition();
  const f = parseExposition(text);
  assert.equal(f.get('pgtls_connections_total')?.type, 'counter');
  assert.equal(
    sampleValue(f, 'pgtls_connections_total', {
      negotiation: 'sslrequest',
      tls_version: 'TLSv1.3',
      cipher: 'TLS_AES_256_GCM_SHA384',
      outcome: 'relayed',
    }),
    1,
  );
  assert.equal(
    sampleValue(f, 'pgtls_connections_total', {
      negotiation: 'plaintext',
      tls_version: 'none',
      cipher: 'none',
      outcome: 'refused',
    }),
    1,
  );
  assert.equal(sampleValue(f, 'pgtls_refusals_total', { reason: 'plaintext' }), 1);
  assert.equal(sampleValue(f, 'pgtls_refusals_total', { reason: 'client_certificate_revoked' }), 1);
  assert.equal(
    sampleValue(f, 'pgtls_refusals_total', { reason: 'timeout' }),
    0,
    'every reason is exported, zero included',
  );
  assert.equal(sampleValue(f, 'pgtls_active_sessions'), 1);
  assert.equal(sampleValue(f, 'pgtls_relayed_bytes_total', { direction: 'from_client' }), 100);
  assert.equal(sampleValue(f, 'pgtls_relayed_bytes_total', { direction: 'from_backend' }), 2000);
  assert.equal(sampleValue(f, 'pgtls_reloads_total', { result: 'ok' }), 1);
  assert.equal(sampleValue(f, 'pgtls_reloads_total', { result: 'failed' }), 2);
  assert.equal(sampleValue(f, 'pgtls_report_would_refuse_total', { reason: 'version' }), 1);
  assert.equal(sampleValue(f, 'pgtls_tls_handshake_duration_seconds_count', { outcome: 'ok' }), 1);
  assert.equal(sampleValue(f, 'pgtls_tls_handshake_duration_seconds_bucket', { outcome: 'ok', le: '0.005' }), 1);
  assert.equal(sampleValue(f, 'pgtls_tls_handshake_duration_seconds_bucket', { outcome: 'failed', le: '0.1' }), 0);
  // not_after: the earliest certificate in the chain file (leaf or intermediate), straight from the file.
  const chain = readFileSync(fx.server.cert, 'utf8')
    .split(/(?=-----BEGIN CERTIFICATE-----)/)
    .map((p) => new X509Certificate(p));
  const earliest = Math.min(...chain.map((c) => new Date(c.validTo).getTime() / 1000));
  assert.equal(
    sampleValue(f, 'pgtls_certificate_not_after_seconds', { file: fx.server.cert, kind: 'server' }),
    earliest,
  );
  assert.ok(
    (sampleValue(f, 'pgtls_certificate_not_after_seconds', { file: fx.clientCrl, kind: 'crl' }) ?? 0) >
      Date.now() / 1000,
  );
  assert.equal(sampleValue(f, 'pgtls_certificate_not_after_seconds', { file: missing, kind: 'ca' }), undefined);
  assert.ok(sampleValue(f, 'process_start_time_seconds') !== undefined, 'default process metrics are there');
  // No label value anywhere is an address, a user or an application name.
  for (const fam of f.values()) {
    for (const s of fam.samples) {
      for (const v of Object.values(s.labels)) {
        assert.ok(!['10.1.2.3', 'alice', 'x"y\\z\n'].includes(v), `${s.name} carries ${v}`);
      }
    }
  }
  const snap = m.snapshot();
  assert.equal(snap.connections_total, 3);
  assert.equal(snap.refused_total, 2);
  assert.deepEqual(snap.refusals_by_reason, { plaintext: 1, client_certificate_revoked: 1 });
  assert.deepEqual(snap.by_tls_version, { 'TLSv1.3': 1, none: 1, 'TLSv1.2': 1 });
  writeFileSync(join(fx.dir, 'metrics.txt'), text);
});

test('the strict parser rejects what Prometheus would reject (the parser itself can fail)', () => {
  assert.throws(() => parseExposition('# HELP a_total x\n# TYPE a_total counter\na_total{l="\\q"} 1\n'), /bad escape/);
  assert.throws(() => parseExposition('# HELP a x\n# TYPE a counter\na 1\n'), /lacks _total/);
  assert.throws(
    () =>
      parseExposition(
        '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      ),
    /not ascending/,
  );
  assert.throws(() => parseExposition('# HELP g x\n# TYPE g gauge\ng 1'), /newline/);
});

test('servedFilesOf: the chain, the CAs, the CRL file and the hashed files of the CRL directory', async () => {
  const fx = await makeFixtures();
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-crldir-'));
  const written = await writeCrlDirectory(dir, [readFileSync(fx.clientCrl, 'utf8')]);
  writeFileSync(join(dir, 'README'), 'not a CRL');
  const files = servedFilesOf({
    ssl_cert_file: fx.server.cert,
    ssl_ca_file: fx.clientCa,
    ssl_crl_file: fx.clientCrl,
    ssl_crl_dir: dir,
    upstream_sslrootcert: fx.root,
  });
  assert.deepEqual(files, [
    { path: fx.server.cert, kind: 'server' },
    { path: fx.clientCa, kind: 'ca' },
    { path: fx.root, kind: 'ca' },
    { path: fx.clientCrl, kind: 'crl' },
    ...written.map((p) => ({ path: p, kind: 'crl' })),
  ]);
  assert.equal(written.length, 1);
  assert.deepEqual(
    servedFilesOf({ ssl_cert_file: '', ssl_ca_file: '', ssl_crl_file: '', ssl_crl_dir: join(dir, 'missing') }),
    [],
  );
});
