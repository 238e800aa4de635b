/**
 * Reload: certificates, keys and rules change for new connections only; established sessions keep running; a
 * broken file leaves the previous configuration in force.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { psql, sClient, servedChain } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;
let certPath: string;
let keyPath: string;
let hbaPath: string;
const env = { PGPASSWORD: SUPERUSER_PASSWORD };

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  certPath = writeFixture(fx, 'live.crt', readFileSync(fx.server.cert, 'utf8'));
  keyPath = writeFixture(fx, 'live.key', readFileSync(fx.server.key, 'utf8'), 0o600);
  hbaPath = writeFixture(fx, 'live-hba.conf', 'hostssl all all all scram-sha-256\n');
  gw = await startTestGateway(fx, cluster, { ssl_cert_file: certPath, ssl_key_file: keyPath, hba_file: hbaPath });
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

async function servedSubject(): Promise<string> {
  const r = await sClient(gw.port, ['-starttls', 'postgres', '-showcerts']);
  return servedChain(r.stdout)[0] ?? `none: ${r.stderr}`;
}

function liveClient(): Promise<pg.Client> {
  const c = new pg.Client({
    host: 'localhost',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { ca: readFileSync(fx.root, 'utf8'), servername: 'localhost' },
  });
  return c.connect().then(() => c);
}

describe('reload', () => {
  test('a new certificate is served to new connections; a live session keeps running on the old one', async () => {
    const live = await liveClient();
    try {
      await swapUnderLiveSession(live);
    } finally {
      await live.end();
      copyFileSync(fx.server.cert, certPath);
      copyFileSync(fx.server.key, keyPath);
      await gw.gw.reload();
    }
  });

  async function swapUnderLiveSession(live: pg.Client): Promise<void> {
    assert.equal(await servedSubject(), 'CN = localhost');
    copyFileSync(fx.wrongHost.cert, certPath);
    copyFileSync(fx.wrongHost.key, keyPath);
    const r = await gw.gw.reload();
    assert.ok(r.ok);
    assert.equal(await servedSubject(), 'CN = db.example.com');
    const q = await live.query('select 41 + 1 as answer');
    assert.equal(q.rows[0].answer, 42);
    const refused = await psql(
      `host=localhost port=${gw.port} user=postgres sslmode=verify-full sslrootcert=${fx.root}`,
      'select 1',
      { env },
    );
    assert.match(refused.stderr, /server certificate for "db\.example\.com" does not match host name "localhost"/);
  }

  test('a broken certificate file is refused and the previous one stays in force', async () => {
    writeFileSync(certPath, 'not a certificate\n');
    const r = await gw.gw.reload();
    assert.equal(r.ok, false);
    assert.match(
      (r as { error: Error }).error.message,
      new RegExp(`could not load server certificate file "${certPath}": no start line`),
    );
    assert.equal(await servedSubject(), 'CN = localhost');
    const ok = await psql(
      `host=localhost port=${gw.port} user=postgres sslmode=verify-full sslrootcert=${fx.root}`,
      'select 1',
      { env },
    );
    assert.equal(ok.code, 0, ok.stderr);
    copyFileSync(fx.server.cert, certPath);
  });

  test('a key that does not match the certificate is refused at reload', async () => {
    copyFileSync(fx.wrongHost.key, keyPath);
    const r = await gw.gw.reload();
    assert.equal(r.ok, false);
    // PostgreSQL 18's text for this case (SSL_CTX_use_PrivateKey_file fails before its own check is reached).
    assert.equal(
      (r as { error: Error }).error.message,
      `could not load private key file "${keyPath}": key values mismatch`,
    );
    copyFileSync(fx.server.key, keyPath);
    assert.ok((await gw.gw.reload()).ok);
  });

  test('pg_hba.conf changes apply to new connections; a bad line keeps the old rules', async () => {
    writeFileSync(hbaPath, 'hostssl all postgres all reject\n');
    assert.ok((await gw.gw.reload()).ok);
    const refused = await psql(`host=localhost port=${gw.port} user=postgres sslmode=require`, 'select 1', { env });
    assert.match(
      refused.stderr,
      /FATAL: {2}pg_hba.conf rejects connection for host "127\.0\.0\.1", user "postgres", database "postgres", SSL encryption/,
    );
    writeFileSync(hbaPath, 'hostssl all all all scram-sha-256\nhostsll all all all trust\n');
    const bad = await gw.gw.reload();
    assert.equal(bad.ok, false);
    assert.equal(
      (bad as { error: Error }).error.message,
      `invalid connection type "hostsll" (line 2 of configuration file "${hbaPath}")`,
    );
    const still = await psql(`host=localhost port=${gw.port} user=postgres sslmode=require`, 'select 1', { env });
    assert.match(still.stderr, /rejects connection/);
    writeFileSync(hbaPath, 'hostssl all all all scram-sha-256\n');
    assert.ok((await gw.gw.reload()).ok);
  });

  test('ssl_min_protocol_version changes at reload; listen settings need a restart', async () => {
    const conf = readFileSync(gw.configFile, 'utf8');
    writeFileSync(gw.configFile, `${conf}\nssl_min_protocol_version = 'TLSv1.3'\nport = 1\n`);
    const r = await gw.gw.reload();
    assert.ok(r.ok);
    assert.deepEqual(r.warnings, ['parameter "port" cannot be changed without restarting the gateway']);
    const tls12 = await sClient(gw.port, ['-starttls', 'postgres', '-tls1_2']);
    assert.match(tls12.stderr + tls12.stdout, /alert protocol version/);
    writeFileSync(gw.configFile, conf);
    assert.ok((await gw.gw.reload()).ok);
  });
});
