/**
 * Issue 10: authentication at the gateway. With auth_file / auth_query the gateway checks scram-sha-256, md5 and
 * password lines itself — SCRAM-SHA-256-PLUS bound to the certificate it served, so libpq's channel_binding=require
 * works through it — and logs in to the backend without a stored password (SCRAM pass-through). Real PostgreSQL 18
 * behind it; psql with libpq 18 and 15, node-postgres and postgres.js in front.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let secrets: Record<string, string>;

const PW = { alice: 'alice-secret-pw', bob: 'bob-md5-pw', carol: 'carol plain pw' };

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all bob 127.0.0.1/32 md5', 'host all all 127.0.0.1/32 scram-sha-256'],
  });
  secrets = await admin(async (c) => {
    await c.query(`CREATE ROLE alice LOGIN PASSWORD '${PW.alice}'`);
    await c.query(`CREATE ROLE carol LOGIN PASSWORD '${PW.carol}'`);
    await c.query("SET password_encryption = 'md5'");
    await c.query(`CREATE ROLE bob LOGIN PASSWORD '${PW.bob}'`);
    const r = await c.query("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('alice', 'bob')");
    return Object.fromEntries(r.rows.map((x: { rolname: string; rolpassword: string }) => [x.rolname, x.rolpassword]));
  });
});
after(async () => {
  await cluster?.destroy();
});

const conninfo = (port: number, user: string, extra = '') =>
  `host=localhost hostaddr=127.0.0.1 port=${port} user=${user} dbname=postgres sslmode=verify-full sslrootcert=${fx.root} ${extra}`;

describe('auth_file: the gateway authenticates', () => {
  let gw: TestGateway;
  before(async () => {
    const userlist = writeFixture(
      fx,
      'userlist.txt',
      `"alice" "${secrets.alice}"\n"bob" "${secrets.bob}"\n"carol" "${PW.carol}"\n`,
      0o600,
    );
    const hba = writeFixture(
      fx,
      'auth-hba.conf',
      'hostssl all alice all scram-sha-256\nhostssl all bob all md5\nhostssl all carol all password\nhostssl all all all scram-sha-256\n',
    );
    gw = await startTestGateway(fx, cluster, { hba_file: hba, auth_file: userlist });
  });
  after(async () => {
    await gw?.close();
  });

  test('libpq 18 channel_binding=require: SCRAM-SHA-256-PLUS at the gateway, pass-through to the backend', async () => {
    const r = await psql(conninfo(gw.port, 'alice', 'channel_binding=require'), 'SELECT current_user', {
      libpq: 18,
      env: { PGPASSWORD: PW.alice },
    });
    assert.equal(r.stdout.trim(), 'alice', r.stderr);
    await gw.settle();
    const rec = gw.records.filter((x) => x.user === 'alice').at(-1);
    assert.equal(rec?.auth_method, 'scram-sha-256-plus');
    assert.equal(rec?.channel_binding, true);
    assert.equal(rec?.backend_auth, 'scram', 'logged in to the backend with the recovered ClientKey');
  });

  test('libpq 18 require_auth=scram-sha-256, and libpq 15', async () => {
    const r18 = await psql(conninfo(gw.port, 'alice', 'require_auth=scram-sha-256'), 'SELECT 1', {
      libpq: 18,
      env: { PGPASSWORD: PW.alice },
    });
    assert.equal(r18.stdout.trim(), '1', r18.stderr);
    const r15 = await psql(conninfo(gw.port, 'alice', 'channel_binding=require'), 'SELECT 2', {
      libpq: 15,
      env: { PGPASSWORD: PW.alice },
    });
    assert.equal(r15.stdout.trim(), '2', r15.stderr);
  });

  test('a wrong password and an unknown user get the same FATAL 28P01 (no user enumeration)', async () => {
    for (const [user, pw] of [
      ['alice', 'wrong'],
      ['ghost', 'whatever'],
    ] as const) {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: gw.port,
        user,
        password: pw,
        database: 'postgres',
        ssl: { rejectUnauthorized: false },
      });
      const err = (await c.connect().catch((e: unknown) => e)) as { code?: string; message?: string };
      assert.equal(err.code, '28P01');
      assert.equal(err.message, `password authentication failed for user "${user}"`);
      await c.end().catch(() => undefined);
    }
    const psqlErr = await psql(conninfo(gw.port, 'alice'), 'SELECT 1', { libpq: 18, env: { PGPASSWORD: 'nope' } });
    assert.match(psqlErr.stderr, /FATAL: {2}password authentication failed for user "alice"/);
  });

  test('md5 (md5 secret in auth_file, md5 at the backend): right and wrong password', async () => {
    const ok = await psql(conninfo(gw.port, 'bob'), 'SELECT current_user', { libpq: 18, env: { PGPASSWORD: PW.bob } });
    assert.equal(ok.stdout.trim(), 'bob', ok.stderr);
    await gw.settle();
    assert.equal(gw.records.filter((x) => x.user === 'bob').at(-1)?.backend_auth, 'md5');
    const bad = await psql(conninfo(gw.port, 'bob'), 'SELECT 1', { libpq: 18, env: { PGPASSWORD: 'x' } });
    assert.match(bad.stderr, /FATAL: {2}password authentication failed for user "bob"/);
  });

  test('password (cleartext over TLS, plaintext auth_file entry), node-postgres and postgres.js', async () => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: gw.port,
      user: 'carol',
      password: PW.carol,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
    });
    await c.connect();
    assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'carol');
    await c.end();
    const sql = postgres({
      host: '127.0.0.1',
      port: gw.port,
      user: 'alice',
      password: PW.alice,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
      max: 1,
    });
    try {
      const rows = await sql`SELECT current_user AS u`;
      assert.equal(rows[0]?.u, 'alice');
    } finally {
      await sql.end();
    }
    const bad = await psql(conninfo(gw.port, 'carol'), 'SELECT 1', { libpq: 18, env: { PGPASSWORD: 'wrong' } });
    assert.match(bad.stderr, /FATAL: {2}password authentication failed for user "carol"/);
  });
});

describe('auth_query: secrets from the backend, SCRAM pass-through', () => {
  let gw: TestGateway;
  before(async () => {
    const userlist = writeFixture(fx, 'auth-user.txt', `"postgres" "${SUPERUSER_PASSWORD}"\n`, 0o600);
    const hba = writeFixture(fx, 'authq-hba.conf', 'hostssl all all all scram-sha-256\n');
    gw = await startTestGateway(fx, cluster, { hba_file: hba, auth_file: userlist, auth_user: 'postgres' });
  });
  after(async () => {
    await gw?.close();
  });

  test('alice (not in auth_file) logs in with channel binding; the gateway never held her password', async () => {
    const r = await psql(conninfo(gw.port, 'alice', 'channel_binding=require'), 'SELECT current_user', {
      libpq: 18,
      env: { PGPASSWORD: PW.alice },
    });
    assert.equal(r.stdout.trim(), 'alice', r.stderr);
    const bad = await psql(conninfo(gw.port, 'alice'), 'SELECT 1', { libpq: 18, env: { PGPASSWORD: 'wrong' } });
    assert.match(bad.stderr, /FATAL: {2}password authentication failed for user "alice"/);
  });
});

describe('without a secret source the backend authenticates (and cannot bind the channel through a relay)', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway(fx, cluster, {});
  });
  after(async () => {
    await gw?.close();
  });
  test("channel_binding=require fails with libpq's text; channel_binding=prefer works", async () => {
    const r = await psql(conninfo(gw.port, 'alice', 'channel_binding=require'), 'SELECT 1', {
      libpq: 18,
      env: { PGPASSWORD: PW.alice },
    });
    assert.match(
      r.stderr,
      /channel binding is required, but server did not offer an authentication method that supports channel binding/,
    );
    const ok = await psql(conninfo(gw.port, 'alice', 'channel_binding=prefer'), 'SELECT 1', {
      libpq: 18,
      env: { PGPASSWORD: PW.alice },
    });
    assert.equal(ok.stdout.trim(), '1', ok.stderr);
  });
});
