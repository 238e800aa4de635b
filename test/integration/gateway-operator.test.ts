/**
 * Issue 9 through the real gateway: the admin console (psql and node-postgres), runtime SETs seen by the next
 * connection, the client's TLS facts visible to SQL in PostgreSQL 18 (the source documents' query on
 * pgtls.pg_stat_ssl, current_setting('pgtls.*'), pgtls.ssl_is_used()), Prometheus metrics scraped and parsed, and a
 * report-only policy that lists the TLS 1.2 client and not the TLS 1.3 one.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort, startTestCluster } from '../support/postgres.js';
import { parseExposition } from '../support/prom-parse.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;
const ADMIN_PW = 'console-admin-pw';

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  const userlist = writeFixture(
    fx,
    'op-userlist.txt',
    `"admin" "${ADMIN_PW}"\n"watcher" "watch-pw"\n"postgres" "${SUPERUSER_PASSWORD}"\n`,
    0o600,
  );
  const hba = writeFixture(
    fx,
    'op-hba.conf',
    'hostssl pgtls admin,watcher all scram-sha-256\nhostssl all all all trust\nhost all all all trust\n',
  );
  gw = await startTestGateway(fx, cluster, {
    hba_file: hba,
    auth_file: userlist,
    auth_user: 'postgres',
    admin_users: 'admin',
    stats_users: 'watcher',
    metrics_port: String(await freePort()),
    client_tls_facts_to_backend: 'both',
    report_min_protocol_version: 'TLSv1.3',
  });
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

const session = (app: string, maxVersion?: 'TLSv1.2') =>
  new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    application_name: app,
    ssl: { rejectUnauthorized: false, ...(maxVersion ? { maxVersion } : {}) },
  });

const consoleInfo = (user = 'admin') =>
  `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=${user} dbname=pgtls sslmode=verify-full sslrootcert=${fx.root}`;

test("the source documents' query on pgtls.pg_stat_ssl tells each client's own TLS truth", async () => {
  const old = session('legacy', 'TLSv1.2');
  const modern = session('modern');
  await old.connect();
  await modern.connect();
  try {
    // The view is written in batches: wait (bounded) for both rows.
    let rows: Record<string, unknown>[] = [];
    for (let i = 0; i < 50 && rows.length < 2; i++) {
      const r = await modern.query(
        `SELECT a.application_name, s.ssl, s.version, s.cipher, host(s.client_addr) AS client_addr, s.negotiation
           FROM pgtls.pg_stat_ssl s JOIN pg_stat_activity a ON s.pid = a.pid
          WHERE a.application_name IN ('legacy', 'modern') ORDER BY a.application_name`,
      );
      rows = r.rows;
      if (rows.length < 2) await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(rows.length, 2);
    assert.equal(rows[0]!.version, 'TLSv1.2');
    assert.match(String(rows[0]!.cipher), /^ECDHE-ECDSA-AES(128|256)-GCM-SHA(256|384)$/);
    assert.equal(rows[1]!.version, 'TLSv1.3');
    assert.equal(rows[0]!.client_addr, '127.0.0.1');
    assert.equal(rows[0]!.negotiation, 'sslrequest');
    const s = await old.query("SELECT current_setting('pgtls.ssl_version') AS v, pgtls.ssl_is_used() AS used");
    assert.deepEqual(s.rows[0], { v: 'TLSv1.2', used: true });
  } finally {
    await old.end();
    await modern.end();
  }
});

test('a client cannot claim TLS facts: its own pgtls.* startup parameters are dropped', async () => {
  const sql = postgres({
    host: '127.0.0.1',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
    max: 1,
    connection: { 'pgtls.ssl_version': 'TLSv9', 'pgtls.client_addr': '10.0.0.1' },
  });
  try {
    const [r] = await sql`SELECT current_setting('pgtls.ssl_version') AS v, current_setting('pgtls.client_addr') AS a`;
    assert.deepEqual({ ...r }, { v: 'TLSv1.3', a: '127.0.0.1' });
  } finally {
    await sql.end();
  }
});

test('admin console: SHOW CLIENTS lists live sessions with their TLS facts; SHOW SSL is pg_stat_ssl-shaped', async () => {
  const s = session('shown-app');
  await s.connect();
  try {
    const r = await psql(consoleInfo(), 'SHOW CLIENTS', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /shown-app/);
    assert.match(r.stdout, /TLSv1\.3/);
    const ssl = await psql(consoleInfo(), 'SHOW SSL', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
    assert.equal(ssl.code, 0, ssl.stderr);
    assert.match(ssl.stdout, /\|t\|TLSv1\.3\|TLS_AES_256_GCM_SHA384\|256\|/);
  } finally {
    await s.end();
  }
});

test('console rules: wrong password refused; stats user may SHOW but not SET; unknown command is an error', async () => {
  const bad = await psql(consoleInfo(), 'SHOW VERSION', { libpq: 18, env: { PGPASSWORD: 'nope' } });
  assert.match(bad.stderr, /FATAL: {2}password authentication failed for user "admin"/);
  const stats = await psql(consoleInfo('watcher'), 'SHOW STATS', { libpq: 18, env: { PGPASSWORD: 'watch-pw' } });
  assert.equal(stats.code, 0, stats.stderr);
  const set = await psql(consoleInfo('watcher'), 'SET require_secure_transport = off', {
    libpq: 18,
    env: { PGPASSWORD: 'watch-pw' },
  });
  assert.match(set.stderr, /ERROR: {2}admin access needed/);
  const unknown = await psql(consoleInfo(), 'SHOW NONSENSE', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
  assert.match(unknown.stderr, /ERROR: {2}/);
  // Not in admin_users/stats_users: the database goes to the backend, which has no "pgtls".
  const other = new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'pgtls',
    ssl: { rejectUnauthorized: false },
  });
  const err = (await other.connect().catch((e: unknown) => e)) as { code?: string; message?: string };
  assert.equal(err.code, '3D000');
  assert.equal(err.message, 'database "pgtls" does not exist');
  await other.end().catch(() => undefined);
});

test('runtime SET require_secure_transport = off is seen by the next connection; RELOAD drops it', async () => {
  const plain = () =>
    new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'postgres', password: SUPERUSER_PASSWORD, ssl: false });
  const refused = plain();
  assert.equal(((await refused.connect().catch((e: unknown) => e)) as { code?: string }).code, '28000');
  await refused.end().catch(() => undefined);
  const set = await psql(consoleInfo(), 'SET require_secure_transport = off', {
    libpq: 18,
    env: { PGPASSWORD: ADMIN_PW },
  });
  assert.equal(set.code, 0, set.stderr);
  const ok = plain();
  await ok.connect();
  await ok.end();
  const reload = await psql(consoleInfo(), 'RELOAD', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
  assert.equal(reload.code, 0, reload.stderr);
  const again = plain();
  assert.equal(((await again.connect().catch((e: unknown) => e)) as { code?: string }).code, '28000');
  await again.end().catch(() => undefined);
});

test("runtime SET ssl_min_protocol_version = 'TLSv1.3' refuses the next TLS 1.2 client; RELOAD restores", async () => {
  const set = await psql(consoleInfo(), "SET ssl_min_protocol_version = 'TLSv1.3'", {
    libpq: 18,
    env: { PGPASSWORD: ADMIN_PW },
  });
  assert.equal(set.code, 0, set.stderr);
  const show = await psql(consoleInfo(), 'SHOW CONFIG', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
  assert.match(show.stdout, /ssl_min_protocol_version\|TLSv1\.3\|/);
  const old = session('too-old', 'TLSv1.2');
  const err = (await old.connect().catch((e: unknown) => e)) as Error | undefined;
  assert.match(String(err?.message), /protocol version|alert|unsupported/i);
  await old.end().catch(() => undefined);
  const reload = await psql(consoleInfo(), 'RELOAD', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
  assert.equal(reload.code, 0, reload.stderr);
  const again = session('old-again', 'TLSv1.2');
  await again.connect();
  await again.end();
});

test('report-only: the TLS 1.2 client is listed as would-be refused, the TLS 1.3 one is not', async () => {
  const r = await psql(consoleInfo(), 'SHOW WOULD_REFUSE', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /legacy/);
  assert.doesNotMatch(r.stdout, /\|modern\|/);
  const rec = gw.records.find((x) => x.application_name === 'legacy');
  assert.equal(rec?.outcome, 'relayed');
  assert.match((rec?.would_refuse ?? []).join(' '), /TLSv1\.2/);
});

test('metrics: /metrics parses, counts connections by TLS version, and has certificate expiry gauges', async () => {
  const port = gw.gw.operator.metricsPort;
  assert.ok(port);
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  const families = parseExposition(await res.text());
  const conns = families.get('pgtls_connections_total');
  assert.ok(conns?.samples.some((s) => s.labels.tls_version === 'TLSv1.2' && s.value >= 1));
  assert.ok(families.get('pgtls_certificate_not_after_seconds')?.samples.length);
});

test('without workers: SHOW WORKERS is this process (worker 0); console sessions never drive pgtls_active_sessions negative', async () => {
  for (let i = 0; i < 3; i++) {
    const r = await psql(consoleInfo(), 'SHOW VERSION', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
    assert.equal(r.code, 0, r.stderr);
  }
  const s = session('one-relayed');
  await s.connect();
  try {
    const w = await psql(consoleInfo(), 'SHOW WORKERS', { libpq: 18, env: { PGPASSWORD: ADMIN_PW } });
    assert.equal(w.code, 0, w.stderr);
    const [worker, pid, state, , restarts, clients, active] = w.stdout.trim().split('|');
    assert.deepEqual([worker, pid, state, restarts], ['0', String(process.pid), 'up', '0']);
    assert.equal(clients, '2', 'the relayed session and this console session');
    assert.equal(active, '1');
    const res = await fetch(`http://127.0.0.1:${gw.gw.operator.metricsPort}/metrics`);
    const active_ = parseExposition(await res.text()).get('pgtls_active_sessions')!.samples[0]!.value;
    // Console sessions end with outcome "relayed" but were never counted as active: only the relayed session is.
    assert.equal(active_, 1);
    assert.equal(
      parseExposition(await (await fetch(`http://127.0.0.1:${gw.gw.operator.metricsPort}/metrics`)).text()).has(
        'pgtls_workers',
      ),
      false,
    );
  } finally {
    await s.end();
  }
});
