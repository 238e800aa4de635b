/**
 * Idle-session footprint: hold N idle TLS sessions (default 10,000) through a `pgtls serve` child and print the
 * gateway's resident memory per session (KiB; target ≤ 64). Behind the gateway sits PgBouncer in transaction mode in
 * front of a real PostgreSQL, so ten thousand sessions do not need ten thousand backends on this machine; every
 * session still logs in end to end (StartupMessage relayed, ReadyForQuery received) before it goes idle.
 * Then: what a client sees when the backend's max_connections is reached (PostgreSQL's FATAL 53300 must reach it,
 * never a silent close). Prints its results and writes nothing else.
 *
 *   npm run build && npm run bench:idle -- [--sessions 10000] [--concurrency 200] [--native-data-plane on|off|auto]
 *
 * File descriptors: the gateway needs two per session, this process one; both are started with RLIMIT_NOFILE raised
 * by prlimit(1) (this script re-executes itself under prlimit when its own limit is too low), and it says so when
 * it cannot.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { makeFixtures } from '../test/support/gateway-fixtures.js';
import { type Peer, openSession, pool } from '../test/support/hostile.js';
import { havePgBouncer, startPgBouncer } from '../test/support/pgbouncer.js';
import { startTestCluster } from '../test/support/postgres.js';
import { adminClient, fdCount, rssKiB, startServeChild } from '../test/support/serve-child.js';

const { values: opt } = parseArgs({
  options: {
    sessions: { type: 'string', default: process.env.PGTLS_BENCH_SESSIONS ?? '10000' },
    concurrency: { type: 'string', default: '200' },
    /** The gateway's native_data_plane (default: the gateway's own default). */
    'native-data-plane': { type: 'string' },
  },
});
/** Whether prlimit can give a child this open-file limit (raising the hard limit needs CAP_SYS_RESOURCE). */
const canRaise = (n: number) => spawnSync('prlimit', [`--nofile=${n}:${n}`, 'true']).status === 0;
const hardNofile = () =>
  Number(
    spawnSync('prlimit', ['--pid', String(process.pid), '--nofile', '--noheadings', '--output=HARD'])
      .stdout?.toString()
      .trim(),
  ) || 1024;
let N = Number(opt.sessions);
const CONCURRENCY = Number(opt.concurrency);
const TARGET_KIB = 64;

/** This process's soft RLIMIT_NOFILE (from /proc, as Node has no getrlimit). */
function ownNofile(): number {
  const r = spawnSync('prlimit', ['--pid', String(process.pid), '--nofile', '--noheadings', '--output=SOFT']);
  return Number(r.stdout?.toString().trim()) || 0;
}

let gatewayNofile = 2 * N + 1_000;

async function main(): Promise<void> {
  if (!canRaise(gatewayNofile)) {
    const hard = hardNofile();
    const fit = Math.floor((hard - 1_000) / 2);
    console.log(
      `cannot raise RLIMIT_NOFILE to ${gatewayNofile} for the gateway (hard limit ${hard}; raising it needs root with CAP_SYS_RESOURCE): holding ${fit} sessions instead of ${N}`,
    );
    N = fit;
    gatewayNofile = 2 * N + 1_000;
  }
  const needOwn = N + 2_000;
  if (ownNofile() < needOwn) {
    if (process.env.PGTLS_BENCH_REEXEC) {
      console.log(
        `cannot raise this process's open-file limit to ${needOwn} (have ${ownNofile()}); run as root or with ulimit -n ${needOwn}`,
      );
      process.exit(2);
    }
    const r = spawnSync('prlimit', [`--nofile=${needOwn}:${needOwn}`, process.execPath, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, PGTLS_BENCH_REEXEC: '1' },
    });
    if (r.error || r.status === null) {
      console.log(
        `cannot raise the open-file limit with prlimit (${r.error?.message ?? r.signal}); run with ulimit -n ${needOwn}`,
      );
      process.exit(2);
    }
    process.exit(r.status);
  }
  if (!havePgBouncer()) {
    console.log('PgBouncer (/usr/sbin/pgbouncer) is needed to hold this many sessions without as many backends');
    process.exit(2);
  }
  const fx = await makeFixtures();
  const cluster = await startTestCluster({
    hba: ['local all all trust', 'host all bench_user 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'],
    settings: { max_connections: '60' },
  });
  const admin = await adminClient(cluster);
  await admin.query('create role bench_user login');
  await admin.end();
  const bouncer = await startPgBouncer({ backendPort: cluster.port, user: 'bench_user', maxClients: N + 100 });
  console.log(
    `fd limits: this process ${ownNofile()}, gateway child ${gatewayNofile} (2 per session + 1000), PgBouncer ${N + 1_100}`,
  );
  const plane = opt['native-data-plane'];
  const gw = await startServeChild(
    fx,
    undefined,
    { log_connections: 'off', ...(plane ? { native_data_plane: plane } : {}) },
    { nofile: gatewayNofile, upstream: `postgres://127.0.0.1:${bouncer.port}` },
  ).catch(async (e: unknown) => {
    await bouncer.stop();
    await cluster.destroy();
    throw e;
  });
  const held: Peer[] = [];
  const failures = new Map<string, number>();
  try {
    await new Promise((r) => setTimeout(r, 1_000));
    const before = rssKiB(gw.pid);
    const fdsBefore = fdCount(gw.pid);
    const t0 = Date.now();
    await pool(N, CONCURRENCY, async () => {
      const why = await openSession(gw.port, held, 'bench_user');
      if (why) failures.set(why, (failures.get(why) ?? 0) + 1);
    });
    const opened = ((Date.now() - t0) / 1000).toFixed(1);
    await new Promise((r) => setTimeout(r, 2_000));
    const alive = held.filter((p) => !p.serverClosed).length;
    const withSessions = rssKiB(gw.pid);
    const fdsWith = fdCount(gw.pid);
    const perSession = (withSessions - before) / Math.max(1, alive);
    console.log(
      `idle TLS sessions: ${alive} of ${N} held (opened in ${opened} s; gateway → PgBouncer, transaction pooling → PostgreSQL)`,
    );
    for (const [why, n] of failures) console.log(`  ${n} failed: ${why}`);
    console.log(
      `gateway native_data_plane = ${plane ?? '(default)'}: ${((fdsWith - fdsBefore) / Math.max(1, alive)).toFixed(2)} fds per session (client + backend)`,
    );
    console.log(
      `gateway RSS: ${(before / 1024).toFixed(1)} MiB idle → ${(withSessions / 1024).toFixed(1)} MiB with the sessions = ${perSession.toFixed(1)} KiB per session (target ≤ ${TARGET_KIB}): ${perSession <= TARGET_KIB ? 'OK' : 'OVER TARGET'}`,
    );
  } finally {
    for (const p of held) p.sock.destroy();
    await gw.stop();
    await bouncer.stop();
    await cluster.destroy();
  }
  await maxConnections(fx);
}

/** A backend with max_connections reached: the client must get PostgreSQL's FATAL 53300, not a silent close. */
async function maxConnections(fx: Awaited<ReturnType<typeof makeFixtures>>): Promise<void> {
  const cluster = await startTestCluster({
    hba: ['local all all trust', 'host all bench_user 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'],
    settings: { max_connections: '6', superuser_reserved_connections: '0', reserved_connections: '0' },
  });
  const admin = await adminClient(cluster);
  await admin.query('create role bench_user login');
  await admin.end();
  const gw = await startServeChild(fx, cluster, { log_connections: 'off' }).catch(async (e: unknown) => {
    await cluster.destroy();
    throw e;
  });
  const held: Peer[] = [];
  let answer = 'every session was admitted (max_connections not reached)';
  try {
    for (let i = 0; i < 20; i++) {
      const why = await openSession(gw.port, held, 'bench_user');
      if (why !== undefined) {
        answer = why;
        break;
      }
    }
    const ok = answer === '53300 sorry, too many clients already';
    console.log(
      `backend max_connections reached after ${held.length} sessions: the client sees ${answer.startsWith('53300') ? `FATAL ${answer}` : answer}: ${ok ? 'OK' : 'WRONG (PostgreSQL sends FATAL 53300 "sorry, too many clients already")'}`,
    );
  } finally {
    for (const p of held) p.sock.destroy();
    await gw.stop();
    await cluster.destroy();
  }
}

main().catch((e) => {
  console.log(`bench failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
