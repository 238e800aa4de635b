/**
 * What libpq sees of the certificate the gateway serves: the same outcome per sslmode as from PostgreSQL 18
 * serving the same file (good chain, wrong host, expired, self-signed).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type RunResult, psql } from '../support/clients.js';
import { type GatewayFixtures, type Pair, makeFixtures, sslClusterOptions } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let pg: TestCluster;
const env = { PGPASSWORD: SUPERUSER_PASSWORD };

before(async () => {
  fx = await makeFixtures();
  pg = await startTestCluster(sslClusterOptions(fx));
});
after(async () => {
  await pg?.destroy();
});

function outcome(r: RunResult): string {
  if (r.code === 0) return 'connected';
  return /(SSL error: .*|FATAL: {2}.*|server certificate for .*)/.exec(r.stderr)?.[1] ?? r.stderr.trim();
}

/** Serve `pair` from PostgreSQL (swapped in with a reload) and from a gateway; run the same psql against both. */
async function sideBySide(pair: Pair, conninfo: string): Promise<{ pg: string; gw: string }> {
  await pg.install('variant.crt', readFileSync(pair.cert));
  await pg.install('variant.key', readFileSync(pair.key));
  await pg.install(
    'pgtls.auto.conf',
    `listen_addresses = '127.0.0.1'\nport = '${pg.port}'\nunix_socket_directories = '${pg.socketDir}'\nssl = 'on'\nssl_cert_file = 'variant.crt'\nssl_key_file = 'variant.key'\n`,
  );
  await pg.reload();
  await new Promise((r) => setTimeout(r, 300));
  const gw: TestGateway = await startTestGateway(fx, pg, { ssl_cert_file: pair.cert, ssl_key_file: pair.key });
  try {
    const a = await psql(`host=localhost port=${pg.port} user=postgres ${conninfo}`, 'select 1', { env });
    const b = await psql(`host=localhost port=${gw.port} user=postgres ${conninfo}`, 'select 1', { env });
    return { pg: outcome(a), gw: outcome(b) };
  } finally {
    await gw.close();
  }
}

describe('served certificate variants, as libpq sees them', () => {
  const verifyFull = () => `sslmode=verify-full sslrootcert=${fx.root}`;
  const cases: [string, () => Pair, () => string, RegExp | string][] = [
    ['good chain, verify-full', () => fx.server, verifyFull, 'connected'],
    [
      'wrong host, verify-full',
      () => fx.wrongHost,
      verifyFull,
      /server certificate for "db\.example\.com".*does not match host name "localhost"/,
    ],
    ['wrong host, verify-ca', () => fx.wrongHost, () => `sslmode=verify-ca sslrootcert=${fx.root}`, 'connected'],
    ['expired, verify-full', () => fx.expired, verifyFull, /SSL error: certificate verify failed/],
    ['expired, require', () => fx.expired, () => 'sslmode=require', 'connected'],
    ['self-signed, verify-full', () => fx.selfSigned, verifyFull, /SSL error: certificate verify failed/],
    ['self-signed, require', () => fx.selfSigned, () => 'sslmode=require', 'connected'],
  ];
  for (const [name, pair, conninfo, expected] of cases) {
    test(name, async () => {
      const r = await sideBySide(pair(), conninfo());
      if (typeof expected === 'string') assert.equal(r.gw, expected);
      else assert.match(r.gw, expected);
      assert.equal(r.gw, r.pg);
    });
  }
});
