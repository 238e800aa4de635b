/**
 * Issue 12 at the gateway: PROXY protocol v1/v2 from real HAProxy (the header's client address is the one pg_hba.conf
 * matches and the log shows), headers from untrusted or broken peers refused, and ssl_sni with pg_hosts.conf serving
 * each host name its own certificate through the gateway (openssl s_client and psql with libpq 18).
 */
import assert from 'node:assert/strict';
import { type Socket, connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { createRootCA, createServerCert } from '../../src/pki/generate.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/protocol/proxy-encode.js';
import { psql, sClient } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { type RunningHaproxy, startHaproxy } from '../support/haproxy.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import { readAll, startupPacket } from '../support/raw.js';

let fx: GatewayFixtures;
let cluster: TestCluster;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all all 127.0.0.1/32 trust'],
  });
});
after(async () => {
  await cluster?.destroy();
});

/** The record of the first connection after `from` that matches, waiting (bounded) for it to be logged. */
async function recordAfter(gw: TestGateway, from: number, match: (r: TestGateway['records'][number]) => boolean) {
  const until = Date.now() + 5000;
  for (;;) {
    const r = gw.records.slice(from).find(match);
    if (r || Date.now() > until) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** An SSLRequest + TLS + StartupMessage client from a chosen local address; resolves with the first server bytes. */
async function tlsLogin(port: number, localAddress: string, preamble?: Buffer): Promise<Buffer> {
  const raw: Socket = await new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
  });
  const req = Buffer.alloc(8);
  req.writeInt32BE(8, 0);
  req.writeUInt32BE(80877103, 4);
  raw.write(preamble ? Buffer.concat([preamble, req]) : req);
  await new Promise<void>((resolve, reject) => {
    raw.once('data', (d: Buffer) => (d[0] === 0x53 ? resolve() : reject(new Error(`answer ${d.toString()}`))));
    raw.once('close', () => reject(new Error('closed by the gateway')));
  });
  const t = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' });
  await new Promise<void>((resolve, reject) => {
    t.once('secureConnect', () => resolve());
    t.once('error', reject);
  });
  // The session is relayed and stays open: take what arrives in the first moment, then leave.
  const answer = readAll(t, 500);
  t.write(startupPacket({ user: 'postgres', database: 'postgres' }));
  return (await answer).data;
}

describe('PROXY protocol', () => {
  let gw: TestGateway;
  let hap: RunningHaproxy;
  before(async () => {
    // The real client is 127.0.0.2; HAProxy (and any direct peer) is 127.0.0.1, which hba rejects.
    const hba = writeFixture(
      fx,
      'edge-hba.conf',
      'hostssl all all 127.0.0.2/32 trust\nhostssl all all 127.0.0.3/32 trust\nhostssl all all 127.0.0.1/32 reject\n',
    );
    gw = await startTestGateway(fx, cluster, {
      hba_file: hba,
      proxy_protocol: 'on',
      proxy_protocol_trusted: '127.0.0.1/32, ::1',
    });
    hap = await startHaproxy([
      { name: 'v1', backendPort: gw.port, sendProxy: 'v1' },
      { name: 'v2', backendPort: gw.port, sendProxy: 'v2' },
    ]);
  });
  after(async () => {
    await hap?.stop();
    await gw?.close();
  });

  for (const v of ['v1', 'v2'] as const) {
    test(`HAProxy send-proxy${v === 'v2' ? '-v2' : ''}: hba matches and the log shows the client's own address`, async () => {
      const before = gw.records.length;
      const data = await tlsLogin(hap.ports[v]!, '127.0.0.2');
      assert.equal(data[0], 0x52, 'AuthenticationOk (trust at the backend)'); // 'R'
      const rec = await recordAfter(gw, before, (r) => r.outcome === 'relayed');
      assert.equal(rec?.client, '127.0.0.2');
      assert.equal(rec?.proxy?.peer, '127.0.0.1');
      assert.equal(rec?.proxy?.version, v === 'v1' ? 1 : 2);
      assert.match(rec?.hba ?? '', /edge-hba\.conf:1$/);
    });
  }

  test('psql (libpq 18) through HAProxy v2: the address in the header is the one hba judges', async () => {
    // HAProxy connects from 127.0.0.1 and psql does too: the header says 127.0.0.1, which hba rejects.
    const r = await psql(
      `host=localhost hostaddr=127.0.0.1 port=${hap.ports.v2} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${fx.root}`,
      'SELECT 42',
      { libpq: 18 },
    );
    assert.match(
      r.stderr,
      /FATAL: {2}pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "postgres", database "postgres", SSL encryption/,
    );
  });

  test('a header from a trusted peer is required: without one the connection is refused (invalid header)', async () => {
    const before = gw.records.length;
    await assert.rejects(tlsLogin(gw.port, '127.0.0.1'));
    const rec = await recordAfter(gw, before, () => true);
    assert.equal(rec?.outcome, 'refused');
    assert.match(rec?.reason ?? '', /^invalid PROXY protocol header from 127\.0\.0\.1: /);
  });

  test('a header from an untrusted peer is never believed: closed without an answer, and logged', async () => {
    const before = gw.records.length;
    const header = encodeProxyV1({
      family: 'INET',
      source: { address: '127.0.0.2', port: 1 },
      destination: { address: '127.0.0.1', port: gw.port },
    });
    await assert.rejects(tlsLogin(gw.port, '127.0.0.3', header));
    const rec = await recordAfter(gw, before, () => true);
    assert.equal(rec?.client, '127.0.0.3');
    assert.equal(rec?.reason, 'PROXY protocol header from 127.0.0.3, which is not in proxy_protocol_trusted');
  });

  test('a v2 header written by hand from a trusted peer, then SSLRequest in the same packet', async () => {
    const before = gw.records.length;
    const header = encodeProxyV2({
      command: 'PROXY',
      family: 'INET',
      transport: 'STREAM',
      source: { address: '127.0.0.2', port: 40000 },
      destination: { address: '127.0.0.1', port: gw.port },
    });
    const data = await tlsLogin(gw.port, '127.0.0.1', header);
    assert.equal(data[0], 0x52);
    const rec = await recordAfter(gw, before, (r) => r.outcome === 'relayed');
    assert.equal(rec?.client, '127.0.0.2');
    assert.equal(rec?.client_port, 40000);
  });
});

describe('ssl_sni with pg_hosts.conf at the gateway', () => {
  let gw: TestGateway;
  before(async () => {
    const root = await createRootCA({ subject: { CN: 'sni root' } });
    const pair = async (name: string) => {
      const c = await createServerCert(root, { subject: { CN: name }, hosts: [name] });
      return {
        cert: writeFixture(fx, `sni-${name}.crt`, c.certPem),
        key: writeFixture(fx, `sni-${name}.key`, c.keyPem, 0o600),
      };
    };
    const a = await pair('a.example');
    const b = await pair('b.example');
    writeFixture(fx, 'sni-root.crt', root.certPem);
    const hosts = writeFixture(fx, 'sni-hosts.conf', `a.example ${a.cert} ${a.key}\nb.example ${b.cert} ${b.key}\n`);
    gw = await startTestGateway(fx, cluster, { ssl_sni: 'on', hosts_file: hosts });
  });
  after(async () => {
    await gw?.close();
  });

  const openssl = (args: string[]) => sClient(gw.port, args);

  test('each host name gets its own certificate', async () => {
    for (const name of ['a.example', 'b.example']) {
      const r = await openssl(['-starttls', 'postgres', '-servername', name]);
      assert.match(r.stderr, new RegExp(`depth=0 CN = ${name.replace('.', '\\.')}\n`), r.stderr);
    }
  });

  test('strict mode (no * entry): an unknown name gets unrecognized_name, no SNI a handshake failure', async () => {
    const unknown = await openssl(['-starttls', 'postgres', '-servername', 'c.example']);
    assert.match(unknown.stderr, /unrecognized name|alert number 112/);
    const none = await openssl(['-starttls', 'postgres', '-noservername']);
    assert.match(none.stderr, /handshake failure|alert number 40/);
    const rec = gw.records.filter((r) => r.outcome === 'refused').map((r) => r.reason);
    assert.ok(
      rec.some((r) => /could not accept SSL connection: /.test(r ?? '')),
      JSON.stringify(rec),
    );
  });

  test('psql (libpq 18) with sslmode=verify-full to b.example: served b, verified, logged with its pg_hosts.conf line', async () => {
    const r = await psql(
      `host=b.example hostaddr=127.0.0.1 port=${gw.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${fx.dir}/sni-root.crt`,
      'SELECT 7',
      { libpq: 18 },
    );
    assert.equal(r.stdout.trim(), '7', r.stderr);
    await gw.settle();
    const rec = gw.records.filter((x) => x.outcome === 'relayed').at(-1);
    assert.equal(rec?.sni, 'b.example');
    assert.match(rec?.hosts_line ?? '', /sni-hosts\.conf:2$/);
  });
});
