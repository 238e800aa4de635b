/**
 * Client certificates and pg_hba.conf at the gateway, side by side with PostgreSQL 18 given the same ssl_ca_file,
 * ssl_crl_file, pg_hba.conf and pg_ident.conf. One cluster plays both parts: psql reaches its hostssl lines directly,
 * and the gateway's plaintext hop matches its first line (the backend trusts the gateway, as docs/gateway.md says
 * it must for the cert method).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type RunResult, psql } from '../support/clients.js';
import {
  type GatewayFixtures,
  type Pair,
  extraClient,
  makeFixtures,
  writeFixture,
} from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';

const RULES = [
  'hostssl all alice all cert',
  'hostssl all bob all trust clientcert=verify-ca',
  'hostssl all carol all trust clientcert=verify-full',
  'hostssl all dave,erin all cert map=emails',
  'hostssl all frank all cert clientname=DN map=dns',
  'hostssl all reject_me all reject',
  'hostssl all mallory all cert',
  'hostssl all all all scram-sha-256',
];
const IDENT = ['emails /^(.*)@example\\.com$ \\1', 'dns "O=pgtls tests,CN=frank" frank'];

/**
 * A presented client certificate that does not verify: the native data plane fails the handshake with OpenSSL's
 * alert, exactly as PostgreSQL (same client text); Node's transport cannot, and sends PostgreSQL's log text as a
 * FATAL after the handshake (docs/gateway.md, "Differences").
 */
const native = () => gw.gw.transport?.name === 'native';
function assertRefusedCert(r: { pg: string; gw: string }): void {
  if (native()) assert.equal(r.gw, r.pg);
  else assert.equal(r.gw, 'could not accept SSL connection: certificate verify failed');
}

let fx: GatewayFixtures;
let pg: TestCluster;
let gw: TestGateway;
let daveCert: Pair;

before(async () => {
  fx = await makeFixtures();
  daveCert = await extraClient(fx, 'client-dave', { CN: 'dave@example.com' });
  const frank = await extraClient(fx, 'client-frank', { CN: 'frank', O: 'pgtls tests' });
  Object.assign(fx.clients, { frank });
  pg = await startTestCluster({
    files: {
      'server.crt': readFileSync(fx.server.cert),
      'server.key': readFileSync(fx.server.key),
      'client-ca.crt': readFileSync(fx.clientCa),
      'client.crl': readFileSync(fx.clientCrl),
      'pg_ident.conf': `${IDENT.join('\n')}\n`,
    },
    settings: {
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      ssl_ca_file: 'client-ca.crt',
      ssl_crl_file: 'client.crl',
    },
    hba: ['local all all trust', 'hostnossl all all 127.0.0.1/32 trust', ...RULES],
  });
  const roles = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'reject_me', 'mallory'];
  const setup = await psql(
    `host=${pg.socketDir} port=${pg.port} user=postgres`,
    roles.map((r) => `create role ${r} login;`).join(' '),
  );
  assert.equal(setup.code, 0, setup.stderr);
  gw = await startTestGateway(fx, pg, {
    ssl_ca_file: fx.clientCa,
    ssl_crl_file: fx.clientCrl,
    hba_file: writeFixture(fx, 'cert-hba.conf', `${RULES.join('\n')}\n`),
    ident_file: writeFixture(fx, 'cert-ident.conf', `${IDENT.join('\n')}\n`),
  });
});
after(async () => {
  await gw?.close();
  await pg?.destroy();
});

/** What a user sees: connected, or the FATAL line libpq printed, or libpq's SSL error line. */
function outcome(r: RunResult): string {
  if (r.code === 0) return 'connected';
  const fatal = /FATAL: {2}(.*)/.exec(r.stderr);
  if (fatal) return fatal[1]!;
  const ssl = /(SSL error: .*|SSL SYSCALL error: .*|server closed the connection unexpectedly)/.exec(r.stderr);
  return ssl ? ssl[1]! : r.stderr.trim();
}

function conn(port: number, user: string, cert?: Pair): string {
  const base = `host=localhost port=${port} user=${user} dbname=postgres sslmode=verify-full sslrootcert=${fx.root}`;
  // Without a certificate, point sslcert at a file that does not exist so libpq sends none.
  return cert ? `${base} sslcert=${cert.cert} sslkey=${cert.key}` : `${base} sslcert=/nonexistent sslkey=/nonexistent`;
}

async function sideBySide(user: string, cert?: Pair): Promise<{ pg: string; gw: string }> {
  const [a, b] = await Promise.all([
    psql(conn(pg.port, user, cert), 'select current_user', { env: { PGPASSWORD: 'x' } }),
    psql(conn(gw.port, user, cert), 'select current_user', { env: { PGPASSWORD: 'x' } }),
  ]);
  return { pg: outcome(a), gw: outcome(b) };
}

describe('client certificates, as PostgreSQL', () => {
  const same: [string, string, () => Pair | undefined, string][] = [
    ['cert: CN = user', 'alice', () => fx.clients.alice, 'connected'],
    ['cert: no certificate', 'alice', () => undefined, 'connection requires a valid client certificate'],
    ['cert: CN ≠ user', 'alice', () => fx.clients.bob, 'certificate authentication failed for user "alice"'],
    ['verify-ca: any certificate of the CA', 'bob', () => fx.clients.alice, 'connected'],
    ['verify-ca: no certificate', 'bob', () => undefined, 'connection requires a valid client certificate'],
    ['verify-full: CN = user', 'carol', () => fx.clients.carol, 'connected'],
    [
      'verify-full: CN ≠ user (trust)',
      'carol',
      () => fx.clients.alice,
      '"trust" authentication failed for user "carol"',
    ],
    ['map with a regular expression and \\1', 'dave', () => daveCert, 'connected'],
    ['map: no line allows this user', 'erin', () => daveCert, 'certificate authentication failed for user "erin"'],
    ['clientname=DN with a map', 'frank', () => fx.clients.frank, 'connected'],
    [
      'reject',
      'reject_me',
      () => fx.clients.alice,
      'pg_hba.conf rejects connection for host "127.0.0.1", user "reject_me", database "postgres", SSL encryption',
    ],
  ];
  for (const [name, user, cert, expected] of same) {
    test(name, async () => {
      const r = await sideBySide(user, cert());
      assert.equal(r.gw, expected);
      assert.equal(r.gw, r.pg);
    });
  }

  test('a revoked certificate (ssl_crl_file) is refused by both; the gateway says why', async () => {
    const r = await sideBySide('mallory', fx.clients.mallory);
    assert.match(r.pg, /SSL error: .*certificate revoked/);
    assertRefusedCert(r);
    if (!native()) {
      const rec = gw.records.findLast((x) => x.user === undefined && x.client_cert?.subject.includes('mallory'));
      assert.equal(rec?.reason, 'client certificate: certificate revoked');
    }
  });

  test('a certificate from an unrelated CA is refused by both', async () => {
    const r = await sideBySide('alice', fx.unrelatedClient);
    assert.match(r.pg, /SSL error: .*unknown ca/);
    assertRefusedCert(r);
  });

  test('the connection log names the certificate, the hba line and the outcome', async () => {
    await sideBySide('alice', fx.clients.alice);
    const rec = gw.records.findLast((x) => x.user === 'alice' && x.outcome === 'relayed');
    assert.ok(rec);
    assert.match(rec.client_cert?.subject ?? '', /^O=pgtls tests,CN=alice$/);
    assert.match(rec.hba ?? '', /cert-hba\.conf:1$/);
    assert.equal(rec.authenticated_as, 'alice');
    assert.ok(!JSON.stringify(gw.records).includes('PRIVATE KEY'));
  });
});

describe('ssl_crl_dir, consulted at connection time', () => {
  test('empty directory, then a CRL dropped in: the same outcomes as PostgreSQL, without a reload', async () => {
    const { mkdtempSync, chmodSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { writeCrlDirectory } = await import('../../src/pki/crl.js');
    const dir = mkdtempSync(join(tmpdir(), 'pgtls-crldir-'));
    chmodSync(dir, 0o755);
    const pgDir = await pg.install('crl-probe', ''); // a path inside the cluster's data directory
    const pgCrlDir = `${pgDir}-dir`;
    const { mkdirSync, chownSync, statSync } = await import('node:fs');
    mkdirSync(pgCrlDir, { mode: 0o755 });
    const owner = statSync(pgDir);
    chownSync(pgCrlDir, owner.uid, owner.gid);
    const base = readFileSync(pg.dataDir + '/pgtls.auto.conf', 'utf8').replace(/^ssl_crl_file.*$/m, '');
    await pg.install('pgtls.auto.conf', `${base}\nssl_crl_dir = '${pgCrlDir}'\n`);
    await pg.reload();
    const g = await startTestGateway(fx, pg, {
      ssl_ca_file: fx.clientCa,
      ssl_crl_dir: dir,
      hba_file: writeFixture(fx, 'crldir-hba.conf', `${RULES.join('\n')}\n`),
      ident_file: writeFixture(fx, 'crldir-ident.conf', `${IDENT.join('\n')}\n`),
    });
    await new Promise((res) => setTimeout(res, 300));
    try {
      const probe = async (user: string, cert: Pair) => {
        const [a, b] = await Promise.all([
          psql(conn(pg.port, user, cert), 'select 1', { env: { PGPASSWORD: 'x' } }),
          psql(conn(g.port, user, cert), 'select 1', { env: { PGPASSWORD: 'x' } }),
        ]);
        return { pg: outcome(a), gw: outcome(b) };
      };
      // CRL checking is on and no CRL for the client CA exists yet: OpenSSL refuses every client certificate.
      const empty = await probe('alice', fx.clients.alice!);
      assert.match(empty.pg, /SSL error/);
      assertRefusedCert(empty);
      const crl = readFileSync(fx.clientCrl, 'utf8');
      await writeCrlDirectory(dir, [crl]);
      for (const f of await writeCrlDirectory(pgCrlDir, [crl])) {
        chownSync(f.startsWith('/') ? f : join(pgCrlDir, f), owner.uid, owner.gid);
      }
      const alice = await probe('alice', fx.clients.alice!);
      assert.deepEqual(alice, { pg: 'connected', gw: 'connected' });
      const mallory = await probe('mallory', fx.clients.mallory!);
      assert.match(mallory.pg, /SSL error: .*certificate revoked/);
      assertRefusedCert(mallory);
    } finally {
      await g.close();
    }
  });
});
