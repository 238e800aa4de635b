/**
 * doctor on transport problems: TLS off, TLS required, version windows that do not overlap, no shared cipher,
 * nothing listening, unknown host, wrong password — each against a real PostgreSQL 18 server, psql agreeing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertCause, diagnose } from '../support/doctor-run.js';
import { type Pki, doctorEnv, makePki, pgtls, startServer } from '../support/doctor-servers.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort, startTestCluster } from '../support/postgres.js';

const PW = { PGPASSWORD: SUPERUSER_PASSWORD };

describe('doctor: transport', () => {
  let pki: Pki;
  const servers: TestCluster[] = [];
  before(async () => {
    pki = await makePki();
  });
  after(async () => {
    for (const s of servers) await s.destroy();
  });
  const conn = (port: number, extra: string) => `host=127.0.0.1 port=${port} user=postgres dbname=postgres ${extra}`;

  test("ssl = off: require fails ('N' → turn TLS on), prefer passes unencrypted with a warning", async () => {
    const pg = await startTestCluster();
    servers.push(pg);
    assertCause(await diagnose(conn(pg.port, 'sslmode=require'), PW), 'server-ssl-off', 'sslrequest');
    const prefer = await diagnose(conn(pg.port, 'sslmode=prefer'), PW);
    assert.equal(prefer.ok, true);
    assert.equal(prefer.connection?.encryption, 'none');
    assert.ok(prefer.warnings.some((w) => /not encrypted/.test(w)));
  });

  test('server requires TLS (hostssl only): sslmode=disable fails → use require or stricter; require passes', async () => {
    const pg = await startServer(pki, { hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256'] });
    servers.push(pg);
    const j = await diagnose(conn(pg.port, 'sslmode=disable'), PW);
    assertCause(j, 'server-requires-ssl');
    assert.match(j.diagnosis!.fix, /sslmode=require or stricter/);
    assert.equal((await diagnose(conn(pg.port, 'sslmode=require'), PW)).ok, true);
  });

  test('TLS version windows: server TLS 1.3 only vs client max 1.2, server max 1.2 vs client min 1.3; overlap passes', async () => {
    const only13 = await startServer(pki, { settings: { ssl_min_protocol_version: 'TLSv1.3' } });
    servers.push(only13);
    const a = await diagnose(conn(only13.port, 'sslmode=require ssl_max_protocol_version=TLSv1.2'), PW);
    assertCause(a, 'tls-version-mismatch', 'tls');
    assert.match(a.diagnosis!.cause, /client allows TLSv1\.2 only .* server accepts TLSv1\.3 only/);
    assert.match(a.diagnosis!.fix, /ssl_max_protocol_version to TLSv1\.3/);
    assert.equal((await diagnose(conn(only13.port, 'sslmode=require'), PW)).ok, true);

    const max12 = await startServer(pki, { settings: { ssl_max_protocol_version: 'TLSv1.2' } });
    servers.push(max12);
    const b = await diagnose(conn(max12.port, 'sslmode=require ssl_min_protocol_version=TLSv1.3'), PW);
    assertCause(b, 'tls-version-mismatch', 'tls');
    assert.match(b.diagnosis!.cause, /server accepts TLSv1\.2 only/);
  });

  test('no shared cipher: EC key with only ECDHE-RSA suites (TLS ≤ 1.2); the same suites with an RSA key pass', async () => {
    const pg = await startServer(pki, {
      settings: { ssl_ciphers: 'ECDHE-RSA-AES128-GCM-SHA256', ssl_max_protocol_version: 'TLSv1.2' },
    });
    servers.push(pg);
    const j = await diagnose(conn(pg.port, 'sslmode=require'), PW);
    assertCause(j, 'no-shared-cipher', 'tls');
    assert.match(j.diagnosis!.fix, /ssl_ciphers/);
    const rsa = await makePki({ keyType: 'rsa-2048' });
    const ok = await startServer(rsa, {
      settings: { ssl_ciphers: 'ECDHE-RSA-AES128-GCM-SHA256', ssl_max_protocol_version: 'TLSv1.2' },
    });
    servers.push(ok);
    assert.equal((await diagnose(conn(ok.port, 'sslmode=require'), PW)).ok, true);
  });

  test('nothing listens: connection refused; unknown host: DNS', async () => {
    const port = await freePort();
    assertCause(await diagnose(conn(port, 'sslmode=require'), PW), 'tcp-refused', 'tcp');
    const dns = await diagnose('host=no-such-host.invalid port=5432 user=postgres sslmode=require', PW);
    assertCause(dns, 'dns', 'dns');
  });

  test('wrong password: TLS works, the password is wrong; no password: it is missing', async () => {
    const pg = await startServer(pki);
    servers.push(pg);
    const j = await diagnose(conn(pg.port, 'sslmode=require'), { PGPASSWORD: 'wrong' });
    assertCause(j, 'password-wrong', 'authentication');
    assertCause(await diagnose(conn(pg.port, 'sslmode=require')), 'password-missing', 'authentication');
  });

  test('human output: steps, cause, fix and libpq message; usage errors exit 2', async () => {
    const port = await freePort();
    const r = await pgtls(['doctor', conn(port, 'sslmode=verify-full')], doctorEnv());
    assert.equal(r.code, 1);
    assert.match(r.stdout, /✗ tcp\s+nothing accepts connections/);
    assert.match(r.stdout, /Cause: /);
    assert.match(r.stdout, /Fix: {3}/);
    assert.match(
      r.stdout,
      /libpq \(psql\) would say:\n {2}connection to server at "127\.0\.0\.1", port \d+ failed: Connection refused/,
    );
    const bad = await pgtls(['doctor', 'host=x sslmode=bogus'], doctorEnv());
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /invalid sslmode value: "bogus"/);
    const usage = await pgtls(['doctor'], doctorEnv());
    assert.equal(usage.code, 2);
    const help = await pgtls(['doctor', '--help'], doctorEnv());
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--rotation/);
  });
});
