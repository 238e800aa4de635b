/**
 * Slowloris: 500 clients (PGTLS_SLOWLORIS_CONNECTIONS) trickle a StartupMessage one byte per second, in plaintext and
 * inside TLS. authentication_timeout (3 s here) must drop every one of them on time, a canary session must not
 * notice, and the gateway's file descriptors must come back to their baseline.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { Canary, type Peer, openPeer } from '../support/hostile.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import { startupPacket } from '../support/raw.js';
import { type ServeChild, fdCount, fdKinds, settle, startServeChild } from '../support/serve-child.js';

const COUNT = Number(process.env.PGTLS_SLOWLORIS_CONNECTIONS ?? '') || 500;
const TIMEOUT_S = 3;
/** Every tenth slow client trickles inside TLS (after a real handshake), the others in plaintext. */
const TLS_EVERY = 10;

let fx: GatewayFixtures;
let cluster: TestCluster;
let child: ServeChild;
let canary: Canary;
let fdBaseline = 0;
let fdEnd = 0;
const lifetimes: number[] = [];
const problems: string[] = [];

async function slow(i: number): Promise<void> {
  const t0 = Date.now();
  let p: Peer;
  try {
    p = await openPeer(child.port, 10_000);
    if (i % TLS_EVERY === 0) {
      p.sock.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
      await p.until(() => p.data.length > 0, 5_000);
      await p.startTls();
    }
  } catch (e) {
    problems.push(`#${i}: ${(e as Error).message}`);
    return;
  }
  const packet = startupPacket({ user: 'postgres', database: 'postgres', application_name: 'x'.repeat(100) });
  // One byte a second, for longer than the timeout allows: bounded by the packet and by 3 × the timeout.
  for (let at = 0; at < packet.length && !p.serverClosed && Date.now() - t0 < 3 * TIMEOUT_S * 1000; at++) {
    if (!p.sock.destroyed) p.sock.write(packet.subarray(at, at + 1));
    await p.until(() => p.serverClosed, 1000);
  }
  const closed = await p.closedByServer(1000);
  if (!closed) problems.push(`#${i}: still open after ${Date.now() - t0} ms`);
  else lifetimes.push(Date.now() - t0);
}

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  child = await startServeChild(fx, cluster, { authentication_timeout: `${TIMEOUT_S}s`, log_connections: 'off' });
  canary = new Canary(child.port, readFileSync(fx.root, 'utf8'), 100);
  await canary.start();
  await new Promise((r) => setTimeout(r, 300));
  fdBaseline = fdCount(child.pid);
  // Staggered over one second so the timeouts do not all fire in the same tick.
  await Promise.all(
    Array.from({ length: COUNT }, (_, i) => new Promise((r) => setTimeout(r, (i * 1000) / COUNT)).then(() => slow(i))),
  );
  fdEnd = await settle(() => fdCount(child.pid), fdBaseline, 5_000);
  await canary.stop();
});

after(async () => {
  await child?.stop();
  await cluster?.destroy();
});

describe(`slowloris: ${COUNT} clients sending one byte a second, authentication_timeout = ${TIMEOUT_S}s`, () => {
  test('every slow client is dropped by the gateway, none before the timeout and none later than 2 s after it', () => {
    assert.deepEqual(problems, []);
    assert.equal(lifetimes.length, COUNT);
    const early = lifetimes.filter((ms) => ms < TIMEOUT_S * 1000 - 100);
    const late = lifetimes.filter((ms) => ms > TIMEOUT_S * 1000 + 2000);
    assert.deepEqual({ early: early.length, late: late.length }, { early: 0, late: 0 }, `late: ${late.slice(0, 5)}`);
  });

  test('the canary session answered every query meanwhile', () => {
    assert.deepEqual(canary.failures, []);
    assert.ok(canary.ok >= 20, `only ${canary.ok} queries ran`);
  });

  test('the gateway process is alive and its file descriptors are back to the baseline', () => {
    assert.ok(child.alive(), child.stderr());
    assert.equal(fdEnd, fdBaseline, JSON.stringify(fdKinds(child.pid)));
  });
});
