/**
 * Real drivers through the pool (test/support/pool-front.ts) against PostgreSQL 18, in session and transaction
 * mode: psql (libpq), node-postgres (named statements), postgres.js (named statements by default), psycopg 3
 * (server-side prepares from prepare_threshold) and JDBC (prepareThreshold=1). In transaction mode, every driver's
 * statements are prepared under the pool's PGTLS_<n> names on whichever server the client lands on.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { cleanEnv, psql, run } from '../support/clients.js';
import { JDBC_PROGRAM, PSYCOPG_PROGRAM, assertDriverOutput } from '../support/driver-programs.js';
import { type PoolFront, startPoolFront } from '../support/pool-front.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const APP_PASSWORD = 'app-secret-pw';
let cluster: TestCluster;
const fronts: PoolFront[] = [];
const work = mkdtempSync(join(tmpdir(), 'pgtls-pool-drivers-'));

async function front(settings: Parameters<typeof startPoolFront>[0]['settings']): Promise<PoolFront> {
  const f = await startPoolFront({
    upstream: { host: '127.0.0.1', port: cluster.port, sslmode: 'disable', sslrootcert: '', sslcert: '', sslkey: '' },
    settings,
    passwords: { app: APP_PASSWORD, postgres: SUPERUSER_PASSWORD },
  });
  fronts.push(f);
  return f;
}

before(async () => {
  cluster = await startTestCluster();
  const admin = new pg.Client({
    host: '127.0.0.1',
    port: cluster.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
  });
  await admin.connect();
  // scram-sha-256 is PostgreSQL 18's password_encryption: the pool logs in with SCRAM.
  await admin.query(`create role app login password '${APP_PASSWORD}'`);
  await admin.query('create table items(id int primary key, label text); grant all on items to app');
  await admin.query("insert into items select g, 'item ' || g from generate_series(1, 100) g");
  await admin.end();
});
after(async () => {
  for (const f of fronts) await f.close();
  await cluster?.destroy();
});

function pgClient(f: PoolFront): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: f.port, user: 'app', database: 'postgres', password: 'unused' });
}

for (const mode of ['session', 'transaction'] as const) {
  describe(`${mode} pooling`, () => {
    let f: PoolFront;
    before(async () => {
      f = await front({ pool_mode: mode, default_pool_size: mode === 'session' ? 10 : 2 });
    });

    test('psql: the query runs as the client user, with its application_name', async () => {
      const r = await psql(
        `host=127.0.0.1 port=${f.port} user=app dbname=postgres application_name=pooled-psql`,
        "select current_user || '|' || current_setting('application_name')",
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'app|pooled-psql');
    });

    test('psql: a backend error reaches the client with its SQLSTATE and text', async () => {
      const r = await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select * from missing_table');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /ERROR: {2}relation "missing_table" does not exist/);
    });

    test('node-postgres: named prepared statements from 4 clients at once', async () => {
      const clients = Array.from({ length: 4 }, () => pgClient(f));
      await Promise.all(clients.map((c) => c.connect()));
      try {
        const got = await Promise.all(
          clients.map(async (c, ci) => {
            const labels: string[] = [];
            for (let i = 1; i <= 10; i++) {
              const id = ci * 10 + i;
              const r = await c.query({ name: 'by-id', text: 'select label from items where id = $1', values: [id] });
              labels.push(r.rows[0].label);
            }
            return labels;
          }),
        );
        for (let ci = 0; ci < 4; ci++) {
          assert.deepEqual(
            got[ci],
            Array.from({ length: 10 }, (_, i) => `item ${ci * 10 + i + 1}`),
          );
        }
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    });

    test('postgres.js: default (named) prepared statements, 60 queries over 4 connections', async () => {
      const sql = postgres({ host: '127.0.0.1', port: f.port, user: 'app', database: 'postgres', max: 4 });
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

    test('psycopg 3: server-side prepared statements (prepare_threshold=0)', async () => {
      const script = join(work, 'psycopg_test.py');
      writeFileSync(script, PSYCOPG_PROGRAM);
      const r = await run(
        '/usr/bin/python3',
        [script, `host=127.0.0.1 port=${f.port} user=app dbname=postgres password=unused`],
        { env: cleanEnv() },
      );
      assert.equal(r.code, 0, r.stderr);
      assertDriverOutput(r.stdout, mode);
    });

    test('JDBC: server-side prepared statements (prepareThreshold=1)', async () => {
      const dir = mkdtempSync(join(work, 'jdbc-'));
      writeFileSync(join(dir, 'Prog.java'), JDBC_PROGRAM);
      const url = `jdbc:postgresql://127.0.0.1:${f.port}/postgres?prepareThreshold=1&sslmode=disable`;
      const r = await run('java', ['-cp', '/usr/share/java/postgresql.jar', join(dir, 'Prog.java'), url, 'unused'], {
        env: cleanEnv(),
        timeoutMs: 90_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assertDriverOutput(r.stdout, mode);
    });
  });
}

describe('transaction pooling: prepared statements across servers', () => {
  test('a statement prepared on one server runs on the other: both backends execute it', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2 });
    const clients = Array.from({ length: 6 }, () => pgClient(f));
    await Promise.all(clients.map((c) => c.connect()));
    try {
      const pids = new Set<number>();
      await Promise.all(
        clients.map(async (c) => {
          for (let i = 0; i < 15; i++) {
            const r = await c.query({ name: 'pid', text: 'select pg_backend_pid() as pid, pg_sleep(0.002)' });
            pids.add(r.rows[0].pid);
          }
        }),
      );
      assert.equal(pids.size, 2, `backends seen: ${[...pids].join(', ')}`);
      const r = await clients[0]!.query(
        "select array_agg(name order by name) as n from pg_prepared_statements where name not like 'PGTLS_%'",
      );
      assert.equal(r.rows[0].n, null, 'no client-chosen name reaches a server');
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  test('postgres.js pipelines: an error in the middle fails that query only; a failed Parse leaves nothing behind', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 1, max_prepared_statements: 2 });
    const sql = postgres({ host: '127.0.0.1', port: f.port, user: 'app', database: 'postgres', max: 1 });
    try {
      for (let round = 0; round < 3; round++) {
        const [a, b, c, d] = await Promise.allSettled([
          sql`select ${1}::int as x`,
          sql`select 1 / ${0}::int as x`,
          sql`select ${3}::int + ${round}::int as x`,
          sql`selec ${round}`,
        ]);
        assert.equal(a.status === 'fulfilled' && a.value[0]?.x, 1);
        assert.equal(b.status, 'rejected');
        assert.equal((b as PromiseRejectedResult).reason.code, '22012');
        assert.equal((b as PromiseRejectedResult).reason.message, 'division by zero');
        assert.equal(c.status === 'fulfilled' && c.value[0]?.x, 3 + round);
        assert.equal((d as PromiseRejectedResult).reason.code, '42601');
      }
      // Five distinct statements on a server that keeps two: the oldest are closed, and prepared again when used.
      for (let pass = 0; pass < 2; pass++) {
        for (let i = 0; i < 5; i++) {
          const r = await sql.unsafe(`select $1::int * ${i + 2} as x`, [pass + 1], { prepare: true });
          assert.equal(r[0]?.x, (pass + 1) * (i + 2));
        }
      }
      const [held] = await sql.unsafe('select count(*)::int as n from pg_prepared_statements', [], { prepare: true });
      const n = Number(held?.n);
      assert.ok(n >= 1 && n <= 2, `statements held by the server: ${n}`);
    } finally {
      await sql.end();
    }
  });

  test('without tracking (max_prepared_statements = 0) the same workload fails as PostgreSQL says', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2, max_prepared_statements: 0 });
    const clients = Array.from({ length: 6 }, () => pgClient(f));
    await Promise.all(clients.map((c) => c.connect()));
    const errors: { code?: string; message: string }[] = [];
    try {
      await Promise.all(
        clients.map(async (c) => {
          for (let i = 0; i < 15; i++) {
            try {
              await c.query({ name: 'pid', text: 'select pg_backend_pid() as pid, pg_sleep(0.002)' });
            } catch (e) {
              errors.push(e as { code?: string; message: string });
            }
          }
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
    assert.ok(errors.length > 0, 'some client lands on a server without its statement');
    // Either the statement is missing there, or another client's identical name is already there.
    for (const e of errors)
      assert.match(
        `${e.code} ${e.message}`,
        /^(26000 prepared statement "pid" does not exist|42P05 prepared statement "pid" already exists)$/,
      );
  });
});
