/** Shutdown: stop accepting, let established sessions finish up to shutdown_timeout, then close what is left. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { startTestGateway } from '../support/gateway.js';
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
