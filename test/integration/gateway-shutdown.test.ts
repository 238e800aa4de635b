/** Shutdown: stop accepting, let established sessions finish up to shutdown_timeout, then close what is left. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { startTestGateway } from '../support/gateway.js';
import { startPooledGateway } from '../support/pooled-gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
});
after(async () => {
  await cluster?.destroy();
});

function client(port: number): pg.Client {
  return new pg.Client({
    host: 'localhost',
    port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { ca: readFileSync(fx.root, 'utf8') },
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

test('a session in progress finishes its work; new connections are refused; close resolves when it ends', async () => {
  const g = await startTestGateway(fx, cluster);
  const c = client(g.port);
  await c.connect();
  let closed = false;
  const closing = g.gw.close(30_000).then(() => {
    closed = true;
  });
  assert.equal(await refused(g.port), true);
  const r = await c.query('select 6 * 7 as v');
  assert.equal(r.rows[0].v, 42);
  assert.equal(closed, false);
  await c.end();
  await closing;
  assert.equal(closed, true);
});

test('sessions still open at shutdown_timeout are closed', async () => {
  const g = await startTestGateway(fx, cluster);
  const c = client(g.port);
  await c.connect();
  c.on('error', () => undefined);
  const failed = assert.rejects(c.query('select pg_sleep(30)'), /Connection terminated unexpectedly/);
  await g.gw.close(300);
  await failed;
  assert.equal(g.gw.sessionCount, 0);
  await c.end().catch(() => undefined);
});

/**
 * Pooled sessions at shutdown: idle, inside a transaction, running a query, and one waiting for a server, in both pool
 * modes (on the native plane when it is built, where the relays run in C). close() must end every one of them by
 * shutdown_timeout — a relay that missed its client's destroy would keep the gateway running past SIGINT.
 */
for (const pool_mode of ['session', 'transaction'] as const) {
  test(`pooled sessions (${pool_mode}) still open at shutdown_timeout are closed`, async () => {
    // Every server taken: session mode gives one to each of the first three clients, transaction mode to the two
    // inside a transaction or a query. The fourth client waits in the pool's queue.
    const size = pool_mode === 'session' ? '3' : '2';
    const p = await startPooledGateway(fx, cluster, `shut_${pool_mode}`, 'shutdown-pw', {
      pool_mode,
      default_pool_size: size,
    });
    const [idle, inTx, busy, queued] = [p.client(), p.client(), p.client(), p.client()];
    for (const c of [idle, inTx, busy, queued]) {
      c.on('error', () => undefined);
      await c.connect();
    }
    await idle.query('SELECT 1');
    await inTx.query('BEGIN');
    const running = assert.rejects(busy.query('SELECT pg_sleep(30)'), /Connection terminated unexpectedly/);
    await new Promise((r) => setTimeout(r, 100));
    // The waiting client is told what a new login would be told (PostgreSQL's 57P03 text).
    const waiting = assert.rejects(queued.query('SELECT 1'), (e: Error & { code?: string }) => {
      assert.equal(e.code, '57P03', e.message);
      assert.equal(e.message, 'the database system is shutting down');
      return true;
    });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await p.gw.gw.close(300);
    const took = Date.now() - t0;
    await running;
    await waiting;
    // The sessions had their shutdown_timeout (the one in pg_sleep was cut at its end), and no longer.
    assert.ok(took >= 250 && took < 5000, `close() took ${took} ms with shutdown_timeout 300 ms`);
    assert.equal(p.gw.gw.sessionCount, 0);
    await assert.rejects(inTx.query('SELECT 1'));
    await assert.rejects(idle.query('SELECT 1'));
    for (const c of [idle, inTx, busy, queued]) await c.end().catch(() => undefined);
  });
}
