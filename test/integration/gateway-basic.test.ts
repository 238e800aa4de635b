import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let pg: TestCluster;
let gw: TestGateway;
const env = { PGPASSWORD: SUPERUSER_PASSWORD };

before(async () => {
  fx = await makeFixtures();
  pg = await startTestCluster();
  gw = await startTestGateway(fx, pg);
});
after(async () => {
  await gw?.close();
  await pg?.destroy();
});

describe('gateway: TLS in front of PostgreSQL', () => {
  test('psql verify-full through the gateway reaches the backend over TLS 1.3', async () => {
    const r = await psql(
      `host=localhost port=${gw.port} user=postgres sslmode=verify-full sslrootcert=${fx.root}`,
      'select current_user',
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'postgres');
    await gw.settle();
    const rec = gw.records.at(-1)!;
    assert.equal(rec.outcome, 'relayed');
    assert.equal(rec.tls_version, 'TLSv1.3');
    assert.equal(rec.negotiation, 'sslrequest');
  });

  test('a wrong password is refused by the backend, relayed verbatim (28P01)', async () => {
    const r = await psql(`host=localhost port=${gw.port} user=postgres sslmode=require`, 'select 1', {
      env: { PGPASSWORD: 'nope' },
    });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /FATAL: {2}password authentication failed for user "postgres"/);
  });

  test('plaintext is refused with require_secure_transport (PostgreSQL text, no encryption)', async () => {
    const r = await psql(`host=127.0.0.1 port=${gw.port} user=postgres dbname=postgres sslmode=disable`, 'select 1', {
      env,
    });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /FATAL: {2}no pg_hba.conf entry for host "127\.0\.0\.1", user "postgres", database "postgres", no encryption/,
    );
  });

  test('libpq 18 direct TLS (sslnegotiation=direct) connects with ALPN', async () => {
    const r = await psql(
      `host=localhost port=${gw.port} user=postgres sslmode=verify-full sslrootcert=${fx.root} sslnegotiation=direct`,
      'select 1',
      { env, libpq: 18 },
    );
    assert.equal(r.code, 0, r.stderr);
    await gw.settle();
    assert.equal(gw.records.at(-1)!.negotiation, 'direct');
  });
});
