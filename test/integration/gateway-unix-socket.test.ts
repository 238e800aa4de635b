/** The optional Unix socket listener: `local` hba lines, no TLS on it (as PostgreSQL), [local] in texts and logs. */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Gateway } from '../../src/gateway/gateway.js';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;
let dir: string;
const env = { PGPASSWORD: SUPERUSER_PASSWORD };

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  dir = mkdtempSync(join(tmpdir(), 'pgtls-sock-'));
  chmodSync(dir, 0o755);
  const hba = writeFixture(
    fx,
    'unix-hba.conf',
    'local all alice reject\nlocal all all scram-sha-256\nhostssl all all all scram-sha-256\n',
  );
  gw = await startTestGateway(fx, cluster, { unix_socket_directories: dir, hba_file: hba });
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

test('psql over the Unix socket: local lines match, TLS is not offered (N), require_secure_transport does not apply', async () => {
  assert.deepEqual(gw.gw.unixSockets, [join(dir, `.s.PGSQL.${gw.port}`)]);
  const ok = await psql(`host=${dir} port=${gw.port} user=postgres sslmode=prefer`, 'select 1', { env });
  assert.equal(ok.code, 0, ok.stderr);
  await gw.settle(); // psql may exit a moment before the gateway has logged its connection
  const rec = gw.records.at(-1)!;
  assert.equal(rec.client, '[local]');
  assert.equal(rec.tls_version, undefined);
  assert.match(rec.hba ?? '', /unix-hba\.conf:2$/);
  const refused = await psql(`host=${dir} port=${gw.port} user=alice sslmode=prefer`, 'select 1', { env });
  assert.match(
    refused.stderr,
    /FATAL: {2}pg_hba.conf rejects connection for host "\[local\]", user "alice", database "alice", no encryption/,
  );
  const tls = await psql(`host=localhost port=${gw.port} user=postgres sslmode=require`, 'select 1', { env });
  assert.equal(tls.code, 0, tls.stderr);
});

test("peer authentication is refused at load: the gateway cannot vouch for the client's OS user", async () => {
  const hba = writeFixture(fx, 'peer-hba.conf', 'local all all peer\n');
  const file = writeFixture(
    fx,
    'peer.conf',
    `port = 0\nhba_file = '${hba}'\nssl_cert_file = '${fx.server.cert}'\nssl_key_file = '${fx.server.key}'\nupstream = 'postgres://127.0.0.1:1'\n`,
  );
  await assert.rejects(Gateway.start({ file, env: {} }), {
    code: 'PGTLS_ERR_HBA',
    message: `peer authentication needs the client's operating-system user, which the gateway cannot pass on to the backend (line 1 of configuration file "${hba}")`,
  });
});
