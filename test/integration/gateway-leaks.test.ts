/**
 * Issue 8, items 7, 8, 10, 11, 13: what a refused, abandoned or timed-out connection leaves behind — nothing.
 * The gateway runs in this process, so its descriptors are /proc/self/fd; the backend's sessions are counted in
 * pg_stat_activity over a direct connection. Every loop is bounded.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';
import { errorIn, exchange, negotiatedTls, rawConnect, readAll, startupPacket } from '../support/raw.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;

const fdCount = () => readdirSync('/proc/self/fd').length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait (bounded) until `probe` returns at most `target`; returns the last value seen. */
async function settlesAt(probe: () => number | Promise<number>, target: number, ms = 8000): Promise<number> {
  const until = Date.now() + ms;
  let v = await probe();
  while (v > target && Date.now() < until) {
    await sleep(100);
    v = await probe();
  }
  return v;
}

async function backendSessions(): Promise<number> {
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await c.connect();
  try {
    const r = await c.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
    return (r.rows[0] as { n: number }).n;
  } finally {
    await c.end();
  }
}

const viaGateway = (extra: Partial<pg.ClientConfig> = {}) =>
  new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
    ...extra,
  });

before(async () => {
  fx = await makeFixtures();
  // `trusted` logs in without a password: its sessions reach ReadyForQuery, so a session orphaned after the client
  // left would sit idle in the backend for ever (what issue 8.11 saw).
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all trusted 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'],
  });
  const admin = new pg.Client({
    host: '127.0.0.1',
    port: cluster.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
  });
  await admin.connect();
  await admin.query('CREATE ROLE trusted LOGIN');
  await admin.end();
  const hba = writeFixture(fx, 'leaks-hba.conf', 'hostssl all all all trust\nhost all all all trust\n');
  gw = await startTestGateway(fx, cluster, {
    hba_file: hba,
    authentication_timeout: '2s',
    require_secure_transport: 'off', // plaintext clients reach the backend too
  });
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

test('issue 8.10: logins refused by the backend leave no descriptor behind (node-postgres ends after the error)', async () => {
  const base = fdCount();
  const cases: [Partial<pg.ClientConfig>, string][] = [
    [{ password: 'wrong' }, '28P01'],
    [{ database: 'no_such_db' }, '3D000'],
    [{ user: 'no_such_user' }, '28P01'],
  ];
  for (let i = 0; i < 60; i++) {
    const [extra, code] = cases[i % cases.length]!;
    const c = viaGateway(extra);
    const err = await c.connect().then(
      () => undefined,
      (e: { code?: string }) => e,
    );
    assert.equal(err?.code, code);
    await c.end().catch(() => undefined); // sends Terminate after the FATAL, then closes: the trigger
  }
  const left = await settlesAt(fdCount, base + 2);
  assert.ok(left <= base + 2, `gateway descriptors: ${base} before, ${left} after 60 refused logins`);
  const refused = gw.records.filter((r) => r.outcome === 'refused' && r.reason?.startsWith('backend: '));
  assert.ok(refused.length >= 60);
});

test('issue 8.10: gateway refusals (plaintext under require_secure_transport) leave no descriptor behind', async () => {
  const strict = await startTestGateway(fx, cluster, {});
  try {
    const base = fdCount();
    for (let i = 0; i < 40; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: strict.port, user: 'postgres', ssl: false });
      const err = (await c.connect().then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: string; message?: string; detail?: string } | undefined;
      assert.equal(err?.code, '28000');
      // Item 7: PostgreSQL's text is kept (clients match on it); the DETAIL names the rule that refused.
      assert.equal(
        err?.message,
        'no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "postgres", no encryption',
      );
      assert.equal(err?.detail, 'The gateway refuses connections without SSL (require_secure_transport = on).');
      await c.end().catch(() => undefined);
    }
    const left = await settlesAt(fdCount, base + 2);
    assert.ok(left <= base + 2, `gateway descriptors: ${base} before, ${left} after 40 refusals`);
    const r = strict.records.at(-1)!;
    assert.match(r.reason ?? '', /require_secure_transport = on/);
  } finally {
    await strict.close();
  }
});

test('issue 8.11: a StartupMessage and an immediate FIN or RST orphan no backend session', async () => {
  const baseFds = fdCount();
  const baseSessions = await backendSessions();
  const batch: Promise<void>[] = [];
  for (let i = 0; i < 80; i++) {
    batch.push(
      (async () => {
        const t = await negotiatedTls(gw.port);
        const packet = startupPacket({ user: i % 4 < 2 ? 'trusted' : 'postgres', database: 'postgres' });
        if (i % 3 === 0) {
          t.write(packet);
          t.destroy();
        } else if (i % 3 === 1) {
          t.resume();
          t.end(packet); // the StartupMessage, close_notify and FIN back to back
        } else {
          t.write(packet);
          (t as unknown as { _parent?: { resetAndDestroy?: () => void } })._parent?.resetAndDestroy?.() ?? t.destroy();
        }
      })(),
    );
    if (batch.length === 20) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  // Plaintext too (the second hba line allows it here): StartupMessage then reset.
  for (let i = 0; i < 20; i++) {
    const s = await rawConnect(gw.port);
    const packet = startupPacket({ user: i % 4 < 2 ? 'trusted' : 'postgres', database: 'postgres' });
    if (i % 2 === 0) {
      s.write(packet);
      s.resetAndDestroy();
    } else {
      s.resume(); // reads, so this (test-side) socket closes when the gateway closes its side
      s.end(packet); // StartupMessage and FIN in one go
    }
  }
  const sessions = await settlesAt(backendSessions, baseSessions);
  assert.equal(sessions, baseSessions, 'backend sessions left behind by clients that went away');
  const left = await settlesAt(fdCount, baseFds + 2);
  assert.ok(left <= baseFds + 2, `gateway descriptors: ${baseFds} before, ${left} after`);
  const gone = gw.records.filter((r) => r.reason?.startsWith('client closed the connection'));
  assert.ok(gone.length > 0, 'the log says the client went away');
});

test('issue 8.13: a timeout during relayed authentication is logged as the timeout it is', async () => {
  const before = gw.records.length;
  const t = await negotiatedTls(gw.port);
  const answer = readAll(t, 6000);
  t.write(startupPacket({ user: 'postgres', database: 'postgres' })); // the backend asks for a password; none comes
  const r = await answer;
  assert.equal(r.end, 'closed', 'closed at authentication_timeout');
  await settlesAt(() => (gw.records.length > before ? 0 : 1), 0, 3000);
  const rec = gw.records.slice(before).find((x) => x.user === 'postgres');
  assert.equal(rec?.outcome, 'refused');
  assert.equal(rec?.reason, 'authentication timeout');
});

test('issue 8 item 8: a client that hangs up during authentication is "closed", not refused by the backend', async () => {
  const before = gw.records.length;
  const t = await negotiatedTls(gw.port);
  t.write(startupPacket({ user: 'postgres', database: 'postgres' }));
  await new Promise<void>((resolve) => t.once('data', () => resolve())); // AuthenticationSASL arrived
  t.destroy();
  await settlesAt(() => (gw.records.length > before ? 0 : 1), 0, 3000);
  const rec = gw.records.slice(before).find((x) => x.user === 'postgres');
  assert.equal(rec?.outcome, 'closed');
  assert.equal(rec?.reason, 'client closed the connection during authentication');
});

test('max_client_conn: one more client gets PostgreSQL 53300, and a slot frees when a session ends', async () => {
  const limited = await startTestGateway(fx, cluster, { max_client_conn: '2' });
  try {
    const a = viaGateway({ port: limited.port });
    const b = viaGateway({ port: limited.port });
    await a.connect();
    await b.connect();
    const third = await exchange(limited.port, startupPacket({ user: 'postgres' }), 3000);
    // Plaintext is refused anyway, but the limit is checked first, as PostgreSQL checks max_connections first.
    const e = errorIn(third.data);
    assert.equal(e?.C, '53300');
    assert.equal(e?.M, 'sorry, too many clients already');
    assert.equal(e?.D, 'The gateway accepts at most 2 client connections (max_client_conn).');
    await b.end();
    await settlesAt(() => limited.gw.clientCount, 1);
    const c = viaGateway({ port: limited.port });
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
    await a.end();
  } finally {
    await limited.close();
  }
});
