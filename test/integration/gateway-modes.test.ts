/**
 * Real drivers through the gateway (node-postgres, postgres.js), the Azure error style, and the plaintext modes
 * (require_secure_transport = off, ssl = off) with what libpq then sees.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { Gateway } from '../../src/gateway/gateway.js';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
const gateways: TestGateway[] = [];
const env = { PGPASSWORD: SUPERUSER_PASSWORD };

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
});
after(async () => {
  for (const g of gateways) await g.close();
  await cluster?.destroy();
});

async function gateway(conf: Record<string, string> = {}): Promise<TestGateway> {
  const g = await startTestGateway(fx, cluster, conf);
  gateways.push(g);
  return g;
}

describe('drivers through the gateway', () => {
  test('node-postgres: verified TLS, a pool of concurrent queries', async () => {
    const g = await gateway();
    const pool = new pg.Pool({
      host: 'localhost',
      port: g.port,
      user: 'postgres',
      password: SUPERUSER_PASSWORD,
      database: 'postgres',
      max: 4,
      ssl: { ca: readFileSync(fx.root, 'utf8') },
    });
    try {
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          pool.query('select $1::int * 2 as v, ssl from pg_stat_ssl where pid = pg_backend_pid()', [i]),
        ),
      );
      assert.deepEqual(
        results.map((r) => r.rows[0].v),
        Array.from({ length: 12 }, (_, i) => i * 2),
      );
    } finally {
      await pool.end();
    }
    await new Promise((r) => setTimeout(r, 200)); // records are emitted once the gateway has seen each close
    assert.ok(g.records.filter((r) => r.outcome === 'relayed').length >= 1);
    assert.ok(g.records.every((r) => r.tls_version === 'TLSv1.3'));
  });

  test('postgres.js: verified TLS, a query and a cancel relayed to the right backend', async () => {
    const g = await gateway();
    const sql = postgres({
      host: 'localhost',
      port: g.port,
      user: 'postgres',
      password: SUPERUSER_PASSWORD,
      database: 'postgres',
      ssl: { ca: readFileSync(fx.root, 'utf8') },
      max: 2,
      onnotice: () => undefined,
    });
    try {
      const [row] = await sql`select 'ok' as v`;
      assert.equal(row?.v, 'ok');
      const slow = sql`select pg_sleep(20)`;
      setTimeout(() => slow.cancel(), 300);
      await assert.rejects(
        slow,
        (e: Error & { code?: string }) =>
          e.code === '57014' && /canceling statement due to user request/.test(e.message),
      );
    } finally {
      await sql.end({ timeout: 2 });
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(g.records.some((r) => r.outcome === 'cancel' && /cancel forwarded/.test(r.reason ?? '')));
  });
});

describe('error_style', () => {
  test("azure: a plaintext session gets Azure's text (28000)", async () => {
    const g = await gateway({ error_style: 'azure' });
    const r = await psql(`host=127.0.0.1 port=${g.port} user=postgres sslmode=disable`, 'select 1', { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /FATAL: {2}SSL connection is required\. Please specify SSL options and retry\./);
    assert.equal(g.records.at(-1)?.sqlstate, '28000');
  });

  test("postgres: the same session gets PostgreSQL's hba text", async () => {
    const g = await gateway({ error_style: 'postgres' });
    const r = await psql(`host=127.0.0.1 port=${g.port} user=postgres dbname=app sslmode=disable`, 'select 1', { env });
    assert.match(
      r.stderr,
      /FATAL: {2}no pg_hba.conf entry for host "127\.0\.0\.1", user "postgres", database "app", no encryption/,
    );
  });
});

describe('plaintext modes (development only)', () => {
  test('require_secure_transport = off: plaintext passes the built-in rules, TLS still offered', async () => {
    const g = await gateway({ require_secure_transport: 'off' });
    const plain = await psql(`host=127.0.0.1 port=${g.port} user=postgres sslmode=disable`, 'select 1', { env });
    assert.equal(plain.code, 0, plain.stderr);
    const tls = await psql(
      `host=localhost port=${g.port} user=postgres sslmode=verify-full sslrootcert=${fx.root}`,
      'select 1',
      { env },
    );
    assert.equal(tls.code, 0, tls.stderr);
  });

  test('hostnossl / hostssl lines select by encryption', async () => {
    const hba = writeFixture(
      fx,
      'modes-hba.conf',
      'hostnossl all all 127.0.0.1/32 reject\nhost all all all scram-sha-256\n',
    );
    const g = await gateway({ require_secure_transport: 'off', hba_file: hba });
    const plain = await psql(`host=127.0.0.1 port=${g.port} user=postgres sslmode=disable`, 'select 1', { env });
    assert.match(
      plain.stderr,
      /FATAL: {2}pg_hba.conf rejects connection for host "127\.0\.0\.1", user "postgres", database "postgres", no encryption/,
    );
    const tls = await psql(`host=127.0.0.1 port=${g.port} user=postgres sslmode=require`, 'select 1', { env });
    assert.equal(tls.code, 0, tls.stderr);
  });

  test("ssl = off: SSLRequest is answered N; libpq's require fails, prefer falls back", async () => {
    const g = await gateway({ ssl: 'off', require_secure_transport: 'off' });
    const req = await psql(`host=127.0.0.1 port=${g.port} user=postgres sslmode=require`, 'select 1', { env });
    assert.match(req.stderr, /server does not support SSL, but SSL was required/);
    const pref = await psql(`host=127.0.0.1 port=${g.port} user=postgres sslmode=prefer`, 'select 1', { env });
    assert.equal(pref.code, 0, pref.stderr);
  });

  test('ssl = off with require_secure_transport = on is refused at start', async () => {
    const file = writeFixture(fx, 'conflict.conf', "ssl = off\nport = 0\nupstream = 'postgres://127.0.0.1:1'\n");
    await assert.rejects(Gateway.start({ file, env: {} }), {
      code: 'PGTLS_ERR_CONFIG_CONFLICT',
      message: 'ssl = off cannot be combined with require_secure_transport = on',
    });
  });
});

describe('IPv6', () => {
  test('listening on ::1: a CIDR rule for ::1 matches, an IPv4 rule does not (PostgreSQL text with host "::1")', async () => {
    const hba = writeFixture(
      fx,
      'v6-hba.conf',
      'hostssl all postgres ::1/128 scram-sha-256\nhostssl all all 127.0.0.1/32 trust\n',
    );
    const g = await gateway({ listen_addresses: '::1', hba_file: hba });
    const ok = await psql(`host=::1 port=${g.port} user=postgres sslmode=require`, 'select 1', { env });
    assert.equal(ok.code, 0, ok.stderr);
    const refused = await psql(`host=::1 port=${g.port} user=alice sslmode=require`, 'select 1', { env });
    assert.match(
      refused.stderr,
      /FATAL: {2}no pg_hba.conf entry for host "::1", user "alice", database "alice", SSL encryption/,
    );
  });
});
