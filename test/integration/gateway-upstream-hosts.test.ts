/**
 * Issue 12: an upstream with several hosts (libpq's `postgres://h1:p1,h2:p2/` form) walked as libpq 18 walks them —
 * a host that is down or silent is skipped, every host down gives the client the gateway's usual 08006 with a DETAIL
 * naming each host and why — and direct TLS to the backend (upstream_sslnegotiation = direct, PostgreSQL 17+) with
 * SNI (upstream_sslsni) and ALPN "postgresql", refused at load with a weak upstream_sslmode as libpq refuses it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type Server, type Socket, createServer, connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type TLSSocket, createServer as createTlsServer } from 'node:tls';
import pg from 'pg';
import { Gateway } from '../../src/gateway/gateway.js';
import { cleanEnv, psql, run } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, sslClusterOptions, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let down: TestCluster;
let up: TestCluster;
let tlsPg: TestCluster;
let unused: number;
const gateways: TestGateway[] = [];
const servers: Server[] = [];
const env = { PGPASSWORD: SUPERUSER_PASSWORD };
const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
const REFUSED = 'Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?';

before(async () => {
  fx = await makeFixtures();
  [down, up, tlsPg] = await Promise.all([
    startTestCluster(),
    startTestCluster(),
    startTestCluster({
      ...sslClusterOptions(fx),
      hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256'],
    }),
  ]);
  // The first cluster is a real PostgreSQL that has gone away: its port refuses connections.
  await down.stop();
  unused = await freePort();
});
after(async () => {
  for (const g of gateways) await g.close();
  for (const s of servers) s.close();
  await Promise.all([down?.destroy(), up?.destroy(), tlsPg?.destroy()]);
});

async function gateway(conf: Record<string, string>): Promise<TestGateway> {
  const g = await startTestGateway(fx, up, conf);
  gateways.push(g);
  return g;
}

const through = (g: TestGateway, sql: string, db = 'postgres') =>
  psql(`host=localhost port=${g.port} dbname=${db} user=postgres sslmode=verify-full sslrootcert=${fx.root}`, sql, {
    env,
  });

/** The error a node-postgres client gets through the gateway (code, message, detail), or undefined. */
async function pgError(
  g: TestGateway,
): Promise<{ code: string | undefined; message: string; detail?: string } | undefined> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: g.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
    ssl: { rejectUnauthorized: false },
  });
  try {
    await c.connect();
    await c.end();
    return undefined;
  } catch (e) {
    const err = e as { code?: string; message: string; detail?: string };
    return { code: err.code, message: err.message, ...(err.detail ? { detail: err.detail } : {}) };
  }
}

describe('several hosts: failover', () => {
  test('the first host is down (a stopped PostgreSQL): the session goes to the second', async () => {
    const g = await gateway({ upstream: `postgres://127.0.0.1:${down.port},127.0.0.1:${up.port}/` });
    const r = await through(g, "select current_setting('port')");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), String(up.port));
    await g.settle();
    const rec = g.records.findLast((x) => x.outcome === 'relayed');
    assert.equal(rec?.upstream_host, `127.0.0.1:${up.port}`);
    assert.equal(rec?.upstream_error, undefined);
  });

  test('a host that accepts TCP but never answers is left after upstream_connect_timeout (1 s counts as 2 s)', async () => {
    const silent = createServer(() => undefined);
    servers.push(silent);
    await new Promise<void>((res) => silent.listen(0, '127.0.0.1', res));
    const port = (silent.address() as { port: number }).port;
    const g = await gateway({
      upstream: `postgres://127.0.0.1:${port},127.0.0.1:${up.port}`,
      upstream_sslmode: 'prefer',
      upstream_connect_timeout: '1',
    });
    const t0 = Date.now();
    const r = await through(g, "select current_setting('port')");
    const took = Date.now() - t0;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), String(up.port));
    assert.ok(took >= 1900 && took < 8000, `took ${took} ms`);

    // With no other host the silent one is reported as libpq reports it.
    const alone = await gateway({
      upstream: `postgres://127.0.0.1:${port},127.0.0.1:${unused}`,
      upstream_sslmode: 'prefer',
      upstream_connect_timeout: '1',
    });
    assert.deepEqual(await pgError(alone), {
      code: '08006',
      message: 'could not connect to the database server behind the gateway',
      detail: [
        `connection to server at "127.0.0.1", port ${port} failed: timeout expired`,
        `connection to server at "127.0.0.1", port ${unused} failed: ${REFUSED}`,
      ].join('\n'),
    });
  });

  test("psql's cancel reaches the host the session landed on (the second), not the first", async () => {
    const g = await gateway({ upstream: `postgres://127.0.0.1:${down.port},127.0.0.1:${up.port}/` });
    const t0 = Date.now();
    const r = await run(
      'timeout',
      [
        '-s',
        'INT',
        '2',
        'psql',
        '-X',
        '-c',
        'select pg_sleep(20)',
        `host=localhost port=${g.port} user=postgres sslmode=require`,
      ],
      { env: cleanEnv(env) },
    );
    assert.match(r.stderr, /canceling statement due to user request/);
    assert.ok(Date.now() - t0 < 15_000);
  });

  test('upstream_load_balance_hosts = random spreads sessions over the hosts; disable keeps the order', async () => {
    const ports = async (g: TestGateway) => {
      const seen = new Set<string>();
      for (let i = 0; i < 16; i++) seen.add((await through(g, "select current_setting('port')")).stdout.trim());
      return [...seen].sort();
    };
    const both = [String(up.port), String(tlsPg.port)].sort();
    const random = await gateway({
      upstream: `postgres://127.0.0.1:${up.port},127.0.0.1:${tlsPg.port}`,
      upstream_sslmode: 'prefer',
      upstream_load_balance_hosts: 'random',
    });
    // 16 sessions all on one of two hosts: probability 2^-15.
    assert.deepEqual(await ports(random), both);
    const ordered = await gateway({
      upstream: `postgres://127.0.0.1:${up.port},127.0.0.1:${tlsPg.port}`,
      upstream_sslmode: 'prefer',
    });
    assert.deepEqual(await ports(ordered), [String(up.port)]);
  });

  test('every host down: 08006 as for one unreachable upstream, DETAIL naming each host and why', async () => {
    const g = await gateway({ upstream: `postgres://127.0.0.1:${down.port},127.0.0.1:${unused}` });
    const err = await pgError(g);
    const detail = [
      `connection to server at "127.0.0.1", port ${down.port} failed: ${REFUSED}`,
      `connection to server at "127.0.0.1", port ${unused} failed: ${REFUSED}`,
    ].join('\n');
    assert.deepEqual(err, {
      code: '08006',
      message: 'could not connect to the database server behind the gateway',
      detail,
    });
    await g.settle();
    const rec = g.records.findLast((x) => x.upstream_error);
    assert.equal(rec?.upstream_error, detail);
    assert.equal(rec?.reason, `upstream: ${detail}`);
  });

  test('one host down: the same 08006 as before, no DETAIL, the bare reason in the log', async () => {
    const g = await gateway({ upstream: `postgres://127.0.0.1:${down.port}` });
    assert.deepEqual(await pgError(g), {
      code: '08006',
      message: 'could not connect to the database server behind the gateway',
    });
    await g.settle();
    assert.equal(g.records.findLast((x) => x.upstream_error)?.upstream_error, REFUSED);
  });

  test('a route (routes_file) with several hosts fails over the same way; libpq option rules apply per route', async () => {
    const routes = writeFixture(
      fx,
      'hosts-routes.conf',
      `database template1 postgres://127.0.0.1:${unused},127.0.0.1:${up.port} target_session_attrs=read-write\n`,
    );
    const g = await gateway({ upstream: `postgres://127.0.0.1:${down.port}`, routes_file: routes });
    const r = await through(g, "select current_database() || ' ' || current_setting('port')", 'template1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `template1 ${up.port}`);

    const bad = writeFixture(
      fx,
      'hosts-routes-bad.conf',
      `database template1 postgres://127.0.0.1:${up.port} sslmode=prefer sslnegotiation=direct\n`,
    );
    await assert.rejects(startTestGateway(fx, up, { routes_file: bad }), {
      code: 'PGTLS_ERR_ROUTES',
      message: `weak sslmode "prefer" may not be used with sslnegotiation=direct (use "require", "verify-ca", or "verify-full") (line 1 of routes file "${bad}")`,
    });
  });

  test('serve --check shows every host and the hop settings', async () => {
    const conf = writeFixture(
      fx,
      'hosts-check.conf',
      [
        `ssl_cert_file = '${fx.server.cert}'`,
        `ssl_key_file = '${fx.server.key}'`,
        `data_directory = '${fx.dir}/check-data'`,
        "upstream = 'postgres://db1.internal:5432,[::1]:5433,%2Fvar%2Frun%2Fpostgresql:5434/'",
        'upstream_sslmode = verify-full',
        'upstream_sslnegotiation = direct',
        'upstream_target_session_attrs = prefer-standby',
        'upstream_load_balance_hosts = random',
        'upstream_connect_timeout = 5',
        'upstream_sslsni = off',
        '',
      ].join('\n'),
    );
    const r = await run(process.execPath, [MAIN, 'serve', '--config', conf, '--check'], { env: cleanEnv() });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^ {2}upstream {6}db1\.internal:5432, \[::1\]:5433, \/var\/run\/postgresql:5434 \(upstream_sslmode=verify-full, upstream_sslnegotiation=direct, upstream_sslsni=off, upstream_target_session_attrs=prefer-standby, upstream_load_balance_hosts=random, upstream_connect_timeout=5s\)$/m,
    );
    const json = await run(process.execPath, [MAIN, 'serve', '--config', conf, '--check', '--json'], {
      env: cleanEnv(),
    });
    const j = JSON.parse(json.stdout) as { upstream: string; sources: Record<string, string> };
    assert.match(j.upstream, /^db1\.internal:5432, \[::1\]:5433, .*upstream_connect_timeout=5s\)$/);
    assert.equal(j.sources.upstream_target_session_attrs, `${conf}:7`);
    assert.equal(j.sources.upstream_sslnegotiation, `${conf}:6`);
    assert.equal(j.sources.upstream_sslsni, `${conf}:10`);
  });

  test("an invalid port in the host list is refused at load with libpq's text", async () => {
    const url = `postgres://127.0.0.1:${up.port},localhost:99999/`;
    await assert.rejects(startTestGateway(fx, up, { upstream: url }), {
      code: 'PGTLS_ERR_UPSTREAM',
      message: `invalid upstream "${url}": invalid port number: "99999"`,
    });
  });
});

/**
 * A TLS listener standing in front of the real PostgreSQL: it accepts only a TLS ClientHello as the first bytes (an
 * SSLRequest would fail its handshake), records the SNI name and the ALPN protocol, and splices the decrypted
 * stream to PostgreSQL in plaintext.
 */
async function recordingTlsFront(): Promise<{ port: number; seen: { sni: string | false; alpn: string | false }[] }> {
  const seen: { sni: string | false; alpn: string | false }[] = [];
  const srv = createTlsServer(
    {
      cert: readFileSync(fx.server.cert),
      key: readFileSync(fx.server.key),
      ALPNProtocols: ['postgresql'],
    },
    (s: TLSSocket) => {
      seen.push({ sni: s.servername ?? false, alpn: s.alpnProtocol ?? false });
      const back: Socket = netConnect({ host: '127.0.0.1', port: up.port });
      s.pipe(back).pipe(s);
      back.on('error', () => s.destroy());
      s.on('error', () => back.destroy());
    },
  );
  servers.push(srv);
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
  return { port: (srv.address() as { port: number }).port, seen };
}

describe('direct TLS to the backend', () => {
  test('psql through the gateway to PostgreSQL 18 with upstream_sslnegotiation = direct (verify-full)', async () => {
    const g = await startTestGateway(fx, tlsPg, {
      upstream: `postgres://localhost:${tlsPg.port}`,
      upstream_sslmode: 'verify-full',
      upstream_sslrootcert: fx.root,
      upstream_sslnegotiation: 'direct',
    });
    gateways.push(g);
    const r = await psql(
      `host=localhost port=${g.port} user=postgres sslmode=verify-full sslrootcert=${fx.root}`,
      'select ssl from pg_stat_ssl where pid = pg_backend_pid()',
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 't');
  });

  test('the hop starts with a ClientHello carrying SNI (the host name) and ALPN "postgresql"', async () => {
    const front = await recordingTlsFront();
    const g = await gateway({
      upstream: `postgres://localhost:${front.port}`,
      upstream_sslmode: 'verify-full',
      upstream_sslrootcert: fx.root,
      upstream_sslnegotiation: 'direct',
    });
    const r = await through(g, "select current_setting('port')");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), String(up.port));
    assert.deepEqual(front.seen, [{ sni: 'localhost', alpn: 'postgresql' }]);
  });

  test('no SNI with upstream_sslsni = 0, nor for an IP address (libpq sslsni)', async () => {
    const front = await recordingTlsFront();
    const off = await gateway({
      upstream: `postgres://localhost:${front.port}`,
      upstream_sslmode: 'require',
      upstream_sslnegotiation: 'direct',
      upstream_sslsni: '0',
    });
    assert.equal((await through(off, 'select 1')).stdout.trim(), '1');
    const ip = await gateway({
      upstream: `postgres://127.0.0.1:${front.port}`,
      upstream_sslmode: 'require',
      upstream_sslnegotiation: 'direct',
    });
    assert.equal((await through(ip, 'select 1')).stdout.trim(), '1');
    assert.deepEqual(front.seen, [
      { sni: false, alpn: 'postgresql' },
      { sni: false, alpn: 'postgresql' },
    ]);
  });

  test('a direct-TLS hop to a listener that is not TLS fails: 08006, the SSL error in the log', async () => {
    const g = await gateway({
      upstream: `postgres://127.0.0.1:${up.port}`,
      upstream_sslmode: 'require',
      upstream_sslnegotiation: 'direct',
    });
    const err = await pgError(g);
    assert.deepEqual(err, { code: '08006', message: 'could not connect to the database server behind the gateway' });
    await g.settle();
    assert.match(g.records.findLast((x) => x.upstream_error)?.upstream_error ?? '', /^SSL/);
  });

  test('upstream_sslnegotiation = direct with upstream_sslmode = prefer is refused at load, naming file and line', async () => {
    const file = writeFixture(
      fx,
      'direct-prefer.conf',
      `listen_addresses = '127.0.0.1'\nport = 0\nupstream = 'postgres://127.0.0.1:${up.port}'\nupstream_sslmode = prefer\nupstream_sslnegotiation = direct\n`,
    );
    await assert.rejects(Gateway.start({ file, env: {} }), {
      code: 'PGTLS_ERR_CONFIG_CONFLICT',
      message: `weak upstream_sslmode "prefer" may not be used with upstream_sslnegotiation = direct (use "require", "verify-ca", or "verify-full") in file "${file}" line 5`,
    });
    // require is accepted (the passing case is the tests above).
  });
});
