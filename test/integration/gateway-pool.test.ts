/**
 * Issue 10 through the real TLS gateway: transaction and session pooling behind gateway authentication (SCRAM-PLUS
 * with channel binding at the front, SCRAM pass-through at the back), many clients on few servers, prepared
 * statements of postgres.js and psycopg 3, cancel through a pooled connection, session state reset.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';
import { rawConnect } from '../support/raw.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let userlist: string;
let hba: string;
const PW = 'pool-alice-pw';

async function backends(): Promise<number> {
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await c.connect();
  const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'alice'");
  await c.end();
  return (r.rows[0] as { n: number }).n;
}

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await c.connect();
  await c.query(`CREATE ROLE alice LOGIN PASSWORD '${PW}'`);
  const r = await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'");
  await c.end();
  userlist = writeFixture(
    fx,
    'pool-userlist.txt',
    `"alice" "${(r.rows[0] as { rolpassword: string }).rolpassword}"\n"admin" "pool-admin-pw"\n`,
    0o600,
  );
  hba = writeFixture(
    fx,
    'pool-hba.conf',
    'hostssl pgtls admin all scram-sha-256\nhostssl all alice all scram-sha-256\n',
  );
});
after(async () => {
  await cluster?.destroy();
});

const client = (port: number) =>
  new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'alice',
    password: PW,
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
  });

describe('transaction pooling', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway(fx, cluster, {
      hba_file: hba,
      auth_file: userlist,
      pool_mode: 'transaction',
      default_pool_size: '2',
      admin_users: 'admin',
    });
  });
  after(async () => {
    await gw?.close();
  });

  test('libpq 18 channel_binding=require through a transaction pool', async () => {
    const r = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=alice dbname=postgres sslmode=verify-full sslrootcert=${fx.root} channel_binding=require`,
      'SELECT current_user',
      { libpq: 18, env: { PGPASSWORD: PW } },
    );
    assert.equal(r.stdout.trim(), 'alice', r.stderr);
  });

  test('20 clients, each a few transactions, on a pool of 2 servers', async () => {
    const cs = Array.from({ length: 20 }, () => client(gw.port));
    await Promise.all(cs.map((x) => x.connect()));
    const sums = await Promise.all(
      cs.map(async (x, i) => {
        let sum = 0;
        for (let k = 0; k < 5; k++) sum += (await x.query('SELECT $1::int + 1 AS v', [i])).rows[0].v as number;
        return sum;
      }),
    );
    assert.deepEqual(
      sums,
      cs.map((_, i) => 5 * (i + 1)),
    );
    assert.ok((await backends()) <= 2, 'no more servers than default_pool_size');
    const pools = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=admin dbname=pgtls sslmode=verify-full sslrootcert=${fx.root}`,
      'SHOW POOLS',
      { libpq: 18, env: { PGPASSWORD: 'pool-admin-pw' } },
    );
    // 20 clients logged in, none waiting now; maxwait 0 s 0 µs.
    assert.match(pools.stdout, /^postgres\|alice\|20\|0\|\d+\|\d+\|0\|0\|0\|transaction$/m, pools.stderr);
    await Promise.all(cs.map((x) => x.end()));
  });

  test("options (-c name=value) is applied on every server the client uses; other switches get PgBouncer's FATAL", async () => {
    const base = `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=alice dbname=postgres sslmode=verify-full sslrootcert=${fx.root}`;
    // Two transactions, each SHOWing the settings: whichever server runs them has the client's values.
    const r = await psql(
      `${base} options='-c statement_timeout=4321 --search-path=pg_catalog -c application_name=from-options' application_name=from-param`,
      "select current_setting('statement_timeout') || '|' || current_setting('search_path') || '|' || current_setting('application_name'); select current_setting('statement_timeout')",
      { libpq: 18, env: { PGPASSWORD: PW } },
    );
    // The startup parameter wins over the same setting in options, as in PostgreSQL.
    assert.equal(r.stdout.trim(), '4321ms|pg_catalog|from-param\n4321ms', r.stderr);
    const bad = await psql(`${base} options='-d 5'`, 'select 1', { libpq: 18, env: { PGPASSWORD: PW } });
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /FATAL: {2}unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed/,
    );
  });

  test('SHOW SERVERS lists the pooled servers as the backend knows them; SHOW POOLS counts a waiting client', async () => {
    const admin = (sql: string) =>
      psql(
        `host=localhost hostaddr=127.0.0.1 port=${gw.port} user=admin dbname=pgtls sslmode=verify-full sslrootcert=${fx.root}`,
        sql,
        { libpq: 18, env: { PGPASSWORD: 'pool-admin-pw' } },
      );
    const holders = [client(gw.port), client(gw.port)];
    await Promise.all(holders.map((h) => h.connect()));
    await Promise.all(holders.map((h) => h.query('BEGIN')));
    const pids = (await Promise.all(holders.map((h) => h.query('SELECT pg_backend_pid() AS p')))).map(
      (r) => r.rows[0].p as number,
    );
    const waiter = client(gw.port);
    await waiter.connect();
    const waiting = waiter.query('SELECT 1');
    try {
      await new Promise((r) => setTimeout(r, 1200));
      const servers = await admin('SHOW SERVERS');
      const rows = servers.stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('S|'));
      assert.equal(rows.length, 2, servers.stdout + servers.stderr);
      for (const row of rows) {
        const [type, user, database, state, addr, port, , , remotePid, tls] = row.split('|');
        assert.deepEqual(
          [type, user, database, state, addr, port, tls],
          ['S', 'alice', 'postgres', 'active', '127.0.0.1', String(cluster.port), ''],
        );
        assert.ok(pids.includes(Number(remotePid)), `remote_pid ${remotePid} is one of ${pids.join(', ')}`);
      }
      const pools = await admin('SHOW POOLS');
      // 3 clients, one of them waiting for more than a second; 2 servers lent.
      assert.match(pools.stdout, /^postgres\|alice\|2\|1\|2\|0\|0\|1\|\d+\|transaction$/m, pools.stdout);
    } finally {
      await Promise.all(holders.map((h) => h.query('COMMIT')));
      await waiting;
      await Promise.all([...holders, waiter].map((h) => h.end()));
    }
    const after = await admin('SHOW SERVERS');
    assert.match(after.stdout, /^S\|alice\|postgres\|idle\|/m, after.stdout);
    assert.doesNotMatch(after.stdout, /\|active\|/);
  });

  test('postgres.js default (named) prepared statements work across the pool', async () => {
    const sqls = Array.from({ length: 4 }, () =>
      postgres({
        host: '127.0.0.1',
        port: gw.port,
        user: 'alice',
        password: PW,
        database: 'postgres',
        ssl: { rejectUnauthorized: false },
        max: 2,
      }),
    );
    try {
      const results = await Promise.all(
        sqls.flatMap((sql, i) => Array.from({ length: 8 }, (_, k) => sql`SELECT ${i * 100 + k}::int AS v`)),
      );
      assert.deepEqual(
        results.map((r) => r[0]?.v),
        sqls.flatMap((_, i) => Array.from({ length: 8 }, (__, k) => i * 100 + k)),
      );
    } finally {
      await Promise.all(sqls.map((s) => s.end()));
    }
  });

  test('psycopg 3 server-side prepared statements (prepare_threshold=0) through the gateway', async () => {
    const code = `
import psycopg
with psycopg.connect("host=127.0.0.1 port=${gw.port} user=alice password=${PW} dbname=postgres sslmode=require", prepare_threshold=0) as conn:
    total = 0
    for i in range(10):
        total += conn.execute("SELECT %s::int + 1", (i,)).fetchone()[0]
    print(total)
`;
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('/usr/bin/python3', ['-c', code]); // Debian's python3-psycopg
      let o = '';
      let e = '';
      p.stdout.on('data', (d) => {
        o += d;
      });
      p.stderr.on('data', (d) => {
        e += d;
      });
      p.on('close', (code) => (code === 0 ? resolve(o.trim()) : reject(new Error(e))));
    });
    assert.equal(out, '55');
  });

  test('a CancelRequest with the gateway-made key cancels the query on whichever server runs it', async () => {
    const c = client(gw.port);
    await c.connect();
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    const running = c.query('SELECT pg_sleep(20)').then(
      () => undefined,
      (e: { code?: string; message?: string }) => `${e.code} ${e.message}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    const s = await rawConnect(gw.port);
    const b = Buffer.alloc(16);
    b.writeInt32BE(16, 0);
    b.writeInt32BE(80877102, 4);
    b.writeInt32BE(processID, 8);
    b.writeInt32BE(secretKey, 12);
    s.end(b);
    assert.equal(await running, '57014 canceling statement due to user request');
    await c.end();
  });
});

describe('session pooling', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway(fx, cluster, {
      hba_file: hba,
      auth_file: userlist,
      pool_mode: 'session',
      default_pool_size: '1',
    });
  });
  after(async () => {
    await gw?.close();
  });

  test('the next client gets the same server, reset (DISCARD ALL): a SET does not leak', async () => {
    const a = client(gw.port);
    await a.connect();
    const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    await a.query("SET application_name = 'leaky'");
    await a.end();
    const b = client(gw.port);
    await b.connect();
    const r = (await b.query("SELECT pg_backend_pid() AS p, current_setting('application_name') AS app")).rows[0];
    assert.equal(r.p, pidA, 'the pooled server was reused');
    assert.notEqual(r.app, 'leaky');
    await b.end();
  });

  test("the welcome reports the client's own values over the last login's, byte for byte the same otherwise", async () => {
    // The first client makes the pool log in (its application_name is the server's); the others are answered from
    // that login's ParameterStatus — reused as encoded when nothing differs, rebuilt with the client's values if not.
    const connectWith = async (connection: Record<string, string>) => {
      const sql = postgres({
        host: '127.0.0.1',
        port: gw.port,
        user: 'alice',
        password: PW,
        database: 'postgres',
        ssl: { rejectUnauthorized: false },
        max: 1,
        connection,
      });
      const [row] = await sql`SELECT current_setting('application_name') AS app, current_setting('DateStyle') AS ds`;
      const parameters = { ...(sql as unknown as { parameters: Record<string, string> }).parameters };
      await sql.end();
      return { row, parameters };
    };
    const first = await connectWith({ application_name: 'welcome-one' });
    const same = await connectWith({ application_name: 'welcome-one' });
    assert.deepEqual(same.parameters, first.parameters);
    assert.equal(same.parameters.application_name, 'welcome-one');
    const other = await connectWith({ application_name: 'welcome-two', DateStyle: 'German, DMY' });
    assert.equal(other.parameters.application_name, 'welcome-two');
    assert.equal(other.parameters.DateStyle, 'German, DMY');
    assert.deepEqual(other.row, { app: 'welcome-two', ds: 'German, DMY' });
    assert.deepEqual(
      { ...other.parameters, application_name: 'welcome-one', DateStyle: first.parameters.DateStyle },
      first.parameters,
    );
    const again = await connectWith({ application_name: 'welcome-one' });
    assert.deepEqual(again.parameters, first.parameters);
    assert.equal(again.row?.app, 'welcome-one');
  });

  test("a wrong password is refused at the gateway with PostgreSQL's text", async () => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: gw.port,
      user: 'alice',
      password: 'wrong',
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
    });
    const err = (await c.connect().catch((e: unknown) => e)) as { code?: string; message?: string };
    assert.equal(err.code, '28P01');
    assert.equal(err.message, 'password authentication failed for user "alice"');
    await c.end().catch(() => undefined);
  });
});

describe('session pooling: a client logged in from the welcome that gets no server', () => {
  test('query_wait_timeout: FATAL 08P01 on its first query, logged as refused, the active-sessions gauge unchanged', async () => {
    const gw = await startTestGateway(fx, cluster, {
      hba_file: hba,
      auth_file: userlist,
      pool_mode: 'session',
      default_pool_size: '1',
      query_wait_timeout: '1s',
    });
    const holder = client(gw.port);
    try {
      await holder.connect();
      await holder.query('SELECT 1');
      const waiter = client(gw.port);
      waiter.on('error', () => undefined);
      await waiter.connect(); // answered from the pool's welcome, not under authentication_timeout
      await assert.rejects(waiter.query('SELECT 1'), {
        code: '08P01',
        message: 'query_wait_timeout',
        severity: 'FATAL',
      });
      await holder.end();
      await gw.settle();
      const refused = gw.records.filter((r) => r.outcome === 'refused');
      assert.equal(refused.length, 1, JSON.stringify(gw.records));
      assert.match(refused[0]!.reason ?? '', /query_wait_timeout/);
      assert.equal(refused[0]!.sqlstate, '08P01');
      const metrics = await gw.gw.operator.metrics.exposition();
      assert.match(metrics, /^pgtls_active_sessions 0$/m);
    } finally {
      await holder.end().catch(() => undefined);
      await gw.close();
    }
  });
});
