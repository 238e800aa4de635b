/**
 * Issue 12, routing: `routes_file` sends a session to another upstream by the TLS server name, by the database, or by
 * Azure Single Server's `user@servername` (the suffix stripped before pg_hba.conf and the backend see the user); hba
 * still applies; a cancel reaches the backend on the routed upstream; a bad line names the file and line.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { readRoutesFile } from '../../src/gateway/routes.js';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort, startTestCluster } from '../support/postgres.js';
import { rawConnect } from '../support/raw.js';

let fx: GatewayFixtures;
let a: TestCluster;
let b: TestCluster;
let gw: TestGateway;

before(async () => {
  fx = await makeFixtures();
  [a, b] = await Promise.all([startTestCluster(), startTestCluster()]);
  const admin = new pg.Client({ host: '127.0.0.1', port: b.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await admin.connect();
  await admin.query('CREATE DATABASE sales');
  await admin.end();
  const routes = writeFixture(
    fx,
    'routes.conf',
    `# kind name upstream
sni       b.example  postgres://127.0.0.1:${b.port}
database  sales      postgres://127.0.0.1:${b.port}   sslmode=disable
server    bsrv       "postgres://127.0.0.1:${b.port}"
`,
  );
  const hba = writeFixture(fx, 'routes-hba.conf', 'hostssl all nobody all reject\nhostssl all all all trust\n');
  gw = await startTestGateway(fx, a, { routes_file: routes, hba_file: hba });
});
after(async () => {
  await gw?.close();
  await Promise.all([a?.destroy(), b?.destroy()]);
});

/** The port of the PostgreSQL a session landed on. */
async function landedOn(opts: Partial<pg.ClientConfig>): Promise<number> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    ssl: { rejectUnauthorized: false },
    ...opts,
  });
  await c.connect();
  try {
    return Number((await c.query("SELECT current_setting('port') AS p")).rows[0].p);
  } finally {
    await c.end();
  }
}

test('no route matches: the configured upstream', async () => {
  assert.equal(await landedOn({}), a.port);
});

test('database route: sales goes to the other upstream (and is logged with its routes line)', async () => {
  assert.equal(await landedOn({ database: 'sales' }), b.port);
  await gw.settle();
  assert.match(gw.records.findLast((r) => r.database === 'sales')?.route ?? '', /routes\.conf:3$/);
});

test('SNI route: libpq 18 with host=b.example (hostaddr 127.0.0.1) lands on the other upstream', async () => {
  const r = await psql(
    `host=b.example hostaddr=127.0.0.1 port=${gw.port} user=postgres dbname=postgres sslmode=require`,
    "select current_setting('port')",
    { libpq: 18, env: { PGPASSWORD: SUPERUSER_PASSWORD } },
  );
  assert.equal(Number(r.stdout.trim()), b.port, r.stderr);
});

test('user@servername: the suffix picks the upstream and is stripped before hba and the backend', async () => {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user: 'postgres@bsrv',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
  });
  await c.connect();
  const r = (await c.query("SELECT current_user AS u, current_setting('port') AS p")).rows[0];
  assert.deepEqual({ u: r.u, p: Number(r.p) }, { u: 'postgres', p: b.port });
  // A cancel for this session reaches the routed backend.
  const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
  const running = c.query('SELECT pg_sleep(20)').then(
    () => undefined,
    (e: { code?: string }) => e.code,
  );
  await new Promise((res) => setTimeout(res, 200));
  const s = await rawConnect(gw.port);
  const m = Buffer.alloc(16);
  m.writeInt32BE(16, 0);
  m.writeInt32BE(80877102, 4);
  m.writeInt32BE(processID, 8);
  m.writeInt32BE(secretKey, 12);
  s.end(m);
  assert.equal(await running, '57014');
  await c.end();
});

test('hba applies to routed sessions (to the stripped user)', async () => {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user: 'nobody@bsrv',
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
  });
  const err = (await c.connect().catch((e: unknown) => e)) as { code?: string; message?: string };
  assert.equal(err.code, '28000');
  assert.equal(
    err.message,
    'pg_hba.conf rejects connection for host "127.0.0.1", user "nobody", database "postgres", SSL encryption',
  );
  await c.end().catch(() => undefined);
});

test('a bad routes line is refused with the file and line', () => {
  const f = writeFixture(fx, 'bad-routes.conf', 'database sales postgres://h:1\nhost x postgres://h:2\n');
  assert.throws(
    () => readRoutesFile(f, { sslmode: 'prefer', sslrootcert: '', sslcert: '', sslkey: '' }),
    (e: Error & { code?: string }) =>
      e.code === 'PGTLS_ERR_ROUTES' && e.message === `invalid route kind "host" (line 2 of routes file "${f}")`,
  );
  const g = writeFixture(fx, 'bad-routes2.conf', 'sni a.example postgres://h:1 sslmode=sometimes\n');
  assert.throws(() => readRoutesFile(g, { sslmode: 'prefer', sslrootcert: '', sslcert: '', sslkey: '' }), {
    message: `invalid sslmode value: "sometimes" (line 1 of routes file "${g}")`,
  });
});

test('with pooling each route has its pools: routed sessions are pooled on their own upstream', async () => {
  const routes = writeFixture(
    fx,
    'routes-pooled.conf',
    `database  sales  postgres://127.0.0.1:${b.port}\nserver  bsrv  postgres://127.0.0.1:${b.port}\ndatabase  nowhere  postgres://127.0.0.1:${await freePort()}\n`,
  );
  const users = writeFixture(fx, 'routes-users.txt', `"postgres" "${SUPERUSER_PASSWORD}"\n`, 0o600);
  const hba = writeFixture(fx, 'routes-pool-hba.conf', 'hostssl all all all scram-sha-256\n');
  const pooled = await startTestGateway(fx, a, {
    routes_file: routes,
    hba_file: hba,
    auth_file: users,
    pool_mode: 'transaction',
    default_pool_size: '1',
    admin_users: 'postgres',
  });
  try {
    const q = async (database: string, user: string) => {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: pooled.port,
        user,
        database,
        password: SUPERUSER_PASSWORD,
        ssl: { rejectUnauthorized: false },
      });
      await c.connect();
      try {
        const r = await c.query("SELECT current_setting('port') AS p, pg_backend_pid() AS pid");
        return { port: Number(r.rows[0].p), pid: r.rows[0].pid as number };
      } finally {
        await c.end();
      }
    };
    const sales1 = await q('sales', 'postgres');
    const sales2 = await q('sales', 'postgres');
    const plain = await q('postgres', 'postgres');
    const azure = await q('postgres', 'postgres@bsrv');
    assert.equal(sales1.port, b.port);
    assert.equal(sales2.pid, sales1.pid, 'the second session reused the pooled server of the route');
    assert.equal(plain.port, a.port);
    assert.equal(azure.port, b.port, 'user@servername: pooled on the route of bsrv');
    assert.notEqual(azure.pid, plain.pid);
    // A route whose upstream is down: its pool's login fails, with the gateway's text; the other pools go on.
    await assert.rejects(q('nowhere', 'postgres'), {
      code: '08006',
      message: 'could not connect to the database server behind the gateway',
    });
    assert.equal((await q('sales', 'postgres')).port, b.port);
    const servers = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${pooled.port} user=postgres dbname=pgtls sslmode=require`,
      'SHOW SERVERS',
      { libpq: 18, env: { PGPASSWORD: SUPERUSER_PASSWORD } },
    );
    const ports = servers.stdout
      .trim()
      .split('\n')
      .map((l) => Number(l.split('|')[5]))
      .sort();
    // Three pools (sales@route 1, postgres on the default upstream, postgres@route 2): one server each.
    assert.deepEqual(ports, [a.port, b.port, b.port].sort(), servers.stdout + servers.stderr);
  } finally {
    await pooled.close();
  }
});
