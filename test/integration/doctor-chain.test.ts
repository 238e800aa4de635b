/**
 * doctor on certificate problems: every rule has a passing case and a failing one, against real PostgreSQL 18
 * servers, and psql (libpq 18) must agree on whether the connection works.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createClientCert, createRootCA, createServerCert } from '../../src/pki/generate.js';
import { assertCause, diagnose } from '../support/doctor-run.js';
import { type Pki, makePki, startServer } from '../support/doctor-servers.js';
import { SUPERUSER_PASSWORD, type TestCluster } from '../support/postgres.js';

const PW = { PGPASSWORD: SUPERUSER_PASSWORD };

describe('doctor: chains and trust', () => {
  let pki: Pki;
  let good: TestCluster;
  const servers: TestCluster[] = [];
  const conn = (port: number, extra: string, host = 'localhost') =>
    `host=${host} port=${port} user=postgres dbname=postgres ${extra}`;
  before(async () => {
    pki = await makePki();
    good = await startServer(pki);
    servers.push(good);
  });
  after(async () => {
    for (const s of servers) await s.destroy();
  });

  test('pass: verify-full with the root connects and is verified (exit 0)', async () => {
    const j = await diagnose(conn(good.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt`), PW);
    assert.equal(j.ok, true);
    assert.equal(j.verified, true);
    assert.deepEqual(
      j.steps.map((s) => s.status),
      ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok'],
    );
  });

  test('pass with a warning: sslmode=require connects but the server is not verified (exit 0)', async () => {
    const j = await diagnose(conn(good.port, 'sslmode=require'), PW);
    assert.equal(j.ok, true);
    assert.equal(j.verified, false);
    assert.ok(j.warnings.some((w) => /not verified/.test(w)));
  });

  test('fail: sslrootcert holds the intermediate (pinning) → use the root, named', async () => {
    const j = await diagnose(conn(good.port, `sslmode=verify-full sslrootcert=${pki.dir}/inter.crt`), PW);
    assertCause(j, 'pinned-intermediate', 'chain');
    assert.match(j.diagnosis!.fix, /CN=pgtls Test Root CA/);
  });

  test('fail: sslrootcert holds the server certificate itself', async () => {
    const j = await diagnose(conn(good.port, `sslmode=verify-ca sslrootcert=${pki.dir}/server-leaf.crt`), PW);
    assertCause(j, 'pinned-server-certificate', 'chain');
  });

  test('fail: the root store lacks the root the server chains to', async () => {
    const other = await createRootCA({ subject: { CN: 'Some Other Root' } });
    const file = pki.file('other-root.crt', other.certPem);
    const j = await diagnose(conn(good.port, `sslmode=verify-full sslrootcert=${file}`), PW);
    assertCause(j, 'root-not-trusted', 'chain');
    assert.match(j.diagnosis!.cause, /pgtls Test Root CA/);
  });

  test('fail: sslrootcert=system with a private CA → point sslrootcert at the root file', async () => {
    const j = await diagnose(conn(good.port, 'sslmode=verify-full sslrootcert=system'), PW);
    assertCause(j, 'root-not-trusted', 'chain');
    assert.match(j.diagnosis!.fix, /not a public CA/);
  });

  test('fail: sslmode=require verifies because ~/.postgresql/root.crt exists, and it holds another root', async () => {
    const other = await createRootCA({ subject: { CN: 'Stale Root In Home' } });
    const home = mkdtempSync(join(tmpdir(), 'pgtls-doctor-home-'));
    mkdirSync(join(home, '.postgresql'));
    writeFileSync(join(home, '.postgresql', 'root.crt'), other.certPem);
    const j = await diagnose(conn(good.port, 'sslmode=require'), { ...PW, HOME: home });
    assertCause(j, 'root-not-trusted', 'chain');
    assert.ok(j.diagnosis!.evidence?.some((e) => /verifies the chain only because the default root file/.test(e)));
    writeFileSync(join(home, '.postgresql', 'root.crt'), pki.root.certPem);
    assert.equal((await diagnose(conn(good.port, 'sslmode=require'), { ...PW, HOME: home })).ok, true);
  });

  test('fail: server certificate without serverAuth (a client certificate) and an intermediate that is not a CA', async () => {
    const clientOnly = await createClientCert(pki.inter, { subject: { CN: 'localhost' } });
    const a = await startServer(pki, { chain: [clientOnly.certPem, pki.inter.certPem], key: clientOnly.keyPem });
    servers.push(a);
    assertCause(
      await diagnose(conn(a.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt`), PW),
      'certificate-purpose',
      'chain',
    );
    const notCa = await createClientCert(pki.root, { subject: { CN: 'Not A CA' } });
    const leaf = await createServerCert(notCa, { subject: { CN: 'localhost' }, hosts: ['localhost'] });
    const b = await startServer(pki, { chain: [leaf.certPem, notCa.certPem], key: leaf.keyPem });
    servers.push(b);
    const j = await diagnose(conn(b.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt`), PW);
    assertCause(j, 'issuer-not-ca', 'chain');
    assert.match(j.diagnosis!.cause, /Not A CA/);
  });

  test('fail: sslrootcert file does not exist', async () => {
    const j = await diagnose(conn(good.port, `sslmode=verify-full sslrootcert=${pki.dir}/nope.crt`), PW);
    assertCause(j, 'root-certificate-missing');
  });

  test('fail: wrong host name, with the names the certificate has; verify-ca passes', async () => {
    const j = await diagnose(
      conn(good.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt hostaddr=127.0.0.1`, 'db.example.test'),
      PW,
    );
    assertCause(j, 'hostname-mismatch', 'hostname');
    assert.match(j.diagnosis!.cause, /"localhost", "127\.0\.0\.1"/);
    const ca = await diagnose(
      conn(good.port, `sslmode=verify-ca sslrootcert=${pki.dir}/root.crt hostaddr=127.0.0.1`, 'db.example.test'),
      PW,
    );
    assert.equal(ca.ok, true);
  });

  test('fail: the server does not send its intermediate', async () => {
    const pg = await startServer(pki, { chain: [pki.server.certPem] });
    servers.push(pg);
    const j = await diagnose(conn(pg.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt`), PW);
    assertCause(j, 'missing-intermediate', 'chain');
    assert.match(j.diagnosis!.fix, /ssl_cert_file/);
  });

  test('fail: the server certificate has expired', async () => {
    const day = 86_400_000;
    const expired = await createServerCert(pki.inter, {
      subject: { CN: 'localhost' },
      hosts: ['localhost'],
      notBefore: new Date(Date.now() - 400 * day),
      notAfter: new Date(Date.now() - 2 * day),
    });
    const pg = await startServer(pki, { chain: [expired.certPem, pki.inter.certPem], key: expired.keyPem });
    servers.push(pg);
    const j = await diagnose(conn(pg.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt`), PW);
    assertCause(j, 'certificate-expired', 'chain');
    assert.match(j.diagnosis!.cause, /CN=localhost/);
    // require does not verify: it connects (with a warning), as psql does.
    const req = await diagnose(conn(pg.port, 'sslmode=require'), PW);
    assert.equal(req.ok, true);
  });

  test('fail: self-signed server certificate not in sslrootcert', async () => {
    const self = await createRootCA({ subject: { CN: 'localhost' } });
    const pg = await startServer(pki, { chain: [self.certPem], key: self.keyPem });
    servers.push(pg);
    const j = await diagnose(conn(pg.port, `sslmode=verify-ca sslrootcert=${pki.dir}/root.crt`), PW);
    assertCause(j, 'self-signed-server-certificate', 'chain');
  });
});
