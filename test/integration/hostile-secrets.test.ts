/**
 * Secrets never reach the gateway's output: after SCRAM and md5 logins through the gateway (right and wrong
 * passwords; the backend authenticates), a reload that works and one that fails, nothing `pgtls serve` wrote on
 * stdout or stderr contains a password, its md5 hash, the server key (PEM body lines) or the key's passphrase.
 */
import assert from 'node:assert/strict';
import { createHash, createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import { type ServeChild, adminClient, startServeChild } from '../support/serve-child.js';

const SCRAM_PW = 'Scram-Secret-7f3a9c';
const MD5_PW = 'Md5-Secret-b41e0d';
const WRONG_PW = 'Wrong-Secret-22c5e8';
const PASSPHRASE = 'Key-Passphrase-91d7aa';

let fx: GatewayFixtures;
let cluster: TestCluster;
let child: ServeChild;
let keyPem: string;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all md5_user 127.0.0.1/32 md5', 'host all all 127.0.0.1/32 scram-sha-256'],
  });
  const admin = await adminClient(cluster);
  await admin.query(`create role scram_user login password '${SCRAM_PW}'`);
  await admin.query("set password_encryption = 'md5'");
  await admin.query(`create role md5_user login password '${MD5_PW}'`);
  await admin.end();
  // The server key, encrypted with a passphrase the gateway gets from ssl_passphrase_command.
  keyPem = readFileSync(fx.server.key, 'utf8');
  const encrypted = createPrivateKey(keyPem).export({
    type: 'pkcs8',
    format: 'pem',
    cipher: 'aes-256-cbc',
    passphrase: PASSPHRASE,
  }) as string;
  const keyFile = writeFixture(fx, 'secret.key', encrypted, 0o600);
  child = await startServeChild(fx, cluster, {
    ssl_key_file: keyFile,
    ssl_passphrase_command: `echo ${PASSPHRASE}`,
    ssl_passphrase_command_supports_reload: 'on',
    log_connections: 'on',
  });
});
after(async () => {
  await child?.stop();
  await cluster?.destroy();
});

async function login(user: string, password: string): Promise<string> {
  const c = new pg.Client({
    host: 'localhost',
    port: child.port,
    user,
    password,
    database: 'postgres',
    ssl: { ca: readFileSync(fx.root, 'utf8'), servername: 'localhost' },
  });
  try {
    await c.connect();
    await c.query('select 1');
    return 'ok';
  } catch (e) {
    return `${(e as { code?: string }).code} ${(e as Error).message}`;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The lines of a PEM body long enough to be unique (short last lines could match by chance). */
const pemBodyLines = (pem: string) =>
  pem
    .split('\n')
    .filter((l) => !l.startsWith('-----') && l.length >= 32)
    .map((l) => l.trim());

test('passwords, password hashes, key material and the key passphrase never appear in pgtls serve output', async () => {
  // The logins really happen (so the test would see a leak): right ones work, wrong ones fail with 28P01.
  assert.equal(await login('scram_user', SCRAM_PW), 'ok');
  assert.equal(await login('md5_user', MD5_PW), 'ok');
  assert.equal(await login('scram_user', WRONG_PW), '28P01 password authentication failed for user "scram_user"');
  assert.equal(await login('md5_user', WRONG_PW), '28P01 password authentication failed for user "md5_user"');
  // an unknown user with a real password: the backend runs a mock SCRAM exchange and refuses
  assert.equal(await login('nobody', SCRAM_PW), '28P01 password authentication failed for user "nobody"');
  // a reload that works (the passphrase command runs again) and one that fails
  child.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 1500));
  const conf = readFileSync(child.configFile, 'utf8');
  writeFileSync(child.configFile, `${conf}ssl_passphrase_command = 'echo not-${PASSPHRASE}x'\n`);
  child.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 1500));
  writeFileSync(child.configFile, conf);

  const output = `${child.stdout()}\n${child.stderr()}`;
  assert.match(output, /"msg":"configuration reloaded"/);
  assert.match(output, /reload failed; the previous configuration stays in force/);
  assert.match(output, /"user":"scram_user"/, 'the connection log should name the user');
  const md5 = (pw: string, user: string) =>
    `md5${createHash('md5')
      .update(pw + user)
      .digest('hex')}`;
  const secrets: Record<string, string> = {
    'scram password': SCRAM_PW,
    'md5 password': MD5_PW,
    'wrong password': WRONG_PW,
    'md5 hash': md5(MD5_PW, 'md5_user'),
    passphrase: PASSPHRASE,
    ...Object.fromEntries(pemBodyLines(keyPem).map((l, i) => [`key PEM line ${i + 1}`, l])),
    ...Object.fromEntries(
      pemBodyLines(readFileSync(`${fx.dir}/secret.key`, 'utf8')).map((l, i) => [`encrypted key line ${i + 1}`, l]),
    ),
  };
  const found = Object.entries(secrets)
    .filter(([, v]) => output.includes(v))
    .map(([k]) => k);
  assert.deepEqual(found, []);
  assert.ok(Object.keys(secrets).length > 5);
});
