/** The gateway's own TLS to its backend (upstream_sslmode), with libpq's semantics and host-name rules. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { psql } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let backend: TestCluster;
let plainBackend: TestCluster;
const gateways: TestGateway[] = [];
const env = { PGPASSWORD: SUPERUSER_PASSWORD };

before(async () => {
  fx = await makeFixtures();
  backend = await startTestCluster({
    files: {
      'server.crt': readFileSync(fx.server.cert),
      'server.key': readFileSync(fx.server.key),
      'wrong.crt': readFileSync(fx.wrongHost.cert),
      'wrong.key': readFileSync(fx.wrongHost.key),
    },
    settings: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' },
    hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256'],
  });
  plainBackend = await startTestCluster();
});
after(async () => {
  for (const g of gateways) await g.close();
  await backend?.destroy();
  await plainBackend?.destroy();
});

async function through(
  cluster: TestCluster,
  conf: Record<string, string>,
): Promise<{ g: TestGateway; out: string; err: string; code: number | null }> {
  const g = await startTestGateway(fx, cluster, { upstream: `postgres://127.0.0.1:${cluster.port}`, ...conf });
  gateways.push(g);
  const r = await psql(
    `host=localhost port=${g.port} user=postgres sslmode=verify-full sslrootcert=${fx.root}`,
    'select ssl from pg_stat_ssl where pid = pg_backend_pid()',
    { env },
  );
  return { g, out: r.stdout.trim(), err: r.stderr, code: r.code };
}

describe('upstream TLS', () => {
  test('verify-full: the hop to the backend is TLS, verified against upstream_sslrootcert', async () => {
    const r = await through(backend, { upstream_sslmode: 'verify-full', upstream_sslrootcert: fx.root });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 't');
  });

  test("verify-full: a backend certificate for another host is refused with libpq's text", async () => {
    const r = await through(backend, {
      upstream: `postgres://127.0.0.1:${backend.port}`,
      upstream_sslmode: 'verify-full',
      upstream_sslrootcert: fx.root,
    });
    assert.equal(r.code, 0);
    // Swap the backend's certificate for the wrong-host one, then connect again.
    await backend.install(
      'pgtls.auto.conf',
      `listen_addresses = '127.0.0.1'\nport = '${backend.port}'\nunix_socket_directories = '${backend.socketDir}'\nssl = 'on'\nssl_cert_file = 'wrong.crt'\nssl_key_file = 'wrong.key'\n`,
    );
    await backend.reload();
    await new Promise((res) => setTimeout(res, 300));
    try {
      const bad = await psql(`host=localhost port=${r.g.port} user=postgres sslmode=require`, 'select 1', { env });
      assert.match(bad.stderr, /FATAL: {2}could not connect to the database server behind the gateway/);
      await new Promise((res) => setTimeout(res, 100));
      const rec = r.g.records.findLast((x) => x.upstream_error);
      assert.match(
        rec?.upstream_error ?? '',
        /server certificate for "db\.example\.com" \(and 1 other name\) does not match host name "127\.0\.0\.1"/,
      );
    } finally {
      await backend.install(
        'pgtls.auto.conf',
        `listen_addresses = '127.0.0.1'\nport = '${backend.port}'\nunix_socket_directories = '${backend.socketDir}'\nssl = 'on'\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n`,
      );
      await backend.reload();
    }
  });

  test('prefer: TLS when the backend offers it, plaintext when it answers N', async () => {
    const tls = await through(backend, { upstream_sslmode: 'prefer' });
    assert.equal(tls.out, 't', tls.err);
    const plain = await through(plainBackend, { upstream_sslmode: 'prefer' });
    assert.equal(plain.out, 'f', plain.err);
  });

  test('require: a backend without TLS is refused (08006 to the client, the reason in the log)', async () => {
    const r = await through(plainBackend, { upstream_sslmode: 'require' });
    assert.match(r.err, /FATAL: {2}could not connect to the database server behind the gateway/);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(r.g.records.at(-1)?.upstream_error, 'server does not support SSL, but SSL was required');
  });
});
