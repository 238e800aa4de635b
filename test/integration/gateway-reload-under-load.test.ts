/**
 * Reload under load: 50 live sessions (PGTLS_RELOAD_SESSIONS) keep running queries while the certificate is swapped
 * for another one and then for a corrupt file. No session drops or sees an error; new connections get the new
 * certificate after the good swap and keep it after the corrupt one.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';
import { negotiatedTls } from '../support/raw.js';

const SESSIONS = Number(process.env.PGTLS_RELOAD_SESSIONS ?? '') || 50;

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;
let certPath: string;
let keyPath: string;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster({ settings: { max_connections: String(SESSIONS + 20) } });
  certPath = writeFixture(fx, 'load.crt', readFileSync(fx.server.cert, 'utf8'));
  keyPath = writeFixture(fx, 'load.key', readFileSync(fx.server.key, 'utf8'), 0o600);
  gw = await startTestGateway(fx, cluster, { ssl_cert_file: certPath, ssl_key_file: keyPath, log_connections: 'off' });
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

/** The subject CN a new TLS connection is served. */
async function servedCN(): Promise<string> {
  const t = await negotiatedTls(gw.port);
  const cn = String(t.getPeerCertificate().subject?.CN ?? '');
  t.destroy();
  return cn;
}

interface Worker {
  client: pg.Client;
  queries: number;
  errors: string[];
  loop: Promise<void>;
}

test(`certificate swap and corrupt reload under ${SESSIONS} busy sessions: 0 dropped, new cert served, old config kept`, async () => {
  let stop = false;
  const workers: Worker[] = [];
  const ca = readFileSync(fx.root, 'utf8');
  for (let i = 0; i < SESSIONS; i++) {
    const client = new pg.Client({
      host: 'localhost',
      port: gw.port,
      user: 'postgres',
      password: SUPERUSER_PASSWORD,
      database: 'postgres',
      ssl: { ca, servername: 'localhost' },
    });
    const w: Worker = { client, queries: 0, errors: [], loop: Promise.resolve() };
    client.on('error', (e) => w.errors.push(`client error: ${e.message}`));
    await client.connect();
    w.loop = (async () => {
      for (let q = 0; q < 1_000_000 && !stop; q++) {
        try {
          const r = await client.query('select $1::int + 1 as n', [q]);
          if (r.rows[0].n !== q + 1) w.errors.push(`wrong answer ${r.rows[0].n}`);
          w.queries++;
        } catch (e) {
          w.errors.push((e as Error).message);
          return;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    workers.push(w);
  }
  const total = () => workers.reduce((n, w) => n + w.queries, 0);
  const ranSince = async (before: number) => {
    // Bounded: every session must have gone on querying after the step.
    for (let i = 0; i < 100 && total() < before + SESSIONS * 3; i++) await new Promise((r) => setTimeout(r, 100));
    return total() - before;
  };
  try {
    assert.equal(await servedCN(), 'localhost');
    await ranSince(0);

    // A good swap: another certificate (and its key) from the same CA.
    copyFileSync(fx.wrongHost.cert, certPath);
    copyFileSync(fx.wrongHost.key, keyPath);
    const good = await gw.gw.reload();
    assert.ok(good.ok, JSON.stringify(good));
    assert.equal(await servedCN(), 'db.example.com');
    const afterGood = total();
    assert.ok((await ranSince(afterGood)) >= SESSIONS * 3, 'sessions stalled after the certificate swap');

    // A corrupt certificate: refused, the swapped-in certificate stays in force.
    writeFileSync(certPath, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    const bad = await gw.gw.reload();
    assert.equal(bad.ok, false);
    assert.match((bad as { error: Error }).error.message, /^could not load server certificate file "[^"]+load\.crt"/);
    assert.equal(await servedCN(), 'db.example.com');
    const afterBad = total();
    assert.ok((await ranSince(afterBad)) >= SESSIONS * 3, 'sessions stalled after the corrupt reload');
  } finally {
    stop = true;
    await Promise.all(workers.map((w) => w.loop));
  }
  // Every session is still there and still answers.
  const finals = await Promise.all(workers.map((w) => w.client.query('select 1 as one').then((r) => r.rows[0].one)));
  assert.deepEqual(finals, new Array(SESSIONS).fill(1));
  const errors = workers.flatMap((w, i) => w.errors.map((e) => `session ${i}: ${e}`));
  assert.deepEqual(errors, []);
  assert.ok(workers.every((w) => w.queries > 0));
  await Promise.all(workers.map((w) => w.client.end()));
});
