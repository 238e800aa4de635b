/** The report-only policy: the pure evaluator, OpenSSL's own cipher-string expansion, and the bounded recorder. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { isPgtlsError } from '../../src/errors.js';
import {
  ERR_REPORT_POLICY,
  type ReportPolicySettings,
  WouldRefuseRecorder,
  compileReportPolicy,
  expandCipherString,
  reportPolicyActive,
  wouldRefuse,
} from '../../src/gateway/report-policy.js';
import type { ConnectionRecord } from '../../src/gateway/runtime.js';

const NONE: ReportPolicySettings = {
  report_min_protocol_version: '',
  report_ciphers: '',
  report_tls13_ciphers: '',
  report_require_client_cert: false,
  report_require_secure_transport: false,
};

const tls12: ConnectionRecord = {
  id: 1,
  client: '127.0.0.1',
  client_port: 50000,
  negotiation: 'sslrequest',
  tls_version: 'TLSv1.2',
  cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  user: 'alice',
  database: 'app',
  application_name: 'billing',
  outcome: 'relayed',
};
const tls13: ConnectionRecord = { ...tls12, tls_version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' };
const plain: ConnectionRecord = {
  id: 2,
  client: '10.0.0.9',
  client_port: 1,
  negotiation: 'plaintext',
  outcome: 'relayed',
};

test('no report_* setting: nothing is ever listed', () => {
  const p = compileReportPolicy(NONE);
  assert.equal(reportPolicyActive(p), false);
  for (const r of [tls12, tls13, plain]) assert.deepEqual(wouldRefuse(p, r), []);
});

test('report_min_protocol_version = TLSv1.3 lists the TLS 1.2 session, not the TLS 1.3 one', () => {
  const p = compileReportPolicy({ ...NONE, report_min_protocol_version: 'TLSv1.3' });
  assert.deepEqual(wouldRefuse(p, tls12), [
    { code: 'version', message: 'TLSv1.2 is below report_min_protocol_version TLSv1.3' },
  ]);
  assert.deepEqual(wouldRefuse(p, tls13), []);
  const p12 = compileReportPolicy({ ...NONE, report_min_protocol_version: 'TLSv1.2' });
  assert.deepEqual(wouldRefuse(p12, tls12), []);
});

test('report_require_secure_transport lists plaintext; report_require_client_cert lists sessions without one', () => {
  const p = compileReportPolicy({ ...NONE, report_require_secure_transport: true });
  assert.deepEqual(wouldRefuse(p, plain), [
    { code: 'plaintext', message: 'plaintext session and report_require_secure_transport is on' },
  ]);
  assert.deepEqual(wouldRefuse(p, tls12), []);
  const c = compileReportPolicy({ ...NONE, report_require_client_cert: true });
  assert.deepEqual(
    wouldRefuse(c, tls13).map((r) => r.code),
    ['client_certificate'],
  );
  assert.deepEqual(
    wouldRefuse(c, {
      ...tls13,
      client_cert: { subject: 'CN=a', serial: '01', issuer: 'CN=ca', not_after: '2030-01-01T00:00:00.000Z' },
    }),
    [],
  );
});

/** major.minor of an OpenSSL version string ("3.0.19", "OpenSSL 3.0.15 3 Sep 2024"). */
const minorOf = (v: string) => /(\d+\.\d+)\./.exec(v)?.[1];
// The comparison needs the same OpenSSL release on both sides: Node 26 carries OpenSSL 3.5, whose cipher lists
// differ from the machine's `openssl` (3.0 on Debian 12). The policy assertions after the loop run everywhere.
const sameOpenssl =
  minorOf(process.versions.openssl) === minorOf(execFileSync('openssl', ['version'], { encoding: 'utf8' }));

test("report_ciphers is expanded by Node's OpenSSL exactly as `openssl ciphers` expands it", () => {
  for (const s of sameOpenssl
    ? [
        'ECDHE+AESGCM:!ECDSA',
        'HIGH:!aNULL:!SHA1:!SHA256:!SHA384',
        'ECDHE-ECDSA-AES256-GCM-SHA384',
        'HIGH:MEDIUM:+3DES:!aNULL',
        'ALL:!ARIA:@STRENGTH',
        'CAMELLIA:ARIA:AESCCM',
      ]
    : []) {
    const mine = [...expandCipherString(s)].sort();
    // The CLI lists TLS 1.3 suites too (they are not governed by the string): drop them.
    const theirs = execFileSync('openssl', ['ciphers', s], { encoding: 'utf8' })
      .trim()
      .split(':')
      // PSK and SRP suites need a shared secret the gateway never has: they are never negotiated nor listed.
      .filter((c) => !c.startsWith('TLS_') && !/(^|-)PSK-|^SRP-/.test(c))
      .sort();
    assert.deepEqual(mine, theirs, s);
  }
  const p = compileReportPolicy({ ...NONE, report_ciphers: 'ECDHE+AESGCM:!ECDSA' });
  assert.deepEqual(wouldRefuse(p, tls12), [
    { code: 'cipher', message: 'ECDHE-ECDSA-AES256-GCM-SHA384 is not selected by report_ciphers' },
  ]);
  assert.deepEqual(wouldRefuse(p, { ...tls12, cipher: 'ECDHE-RSA-AES128-GCM-SHA256' }), []);
  // TLS 1.3 suites are judged by report_tls13_ciphers, not by the TLS ≤ 1.2 string.
  assert.deepEqual(wouldRefuse(p, tls13), []);
  const p13 = compileReportPolicy({ ...NONE, report_tls13_ciphers: 'TLS_AES_128_GCM_SHA256' });
  assert.deepEqual(wouldRefuse(p13, tls13), [
    { code: 'cipher', message: 'TLS_AES_256_GCM_SHA384 is not in report_tls13_ciphers' },
  ]);
});

test('a report_ciphers string that selects nothing is refused with the setting named', () => {
  assert.throws(
    () => compileReportPolicy({ ...NONE, report_ciphers: 'NOT-A-CIPHER' }),
    (e: unknown) =>
      isPgtlsError(e, ERR_REPORT_POLICY) &&
      e.message === 'could not set the cipher list (no valid ciphers available)' &&
      e.details.setting === 'report_ciphers',
  );
});

test('the recorder keeps the newest entries up to its capacity, oldest first, and counts every reason', () => {
  const p = compileReportPolicy({ ...NONE, report_min_protocol_version: 'TLSv1.3', report_require_client_cert: true });
  const r = new WouldRefuseRecorder(3);
  for (let i = 0; i < 5; i++) r.consider(p, { ...tls12, client_port: 1000 + i }, new Date(1_000_000 + i));
  assert.deepEqual(
    r.consider(p, {
      ...tls13,
      client_cert: { subject: 'CN=x', serial: '1', issuer: 'CN=y', not_after: '2030-01-01T00:00:00.000Z' },
    }),
    [],
  );
  assert.deepEqual(
    r.entries().map((e) => e.client_port),
    [1002, 1003, 1004],
  );
  const e = r.entries()[0]!;
  assert.equal(e.user, 'alice');
  assert.equal(e.application_name, 'billing');
  assert.equal(e.cipher, 'ECDHE-ECDSA-AES256-GCM-SHA384');
  assert.equal(r.total, 5);
  assert.deepEqual(r.byReason(), { plaintext: 0, version: 5, cipher: 0, client_certificate: 5 });
  assert.throws(
    () => new WouldRefuseRecorder(0),
    (x: unknown) => isPgtlsError(x, ERR_REPORT_POLICY),
  );
});
