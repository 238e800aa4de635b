/**
 * Issue 8 item 13: at the open-files limit the gateway says so in its log (libuv drops connections it cannot accept
 * without telling Node), and it recovers once descriptors are free. The gateway runs as `pgtls serve` under
 * `prlimit --nofile`, so the limit is its own.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { cleanEnv } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort, startTestCluster } from '../support/postgres.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
const LIMIT = 48;
let fx: GatewayFixtures;
let cluster: TestCluster;
let child: ChildProcess;
let port: number;
let out = '';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(re: RegExp, ms = 8000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!re.test(out) && Date.now() < until) await sleep(50);
  return re.test(out);
}

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  port = await freePort();
  const conf = join(fx.dir, 'emfile.conf');
  writeFileSync(
    conf,
    `listen_addresses = '127.0.0.1'\nport = ${port}\nssl_cert_file = '${fx.server.cert}'\nssl_key_file = '${fx.server.key}'\nupstream = 'postgres://127.0.0.1:${cluster.port}'\nupstream_sslmode = 'disable'\nlog_connections = off\ndata_directory = '${join(fx.dir, 'emfile-data')}'\n`,
  );
  child = spawn('prlimit', [`--nofile=${LIMIT}`, process.execPath, MAIN, 'serve', '--config', conf], {
    env: cleanEnv(),
  });
  child.stdout!.on('data', (d) => {
    out += d;
  });
  assert.ok(await waitFor(/"msg":"ready"/), out);
});
after(async () => {
  child?.kill('SIGKILL');
  await cluster?.destroy();
});

test('issue 8.13: EMFILE is logged, and the gateway serves again once descriptors are free', async () => {
  const held: Socket[] = [];
  for (let i = 0; i < LIMIT + 10; i++) {
    await new Promise<void>((resolve) => {
      const s = connect(port, '127.0.0.1', () => resolve());
      s.on('error', () => resolve());
      held.push(s);
    });
  }
  assert.ok(
    await waitFor(
      /"level":"warn","msg":"could not accept new connections: \d+ of 48 file descriptors in use \(EMFILE\); new connections are being dropped"/,
    ),
    out,
  );
  for (const s of held) s.destroy();
  assert.ok(await waitFor(/"msg":"accepting connections again: \d+ of 48 file descriptors in use"/), out);
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    ssl: { rejectUnauthorized: false },
  });
  await c.connect();
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  await c.end();
});
