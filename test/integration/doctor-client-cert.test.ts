/**
 * doctor on client certificates (pg_hba.conf `cert` and `clientcert=verify-full`), key file permissions, and
 * rotation readiness (--rotation) — real PostgreSQL 18 servers, psql agreeing on every connection verdict.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createIntermediateCA, createRootCA, createServerCert } from '../../src/pki/generate.js';
import { AZURE_ROOTS, findKnownRoots, nodeRoots, systemRoots } from '../../src/pki/roots.js';
import { assertCause, diagnose } from '../support/doctor-run.js';
import { type Pki, clientCert, doctorEnv, makePki, pgtls, pgtlsJson, startServer } from '../support/doctor-servers.js';
import { SUPERUSER_PASSWORD, type TestCluster } from '../support/postgres.js';

describe('doctor: client certificates', () => {
  let pki: Pki;
  let pg: TestCluster;
  const conn = (extra: string) =>
    `host=localhost port=${pg.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${pki.dir}/root.crt ${extra}`;
  before(async () => {
    pki = await makePki();
    pg = await startServer(pki, {
      hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 cert', 'hostssl all all ::1/128 cert'],
      files: { 'ca.crt': pki.root.certPem },
      settings: { ssl_ca_file: 'ca.crt' },
    });
  });
  after(async () => {
    await pg?.destroy();
  });

  test('pass: a certificate with CN=postgres from the trusted CA connects (exit 0)', async () => {
    const c = await clientCert(pki, 'postgres');
    const j = await diagnose(conn(`sslcert=${c.cert} sslkey=${c.key}`));
    assert.equal(j.ok, true);
    assert.equal(j.verified, true);
    assert.match(j.steps.find((s) => s.stage === 'client-certificate')!.summary, /sent /);
    const required = await diagnose(conn(`sslcert=${c.cert} sslkey=${c.key} sslcertmode=require`));
    assert.equal(required.ok, true);
  });

  test('fail: no client certificate → required', async () => {
    const j = await diagnose(conn(''));
    assertCause(j, 'client-certificate-required', 'client-certificate');
    assert.match(j.diagnosis!.fix, /sslcert and sslkey/);
  });

  test('fail: CN ≠ user → CN mismatch, with both names', async () => {
    const c = await clientCert(pki, 'alice');
    const j = await diagnose(conn(`sslcert=${c.cert} sslkey=${c.key}`));
    assertCause(j, 'client-certificate-cn-mismatch', 'authentication');
    assert.match(j.diagnosis!.cause, /CN is "alice" but the user is "postgres"/);
  });

  test('fail: certificate from a CA the server does not trust → rejected', async () => {
    const other = await createRootCA({ subject: { CN: 'Untrusted Client CA' } });
    const c = await clientCert(pki, 'postgres', other);
    const j = await diagnose(conn(`sslcert=${c.cert} sslkey=${c.key}`));
    assertCause(j, 'client-certificate-rejected', 'client-certificate');
  });

  test('fail: private key readable by others → chmod 0600', async () => {
    const c = await clientCert(pki, 'postgres');
    const loose = `${c.key}.loose`;
    copyFileSync(c.key, loose);
    chmodSync(loose, 0o644);
    const j = await diagnose(conn(`sslcert=${c.cert} sslkey=${loose}`));
    assertCause(j, 'key-file-permissions', 'client-certificate');
    assert.match(j.diagnosis!.fix, /chmod 0600/);
  });
});

describe('doctor --rotation', () => {
  let pki: Pki;
  let pg: TestCluster;
  const conn = (root: string, mode = 'verify-full') =>
    `host=localhost port=${pg.port} user=postgres sslmode=${mode} sslrootcert=${root}`;
  interface RotationJson {
    ready: boolean;
    unaffected: boolean;
    findings: { level: string; code: string; message: string }[];
  }
  before(async () => {
    pki = await makePki();
    pg = await startServer(pki);
  });
  after(async () => {
    await pg?.destroy();
  });

  test('ready: only the root in sslrootcert', async () => {
    const { code, json } = await pgtlsJson<RotationJson>(['doctor', '--rotation', conn(`${pki.dir}/root.crt`)]);
    assert.equal(code, 0);
    assert.equal(json.ready, true);
    assert.ok(json.findings.some((f) => f.code === 'verifies-today'));
  });

  test('not ready: the intermediate is pinned without its root (works today only with the root)', async () => {
    const { code, json } = await pgtlsJson<RotationJson>(['doctor', '--rotation', conn(`${pki.dir}/inter.crt`)]);
    assert.equal(code, 1);
    assert.ok(json.findings.some((f) => f.code === 'pinned-intermediate' && f.level === 'fail'));
  });

  test('warning only: root and intermediate together', async () => {
    const both = pki.file('root-and-inter.crt', `${pki.root.certPem}\n${pki.inter.certPem}\n`);
    const { code, json } = await pgtlsJson<RotationJson>(['doctor', '--rotation', conn(both)]);
    assert.equal(code, 0);
    assert.ok(json.findings.some((f) => f.code === 'pinned-intermediate' && f.level === 'warn'));
  });

  test('not ready: the server certificate itself is pinned', async () => {
    const { code, json } = await pgtlsJson<RotationJson>(['doctor', '--rotation', conn(`${pki.dir}/server-leaf.crt`)]);
    assert.equal(code, 1);
    assert.ok(json.findings.some((f) => f.code === 'pinned-server-certificate'));
  });

  test('--roots: a new intermediate under the same root is covered; a new root is not', async () => {
    const nextInter = await createIntermediateCA(pki.root, { subject: { CN: 'pgtls Test Intermediate CA 2' } });
    const covered = pki.file('next-inter.crt', nextInter.certPem);
    const a = await pgtlsJson<RotationJson>(['doctor', '--rotation', conn(`${pki.dir}/root.crt`), '--roots', covered]);
    assert.equal(a.code, 0);
    assert.ok(a.json.findings.some((f) => f.code === 'future-intermediate-anchored'));
    const newRoot = await createRootCA({ subject: { CN: 'pgtls Next Root CA' } });
    const missing = pki.file('next-root.crt', newRoot.certPem);
    const b = await pgtlsJson<RotationJson>(['doctor', '--rotation', conn(`${pki.dir}/root.crt`), '--roots', missing]);
    assert.equal(b.code, 1);
    assert.ok(b.json.findings.some((f) => f.code === 'future-root-missing'));
  });

  test('Azure-style chain: the three roots Azure asks for are checked by fingerprint', async () => {
    // A look-alike chain (names only) under a test root called "DigiCert Global Root G2".
    const fakeRoot = await createRootCA({ subject: { CN: 'DigiCert Global Root G2', O: 'DigiCert Inc' } });
    const azInter = await createIntermediateCA(fakeRoot, { subject: { CN: 'Microsoft Azure RSA TLS Issuing CA 03' } });
    const leaf = await createServerCert(azInter, { subject: { CN: 'localhost' }, hosts: ['localhost'] });
    const az = await startServer(pki, { chain: [leaf.certPem, azInter.certPem], key: leaf.keyPem });
    try {
      const rootFile = pki.file('fake-digicert.crt', fakeRoot.certPem);
      const url = (f: string) => `host=localhost port=${az.port} user=postgres sslmode=verify-full sslrootcert=${f}`;
      const a = await pgtlsJson<RotationJson>(['doctor', '--rotation', url(rootFile)]);
      assert.equal(a.code, 1);
      assert.ok(a.json.findings.some((f) => f.code === 'verifies-today'));
      assert.equal(a.json.findings.filter((f) => f.code === 'azure-root-missing').length, 3);
      // The real three, taken from the system store, next to today's root: ready.
      const real = findKnownRoots(AZURE_ROOTS, [...nodeRoots(), ...(await systemRoots())]).filter((r) => r.cert);
      if (real.length === 3) {
        const pems = real.map((r) => r.cert!.toString('pem')).join('\n');
        const all = pki.file('azure-roots.crt', `${fakeRoot.certPem}\n${pems}\n`);
        const b = await pgtlsJson<RotationJson>(['doctor', '--rotation', url(all)]);
        assert.equal(b.code, 0, JSON.stringify(b.json.findings));
        assert.equal(b.json.findings.filter((f) => f.code === 'azure-root-present').length, 3);
      }
    } finally {
      await az.destroy();
    }
  });

  test('unaffected: sslmode=require without a root file does not verify', async () => {
    const r = await pgtls(
      ['doctor', '--rotation', `host=localhost port=${pg.port} user=postgres sslmode=require`],
      doctorEnv(),
    );
    assert.equal(r.code, 0);
    assert.match(r.stdout, /does not verify the server/);
  });

  test('the pinned-intermediate client fails a real connection today too (psql agrees)', async () => {
    const j = await diagnose(conn(`${pki.dir}/inter.crt`), { PGPASSWORD: SUPERUSER_PASSWORD });
    assertCause(j, 'pinned-intermediate');
  });
});
