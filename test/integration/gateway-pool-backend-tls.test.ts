/**
 * Issue 10: the pool's own logins to a TLS backend bind the channel, as libpq (channel_binding=prefer) would on that
 * hop: SCRAM-SHA-256-PLUS with tls-server-end-point of the backend's certificate — with the client's password (from
 * auth_file) and with SCRAM pass-through keys (auth_query, no password held). PostgreSQL checks the binding data, so
 * a login that succeeds with PLUS proves the gateway bound the certificate it verified. On a plaintext hop the same
 * logins use SCRAM-SHA-256 (flag n). SHOW SERVERS shows the hop's TLS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, sslClusterOptions, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const PW = 'bound-app-pw';
let fx: GatewayFixtures;
let cluster: TestCluster;
let hba: string;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster({
    ...sslClusterOptions(fx),
    hba: [
      'local all all trust',
      'hostssl all all 127.0.0.1/32 scram-sha-256',
      'host all all 127.0.0.1/32 scram-sha-256',
    ],
  });
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await c.connect();
  await c.query(`CREATE ROLE app LOGIN PASSWORD '${PW}'`);
  await c.end();
  hba = writeFixture(fx, 'bound-hba.conf', 'hostssl all all all scram-sha-256\n');
});
after(async () => {
  await cluster?.destroy();
});

async function loginsVia(gwConf: Record<string, string>): Promise<{ auth: unknown[]; servers: string }> {
  const gw: TestGateway = await startTestGateway(fx, cluster, {
    hba_file: hba,
    pool_mode: 'transaction',
    default_pool_size: '1',
    admin_users: 'postgres',
    ...gwConf,
  });
  const auth: unknown[] = [];
  gw.gw.on('notice', (n: { msg: string; auth?: string }) => {
    if (n.msg === 'pool: server opened') auth.push(n.auth);
  });
  try {
    const r = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=app dbname=postgres sslmode=verify-full sslrootcert=${fx.root} channel_binding=require`,
      'SELECT current_user',
      { libpq: 18, env: { PGPASSWORD: PW } },
    );
    assert.equal(r.stdout.trim(), 'app', r.stderr);
    const servers = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=postgres dbname=pgtls sslmode=verify-full sslrootcert=${fx.root}`,
      'SHOW SERVERS',
      { libpq: 18, env: { PGPASSWORD: SUPERUSER_PASSWORD } },
    );
    return { auth, servers: servers.stdout + servers.stderr };
  } finally {
    await gw.close();
  }
}

describe("the pool's server logins over a TLS hop", () => {
  test('password from auth_file: SCRAM-SHA-256-PLUS to the backend', async () => {
    const userlist = writeFixture(fx, 'bound-users.txt', `"app" "${PW}"\n"postgres" "${SUPERUSER_PASSWORD}"\n`, 0o600);
    const { auth, servers } = await loginsVia({
      auth_file: userlist,
      upstream_sslmode: 'verify-full',
      upstream_sslrootcert: fx.root,
      upstream: `postgres://localhost:${cluster.port}`,
    });
    assert.deepEqual(auth, ['scram-sha-256-plus']);
    assert.match(
      servers,
      /^S\|app\|postgres\|idle\|127\.0\.0\.1\|\d+\|[^|]+\|[^|]+\|\d+\|TLSv1\.3\/TLS_AES_256_GCM_SHA384\|/m,
    );
  });

  test('SCRAM pass-through keys (auth_query): SCRAM-SHA-256-PLUS to the backend', async () => {
    const userlist = writeFixture(fx, 'bound-auth-user.txt', `"postgres" "${SUPERUSER_PASSWORD}"\n`, 0o600);
    const { auth } = await loginsVia({
      auth_file: userlist,
      auth_user: 'postgres',
      upstream_sslmode: 'require',
    });
    assert.deepEqual(auth, ['scram-sha-256-plus']);
  });

  test('a plaintext hop: SCRAM-SHA-256 without binding, and no TLS in SHOW SERVERS', async () => {
    const userlist = writeFixture(fx, 'bound-auth-user2.txt', `"postgres" "${SUPERUSER_PASSWORD}"\n`, 0o600);
    const { auth, servers } = await loginsVia({
      auth_file: userlist,
      auth_user: 'postgres',
      upstream_sslmode: 'disable',
    });
    assert.deepEqual(auth, ['scram-sha-256']);
    assert.match(servers, /^S\|app\|postgres\|idle\|127\.0\.0\.1\|\d+\|[^|]+\|[^|]+\|\d+\|\|0\|\d+$/m);
  });
});
