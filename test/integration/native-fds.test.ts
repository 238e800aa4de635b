/**
 * Issue 11: one descriptor per client on the native data plane. A `pgtls serve` child holds idle TLS sessions and its
 * /proc/<pid>/fd is counted from outside: a session that finished its handshake and waits for its startup packet
 * costs one descriptor (the client's), a relayed session spliced to PostgreSQL two (the client's and the backend's),
 * as with Node's transport and as PgBouncer — not two per socket (Node's handle plus the addon's dup). When the
 * clients leave, the count is back where it started and the backend sessions are gone.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type Peer, openPeer, openSession } from '../support/hostile.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import {
  type ServeChild,
  adminClient,
  backendSessions,
  fdCount,
  fdKinds,
  settle,
  startServeChild,
} from '../support/serve-child.js';

const N = 40;
let fx: GatewayFixtures;
let cluster: TestCluster;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all fd_user 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'],
  });
  const admin = await adminClient(cluster);
  await admin.query('create role fd_user login');
  await admin.end();
});
after(async () => {
  await cluster?.destroy();
});

/** SSLRequest and the TLS handshake, then nothing: the gateway waits for the startup packet. */
async function handshaken(port: number, held: Peer[]): Promise<void> {
  const p = await openPeer(port, 20_000);
  p.sock.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
  assert.ok(await p.until(() => p.data.length > 0, 20_000), 'no answer to the SSLRequest');
  assert.equal(p.data[0], 0x53);
  await p.startTls();
  held.push(p);
}

/** The child's descriptor count once it stops moving (sessions still being set up or torn down). */
async function steadyFds(pid: number): Promise<number> {
  let last = fdCount(pid);
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    const now = fdCount(pid);
    if (now === last) return now;
    last = now;
  }
  return last;
}

for (const plane of ['on', 'off'] as const) {
  test(`native_data_plane = ${plane}: ${N} idle TLS sessions cost 1 fd each before login and 2 once spliced to PostgreSQL`, async () => {
    const hba = writeFixture(fx, `fds-hba-${plane}.conf`, 'hostssl all all all trust\n');
    const gw: ServeChild = await startServeChild(fx, cluster, {
      native_data_plane: plane,
      hba_file: hba,
      authentication_timeout: '60s',
    });
    const admin = await adminClient(cluster);
    const held: Peer[] = [];
    try {
      // one session first, so what the first connection opens lazily (the addon, OpenSSL's entropy) is counted
      const warm: Peer[] = [];
      assert.equal(await openSession(gw.port, warm, 'fd_user'), undefined);
      for (const p of warm) p.sock.destroy();
      assert.equal(await settle(() => backendSessions(admin), 0, 10_000), 0);
      const base = await steadyFds(gw.pid);

      for (let i = 0; i < N; i++) await handshaken(gw.port, held);
      const handshakes = (await steadyFds(gw.pid)) - base;
      assert.ok(
        handshakes >= N && handshakes <= N + 2,
        `${N} sessions waiting for their startup packet hold ${handshakes} fds (want ${N}): ${JSON.stringify(fdKinds(gw.pid))}`,
      );
      for (const p of held.splice(0)) p.sock.destroy();
      assert.equal(await settle(() => steadyFds(gw.pid), base, 10_000), base);

      for (let i = 0; i < N; i++) assert.equal(await openSession(gw.port, held, 'fd_user'), undefined);
      assert.equal(await backendSessions(admin), N);
      const relayed = (await steadyFds(gw.pid)) - base;
      assert.ok(
        relayed >= 2 * N && relayed <= 2 * N + 2,
        `${N} relayed sessions hold ${relayed} fds (want ${2 * N}: the client's and the backend's): ${JSON.stringify(fdKinds(gw.pid))}`,
      );
      for (const p of held.splice(0)) p.sock.destroy();
      assert.equal(await settle(() => backendSessions(admin), 0, 10_000), 0);
      assert.equal(await settle(() => steadyFds(gw.pid), base, 10_000), base);

      // the sessions really ran on the transport asked for: only the native one reports the key-exchange group
      await gw.stop();
      const records = gw
        .stdout()
        .split('\n')
        .filter((l) => l.includes('"outcome":"relayed"'));
      assert.equal(records.length, N + 1);
      assert.equal(records.filter((l) => l.includes('"group":')).length, plane === 'on' ? N + 1 : 0, records[0]);
    } finally {
      for (const p of held) p.sock.destroy();
      await admin.end();
      await gw.stop();
    }
  });
}
