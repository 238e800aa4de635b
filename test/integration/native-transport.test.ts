/**
 * The native transport (src/tls/native.ts, native/) behind the seam, side by side with a Node `tls` implementation
 * of the same seam, driven by real clients (psql with libpq 15 and 18, node-postgres, openssl s_client) through a
 * tiny relay (test/support/native-harness.ts) to a real PostgreSQL 18. PostgreSQL itself, given the same ssl_ca_file
 * and ssl_crl_file, is the oracle for what a client sees when its certificate does not verify.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.js';
import type { ClientTransport } from '../../src/gateway/transport.js';
import { type TlsMaterial, type TlsSettings, loadTlsMaterial } from '../../src/tls/context.js';
import { loadNativeTransport, nativeUnavailableReason } from '../../src/tls/native.js';
import { type Libpq, type RunResult, psql, sClient } from '../support/clients.js';
import { type GatewayFixtures, type Pair, makeFixtures } from '../support/gateway-fixtures.js';
import { type Relay, type RelayResult, nodeTransport, startRelay } from '../support/native-harness.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let base: TlsSettings;
const native = loadNativeTransport();

before(async () => {
  assert.ok(native, `the native addon must be built for these tests: ${nativeUnavailableReason()}`);
  fx = await makeFixtures();
  cluster = await startTestCluster({
    files: {
      'server.crt': readFileSync(fx.server.cert),
      'server.key': readFileSync(fx.server.key),
      'client-ca.crt': readFileSync(fx.clientCa),
      'client.crl': readFileSync(fx.clientCrl),
    },
    settings: {
      ssl: 'on',
      ssl_cert_file: 'server.crt',
      ssl_key_file: 'server.key',
      ssl_ca_file: 'client-ca.crt',
      ssl_crl_file: 'client.crl',
    },
    hba: ['local all all trust', 'host all all 127.0.0.1/32 trust', 'host all all ::1/128 trust'],
  });
  base = { ...loadConfig({ env: {} }), ssl_cert_file: fx.server.cert, ssl_key_file: fx.server.key };
});
after(async () => {
  await cluster?.destroy();
});

function material(s: Partial<TlsSettings> = {}): TlsMaterial {
  return loadTlsMaterial({ ...base, ...s });
}

async function withRelay<T>(t: ClientTransport, m: TlsMaterial, fn: (r: Relay) => Promise<T>, unix = false) {
  const relay = await startRelay(
    t,
    () => m,
    unix ? { path: join(cluster.socketDir, `.s.PGSQL.${cluster.port}`) } : { port: cluster.port },
  );
  try {
    return await fn(relay);
  } finally {
    await relay.close();
  }
}

function conninfo(port: number, cert?: Pair, extra = ''): string {
  const c = cert ? `sslcert=${cert.cert} sslkey=${cert.key}` : 'sslcert=/nonexistent sslkey=/nonexistent';
  return `host=localhost port=${port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${fx.root} ${c} ${extra}`;
}

/** What a user sees: connected, or libpq's SSL error line. */
function outcome(r: RunResult): string {
  if (r.code === 0) return 'connected';
  const ssl = /(SSL error: .*|SSL SYSCALL error: .*|server closed the connection unexpectedly)/.exec(r.stderr);
  return ssl ? ssl[1]! : r.stderr.trim();
}

const transports = (): [string, ClientTransport][] => [
  ['native', native!],
  ['node', nodeTransport],
];

for (const [name, t] of transports()) {
  describe(`${name} transport`, () => {
    for (const libpq of [15, 18] as Libpq[]) {
      test(`psql (libpq ${libpq}) with verify-full runs queries through the relay`, async () => {
        await withRelay(t, material(), async (relay) => {
          const r = await psql(
            conninfo(relay.port),
            "select count(*) from generate_series(1, 50000); select string_agg(x::text, ',') from generate_series(1,3) x; select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            { libpq },
          );
          assert.equal(r.code, 0, r.stderr);
          // the backend hop is plaintext: PostgreSQL sees a non-SSL connection from the relay
          assert.equal(r.stdout, '50000\n1,2,3\nf\n');
          const res = await relay.next();
          assert.equal(res.ok, true, res.reason);
          assert.equal(res.spliced, name === 'native');
          assert.equal(res.facts?.version, 'TLSv1.3');
          assert.equal(res.facts?.cipher, 'TLS_AES_256_GCM_SHA384');
          assert.equal(res.facts?.bits, 256);
          assert.equal(res.facts?.sni, 'localhost');
          // libpq 17+ sends ALPN "postgresql"; libpq 15 sends none
          assert.equal(res.facts?.alpn, libpq === 18 ? 'postgresql' : undefined);
          assert.ok((res.stats?.bytesFromBackend ?? 0) > 200, JSON.stringify(res.stats));
        });
      });
    }

    test('node-postgres: 8 MB each way, and a second query on the same connection', async () => {
      await withRelay(t, material(), async (relay) => {
        const client = new pg.Client({
          host: 'localhost',
          port: relay.port,
          user: 'postgres',
          database: 'postgres',
          ssl: { ca: readFileSync(fx.root, 'utf8'), servername: 'localhost' },
        });
        await client.connect();
        const big = 'y'.repeat(8_000_000);
        const up = await client.query('select length($1::text) as n, md5($1::text) as h', [big]);
        assert.equal(up.rows[0].n, 8_000_000);
        const down = await client.query("select repeat('z', 8000000) as s");
        assert.equal(down.rows[0].s.length, 8_000_000);
        assert.equal(down.rows[0].s, 'z'.repeat(8_000_000));
        const again = await client.query('select 40 + 2 as v');
        assert.equal(again.rows[0].v, 42);
        await client.end();
        const res = await relay.next();
        assert.equal(res.ok, true, res.reason);
        assert.ok((res.stats?.bytesFromClient ?? 0) > 8_000_000);
        assert.ok((res.stats?.bytesFromBackend ?? 0) > 8_000_000);
      });
    });

    test('openssl s_client, direct TLS with ALPN postgresql', async () => {
      await withRelay(t, material(), async (relay) => {
        const r = await sClient(relay.port, ['-alpn', 'postgresql', '-servername', 'localhost']);
        assert.match(r.stdout + r.stderr, /Protocol version: TLSv1\.3/);
        const res = await relay.next();
        assert.equal(res.ok, true, res.reason);
        assert.equal(res.facts?.alpn, 'postgresql');
        assert.equal(res.facts?.sni, 'localhost');
        assert.equal(res.error, 'the client closed');
      });
    });

    test('direct TLS offering another protocol gets no_application_protocol', async () => {
      await withRelay(t, material(), async (relay) => {
        const r = await sClient(relay.port, ['-alpn', 'http/1.1']);
        assert.match(r.stderr, /no application protocol/);
        const res = await relay.next();
        assert.deepEqual(res, { ok: false, reason: 'no application protocol' });
      });
    });

    test('ssl_min_protocol_version = TLSv1.3 refuses TLS 1.2: "unsupported protocol"', async () => {
      await withRelay(t, material({ ssl_min_protocol_version: 'TLSv1.3' }), async (relay) => {
        const r = await sClient(relay.port, ['-alpn', 'postgresql', '-tls1_2']);
        assert.match(r.stderr, /alert protocol version/);
        assert.deepEqual(await relay.next(), { ok: false, reason: 'unsupported protocol' });
        const ok = await sClient(relay.port, ['-alpn', 'postgresql', '-tls1_3']);
        assert.match(ok.stdout + ok.stderr, /Protocol version: TLSv1\.3/);
        assert.equal((await relay.next()).ok, true);
      });
    });

    test('ssl_ciphers is honoured on TLS 1.2: the named suite, or "no shared cipher"', async () => {
      const m = material({ ssl_ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', ssl_max_protocol_version: 'TLSv1.2' });
      await withRelay(t, m, async (relay) => {
        const bad = await sClient(relay.port, ['-alpn', 'postgresql', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384']);
        assert.match(bad.stderr, /handshake failure/);
        assert.deepEqual(await relay.next(), { ok: false, reason: 'no shared cipher' });
        const good = await sClient(relay.port, ['-alpn', 'postgresql']);
        assert.match(good.stdout + good.stderr, /Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256/);
        const res = await relay.next();
        assert.equal(res.facts?.version, 'TLSv1.2');
        assert.equal(res.facts?.cipher, 'ECDHE-ECDSA-AES128-GCM-SHA256');
        assert.equal(res.facts?.bits, 128);
      });
    });

    test('plaintext after the S answer: "wrong version number"', async () => {
      await withRelay(t, material(), async (relay) => {
        const { connect } = await import('node:net');
        const s = connect(relay.port, '127.0.0.1');
        const startup = Buffer.from('0000000804d2162f', 'hex');
        s.write(startup);
        await new Promise((r) => s.once('data', r));
        // a StartupMessage where a ClientHello belongs
        s.write(Buffer.from('0000002c00030000757365720070677400646174616261736500706774000000', 'hex'));
        const res = await relay.next();
        s.destroy();
        assert.deepEqual(res, { ok: false, reason: 'wrong version number' });
      });
    });
  });
}

describe('native transport only', () => {
  test('splice to PostgreSQL over its Unix socket', async () => {
    await withRelay(
      native!,
      material(),
      async (relay) => {
        const r = await psql(conninfo(relay.port), 'select 6 * 7', { libpq: 18 });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, '42\n');
        const res = await relay.next();
        assert.equal(res.spliced, true);
      },
      true,
    );
  });

  test('a new material (reload) takes effect for new connections', async () => {
    let m = material();
    const relay = await startRelay(native!, () => m, { port: cluster.port });
    try {
      const a = await sClient(relay.port, ['-alpn', 'postgresql']);
      assert.match(a.stdout + a.stderr, /Signature type: ECDSA/);
      m = material({ ssl_cert_file: fx.serverRsa.cert, ssl_key_file: fx.serverRsa.key });
      const b = await sClient(relay.port, ['-alpn', 'postgresql']);
      assert.match(b.stdout + b.stderr, /Signature type: RSA-PSS/);
    } finally {
      await relay.close();
    }
  });
});

describe('client certificates (ssl_ca_file + ssl_crl_file), PostgreSQL 18 as the oracle', () => {
  const certMaterial = () => material({ ssl_ca_file: fx.clientCa, ssl_crl_file: fx.clientCrl });

  test('a good certificate: connected, its DER in the facts', async () => {
    await withRelay(native!, certMaterial(), async (relay) => {
      const r = await psql(conninfo(relay.port, fx.clients.alice!), 'select 1', { libpq: 18 });
      assert.equal(outcome(r), 'connected', r.stderr);
      const res = await relay.next();
      const der = new X509Certificate(readFileSync(fx.clients.alice!.cert)).raw;
      assert.ok(res.facts?.peerCertificate?.equals(der));
      assert.equal(res.facts?.peerVerifyError, undefined);
    });
  });

  const refused: [string, () => Pair, RegExp][] = [
    ['from an unrelated CA', () => fx.unrelatedClient, /SSL error: .*unknown ca/],
    ['revoked (ssl_crl_file)', () => fx.clients.mallory!, /SSL error: .*certificate revoked/],
  ];
  for (const [what, cert, alert] of refused) {
    for (const libpq of [15, 18] as Libpq[]) {
      test(`a certificate ${what} fails the handshake with OpenSSL's alert, as PostgreSQL (libpq ${libpq})`, async () => {
        await withRelay(native!, certMaterial(), async (relay) => {
          const [direct, viaNative] = await Promise.all([
            psql(conninfo(cluster.port, cert()), 'select 1', { libpq }),
            psql(conninfo(relay.port, cert()), 'select 1', { libpq }),
          ]);
          assert.match(outcome(direct), alert);
          assert.equal(outcome(viaNative), outcome(direct));
          const res: RelayResult = await relay.next();
          assert.deepEqual(res, { ok: false, reason: 'certificate verify failed' });
        });
      });
    }
  }

  test("Node's transport (the documented difference): the handshake completes, the verify error is a fact", async () => {
    await withRelay(nodeTransport, certMaterial(), async (relay) => {
      const r = await sClient(relay.port, [
        '-alpn',
        'postgresql',
        '-cert',
        fx.unrelatedClient.cert,
        '-key',
        fx.unrelatedClient.key,
      ]);
      assert.match(r.stdout + r.stderr, /Protocol version: TLSv1\.3/);
      const res = await relay.next();
      assert.equal(res.ok, true);
      assert.equal(res.facts?.peerVerifyError, 'unable to verify the first certificate');
    });
  });
});
