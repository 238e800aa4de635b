/**
 * doctor when the server refuses the client's certificate, in both forms a client meets: PostgreSQL 18 sends a TLS
 * alert during the handshake ("certificate revoked", "unknown ca"), and so does the pgtls gateway on its native data
 * plane (the default when the addon built); on Node's tls the gateway completes the handshake and then sends FATAL
 * 08P01 "could not accept SSL connection: certificate verify failed" with OpenSSL's reason as DETAIL. Both are the client certificate's fault, never the server chain's; a wrong sslrootcert still is the chain's.
 * psql (libpq 18) runs with every connection string and must agree on the outcome and on libpq's message.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { assertCause, diagnose } from '../support/doctor-run.js';
import { type GatewayFixtures, makeFixtures, sslClusterOptions } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const PW = { PGPASSWORD: SUPERUSER_PASSWORD };

describe('doctor: a refused client certificate is the client certificate, at the gateway and at PostgreSQL', () => {
  let fx: GatewayFixtures;
  let plain: TestCluster;
  let ssl: TestCluster;
  let gw: TestGateway;
  const targets: { name: string; port: () => number; refusal: RegExp }[] = [
    // PostgreSQL's own refusal: a TLS alert during the handshake, which libpq reports as an SSL error. The prefix is
    // the client's OpenSSL's: "sslv3 alert certificate revoked" up to 3.1, "ssl/tls alert …" from 3.2 (Node 22.23, 24 and
    // 26 ship OpenSSL 3.5; Node 20, 3.0).
    {
      name: 'PostgreSQL 18',
      port: () => ssl.port,
      refusal: /SSL error: (?:tlsv1|tlsv13|sslv3|ssl\/tls) alert /,
    },
    // The gateway's: the same alert on the native data plane; on Node's tls an ErrorResponse after the handshake
    // (src/gateway/refusals.ts clientCertVerifyFailed).
    {
      name: 'pgtls gateway',
      port: () => gw.port,
      get refusal() {
        return gw.gw.transport?.name === 'native'
          ? /SSL error: (?:tlsv1|tlsv13|sslv3|ssl\/tls) alert /
          : /FATAL: {2}could not accept SSL connection: certificate verify failed\nDETAIL: {2}/;
      },
    },
  ];
  const conn = (port: number, cert: { cert: string; key: string }, root = fx.root) =>
    `host=localhost port=${port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${root} sslcert=${cert.cert} sslkey=${cert.key}`;

  before(async () => {
    fx = await makeFixtures();
    const base = sslClusterOptions(fx);
    ssl = await startTestCluster({
      ...base,
      files: { ...base.files, 'client-ca.crt': readFileSync(fx.clientCa), 'client.crl': readFileSync(fx.clientCrl) },
      settings: { ...base.settings, ssl_ca_file: 'client-ca.crt', ssl_crl_file: 'client.crl' },
    });
    plain = await startTestCluster();
    gw = await startTestGateway(fx, plain, {
      ssl_ca_file: fx.clientCa,
      ssl_crl_file: fx.clientCrl,
      // Refused handshakes keep the gateway's authentication timer running; keep close() short.
      authentication_timeout: '3s',
    });
  });
  after(async () => {
    await gw?.close();
    await plain?.destroy();
    await ssl?.destroy();
  });

  for (const t of targets) {
    test(`${t.name}: a valid client certificate connects (the setup is right)`, async () => {
      const j = await diagnose(conn(t.port(), fx.clients.alice!), PW);
      assert.equal(j.ok, true, JSON.stringify(j.diagnosis));
      assert.equal(j.verified, true);
    });

    test(`${t.name}: revoked client certificate → client-certificate-rejected, not the server's chain`, async () => {
      const j = await diagnose(conn(t.port(), fx.clients.mallory!), PW);
      assert.match(j.libpqMessage ?? '', t.refusal);
      assertCause(j, 'client-certificate-rejected', 'client-certificate');
      assert.match(j.diagnosis!.cause, /rejected the client certificate ".*client-mallory\.crt" \(CN=mallory\)/);
      // The server's own reason: PostgreSQL's alert, or the DETAIL of the gateway's FATAL.
      assert.match(
        j.diagnosis!.cause,
        /(?:TLS alert "certificate revoked"|after the handshake \(certificate revoked\))/,
      );
      assert.match(j.diagnosis!.fix, /ssl_ca_file/);
      // The server's chain verified: the chain step says so and is not the failing one.
      const chain = j.steps.find((s) => s.stage === 'chain')!;
      assert.equal(chain.status, 'ok', JSON.stringify(chain));
    });

    test(`${t.name}: client certificate from an unknown CA → client-certificate-rejected`, async () => {
      const j = await diagnose(conn(t.port(), fx.unrelatedClient), PW);
      assert.match(j.libpqMessage ?? '', t.refusal);
      assertCause(j, 'client-certificate-rejected', 'client-certificate');
      assert.match(j.diagnosis!.cause, /\(CN=alice\)/);
      assert.match(
        j.diagnosis!.cause,
        /(?:TLS alert "unknown ca"|after the handshake \(unable to (?:get local issuer certificate|verify the first certificate)\))/,
      );
    });

    test(`${t.name}: control — a wrong sslrootcert is still the server's chain`, async () => {
      // The client CA did not issue the server's chain: libpq's own verification fails before any client cert.
      const j = await diagnose(conn(t.port(), fx.clients.alice!, fx.clientCa), PW);
      assert.match(j.libpqMessage ?? '', /SSL error: certificate verify failed/);
      assertCause(j, 'root-not-trusted', 'chain');
      assert.match(j.diagnosis!.cause, /does not contain the root CA the server's chain leads to/);
    });
  }
});
