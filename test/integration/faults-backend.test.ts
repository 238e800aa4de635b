/**
 * Backend faults, as a client of the gateway sees them: a session terminated by pg_terminate_backend, the backend
 * stopped cleanly, its postmaster killed with SIGKILL, and the backend coming back. The gateway (a `pgtls serve`
 * child, so its descriptors can be counted) must pass PostgreSQL's own errors through, answer a new client with a
 * PostgreSQL-style FATAL while the backend is down (never a silent close), leak nothing on those refusals, and serve
 * new sessions once the backend is back, without a restart.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { type RunningCluster, postgresRunAs, startCluster } from '../../src/gateway/embedded-postgres.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { openPeer } from '../support/hostile.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';
import { errorIn, startupPacket } from '../support/raw.js';
import { type ServeChild, adminClient, fdCount, fdKinds, settle, startServeChild } from '../support/serve-child.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
/** The cluster as restarted by a test (stopped in after()). */
let restarted: RunningCluster | undefined;
let child: ServeChild;
let ca: string;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  child = await startServeChild(fx, cluster, { log_connections: 'off' });
  ca = readFileSync(fx.root, 'utf8');
});
after(async () => {
  await child?.stop();
  await restarted?.stop().catch(() => undefined);
  await cluster?.destroy();
});

function client(): pg.Client {
  return new pg.Client({
    host: 'localhost',
    port: child.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { ca, servername: 'localhost' },
    connectionTimeoutMillis: 10_000,
  });
}

/** A live session through the gateway, and the first error it reports (PostgreSQL's FATAL, if one came). */
async function liveSession(): Promise<{ c: pg.Client; pid: number; error: Promise<Error & { code?: string }> }> {
  const c = client();
  const error = new Promise<Error & { code?: string }>((resolve) => c.on('error', resolve));
  await c.connect();
  const r = await c.query('select pg_backend_pid() as pid');
  return { c, pid: r.rows[0].pid as number, error };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)),
  ]);
}

/** What a new client gets: the gateway's FATAL over TLS, as raw fields. */
async function newClientAnswer(): Promise<Record<string, string> | undefined> {
  const p = await openPeer(child.port);
  p.sock.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
  await p.until(() => p.data.length > 0, 5_000);
  await p.startTls();
  p.sock.write(startupPacket({ user: 'postgres', database: 'postgres' }));
  await p.until(() => errorIn(p.data) !== undefined, 10_000);
  const closed = await p.closedByServer(5_000);
  assert.ok(closed, 'the gateway kept the refused connection open');
  return errorIn(p.data);
}

const UPSTREAM_UNAVAILABLE = {
  S: 'FATAL',
  V: 'FATAL',
  C: '08006',
  M: 'could not connect to the database server behind the gateway',
  H: 'The gateway is up but its upstream is not reachable; the gateway log has the reason.',
};

async function restartBackend(): Promise<void> {
  // After a SIGKILL the orphaned backends may still hold the shared memory for a moment: retry, bounded.
  let last: unknown;
  for (let i = 0; i < 20; i++) {
    try {
      restarted = await startCluster({ dataDir: cluster.dataDir, port: cluster.port }, cluster.binaries);
      return;
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  throw last;
}

/** A new session through the gateway works (bounded retries while the backend finishes starting). */
async function servesAgain(): Promise<number> {
  let lastError = '';
  for (let i = 0; i < 20; i++) {
    const c = client();
    try {
      await c.connect();
      const r = await c.query('select 41 + 1 as answer');
      await c.end();
      return r.rows[0].answer as number;
    } catch (e) {
      lastError = (e as Error).message;
      await c.end().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  throw new Error(`the gateway did not serve a new session: ${lastError}`);
}

describe('backend faults', () => {
  test('pg_terminate_backend: the client sees FATAL 57P01 "terminating connection due to administrator command"', async () => {
    const s = await liveSession();
    const admin = await adminClient(cluster);
    try {
      const r = await admin.query('select pg_terminate_backend($1) as ok', [s.pid]);
      assert.equal(r.rows[0].ok, true);
      const e = await within(s.error, 10_000, 'terminated session');
      assert.deepEqual([e.code, e.message], ['57P01', 'terminating connection due to administrator command']);
    } finally {
      await admin.end();
      await s.c.end().catch(() => undefined);
    }
  });

  test('backend stopped: a live session sees 57P01, a new client gets the gateway FATAL 08006 (issue 8.14)', async () => {
    const s = await liveSession();
    await cluster.stop();
    const e = await within(s.error, 10_000, 'session of a stopped backend');
    await s.c.end().catch(() => undefined);
    assert.deepEqual([e.code, e.message], ['57P01', 'terminating connection due to administrator command']);
    assert.deepEqual({ ...(await newClientAnswer()) }, UPSTREAM_UNAVAILABLE);
    const c = client();
    await assert.rejects(c.connect(), (err: Error & { code?: string }) => {
      assert.deepEqual([err.code, err.message], ['08006', UPSTREAM_UNAVAILABLE.M]);
      return true;
    });
    await c.end().catch(() => undefined);
  });

  test('issue 8.10: logins refused while the backend is down leak no file descriptor in the gateway', async () => {
    const baseline = fdCount(child.pid);
    for (let i = 0; i < 30; i++) {
      // node-postgres: the FATAL, then client.end() sends Terminate and closes
      const c = client();
      await c.connect().catch(() => undefined);
      await c.end().catch(() => undefined);
      // a raw client: the FATAL, one more message, FIN
      const p = await openPeer(child.port);
      p.sock.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
      await p.until(() => p.data.length > 0, 5_000);
      await p.startTls();
      p.sock.write(startupPacket({ user: 'postgres', database: 'postgres' }));
      await p.until(() => errorIn(p.data) !== undefined, 10_000);
      p.sock.end(Buffer.from([0x58, 0, 0, 0, 4]));
      await p.closedByServer(5_000);
    }
    const now = await settle(() => fdCount(child.pid), baseline, 5_000);
    assert.equal(
      now,
      baseline,
      `60 refused logins left ${now - baseline} descriptors: ${JSON.stringify(fdKinds(child.pid))}`,
    );
  });

  test('issue 8.14: the backend back on its port, the gateway serves new sessions without a restart', async () => {
    await restartBackend();
    assert.equal(await servesAgain(), 42);
    assert.ok(child.alive());
  });

  test('postmaster killed with SIGKILL: the live session gets FATAL 57P01, new clients 08006, then it heals (issue 8.14)', async () => {
    const s = await liveSession();
    const postmaster = Number(readFileSync(`${cluster.dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    assert.ok(postmaster > 1);
    process.kill(postmaster, 'SIGKILL');
    const e = await within(s.error, 15_000, 'session of a killed postmaster');
    await s.c.end().catch(() => undefined);
    assert.deepEqual([e.code, e.message], ['57P01', 'terminating connection due to unexpected postmaster exit']);
    assert.deepEqual({ ...(await newClientAnswer()) }, UPSTREAM_UNAVAILABLE);
    await restartBackend();
    assert.equal(await servesAgain(), 42);
    assert.ok(child.alive());
  });

  test('pg_ctl stop -m immediate: the live session gets the WARNING 57P01 and a close, new clients 08006, then it heals (issue 8.14)', async () => {
    const s = await liveSession();
    const notices: { code?: string; severity?: string; message: string }[] = [];
    s.c.on('notice', (n) => notices.push(n as { code?: string; severity?: string; message: string }));
    const ended = new Promise<void>((resolve) => s.c.on('end', () => resolve()));
    const b = cluster.binaries;
    await promisify(execFile)(join(b.bin, 'pg_ctl'), ['-D', cluster.dataDir, '-m', 'immediate', '-w', 'stop'], {
      ...(await postgresRunAs()),
      env: { ...process.env, LC_ALL: 'C' },
    });
    await within(ended, 15_000, 'session of an immediate shutdown');
    await s.c.end().catch(() => undefined);
    // PostgreSQL's quickdie() sends this as WARNING (client only) and exits: the gateway must pass it on.
    assert.deepEqual(
      notices.map((n) => [n.severity, n.code, n.message]),
      [['WARNING', '57P01', 'terminating connection due to immediate shutdown command']],
    );
    assert.deepEqual({ ...(await newClientAnswer()) }, UPSTREAM_UNAVAILABLE);
    await restartBackend();
    assert.equal(await servesAgain(), 42);
    assert.ok(child.alive());
  });
});
