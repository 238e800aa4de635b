/**
 * What `pgtls cert` makes, used by a real PostgreSQL 18 (ssl_cert_file, ssl_ca_file, ssl_crl_file, ssl_crl_dir)
 * and real psql (libpq 15 and 18) with sslmode=verify-full and the `cert` authentication method.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pgtlsCert, tempDir } from '../support/cert-helpers.js';
import { type Libpq, psql } from '../support/clients.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';

let dir: string;
let pg: TestCluster;
let pgDir: TestCluster | undefined;

async function ok(...args: string[]) {
  const r = await pgtlsCert(args, dir);
  assert.equal(r.code, 0, `pgtls cert ${args.join(' ')}\n${r.stdout}${r.stderr}`);
  return r;
}

const HBA = ['local all all trust', 'hostssl all postgres 127.0.0.1/32 trust', 'hostssl all all 127.0.0.1/32 cert'];

async function createRoles(cluster: TestCluster, roles: string[]) {
  for (const role of roles) {
    const r = await psql(
      `host=${cluster.socketDir} port=${cluster.port} user=postgres dbname=postgres`,
      `create role ${role} login`,
    );
    assert.equal(r.code, 0, r.stderr);
  }
}

before(async () => {
  dir = await tempDir();
  await ok('ca', '--cn', 'PG Test Root');
  await ok('intermediate', '--ca', 'root.crt', '--cn', 'PG Test Inter');
  await ok('server', '--ca', 'intermediate.crt', '--host', 'localhost', '--ip', '127.0.0.1');
  await ok('client', '--ca', 'intermediate.crt', '--user', 'alice');
  await ok('client', '--ca', 'intermediate.crt', '--user', 'bob');
  await ok('revoke', '--ca', 'intermediate.crt', '--cert', 'bob.crt', '--reason', 'keyCompromise');
  await ok('crl', '--ca', 'root.crt', '--ca', 'intermediate.crt', '--out', 'crl.pem');
  const read = (f: string) => readFile(join(dir, f));
  pg = await startTestCluster({
    hba: HBA,
    files: {
      'server.crt': await read('server.crt'),
      'server.key': await read('server.key'),
      'root.crt': await read('root.crt'),
      'crl.pem': await read('crl.pem'),
    },
    settings: {
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      ssl_ca_file: 'root.crt',
      ssl_crl_file: 'crl.pem',
    },
  });
  await createRoles(pg, ['alice', 'bob', 'carol']);
});

after(async () => {
  await pg?.destroy();
  await pgDir?.destroy();
});

const conninfo = (port: number, extra: string) =>
  `host=localhost hostaddr=127.0.0.1 port=${port} dbname=postgres sslmode=verify-full sslrootcert=${join(dir, 'root.crt')} ${extra}`;

for (const libpq of [15, 18] as Libpq[]) {
  test(`libpq ${libpq}: verify-full accepts the chain; a client certificate logs in with the cert method`, async () => {
    const r = await psql(
      conninfo(pg.port, `user=alice sslcert=${join(dir, 'alice.crt')} sslkey=${join(dir, 'alice.key')}`),
      'select current_user',
      { libpq },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'alice');
  });
}

test('an encrypted client key (--passout) opens in libpq with sslpassword', async () => {
  await ok(
    'client',
    '--ca',
    'intermediate.crt',
    '--user',
    'alice',
    '--out',
    'alice-enc.crt',
    '--passout',
    'pass:pw-for-libpq',
  );
  const r = await psql(
    conninfo(
      pg.port,
      `user=alice sslcert=${join(dir, 'alice-enc.crt')} sslkey=${join(dir, 'alice-enc.key')} sslpassword=pw-for-libpq`,
    ),
    'select current_user',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'alice');
});

test('verify-full by IP address uses the IP SAN', async () => {
  const r = await psql(
    `host=127.0.0.1 port=${pg.port} dbname=postgres user=postgres sslmode=verify-full sslrootcert=${join(dir, 'root.crt')}`,
    'select 1',
  );
  assert.equal(r.code, 0, r.stderr);
});

test('verify-full to a name not in the certificate: libpq and `pgtls cert verify` say the same thing', async () => {
  const r = await psql(
    `host=db.wrong.example hostaddr=127.0.0.1 port=${pg.port} dbname=postgres user=postgres sslmode=verify-full sslrootcert=${join(dir, 'root.crt')}`,
    'select 1',
  );
  assert.equal(r.code, 2);
  const text = 'server certificate for "localhost" (and 1 other name) does not match host name "db.wrong.example"';
  assert.ok(r.stderr.includes(text), r.stderr);
  const ours = await pgtlsCert(
    ['verify', '--root', 'root.crt', '--host', 'db.wrong.example', '--server', `127.0.0.1:${pg.port}`],
    dir,
  );
  assert.equal(ours.code, 1);
  assert.equal(ours.stdout.split('\n')[0], `error: ${text}`);
});

test('a client trusting another root fails in libpq and in `pgtls cert verify` with the same OpenSSL reason', async () => {
  await ok('ca', '--out', 'other-root.crt', '--cn', 'Other Root');
  const r = await psql(
    `host=localhost hostaddr=127.0.0.1 port=${pg.port} dbname=postgres user=postgres sslmode=verify-full sslrootcert=${join(dir, 'other-root.crt')}`,
    'select 1',
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /failed: SSL error: certificate verify failed\n$/);
  const ours = await pgtlsCert(['verify', '--root', 'other-root.crt', '--server', `127.0.0.1:${pg.port}`], dir);
  assert.equal(ours.code, 1);
  assert.match(
    ours.stdout,
    /^error X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY at depth 1 \(CN=PG Test Inter\): unable to get local issuer certificate/,
  );
});

test('ssl_crl_file: the revoked client certificate is refused', async () => {
  const r = await psql(
    conninfo(pg.port, `user=bob sslcert=${join(dir, 'bob.crt')} sslkey=${join(dir, 'bob.key')}`),
    'select 1',
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /failed: SSL error: sslv3 alert certificate revoked\n$/);
  // PostgreSQL 18 logs OpenSSL's reason and depth; `pgtls cert verify` gives the same for the same files.
  const log = await readFile(pg.logFile, 'utf8');
  assert.match(log, /DETAIL: {2}Client certificate verification failed at depth 0: certificate revoked\./);
  const ours = await pgtlsCert(
    ['verify', '--root', 'root.crt', '--crl', 'crl.pem', '--purpose', 'client', 'bob.crt'],
    dir,
  );
  assert.equal(ours.code, 1);
  assert.match(ours.stdout, /^error X509_V_ERR_CERT_REVOKED at depth 0 \(CN=bob\): certificate revoked\n/);
});

test('a certificate for another user is refused by the cert method', async () => {
  const r = await psql(
    conninfo(pg.port, `user=carol sslcert=${join(dir, 'alice.crt')} sslkey=${join(dir, 'alice.key')}`),
    'select 1',
  );
  assert.equal(r.code, 2);
  assert.match(r.stderr, /FATAL: {2}certificate authentication failed for user "carol"/);
});

test('inspect --server shows the presented chain: leaf then intermediate, no problems', async () => {
  const r = await pgtlsCert(['inspect', '--server', `127.0.0.1:${pg.port}`, '--json'], dir);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as {
    certificates: { subject: string; signedBy: number | null }[];
    findings: { code: string }[];
  };
  assert.deepEqual(
    j.certificates.map((c) => c.subject),
    ['CN=localhost', 'CN=PG Test Inter'],
  );
  assert.equal(j.certificates[0]!.signedBy, 1);
  assert.deepEqual(
    j.findings.map((f) => f.code),
    ['issuer-not-included'],
  );
});

test('ssl_crl_dir: a hashed directory; a revocation published later refuses the next connection', async () => {
  const crlDir = join(dir, 'crl.d');
  await ok('crl', '--ca', 'root.crt', '--ca', 'intermediate.crt', '--dir', crlDir);
  const read = (f: string) => readFile(join(dir, f));
  pgDir = await startTestCluster({
    hba: HBA,
    files: {
      'server.crt': await read('server.crt'),
      'server.key': await read('server.key'),
      'root.crt': await read('root.crt'),
    },
    settings: {
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      ssl_ca_file: 'root.crt',
      ssl_crl_dir: crlDir,
    },
  });
  await createRoles(pgDir, ['alice', 'bob', 'carol']);
  await ok('client', '--ca', 'intermediate.crt', '--user', 'carol');
  const carol = conninfo(pgDir.port, `user=carol sslcert=${join(dir, 'carol.crt')} sslkey=${join(dir, 'carol.key')}`);
  const before = await psql(carol, 'select current_user');
  assert.equal(before.code, 0, before.stderr);
  assert.equal(before.stdout.trim(), 'carol');
  const bob = await psql(
    conninfo(pgDir.port, `user=bob sslcert=${join(dir, 'bob.crt')} sslkey=${join(dir, 'bob.key')}`),
    'select 1',
  );
  assert.match(bob.stderr, /SSL error: sslv3 alert certificate revoked/);
  // Revoke carol and publish into the directory; CRLs in ssl_crl_dir are loaded on demand, so no reload is needed.
  await ok('revoke', '--ca', 'intermediate.crt', '--cert', 'carol.crt');
  await ok('crl', '--ca', 'root.crt', '--ca', 'intermediate.crt', '--dir', crlDir);
  const afterRevoke = await psql(carol, 'select 1');
  assert.equal(afterRevoke.code, 2);
  assert.match(afterRevoke.stderr, /SSL error: sslv3 alert certificate revoked/);
});

test('inspect --server sees the order the server sends: a misordered ssl_cert_file is reported; no TLS is explained', async () => {
  await ok('intermediate', '--ca', 'root.crt', '--cn', 'Policy CA', '--pathlen', '1', '--out', 'policy.crt');
  await ok('intermediate', '--ca', 'policy.crt', '--cn', 'Issuing CA', '--out', 'issuing.crt');
  await ok('server', '--ca', 'issuing.crt', '--host', 'localhost', '--out', 'deep.crt');
  const pem = await readFile(join(dir, 'deep.crt'), 'utf8');
  const [leaf, issuing, policy] = pem.split(/(?<=-----END CERTIFICATE-----\n)/);
  const misordered = `${leaf}${policy}${issuing}`;
  const bad = await startTestCluster({
    hba: HBA,
    files: { 'server.crt': misordered, 'server.key': await readFile(join(dir, 'deep.key')) },
    settings: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' },
  });
  try {
    const r = await pgtlsCert(['inspect', '--server', `127.0.0.1:${bad.port}`], dir);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^127\.0\.0\.1:\d+ presents 3 certificates:/);
    assert.match(r.stdout, /error: wrong order: #1 \(CN=localhost\) is signed by #3, which must come right after it/);
  } finally {
    await bad.destroy();
  }
  const plain = await startTestCluster({ hba: HBA });
  try {
    const r = await pgtlsCert(['inspect', '--server', `127.0.0.1:${plain.port}`], dir);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `pgtls: 127.0.0.1:${plain.port}: the server refused TLS (answered N to SSLRequest) [PGTLS_ERR_PKI_SERVER_CHAIN]\nhint: Check host and port, and that the server has ssl = on.\n`,
    );
  } finally {
    await plain.destroy();
  }
});
