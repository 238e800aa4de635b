/**
 * Issue 10: drivers no one here wrote, through the real gateway (not the plaintext pool front end): TLS to the
 * gateway, SCRAM at the gateway with the secret read from the backend (auth_user + auth_query, so the gateway holds
 * no password of `app` and logs its servers in by SCRAM pass-through), session and transaction pooling on a pool of
 * two. libpq 18 and psycopg 3 (Debian's libpq) require channel binding; JDBC 42.5 (no channel binding support) uses
 * plain SCRAM over TLS; node-postgres and postgres.js use their named prepared statements. hba is `hostssl` only,
 * so each success is also a TLS connection.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { cleanEnv, psql, run } from '../support/clients.js';
import { JDBC_PROGRAM, PSYCOPG_PROGRAM, assertDriverOutput } from '../support/driver-programs.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const APP_PASSWORD = 'app-driver-pw';
let fx: GatewayFixtures;
let cluster: TestCluster;
let userlist: string;
let hba: string;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  const admin = new pg.Client({
    host: '127.0.0.1',
    port: cluster.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
  });
  await admin.connect();
  await admin.query(`create role app login password '${APP_PASSWORD}'`);
  await admin.query('create table items(id int primary key, label text); grant all on items to app');
  await admin.query("insert into items select g, 'item ' || g from generate_series(1, 100) g");
  await admin.end();
  userlist = writeFixture(fx, 'drivers-auth-user.txt', `"postgres" "${SUPERUSER_PASSWORD}"\n`, 0o600);
  hba = writeFixture(fx, 'drivers-hba.conf', 'hostssl all all all scram-sha-256\n');
});
after(async () => {
  await cluster?.destroy();
});

for (const mode of ['session', 'transaction'] as const) {
  describe(`${mode} pooling behind TLS and SCRAM at the gateway`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway(fx, cluster, {
        hba_file: hba,
        auth_file: userlist,
        auth_user: 'postgres',
        pool_mode: mode,
        // Transaction mode: two servers for everyone. Session mode: the driver programs hold three sessions.
        default_pool_size: mode === 'transaction' ? '2' : '4',
      });
    });
    after(async () => {
      await gw?.close();
    });
    const conninfo = (extra = '') =>
      `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=app dbname=postgres sslmode=verify-full sslrootcert=${fx.root} ${extra}`;

    test('libpq 18: channel_binding=require, require_auth=scram-sha-256; a wrong password gets 28P01', async () => {
      const r = await psql(
        conninfo('channel_binding=require require_auth=scram-sha-256 application_name=drv'),
        "select current_user || '|' || current_setting('application_name')",
        { libpq: 18, env: { PGPASSWORD: APP_PASSWORD } },
      );
      assert.equal(r.stdout.trim(), 'app|drv', r.stderr);
      const bad = await psql(conninfo('channel_binding=require'), 'select 1', {
        libpq: 18,
        env: { PGPASSWORD: 'wrong' },
      });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /FATAL: {2}password authentication failed for user "app"/);
    });

    test('libpq 15: channel binding by default (prefer); a backend error reaches the client with its text', async () => {
      const ok = await psql(conninfo(), 'select current_user', { libpq: 15, env: { PGPASSWORD: APP_PASSWORD } });
      assert.equal(ok.stdout.trim(), 'app', ok.stderr);
      const r = await psql(conninfo(), 'select 1 from missing_table', {
        libpq: 15,
        env: { PGPASSWORD: APP_PASSWORD },
      });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /ERROR: {2}relation "missing_table" does not exist/);
    });

    test('node-postgres over TLS: named prepared statements from 4 clients at once', async () => {
      const clients = Array.from(
        { length: 4 },
        () =>
          new pg.Client({
            host: '127.0.0.1',
            port: gw.port,
            user: 'app',
            password: APP_PASSWORD,
            database: 'postgres',
            ssl: { rejectUnauthorized: false },
          }),
      );
      await Promise.all(clients.map((c) => c.connect()));
      try {
        const got = await Promise.all(
          clients.map(async (c, ci) => {
            const labels: string[] = [];
            for (let i = 1; i <= 10; i++) {
              const r = await c.query({
                name: 'by-id',
                text: 'select label from items where id = $1',
                values: [ci * 10 + i],
              });
              labels.push(r.rows[0].label);
            }
            return labels;
          }),
        );
        got.forEach((labels, ci) =>
          assert.deepEqual(
            labels,
            Array.from({ length: 10 }, (_, i) => `item ${ci * 10 + i + 1}`),
          ),
        );
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    });

    test('postgres.js over TLS: default prepared statements, 60 queries over 4 connections', async () => {
      const sql = postgres({
        host: '127.0.0.1',
        port: gw.port,
        user: 'app',
        password: APP_PASSWORD,
        database: 'postgres',
        ssl: { rejectUnauthorized: false },
        max: 4,
      });
      try {
        const rows = await Promise.all(
          Array.from({ length: 60 }, (_, i) => sql`select label from items where id = ${(i % 100) + 1}`),
        );
        assert.deepEqual(
          rows.map((r) => r[0]?.label),
          Array.from({ length: 60 }, (_, i) => `item ${(i % 100) + 1}`),
        );
      } finally {
        await sql.end();
      }
    });

    test('psycopg 3: channel_binding=require, server-side prepared statements (prepare_threshold=0)', async () => {
      const script = join(fx.dir, `psycopg-${mode}.py`);
      writeFileSync(script, PSYCOPG_PROGRAM);
      const r = await run(
        '/usr/bin/python3',
        [script, `${conninfo('channel_binding=require')} password=${APP_PASSWORD}`],
        {
          env: cleanEnv(),
        },
      );
      assert.equal(r.code, 0, r.stderr);
      assertDriverOutput(r.stdout, mode);
      // The failing case: the wrong password, with libpq's rendering of the gateway's FATAL.
      const bad = await run(
        '/usr/bin/python3',
        [
          '-c',
          'import sys, psycopg; psycopg.connect(sys.argv[1])',
          `${conninfo('channel_binding=require')} password=nope`,
        ],
        { env: cleanEnv() },
      );
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /password authentication failed for user "app"/);
    });

    test('JDBC over TLS (sslmode=require): server-side prepared statements (prepareThreshold=1)', async () => {
      const dir = mkdtempSync(join(fx.dir, 'jdbc-'));
      writeFileSync(join(dir, 'Prog.java'), JDBC_PROGRAM);
      const url = `jdbc:postgresql://127.0.0.1:${gw.port}/postgres?prepareThreshold=1&sslmode=require`;
      const r = await run(
        'java',
        ['-cp', '/usr/share/java/postgresql.jar', join(dir, 'Prog.java'), url, APP_PASSWORD],
        {
          env: cleanEnv(),
          timeoutMs: 90_000,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      assertDriverOutput(r.stdout, mode);
      // Without TLS the gateway refuses (hba is hostssl only), with PostgreSQL's text.
      const plain = await run(
        'java',
        [
          '-cp',
          '/usr/share/java/postgresql.jar',
          join(dir, 'Prog.java'),
          url.replace('sslmode=require', 'sslmode=disable'),
          APP_PASSWORD,
        ],
        { env: cleanEnv(), timeoutMs: 90_000 },
      );
      assert.notEqual(plain.code, 0);
      assert.match(plain.stderr, /SSL off|no pg_hba\.conf entry|SSL connection is required/);
    });
  });
}
