/**
 * Issue 8 item 2: `pgtls reload` reaches a gateway started the documented way (`pgtls serve --config gateway.conf`
 * with an upstream, from another directory), waits for the outcome of that reload and exits non-zero when the
 * previous configuration stayed in force.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { cleanEnv } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
let fx: GatewayFixtures;
let cluster: TestCluster;
let child: ChildProcess | undefined;
let port = 0;
const work = mkdtempSync(join(tmpdir(), 'pgtls-reload-'));
const confDir = join(work, 'etc');
const startDir = join(work, 'start-here');
const otherDir = join(work, 'elsewhere');

function reload(...args: string[]) {
  return spawnSync(process.execPath, [MAIN, 'reload', ...args], { cwd: otherDir, env: cleanEnv(), encoding: 'utf8' });
}

async function query(): Promise<number> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    ssl: { rejectUnauthorized: false },
  });
  await c.connect();
  try {
    return (await c.query('SELECT 1 AS one')).rows[0].one as number;
  } finally {
    await c.end();
  }
}

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  for (const d of [confDir, startDir, otherDir]) mkdirSync(d, { recursive: true });
  copyFileSync(fx.server.cert, join(confDir, 'server.crt'));
  copyFileSync(fx.server.key, join(confDir, 'server.key'));
  writeFileSync(
    join(confDir, 'gateway.conf'),
    [
      "listen_addresses = '127.0.0.1'",
      'port = 0',
      "ssl_cert_file = 'server.crt'",
      "ssl_key_file = 'server.key'",
      `upstream = 'postgres://127.0.0.1:${cluster.port}'`,
      "upstream_sslmode = 'disable'",
      '',
    ].join('\n'),
  );
  child = spawn(process.execPath, [MAIN, 'serve', '--config', join(confDir, 'gateway.conf')], {
    cwd: startDir,
    env: cleanEnv(),
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child!.stdout!.on('data', (d) => {
      out += d;
      const m = /"msg":"ready","listen":\["127\.0\.0\.1:(\d+)"\]/.exec(out);
      if (m) {
        port = Number(m[1]);
        resolve();
      }
    });
    child!.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
});
after(async () => {
  child?.kill('SIGTERM');
  await cluster?.destroy();
});

test('the pid file lives in pgtls-data beside the config file, not in the directory serve was started from', () => {
  assert.ok(existsSync(join(confDir, 'pgtls-data', 'pgtls.pid')));
  assert.ok(!existsSync(join(startDir, 'pgtls-data')));
});

test('reload --config from another directory: exit 0 once the new configuration is in force', async () => {
  const r = reload('--config', join(confDir, 'gateway.conf'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^pgtls: the gateway \(pid \d+\) reloaded its configuration$/m);
  assert.equal(await query(), 1);
});

test('a failed reload exits 1 with the error, and the previous configuration keeps serving', async () => {
  writeFileSync(
    join(confDir, 'server.crt'),
    '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n',
  );
  const r = reload('--config', join(confDir, 'gateway.conf'), '--json');
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const status = JSON.parse(r.stdout) as { ok: boolean; error: string };
  assert.equal(status.ok, false);
  assert.match(status.error, /could not load server certificate file ".*server\.crt"/);
  assert.equal(await query(), 1, 'the gateway still serves with its previous certificate');
  copyFileSync(fx.server.cert, join(confDir, 'server.crt'));
  const fixed = reload('--data-directory', join(confDir, 'pgtls-data'));
  assert.equal(fixed.status, 0, fixed.stderr);
});

test('no gateway: a clear error naming the pid file, exit 1', () => {
  const r = reload('--data-directory', join(work, 'nothing-here'));
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /no running gateway found: could not read ".*nothing-here\/pgtls\.pid" \[PGTLS_ERR_NOT_RUNNING\]/,
  );
});
