/**
 * No plaintext on the wire: tshark captures the gateway's port while a marker query goes through a TLS session
 * (SSLRequest, then TLS) and another marker through a plaintext control session (require_secure_transport = off,
 * so the built-in hba is `host all all all trust`). The TLS marker must never appear in the captured bytes; the
 * plaintext one must (which shows the capture would have seen it). Skipped, with the reason, only without tshark.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const tshark = spawnSync('tshark', ['--version']).status === 0;
const root = process.getuid?.() === 0;
const skip = !tshark
  ? 'tshark is not installed (Debian: apt-get install tshark)'
  : !root
    ? 'capturing on lo needs root (or CAP_NET_RAW for dumpcap)'
    : false;

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;

before(async () => {
  if (skip) return;
  fx = await makeFixtures();
  cluster = await startTestCluster();
  gw = await startTestGateway(fx, cluster, { require_secure_transport: 'off', log_connections: 'off' });
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

async function query(ssl: boolean, marker: string): Promise<string> {
  const c = new pg.Client({
    host: 'localhost',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: ssl ? { ca: readFileSync(fx.root, 'utf8'), servername: 'localhost' } : false,
  });
  await c.connect();
  try {
    const r = await c.query(`select '${marker}' || ' echoed' as m`);
    return r.rows[0].m as string;
  } finally {
    await c.end();
  }
}

test(
  'a marker query through TLS never appears in cleartext on the wire; one over plaintext does',
  { skip },
  async () => {
    const pcap = `${fx.dir}/capture.pcap`;
    const cap = spawn('tshark', ['-i', 'lo', '-f', `tcp port ${gw.port}`, '-w', pcap], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const exited = new Promise<number | null>((resolve) => cap.on('exit', (code) => resolve(code)));
    const ready = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 20_000);
      cap.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('Capturing on')) {
          clearTimeout(t);
          resolve(true);
        }
      });
      void exited.then(() => resolve(false));
    });
    assert.ok(ready, `tshark did not start capturing: ${err}`);
    await new Promise((r) => setTimeout(r, 500));
    const tlsMarker = `PGTLS-TLS-MARKER-${randomBytes(8).toString('hex')}`;
    const plainMarker = `PGTLS-PLAIN-MARKER-${randomBytes(8).toString('hex')}`;
    try {
      assert.equal(await query(true, tlsMarker), `${tlsMarker} echoed`);
      assert.equal(await query(false, plainMarker), `${plainMarker} echoed`);
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      cap.kill('SIGINT');
      const t = setTimeout(() => cap.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    const bytes = readFileSync(pcap);
    assert.ok(bytes.length > 1000, `the capture is nearly empty: ${bytes.length} bytes; ${err}`);
    // The plaintext control is seen both ways: the query and the echoed row.
    assert.ok(bytes.includes(Buffer.from(`${plainMarker}' || ' echoed`)), 'the plaintext query was not captured');
    assert.ok(bytes.includes(Buffer.from(`${plainMarker} echoed`)), 'the plaintext answer was not captured');
    assert.equal(bytes.includes(Buffer.from(tlsMarker)), false, 'the TLS marker is in the capture in cleartext');
  },
);
