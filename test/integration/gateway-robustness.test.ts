/**
 * Bad input loses nothing: garbage, truncated packets, resets mid-handshake and abandoned TLS sessions, all at once,
 * while a real session keeps working. Every loop is bounded.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';
import { exchange, negotiatedTls, rawConnect, startupPacket } from '../support/raw.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  gw = await startTestGateway(fx, cluster, { authentication_timeout: '3s' });
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

async function abuse(i: number): Promise<void> {
  switch (i % 6) {
    case 0: // random bytes
      await exchange(gw.port, randomBytes(1 + (i % 64)), 1000);
      return;
    case 1: {
      // a startup packet cut short, then a reset
      const s = await rawConnect(gw.port);
      s.write(startupPacket({ user: 'x' }).subarray(0, 7));
      s.resetAndDestroy();
      return;
    }
    case 2: {
      // SSLRequest, then vanish before the handshake
      const s = await rawConnect(gw.port);
      s.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
      await new Promise((r) => setTimeout(r, 5));
      s.destroy();
      return;
    }
    case 3: {
      // a TLS session that sends half a StartupMessage and leaves
      const t = await negotiatedTls(gw.port);
      t.write(startupPacket({ user: 'postgres' }).subarray(0, 10));
      t.destroy();
      return;
    }
    case 4: // a garbage ClientHello-looking first byte
      await exchange(gw.port, Buffer.concat([Buffer.from([0x16, 3, 1]), randomBytes(40)]), 1000);
      return;
    default: {
      // a huge declared length
      const b = Buffer.alloc(8);
      b.writeInt32BE(0x7ffffff0, 0);
      await exchange(gw.port, b, 1000);
    }
  }
}

test('120 hostile connections while a real session runs queries: the session and new logins are unaffected', async () => {
  const client = new pg.Client({
    host: 'localhost',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { ca: readFileSync(fx.root, 'utf8') },
  });
  await client.connect();
  try {
    let queries = 0;
    let stop = false;
    const worker = (async () => {
      while (!stop && queries < 5000) {
        const r = await client.query('select $1::int as n', [queries]);
        assert.equal(r.rows[0].n, queries);
        queries++;
      }
    })();
    for (let round = 0; round < 12; round++) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => abuse(round * 10 + j).catch(() => undefined)));
    }
    stop = true;
    await worker;
    assert.ok(queries > 0);
    const fresh = new pg.Client({
      host: 'localhost',
      port: gw.port,
      user: 'postgres',
      password: SUPERUSER_PASSWORD,
      ssl: { ca: readFileSync(fx.root, 'utf8') },
    });
    await fresh.connect();
    assert.equal((await fresh.query('select 1 as one')).rows[0].one, 1);
    await fresh.end();
  } finally {
    await client.end();
  }
  // Connections the gateway is still waiting on end at authentication_timeout at the latest.
  await new Promise((r) => setTimeout(r, 3500));
  const hostile = gw.records.filter((r) => r.outcome !== 'relayed');
  assert.equal(hostile.length, 120, JSON.stringify(hostile.map((r) => r.reason)));
  assert.ok(
    gw.records.every((r) => r.outcome !== 'error'),
    JSON.stringify(gw.records.filter((r) => r.outcome === 'error')),
  );
});
