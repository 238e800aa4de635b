/**
 * More ways to break a connection, each with its passing twin and psql (libpq 18) agreeing: channel binding and
 * require_auth, a server that accepts only obsolete suites, a revoked server certificate (sslcrl), hostnossl lines
 * (prefer falls back, require is told why), direct TLS against PostgreSQL 15, and something that is not PostgreSQL.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createCRL } from '../../src/pki/generate.js';
import { type DoctorJson, assertCause, diagnose } from '../support/doctor-run.js';
import { type Pki, makePki, pgtlsJson, startServer } from '../support/doctor-servers.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const PW = { PGPASSWORD: SUPERUSER_PASSWORD };

describe('doctor: more failure modes', () => {
  let pki: Pki;
  let good: TestCluster;
  const servers: TestCluster[] = [];
  const conn = (port: number, extra: string) => `host=localhost port=${port} user=postgres dbname=postgres ${extra}`;
  before(async () => {
    pki = await makePki();
    good = await startServer(pki);
    servers.push(good);
  });
  after(async () => {
    for (const s of servers) await s.destroy();
  });

  test('channel_binding=require passes over TLS (SCRAM-SHA-256-PLUS); require_auth=password fails against SCRAM', async () => {
    const ok = await diagnose(conn(good.port, 'sslmode=require channel_binding=require'), PW);
    assert.equal(ok.ok, true);
    assert.match(ok.steps.at(-1)!.summary, /SCRAM-SHA-256-PLUS/);
    const j = await diagnose(conn(good.port, 'sslmode=require require_auth=password'), PW);
    assert.equal(j.ok, false);
    assert.match(j.libpqMessage ?? '', /authentication method requirement "password" failed/);
    const none = await diagnose(conn(good.port, 'sslmode=require require_auth=scram-sha-256'), PW);
    assert.equal(none.ok, true);
  });

  test('sslcertmode=require against a server that never asks for a certificate: told so (psql agrees)', async () => {
    const j = await diagnose(conn(good.port, 'sslmode=require sslcertmode=require'), PW);
    assertCause(j, 'client-certificate-not-requested', 'client-certificate');
  });

  test('cleartext password method: doctor logs in like libpq; require_auth=scram-sha-256 refuses it', async () => {
    const pg = await startServer(pki, { hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 password'] });
    servers.push(pg);
    const ok = await diagnose(conn(pg.port, 'sslmode=require'), PW);
    assert.equal(ok.ok, true);
    assert.match(ok.steps.at(-1)!.summary, /password/);
    const j = await diagnose(conn(pg.port, 'sslmode=require require_auth=scram-sha-256'), PW);
    assert.equal(j.ok, false);
    assert.match(j.libpqMessage ?? '', /server requested a cleartext password/);
  });

  test('server accepting only obsolete suites (SEED): no-shared-cipher names the suite; HIGH passes', async () => {
    const rsa = await makePki({ keyType: 'rsa-2048' });
    const pg = await startServer(rsa, {
      settings: { ssl_ciphers: 'SEED-SHA:@SECLEVEL=0', ssl_max_protocol_version: 'TLSv1.2' },
    });
    servers.push(pg);
    const j = await diagnose(conn(pg.port, 'sslmode=require'), PW);
    assertCause(j, 'no-shared-cipher', 'tls');
    assert.match(j.diagnosis!.cause, /TLS_RSA_WITH_SEED_CBC_SHA/);
  });

  test('revoked server certificate with sslcrl: certificate-revoked; without the CRL it verifies', async () => {
    const crl = await createCRL(pki.inter, [{ serial: pki.server.serial }]);
    const crlFile = pki.file('inter.crl', crl);
    const j = await diagnose(
      conn(good.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt sslcrl=${crlFile}`),
      PW,
    );
    assertCause(j, 'certificate-revoked', 'chain');
    assert.equal((await diagnose(conn(good.port, `sslmode=verify-full sslrootcert=${pki.dir}/root.crt`), PW)).ok, true);
  });

  test('hostnossl only: require is refused with the reason, prefer falls back to plaintext (exit 0, warned)', async () => {
    const pg = await startServer(pki, { hba: ['local all all trust', 'hostnossl all all 127.0.0.1/32 scram-sha-256'] });
    servers.push(pg);
    assertCause(await diagnose(conn(pg.port, 'sslmode=require'), PW), 'hba-no-ssl-entry', 'authentication');
    const prefer = await diagnose(conn(pg.port, 'sslmode=prefer'), PW);
    assert.equal(prefer.ok, true);
    assert.equal(prefer.connection?.encryption, 'none');
    assert.ok(prefer.warnings.some((w) => /fell back/.test(w)));
  });

  test('sslnegotiation=direct: works with PostgreSQL 18, explained against PostgreSQL 15', async () => {
    assert.equal((await diagnose(conn(good.port, 'sslmode=require sslnegotiation=direct'), PW)).ok, true);
    const pg15 = await startTestCluster({
      flavor: 'debian',
      files: { 'server.crt': `${pki.server.certPem}\n${pki.inter.certPem}\n`, 'server.key': pki.server.keyPem },
      settings: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' },
    });
    servers.push(pg15);
    const j = await diagnose(conn(pg15.port, 'sslmode=require sslnegotiation=direct'), PW);
    assertCause(j, 'direct-tls-unsupported', 'tls');
    assert.equal((await diagnose(conn(pg15.port, 'sslmode=require'), PW)).ok, true);
  });

  test('a port that accepts TCP and never answers: doctor returns (bounded wait) and says so', async () => {
    const held: import('node:net').Socket[] = [];
    const srv = createServer((s) => {
      held.push(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    try {
      const { code, json } = await pgtlsJson<DoctorJson>(['doctor', conn(port, 'sslmode=require'), '--timeout', '2']);
      assert.equal(code, 1);
      assert.equal(json.diagnosis?.code, 'no-answer');
      assert.equal(json.diagnosis?.stage, 'sslrequest');
    } finally {
      for (const s of held) s.destroy();
      srv.close();
    }
  });

  test('not PostgreSQL: a service answering SSLRequest with something else', async () => {
    const srv = createServer((s) => {
      s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    try {
      assertCause(await diagnose(conn(port, 'sslmode=require'), PW), 'not-postgresql', 'sslrequest');
    } finally {
      srv.close();
    }
  });
});
