/**
 * Issue 12: upstream_target_session_attrs against a real streaming standby (pg_basebackup -R from a primary, Debian's
 * PostgreSQL 15 — the embedded package has no pg_basebackup; 15 reports in_hot_standby and
 * default_transaction_read_only at startup as 14+ does). libpq's rules: read-write picks the primary, read-only and
 * standby pick the standby, prefer-standby falls back to the primary when no standby answers; with the gateway
 * logging in itself (gateway authentication, pools) a host of the wrong kind is skipped whatever the backend's
 * authentication; with the backend authenticating the client, only an exchange without credentials can be replayed
 * to the next host.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { type RunningCluster, postgresRunAs, startCluster } from '../../src/gateway/embedded-postgres.js';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { type TestCluster, flavorBinaries, freePort, startTestCluster } from '../support/postgres.js';

const execFileAsync = promisify(execFile);
const ALICE_PW = 'standby-alice-pw';

let fx: GatewayFixtures;
let primary: TestCluster;
let standby: RunningCluster;
let standbyBase: string;
let standbyData: string;
let unused: number;
let userlist: string;
let gatewayHba: string;
const gateways: TestGateway[] = [];

before(async () => {
  fx = await makeFixtures();
  primary = await startTestCluster({
    flavor: 'debian',
    hba: [
      'local all all trust',
      'local replication all trust',
      // alice authenticates with SCRAM; everyone else is trusted from loopback (a replayable login).
      'host all alice 127.0.0.1/32 scram-sha-256',
      'host all all 127.0.0.1/32 trust',
    ],
  });
  const c = new pg.Client({ host: primary.socketDir, port: primary.port, user: 'postgres', database: 'postgres' });
  await c.connect();
  await c.query(`CREATE ROLE alice LOGIN PASSWORD '${ALICE_PW}'`);
  const secret = (await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'")).rows[0] as {
    rolpassword: string;
  };
  await c.end();
  userlist = writeFixture(fx, 'standby-userlist.txt', `"alice" "${secret.rolpassword}"\n`, 0o600);
  gatewayHba = writeFixture(fx, 'standby-hba.conf', 'hostssl all alice all scram-sha-256\nhostssl all all all trust\n');

  // The standby: a base backup of the primary, streaming from it (-R writes primary_conninfo and standby.signal).
  standbyBase = await mkdtemp(join(tmpdir(), 'pgtls-standby-'));
  await chmod(standbyBase, 0o755);
  const runAs = await postgresRunAs();
  if (runAs.uid !== undefined) await chown(standbyBase, runAs.uid, runAs.gid!);
  const dataDir = join(standbyBase, 'data');
  standbyData = dataDir;
  const bin = flavorBinaries('debian').bin;
  await execFileAsync(
    join(bin, 'pg_basebackup'),
    ['-D', dataDir, '-R', '-X', 'stream', '-h', primary.socketDir, '-p', String(primary.port), '-U', 'postgres'],
    { ...runAs, env: { ...process.env, LC_ALL: 'C' } },
  );
  standby = await startCluster({ dataDir, port: await freePort() }, flavorBinaries('debian'));
  unused = await freePort();
});
after(async () => {
  for (const g of gateways) await g.close();
  await standby?.stop().catch(() => undefined);
  if (standbyBase) await rm(standbyBase, { recursive: true, force: true });
  await primary?.destroy();
});

const hostsUrl = (...ports: number[]) => `postgres://${ports.map((p) => `127.0.0.1:${p}`).join(',')}/`;

async function gateway(conf: Record<string, string>): Promise<TestGateway> {
  const g = await startTestGateway(fx, primary, conf);
  gateways.push(g);
  return g;
}

/** Which server the session landed on: its port and whether it is in recovery. */
async function landed(g: TestGateway, user = 'postgres', password = ''): Promise<string> {
  const r = await psql(
    `host=localhost port=${g.port} dbname=postgres user=${user} sslmode=verify-full sslrootcert=${fx.root}`,
    "select current_setting('port') || ' ' || pg_is_in_recovery()",
    { env: password ? { PGPASSWORD: password } : {} },
  );
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

async function pgError(g: TestGateway, user = 'postgres', password = ''): Promise<Record<string, string> | undefined> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: g.port,
    user,
    password,
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
  });
  // A session-mode pool lets the client in from its welcome and reports a failed server login afterwards: the error
  // may come from connect(), from the first query, or as an 'error' event.
  let late: unknown;
  c.on('error', (e) => {
    late ??= e;
  });
  try {
    await c.connect();
    await c.query('select 1');
    await c.end();
    if (late) throw late;
    return undefined;
  } catch (e) {
    const err = (late ?? e) as { code: string; message: string; detail?: string };
    return { code: err.code, message: err.message, ...(err.detail ? { detail: err.detail } : {}) };
  }
}

const P = () => `${primary.port} false`;
const S = () => `${standby.port} true`;

describe('target_session_attrs, the backend authenticating (relay)', () => {
  test('the standby really streams from the primary', async () => {
    const c = new pg.Client({ host: primary.socketDir, port: primary.port, user: 'postgres', database: 'postgres' });
    await c.connect();
    const r = await c.query("select count(*)::int as n from pg_stat_replication where state = 'streaming'");
    await c.end();
    assert.equal((r.rows[0] as { n: number }).n, 1);
  });

  test('read-write picks the primary (listed second); read-only and standby pick the standby', async () => {
    const rw = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      upstream_target_session_attrs: 'read-write',
    });
    assert.equal(await landed(rw), P());
    for (const mode of ['read-only', 'standby', 'prefer-standby']) {
      const g = await gateway({ upstream: hostsUrl(primary.port, standby.port), upstream_target_session_attrs: mode });
      assert.equal(await landed(g), S(), mode);
    }
    const primaryFirst = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      upstream_target_session_attrs: 'primary',
    });
    assert.equal(await landed(primaryFirst), P());
    const any = await gateway({ upstream: hostsUrl(standby.port, primary.port) });
    assert.equal(await landed(any), S());
  });

  test("no host of the wanted kind: 08006 with libpq's reason for each host", async () => {
    const g = await gateway({
      upstream: hostsUrl(primary.port, unused),
      upstream_target_session_attrs: 'standby',
    });
    assert.deepEqual(await pgError(g), {
      code: '08006',
      message: 'could not connect to the database server behind the gateway',
      detail: [
        `connection to server at "127.0.0.1", port ${primary.port} failed: server is not in hot standby mode`,
        `connection to server at "127.0.0.1", port ${unused} failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?`,
      ].join('\n'),
    });
  });

  test('a SCRAM login cannot be replayed to the next host: the client is refused with the reason', async () => {
    const g = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      upstream_target_session_attrs: 'read-write',
    });
    assert.deepEqual(await pgError(g, 'alice', ALICE_PW), {
      code: '08006',
      message: 'could not connect to the database server behind the gateway',
      detail: `connection to server at "127.0.0.1", port ${standby.port} failed: session is read-only`,
    });
    await g.settle();
    assert.match(g.records.at(-1)?.reason ?? '', /^upstream: session is read-only .*use gateway authentication/);
  });
});

describe('target_session_attrs, the gateway logging in itself', () => {
  test('gateway authentication (auth_file, SCRAM pass-through): read-write skips the standby', async () => {
    const g = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      upstream_target_session_attrs: 'read-write',
      hba_file: gatewayHba,
      auth_file: userlist,
    });
    assert.equal(await landed(g, 'alice', ALICE_PW), P());
    // The failing case: the wrong password is the backend's refusal... at the gateway, as before.
    const bad = await pgError(g, 'alice', 'wrong');
    assert.equal(bad?.code, '28P01');
  });

  test('a session pool logs in to the primary; a pooled server whose host turned read-only is dropped at its check', async () => {
    const g = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      upstream_target_session_attrs: 'read-write',
      hba_file: gatewayHba,
      auth_file: userlist,
      pool_mode: 'session',
      default_pool_size: '1',
      server_check_delay: '0',
    });
    assert.equal(await landed(g, 'alice', ALICE_PW), P());
    const admin = new pg.Client({
      host: primary.socketDir,
      port: primary.port,
      user: 'postgres',
      database: 'postgres',
    });
    await admin.connect();
    try {
      await admin.query('ALTER SYSTEM SET default_transaction_read_only = on');
      await admin.query('SELECT pg_reload_conf()');
      await new Promise((r) => setTimeout(r, 300));
      // The pooled server (on the primary, now read-only) reports the change at its check and is not handed out;
      // the new login finds no read-write host.
      const err = await pgError(g, 'alice', ALICE_PW);
      assert.deepEqual(err, {
        code: '08006',
        message: 'could not connect to the database server behind the gateway',
        detail: [
          `connection to server at "127.0.0.1", port ${standby.port} failed: session is read-only`,
          `connection to server at "127.0.0.1", port ${primary.port} failed: session is read-only`,
        ].join('\n'),
      });
    } finally {
      await admin.query('ALTER SYSTEM RESET default_transaction_read_only');
      await admin.query('SELECT pg_reload_conf()');
      await admin.end();
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await landed(g, 'alice', ALICE_PW), P());
  });
});

describe('57P03: a standby not accepting connections (hot_standby = off)', () => {
  before(async () => {
    await standby.stop();
    standby = await startCluster(
      { dataDir: standbyData, port: standby.port, settings: { hot_standby: 'off' } },
      flavorBinaries('debian'),
    );
  });
  const NOT_NOW = 'FATAL:  the database system is not accepting connections\nDETAIL:  Hot standby mode is disabled.';

  test('relay, gateway authentication and a pool all move on to the next host, as libpq does', async () => {
    const relay = await gateway({ upstream: hostsUrl(standby.port, primary.port) });
    assert.equal(await landed(relay), P());
    const gwAuth = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      hba_file: gatewayHba,
      auth_file: userlist,
    });
    assert.equal(await landed(gwAuth, 'alice', ALICE_PW), P());
    const pool = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      hba_file: gatewayHba,
      auth_file: userlist,
      pool_mode: 'transaction',
    });
    assert.equal(await landed(pool, 'alice', ALICE_PW), P());
  });

  test("no other host: 08006 with the server's refusal in the DETAIL; a single host passes it on as before", async () => {
    const g = await gateway({ upstream: hostsUrl(standby.port, unused) });
    assert.deepEqual(await pgError(g), {
      code: '08006',
      message: 'could not connect to the database server behind the gateway',
      detail: [
        `connection to server at "127.0.0.1", port ${standby.port} failed: ${NOT_NOW}`,
        `connection to server at "127.0.0.1", port ${unused} failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?`,
      ].join('\n'),
    });
    const single = await gateway({ upstream: hostsUrl(standby.port) });
    assert.deepEqual(await pgError(single), {
      code: '57P03',
      message: 'the database system is not accepting connections',
      detail: 'Hot standby mode is disabled.',
    });
  });
});

describe('prefer-standby when the standby is down', () => {
  test('falls back to the primary; standby then finds no host', async () => {
    await standby.stop();
    const g = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      upstream_target_session_attrs: 'prefer-standby',
    });
    assert.equal(await landed(g), P());
    const strict = await gateway({
      upstream: hostsUrl(standby.port, primary.port),
      upstream_target_session_attrs: 'standby',
    });
    const err = await pgError(strict);
    assert.equal(err?.code, '08006');
    assert.equal(
      err?.detail,
      [
        `connection to server at "127.0.0.1", port ${standby.port} failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?`,
        `connection to server at "127.0.0.1", port ${primary.port} failed: server is not in hot standby mode`,
      ].join('\n'),
    );
  });
});
