/**
 * Issue 11, TLS on the hop to PostgreSQL done natively: the gateway's client handshake to its backend in the addon
 * (native/src/upstream.c) with libpq's checks and texts made in negotiate.ts, and the TLS<->TLS relay in C. Real
 * PostgreSQL 18 with ssl = on; psql, node-postgres in front. Every failure text is compared with Node's tls path
 * (native_data_plane = off), the reference. nativeUpstreamCounters proves which path ran.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { ConnectionAttempts } from '../../src/client/connect.js';
import { resolve } from '../../src/client/resolve.js';
import { loginToBackend } from '../../src/gateway/backend-login.js';
import { UpstreamWalk } from '../../src/gateway/upstream-walk.js';
import type { UpstreamTarget } from '../../src/gateway/upstream.js';
import { encodeStartupMessage } from '../../src/protocol/startup.js';
import { nativeUpstreamCounters, nativeUpstreamTls } from '../../src/tls/native-upstream.js';
import { nativeUnavailableReason } from '../../src/tls/native.js';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER, SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const APP_PW = 'native-upstream-pw';
let fx: GatewayFixtures;
let backend: TestCluster;
let wrongBackend: TestCluster;
const gateways: TestGateway[] = [];
const env = { PGPASSWORD: SUPERUSER_PASSWORD };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

before(async () => {
  assert.ok(nativeUpstreamTls(), `the native addon must be built for these tests: ${nativeUnavailableReason()}`);
  fx = await makeFixtures();
  const ssl = (cert: string, key: string) => ({
    files: {
      'server.crt': readFileSync(cert),
      'server.key': readFileSync(key),
      'client-ca.crt': readFileSync(fx.clientCa),
    },
    settings: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key', ssl_ca_file: 'client-ca.crt' },
  });
  backend = await startTestCluster({
    ...ssl(fx.server.cert, fx.server.key),
    hba: ['local all all trust', 'hostssl all alice 127.0.0.1/32 cert', 'hostssl all all 127.0.0.1/32 scram-sha-256'],
  });
  // no ssl_ca_file: this one sends no CertificateRequest (sslcertmode=require's question)
  const wrong = ssl(fx.wrongHost.cert, fx.wrongHost.key);
  const { ssl_ca_file: _, ...noCa } = wrong.settings;
  wrongBackend = await startTestCluster({
    files: wrong.files,
    settings: noCa,
    // trust: the client's own SCRAM through the gateway would bind to the gateway's certificate, not this one's
    hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 trust'],
  });
  await psql(
    `host=${backend.socketDir} port=${backend.port} user=${SUPERUSER} dbname=postgres`,
    `CREATE ROLE alice LOGIN; CREATE ROLE app LOGIN PASSWORD '${APP_PW}'`,
  );
});
after(async () => {
  for (const g of gateways) await g.close();
  await backend?.destroy();
  await wrongBackend?.destroy();
});

async function gateway(conf: Record<string, string>, plane: 'on' | 'off' = 'on'): Promise<TestGateway> {
  const g = await startTestGateway(fx, backend, {
    upstream: `postgres://localhost:${backend.port}`,
    native_data_plane: plane,
    ...conf,
  });
  gateways.push(g);
  return g;
}

const front = (port: number, user = SUPERUSER) =>
  `host=localhost port=${port} user=${user} dbname=postgres sslmode=verify-full sslrootcert=${fx.root}`;

const SSL_QUERY = 'select ssl, version from pg_stat_ssl where pid = pg_backend_pid()';

/** Counters before and after `fn`. */
async function counted<T>(fn: () => Promise<T>): Promise<{ r: T; d: typeof nativeUpstreamCounters }> {
  const before = { ...nativeUpstreamCounters };
  const r = await fn();
  const d = {
    handshakes: nativeUpstreamCounters.handshakes - before.handshakes,
    failures: nativeUpstreamCounters.failures - before.failures,
    splices: nativeUpstreamCounters.splices - before.splices,
  };
  return { r, d };
}

/** The upstream error a refused psql left in the gateway's log, on the given data plane. */
async function upstreamError(conf: Record<string, string>, plane: 'on' | 'off'): Promise<string> {
  const g = await gateway(conf, plane);
  const r = await psql(front(g.port), 'select 1', { env });
  assert.match(r.stderr, /FATAL: {2}could not connect to the database server behind the gateway/);
  await g.settle();
  await sleep(50);
  return g.records.findLast((x) => x.upstream_error)?.upstream_error ?? '(none)';
}

describe('native TLS to the backend', () => {
  for (const [mode, extra] of [
    ['require', {}],
    ['verify-ca', { upstream_sslrootcert: '' }],
    ['verify-full', { upstream_sslrootcert: '' }],
    ['verify-full', { upstream_sslrootcert: '', upstream_sslnegotiation: 'direct' }],
  ] as const) {
    const label = `${mode}${'upstream_sslnegotiation' in extra ? ' with direct TLS' : ''}`;
    test(`${label}: psql through the gateway, TLS on both hops, relayed TLS<->TLS in C`, async () => {
      const conf: Record<string, string> = { upstream_sslmode: mode, ...extra };
      if ('upstream_sslrootcert' in conf) conf.upstream_sslrootcert = fx.root;
      const g = await gateway(conf);
      const { r, d } = await counted(() => psql(front(g.port), SSL_QUERY, { env, libpq: 18 }));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 't|TLSv1.3');
      await g.settle();
      assert.deepEqual(d, { handshakes: 1, failures: 0, splices: 1 });
      const rec = g.records.at(-1);
      assert.equal(rec?.outcome, 'relayed', JSON.stringify(rec));
      assert.ok((rec?.bytes_from_backend ?? 0) > 50, JSON.stringify(rec));
    });
  }

  test('a root file that did not issue the backend certificate: "certificate verify failed", as on Node\'s tls', async () => {
    const conf = { upstream_sslmode: 'verify-ca', upstream_sslrootcert: fx.clientCa };
    const { r: native, d } = await counted(() => upstreamError(conf, 'on'));
    assert.equal(native, 'SSL error: certificate verify failed');
    assert.equal(d.handshakes, 1); // the handshake completes; libpq's verdict on the chain refuses it
    assert.equal(await upstreamError(conf, 'off'), native);
  });

  test("verify-full to a backend whose certificate names another host: libpq's text, as on Node's tls", async () => {
    const conf = {
      upstream: `postgres://127.0.0.1:${wrongBackend.port}`,
      upstream_sslmode: 'verify-full',
      upstream_sslrootcert: fx.root,
    };
    const native = await upstreamError(conf, 'on');
    assert.equal(
      native,
      'server certificate for "db.example.com" (and 1 other name) does not match host name "127.0.0.1"',
    );
    assert.equal(await upstreamError(conf, 'off'), native);
    // verify-ca does not look at the name: the same backend is fine
    const g = await gateway({ ...conf, upstream_sslmode: 'verify-ca' });
    const ok = await psql(front(g.port), SSL_QUERY, { env });
    assert.equal(ok.stdout.trim(), 't|TLSv1.3', ok.stderr);
  });

  test('a backend that closes during the handshake: libpq\'s "SSL SYSCALL error: EOF detected", as on Node\'s tls', async () => {
    // PostgreSQL's own port answers SSLRequest; a direct ClientHello to a plain TCP listener that closes is EOF.
    const { createServer } = await import('node:net');
    const srv = createServer((s: Socket) => s.once('data', () => s.destroy()));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    try {
      const conf = {
        upstream: `postgres://127.0.0.1:${port}`,
        upstream_sslmode: 'require',
        upstream_sslnegotiation: 'direct',
      };
      const { r: native, d } = await counted(() => upstreamError(conf, 'on'));
      assert.equal(native, 'SSL SYSCALL error: EOF detected');
      assert.equal(d.failures, 1);
      assert.equal(await upstreamError(conf, 'off'), native);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  test("OpenSSL's reasons and libpq's ALPN rule against openssl s_server, as on Node's tls", async () => {
    const server = async (args: string[], fn: (port: number) => Promise<void>) => {
      const port = await freePort();
      const p = spawn(
        'openssl',
        ['s_server', '-quiet', '-accept', `127.0.0.1:${port}`, '-cert', fx.server.cert, '-key', fx.server.key, ...args],
        { stdio: 'ignore' },
      );
      try {
        for (let i = 0; i < 100; i++) {
          if (await canConnect(port)) break;
          await sleep(50);
        }
        await fn(port);
      } finally {
        p.kill('SIGTERM');
      }
    };
    const both = async (port: number) => {
      const conf = {
        upstream: `postgres://127.0.0.1:${port}`,
        upstream_sslmode: 'require',
        upstream_sslnegotiation: 'direct',
      };
      const native = await upstreamError(conf, 'on');
      assert.equal(await upstreamError(conf, 'off'), native);
      return native;
    };
    // no ALPN from the server on a direct TLS connection: libpq's check after the handshake
    await server([], async (port) =>
      assert.equal(
        await both(port),
        'direct SSL connection was established without ALPN protocol negotiation extension',
      ),
    );
    // only a cipher OpenSSL's DEFAULT leaves out: the server's alert, with OpenSSL's reason as libpq prints it
    await server(['-tls1_2', '-cipher', 'NULL-SHA256:@SECLEVEL=0', '-alpn', 'postgresql'], async (port) =>
      // (OpenSSL 3.2 renamed the alert reasons: "sslv3 alert …" in Node 20's 3.0, "ssl/tls alert …" in Node 26's 3.5)
      assert.match(await both(port), /^SSL error: (sslv3|ssl\/tls) alert handshake failure$/),
    );
  });

  test("client certificate to the backend (upstream_sslcert/sslkey) and PostgreSQL's cert authentication", async () => {
    const g = await gateway({
      upstream_sslmode: 'verify-full',
      upstream_sslrootcert: fx.root,
      upstream_sslcert: fx.clients.alice!.cert,
      upstream_sslkey: fx.clients.alice!.key,
    });
    const { r, d } = await counted(() =>
      psql(front(g.port, 'alice'), 'select current_user, ssl, client_dn from pg_stat_ssl where pid = pg_backend_pid()'),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'alice|t|/CN=alice/O=pgtls tests');
    await g.settle();
    assert.deepEqual(d, { handshakes: 1, failures: 0, splices: 1 });
    // without the certificate the backend refuses alice, and the client gets PostgreSQL's FATAL
    const bare = await gateway({ upstream_sslmode: 'verify-full', upstream_sslrootcert: fx.root });
    const refused = await psql(front(bare.port, 'alice'), 'select 1');
    assert.match(refused.stderr, /FATAL: {2}connection requires a valid client certificate/);
    // a key that is not the certificate's: libpq's text (read with the files, before anything is sent), on both paths
    const mismatch = {
      upstream_sslmode: 'require',
      upstream_sslcert: fx.clients.alice!.cert,
      upstream_sslkey: fx.clients.bob!.key,
    };
    const text = await upstreamError(mismatch, 'on');
    assert.equal(text, `could not load private key file "${fx.clients.bob!.key}": key values mismatch`);
    assert.equal(await upstreamError(mismatch, 'off'), text);
  });

  test('sslcertmode=require: whether the server asked for a certificate (cert_cb), as the Node path reads it', async () => {
    const seen: Record<string, unknown> = {};
    for (const [name, port] of [
      ['asks', backend.port],
      ['does not ask', wrongBackend.port],
    ] as const) {
      for (const plane of ['native', 'node'] as const) {
        const plan = resolve(
          { host: '127.0.0.1', port: String(port), user: 'x', dbname: 'x', sslmode: 'require', sslcertmode: 'require' },
          {},
          { homedir: '', osUser: 'x' },
        );
        const n = await new ConnectionAttempts<Duplex>(
          plan,
          plane === 'native' ? nativeUpstreamTls() : undefined,
        ).next();
        seen[`${name} ${plane}`] = n.facts.tls?.certificateRequested;
        n.socket.destroy();
      }
    }
    assert.deepEqual(seen, {
      'asks native': true,
      'asks node': true,
      'does not ask native': false,
      'does not ask node': false,
    });
  });

  test('the gateway logs in with SCRAM-SHA-256-PLUS over the native hop (the binding PostgreSQL checks)', async () => {
    const target: UpstreamTarget = {
      host: 'localhost',
      port: backend.port,
      sslmode: 'verify-full',
      sslrootcert: fx.root,
      sslcert: '',
      sslkey: '',
    };
    const startup = encodeStartupMessage([
      ['user', 'app'],
      ['database', 'postgres'],
    ]);
    const landed = await new UpstreamWalk(target, nativeUpstreamTls()).next();
    assert.equal(typeof (landed.socket as { setNoDelay?: unknown }).setNoDelay, 'undefined'); // the native stream
    const login = await loginToBackend(landed.socket, startup, { user: 'app', password: APP_PW });
    assert.ok(login.ok, JSON.stringify(login));
    assert.equal(login.method, 'scram-plus');
    landed.socket.destroy();
    // the binding is real: another certificate's hash is refused by PostgreSQL
    const again = await new UpstreamWalk(target, nativeUpstreamTls()).next();
    const other = new X509Certificate(readFileSync(fx.wrongHost.cert)).raw;
    (again.socket as { upstreamPeerCertificate?: Buffer }).upstreamPeerCertificate = other;
    const bad = await loginToBackend(again.socket, startup, { user: 'app', password: APP_PW });
    again.socket.destroy();
    assert.equal(bad.ok, false);
    assert.deepEqual(!bad.ok && bad.error, { code: '28000', message: 'SCRAM channel binding check failed' });
    // and through the gateway with gateway authentication (auth_file): the client's login goes on over the hop
    const users = writeFixture(fx, 'native-upstream-users.txt', `"app" "${APP_PW}"\n`, 0o600);
    const hba = writeFixture(fx, 'native-upstream-hba.conf', 'hostssl all all all scram-sha-256\n');
    const g = await gateway({ upstream_sslmode: 'require', auth_file: users, hba_file: hba });
    const r = await psql(front(g.port, 'app'), 'select current_user', { env: { PGPASSWORD: APP_PW } });
    assert.equal(r.stdout.trim(), 'app', r.stderr);
  });

  test('a client on the Unix socket (no TLS on its hop): the JavaScript relay over the native backend stream', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgtls-sock-'));
    chmodSync(dir, 0o777);
    try {
      // alice logs in with the gateway's client certificate (cert): a SCRAM exchange passed through would offer
      // SCRAM-SHA-256-PLUS to a client without TLS, which libpq refuses (the same on Node's tls)
      const g = await gateway({
        upstream_sslmode: 'require',
        upstream_sslcert: fx.clients.alice!.cert,
        upstream_sslkey: fx.clients.alice!.key,
        unix_socket_directories: dir,
      });
      const { r, d } = await counted(() =>
        psql(`host=${dir} port=${g.port} user=alice dbname=postgres`, `${SSL_QUERY}; select repeat('u', 300000)`),
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^t\|TLSv1\.3\nu{300000}\n$/);
      await g.settle();
      assert.deepEqual(d, { handshakes: 1, failures: 0, splices: 0 });
      assert.ok((g.records.at(-1)?.bytes_from_backend ?? 0) > 300_000, JSON.stringify(g.records.at(-1)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('a relayed session over the TLS<->TLS splice', () => {
    let g: TestGateway;
    before(async () => {
      g = await gateway({ upstream_sslmode: 'verify-full', upstream_sslrootcert: fx.root });
    });
    const client = () =>
      new pg.Client({
        host: 'localhost',
        port: g.port,
        user: SUPERUSER,
        password: SUPERUSER_PASSWORD,
        database: 'postgres',
        ssl: { ca: readFileSync(fx.root, 'utf8'), servername: 'localhost' },
      });
    const backends = async () =>
      Number(
        (
          await psql(
            `host=${backend.socketDir} port=${backend.port} user=${SUPERUSER} dbname=postgres`,
            "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()",
          )
        ).stdout.trim(),
      );
    const until = async (what: string, fn: () => Promise<boolean> | boolean) => {
      for (let i = 0; i < 100; i++) {
        if (await fn()) return;
        await sleep(50);
      }
      assert.fail(`timed out waiting for ${what}`);
    };

    test('8 MB each way, then another query; the byte counts add up', async () => {
      const { d } = await counted(async () => {
        const c = client();
        await c.connect();
        const big = 'y'.repeat(8_000_000);
        const up = await c.query('select length($1::text) as n, md5($1::text) as h', [big]);
        assert.equal(up.rows[0].n, 8_000_000);
        const down = await c.query("select repeat('z', 8000000) as s");
        assert.equal(down.rows[0].s, 'z'.repeat(8_000_000));
        assert.equal((await c.query('select 40 + 2 as v')).rows[0].v, 42);
        await c.end();
        await g.settle();
      });
      assert.deepEqual(d, { handshakes: 1, failures: 0, splices: 1 });
      const rec = g.records.at(-1);
      assert.equal(rec?.outcome, 'relayed');
      assert.ok((rec?.bytes_from_client ?? 0) > 8_000_000, JSON.stringify(rec));
      assert.ok((rec?.bytes_from_backend ?? 0) > 8_000_000, JSON.stringify(rec));
    });

    test('PostgreSQL terminates the backend mid-session: the client gets its FATAL and the relay ends', async () => {
      const c = client();
      await c.connect();
      const errors: (Error & { code?: string })[] = [];
      c.on('error', (e) => errors.push(e));
      const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      const kill = await psql(
        `host=${backend.socketDir} port=${backend.port} user=${SUPERUSER} dbname=postgres`,
        `select pg_terminate_backend(${pid})`,
      );
      assert.equal(kill.stdout, 't\n');
      await until('the client to see the error', () => errors.length > 0);
      assert.equal(errors[0]?.code, '57P01');
      assert.equal(errors[0]?.message, 'terminating connection due to administrator command');
      await c.end().catch(() => undefined);
      await until('the relay to end', () => g.gw.inFlight === 0);
      assert.equal(g.records.at(-1)?.outcome, 'relayed');
    });

    test('the client vanishes mid-session (no Terminate, no close_notify): the backend session ends', async () => {
      const c = client();
      await c.connect();
      await c.query('select 1');
      assert.equal(await backends(), 1);
      c.on('error', () => undefined);
      (c as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
      await until('the backend to exit', async () => (await backends()) === 0);
      await until('the relay to end', () => g.gw.inFlight === 0);
    });
  });

  for (const plane of ['on', 'off'] as const) {
    test(`the backend authenticates over a TLS hop with another certificate than the gateway's: PostgreSQL refuses the channel binding, the log says what to do (${plane})`, async () => {
      const g = await gateway(
        { upstream_sslmode: 'require', ssl_cert_file: fx.wrongHost.cert, ssl_key_file: fx.wrongHost.key },
        plane,
      );
      const conn = `host=localhost port=${g.port} user=${SUPERUSER} dbname=postgres sslmode=require`;
      const bad = await psql(conn, 'select 1', { env, libpq: 18 });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /FATAL: {2}SCRAM channel binding check failed/);
      await g.settle();
      await sleep(50);
      const rec = g.records.findLast((x) => x.reason?.startsWith('backend: SCRAM channel binding check failed'));
      assert.equal(rec?.sqlstate, '28000');
      assert.match(
        rec?.reason ?? '',
        /authenticate at the gateway \(auth_file or auth_query\) or have clients use channel_binding=disable\)$/,
      );
      const ok = await psql(`${conn} channel_binding=disable`, 'select 1', { env, libpq: 18 });
      assert.equal(ok.code, 0, ok.stderr);
    });
  }
});
