/**
 * Issue 12, workers: `pgtls serve --workers 2` — both workers serve, a CancelRequest reaches the session whichever
 * worker it lands on, and a reload reaches every worker (and fails as a whole when the new files are broken).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { cleanEnv } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';
import { rawConnect } from '../support/raw.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
let fx: GatewayFixtures;
let cluster: TestCluster;
let child: ChildProcess;
let port = 0;
let out = '';
let conf = '';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lines = () =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  copyFileSync(fx.server.cert, join(fx.dir, 'w-server.crt'));
  copyFileSync(fx.server.key, join(fx.dir, 'w-server.key'));
  conf = join(fx.dir, 'workers.conf');
  writeFileSync(
    conf,
    `listen_addresses = '127.0.0.1'\nport = 0\nssl_cert_file = 'w-server.crt'\nssl_key_file = 'w-server.key'\nupstream = 'postgres://127.0.0.1:${cluster.port}'\nupstream_sslmode = disable\nworkers = 2\n`,
  );
  child = spawn(process.execPath, [MAIN, 'serve', '--config', conf], { env: cleanEnv() });
  child.stdout!.on('data', (d) => {
    out += d;
  });
  const until = Date.now() + 20_000;
  while (!/"msg":"ready"/.test(out) && Date.now() < until) await sleep(50);
  const ready = lines().find((l) => l.msg === 'ready');
  assert.equal(ready?.workers, 2, out);
  port = Number(/:(\d+)$/.exec((ready?.listen as string[])[0]!)![1]);
});
after(async () => {
  child?.kill('SIGTERM');
  await cluster?.destroy();
});

const client = () =>
  new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    ssl: { rejectUnauthorized: false },
  });

test('sessions are spread over both workers', async () => {
  const cs = Array.from({ length: 4 }, client);
  for (const c of cs) await c.connect();
  for (const c of cs) await c.end();
  await sleep(300);
  const workers = new Set(
    lines()
      .filter((l) => l.msg === 'connection' && l.outcome === 'relayed')
      .map((l) => l.worker),
  );
  assert.deepEqual([...workers].sort(), [1, 2]);
});

test('a CancelRequest reaches the session whichever worker it lands on', async () => {
  let crossed = 0;
  for (let i = 0; i < 4; i++) {
    const c = client();
    await c.connect();
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    const running = c.query('SELECT pg_sleep(20)').then(
      () => undefined,
      (e: { code?: string }) => e.code,
    );
    await sleep(200);
    const s = await rawConnect(port);
    const b = Buffer.alloc(16);
    b.writeInt32BE(16, 0);
    b.writeInt32BE(80877102, 4);
    b.writeInt32BE(processID, 8);
    b.writeInt32BE(secretKey, 12);
    s.end(b);
    assert.equal(await running, '57014', 'canceling statement due to user request');
    await c.end();
  }
  await sleep(300);
  crossed = lines().filter((l) => /cancel from another worker forwarded/.test(String(l.reason))).length;
  assert.ok(crossed >= 1, 'at least one cancel landed on the other worker and was passed on');
});

test('reload reaches every worker: pgtls reload exits 0; a broken certificate fails it as a whole (exit 1)', async () => {
  const reload = () =>
    spawnSync(process.execPath, [MAIN, 'reload', '--config', conf], { env: cleanEnv(), encoding: 'utf8' });
  // spawnSync blocks this process only; the gateway is a child process.
  const ok = reload();
  assert.equal(ok.status, 0, ok.stderr + ok.stdout);
  writeFileSync(join(fx.dir, 'w-server.crt'), 'garbage\n');
  const bad = reload();
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /2 of 2 workers kept their previous configuration: could not load server certificate file/);
  const c = client();
  await c.connect();
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  await c.end();
  copyFileSync(fx.server.cert, join(fx.dir, 'w-server.crt'));
});
