/**
 * The native transport's lifetimes: the JavaScript socket and the native dup of its fd are tied both ways, no fd
 * is left behind, and either end of a spliced session closing ends the other (real PostgreSQL 18, real clients).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { type Socket, connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.js';
import { type TlsMaterial, loadTlsMaterial } from '../../src/tls/context.js';
import { loadNativeTransport, nativeUnavailableReason } from '../../src/tls/native.js';
import { psql, run } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { type Relay, startRelay } from '../support/native-harness.js';
import { SUPERUSER, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let m: TlsMaterial;
let relay: Relay;
const native = loadNativeTransport();

before(async () => {
  assert.ok(native, `the native addon must be built for these tests: ${nativeUnavailableReason()}`);
  fx = await makeFixtures();
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all all 127.0.0.1/32 trust', 'host all all ::1/128 trust'],
  });
  m = loadTlsMaterial({ ...loadConfig({ env: {} }), ssl_cert_file: fx.server.cert, ssl_key_file: fx.server.key });
  relay = await startRelay(native!, () => m, { port: cluster.port });
});
after(async () => {
  await relay?.close();
  await cluster?.destroy();
});

const openFds = () => readdirSync('/proc/self/fd').length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function client(): pg.Client {
  return new pg.Client({
    host: 'localhost',
    port: relay.port,
    user: SUPERUSER,
    database: 'postgres',
    ssl: { ca: readFileSync(fx.root, 'utf8'), servername: 'localhost' },
  });
}

async function backends(): Promise<number> {
  const r = await psql(
    `host=${cluster.socketDir} port=${cluster.port} user=${SUPERUSER} dbname=postgres`,
    "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()",
  );
  return Number(r.stdout.trim());
}

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  for (let i = 0; i < ms / 50; i++) {
    if (await fn()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('no fd is left behind after 20 sessions (psql) and 10 failed handshakes', async () => {
  // one warm-up so lazily opened fds (the addon, OpenSSL's random source) are already counted
  await psql(`host=localhost port=${relay.port} user=${SUPERUSER} dbname=postgres sslmode=require`, 'select 1');
  await relay.next();
  const before = openFds();
  for (let i = 0; i < 20; i++) {
    const r = await psql(
      `host=localhost port=${relay.port} user=${SUPERUSER} dbname=postgres sslmode=require`,
      'select 1',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await relay.next()).spliced, true);
  }
  for (let i = 0; i < 10; i++) {
    await run('openssl', ['s_client', '-connect', `127.0.0.1:${relay.port}`, '-tls1_3', '-alpn', 'nope'], {
      timeoutMs: 10_000,
    });
    assert.deepEqual(await relay.next(), { ok: false, reason: 'no application protocol' });
  }
  await until('fds to be closed', () => openFds() <= before);
  assert.equal(await backends(), 0);
});

test('the caller destroys the socket mid-handshake: the native side closes and the client sees EOF', async () => {
  let accepted: Promise<unknown> | undefined;
  const server = createServer((sock: Socket) => {
    sock.pause();
    accepted = native!.accept(sock, m, undefined);
    setTimeout(() => sock.destroy(), 200); // the caller's handshake timeout
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const c = connect(port, '127.0.0.1');
  const started = Date.now();
  const ended = await new Promise<string>((resolve) => {
    setTimeout(() => resolve('still open after 5 s'), 5000).unref();
    c.on('data', () => undefined);
    c.once('end', () => resolve('end'));
    c.once('close', () => resolve('close'));
    c.once('error', (e) => resolve(e.message));
  });
  c.destroy();
  assert.match(ended, /^(end|close)$/);
  assert.ok(Date.now() - started < 3000);
  assert.deepEqual(await accepted, { ok: false, reason: 'destroyed' });
  await new Promise<void>((r) => server.close(() => r()));
});

test('PostgreSQL ends the session (pg_terminate_backend): the client gets its FATAL, the relay resolves', async () => {
  const c = client();
  await c.connect();
  const errors: Error[] = [];
  c.on('error', (e) => errors.push(e));
  const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
  const kill = await psql(
    `host=${cluster.socketDir} port=${cluster.port} user=${SUPERUSER} dbname=postgres`,
    `select pg_terminate_backend(${pid})`,
  );
  assert.equal(kill.stdout, 't\n');
  const res = await relay.next();
  assert.equal(res.spliced, true);
  await until('the client to see the error', () => errors.length > 0);
  assert.equal((errors[0] as Error & { code?: string }).code, '57P01');
  assert.equal(errors[0]!.message, 'terminating connection due to administrator command');
  await c.end().catch(() => undefined);
});

test('the client vanishes mid-session (no Terminate, no close_notify): the backend session ends', async () => {
  const c = client();
  await c.connect();
  await c.query('select 1');
  assert.equal(await backends(), 1);
  c.on('error', () => undefined); // node-postgres reports its own abrupt end
  // destroy the TCP connection under node-postgres: an abrupt client exit
  (c as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
  const res = await relay.next();
  assert.equal(res.spliced, true);
  await until('the backend to exit', async () => (await backends()) === 0);
  await c.end().catch(() => undefined);
});

test('a client that ends cleanly (Terminate, then close): byte counts add up', async () => {
  const c = client();
  await c.connect();
  await c.query("select repeat('a', 100000)");
  await c.end();
  const res = await relay.next();
  assert.equal(res.spliced, true);
  assert.ok(res.stats!.bytesFromBackend > 100_000, JSON.stringify(res.stats));
  // the Terminate message ('X', length 4) is the last thing relayed from the client
  assert.ok(res.stats!.bytesFromClient >= 5);
});
