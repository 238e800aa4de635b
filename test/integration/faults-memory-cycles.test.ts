/**
 * Issue 8.12: gateway memory comes back after sessions close. A `pgtls serve` child gets CYCLES rounds of SESSIONS
 * TLS sessions open at the same time (each logs in end to end, then all close); its RSS after each round, once
 * idle, must stop growing: the last round may not end more than the tolerance above the second (the first round
 * pays for warm-up: JIT, TLS context, pools). PgBouncer (transaction pooling) sits between the gateway and
 * PostgreSQL so a thousand concurrent sessions do not need a thousand backends.
 * Sizes: PGTLS_MEMORY_SESSIONS (default 1000), PGTLS_MEMORY_CYCLES (6), PGTLS_MEMORY_TOLERANCE_KIB (16 MiB).
 *
 * What "comes back" means, measured: after the fd leak of issue 8.10/8.11 was fixed, the JS heap after a full GC is
 * flat from round to round (≈ 11 MiB), while RSS still rises by a decreasing amount (e.g. +35, +15, +5, +7 MiB):
 * glibc keeps freed OpenSSL buffers in its arenas rather than returning them, and each round reuses them. So the
 * test asserts (1) no JS heap growth from round 2 on, and (2) RSS settles: over the last three rounds it grows by
 * at most the tolerance per round on average (Node 20, nine rounds: +8, +5, +5, +6, −2, +1, +7 MiB after round 2;
 * Node 26 with OpenSSL 3.5 keeps more: +17, +13, +9, +9 MiB). 16 MiB per 1,000 sessions still catches any leak of
 * a session's socket or TLS state (the issue 8.10 leak held ≥ 50 KiB per session).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { type Peer, openSession, pool } from '../support/hostile.js';
import { type PgBouncer, havePgBouncer, startPgBouncer } from '../support/pgbouncer.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import { type ServeChild, adminClient, fdCount, rssKiB, settle, startServeChild } from '../support/serve-child.js';

const envInt = (name: string, dflt: number) => Number(process.env[name] ?? '') || dflt;
const SESSIONS = envInt('PGTLS_MEMORY_SESSIONS', 1000);
const CYCLES = Math.max(4, envInt('PGTLS_MEMORY_CYCLES', 6));
const TOLERANCE_KIB = envInt('PGTLS_MEMORY_TOLERANCE_KIB', 16 * 1024);
const CONCURRENCY = 100;
const GC_ON_SIGNAL = new URL('../../../test/support/gc-on-signal.cjs', import.meta.url).pathname;
const skip = havePgBouncer() ? false : 'PgBouncer (/usr/sbin/pgbouncer) is not installed';

const GC_REPORT = `${process.env.TMPDIR ?? '/tmp'}/pgtls-gc-${process.pid}.jsonl`;
let fx: GatewayFixtures;
let cluster: TestCluster;
let child: ServeChild;
let bouncer: PgBouncer;

before(async () => {
  if (skip) return;
  fx = await makeFixtures();
  // A trust role: the backend's cost per session stays small, the gateway's path is the same as with a password.
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all mem_user 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'],
    settings: { max_connections: '60' },
  });
  const admin = await adminClient(cluster);
  await admin.query('create role mem_user login');
  await admin.end();
  process.env.GC_REPORT_FILE = GC_REPORT; // read by gc-on-signal.cjs in the child
  bouncer = await startPgBouncer({ backendPort: cluster.port, user: 'mem_user', maxClients: SESSIONS + 100 });
  child = await startServeChild(
    fx,
    undefined,
    { log_connections: 'off' },
    {
      upstream: `postgres://127.0.0.1:${bouncer.port}`,
      nofile: 2 * SESSIONS + 1000,
      // SIGUSR2 → a full GC in the child, so RSS is read after garbage is collected (test/support/gc-on-signal.cjs).
      nodeArgs: ['--expose-gc', '--require', GC_ON_SIGNAL],
    },
  );
});
after(async () => {
  await child?.stop();
  await bouncer?.stop();
  await cluster?.destroy();
});

test(
  `issue 8.12: gateway RSS stops growing over ${CYCLES} rounds of ${SESSIONS} sessions opened and closed`,
  { skip },
  async (t) => {
    const fd0 = fdCount(child.pid);
    const rss: number[] = [];
    const heap: number[] = [];
    const errors: string[] = [];
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const held: Peer[] = [];
      await pool(SESSIONS, CONCURRENCY, async () => {
        const why = await openSession(child.port, held, 'mem_user');
        if (why && errors.length < 5) errors.push(why);
      });
      const peak = rssKiB(child.pid);
      for (const p of held) p.sock.end(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate, as a polite client leaves
      t.diagnostic(`round ${cycle + 1}: ${held.length} sessions held, RSS ${peak} KiB at the peak`);
      await settle(() => fdCount(child.pid), fd0, 5_000);
      await new Promise((r) => setTimeout(r, 1_000));
      process.kill(child.pid, 'SIGUSR2');
      await new Promise((r) => setTimeout(r, 1_500));
      rss.push(rssKiB(child.pid));
      const last = readFileSync(GC_REPORT, 'utf8').trim().split('\n').at(-1) ?? '{}';
      heap.push(Math.round((JSON.parse(last) as { heapUsed: number }).heapUsed / 1024));
      t.diagnostic(
        `round ${cycle + 1}: RSS ${rss[cycle]} KiB, JS heap ${heap[cycle]} KiB, fds ${fdCount(child.pid)} (start ${fd0})`,
      );
    }
    assert.deepEqual(errors, []);
    const heapGrowth = heap[CYCLES - 1]! - heap[1]!;
    assert.ok(
      heapGrowth <= 2048,
      `JS heap grew ${heapGrowth} KiB from round 2 to round ${CYCLES}: ${heap.join(', ')} KiB`,
    );
    const perRound = Math.round((rss[CYCLES - 1]! - rss[CYCLES - 4]!) / 3);
    assert.ok(
      perRound <= TOLERANCE_KIB,
      `RSS still grows ${perRound} KiB per round over the last three: ${rss.join(', ')} KiB (JS heap ${heap.join(', ')} KiB)`,
    );
  },
);
