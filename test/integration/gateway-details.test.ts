/** Smaller rules with a passing and a failing case each: pipelined startup bytes, configuration warnings. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { checkConfiguration } from '../../src/gateway/gateway.js';
import { createServerCert } from '../../src/pki/generate.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import { negotiatedTls, readAll, startupPacket } from '../support/raw.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;

before(async () => {
  fx = await makeFixtures();
  // The backend trusts the gateway's hop, so a login needs no password round trip.
  cluster = await startTestCluster({ hba: ['local all all trust', 'host all all 127.0.0.1/32 trust'] });
  gw = await startTestGateway(fx, cluster);
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

function query(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`);
  const b = Buffer.alloc(5 + body.length);
  b[0] = 0x51; // 'Q'
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

describe('bytes a client sends right behind its StartupMessage', () => {
  test('reach the backend: a Query pipelined with the StartupMessage is answered', async () => {
    const t = await negotiatedTls(gw.port);
    const done = readAll(t, 3000);
    t.write(Buffer.concat([startupPacket({ user: 'postgres', database: 'postgres' }), query("select 'pipelined-42'")]));
    const got = await done;
    assert.match(got.data.toString('latin1'), /pipelined-42/);
  });

  test('without the pipelined Query nothing but the login is answered', async () => {
    const t = await negotiatedTls(gw.port);
    const done = readAll(t, 1500);
    t.write(startupPacket({ user: 'postgres', database: 'postgres' }));
    const got = await done;
    assert.doesNotMatch(got.data.toString('latin1'), /pipelined-42/);
    assert.equal(got.data.at(-6), 0x5a); // ends with ReadyForQuery
  });
});

describe('configuration warnings (serve --check, start, reload)', () => {
  const conf = (name: string, lines: string[]) =>
    writeFixture(fx, name, `${lines.join('\n')}\nupstream = 'postgres://127.0.0.1:1'\nport = 0\n`);

  test('a certificate expiring within 30 days is reported; a fresh one is not', async () => {
    const soon = await createServerCert(fx.clientCaIssued, {
      subject: { CN: 'localhost' },
      hosts: ['localhost'],
      days: 10,
    });
    const cert = writeFixture(fx, 'soon.crt', soon.certPem);
    const key = writeFixture(fx, 'soon.key', soon.keyPem, 0o600);
    const r = await checkConfiguration({
      file: conf('soon.conf', [`ssl_cert_file = '${cert}'`, `ssl_key_file = '${key}'`]),
      env: {},
    });
    assert.deepEqual(r.warnings, [`the server certificate in ${cert} expires in 9 days`]);
    const fresh = await checkConfiguration({
      file: conf('fresh.conf', [`ssl_cert_file = '${fx.server.cert}'`, `ssl_key_file = '${fx.server.key}'`]),
      env: {},
    });
    assert.deepEqual(fresh.warnings, []);
  });

  test('ssl = off: plaintext and every hostssl line are reported, as PostgreSQL warns', async () => {
    const hba = writeFixture(fx, 'warn-hba.conf', 'hostssl all all all trust\nhost all all all trust\n');
    const r = await checkConfiguration({
      file: conf('off.conf', ['ssl = off', 'require_secure_transport = off', `hba_file = '${hba}'`]),
      env: {},
    });
    assert.deepEqual(r.warnings, [
      'ssl = off: every session is plaintext (development only)',
      `hostssl record cannot match because SSL is disabled (line 1 of configuration file "${hba}")`,
    ]);
  });
});
