/**
 * pgtls/client vs libpq 18 on other servers: a TLS 1.3-only server, an ssl=off server, and the ~/.postgresql
 * defaults (root.crt, root.crl, postgresql.crt, postgresql.key) read from a temporary HOME.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  type Pki,
  type SslCluster,
  makePki,
  pgtlsOutcome,
  psqlOutcome,
  startSslCluster,
} from '../support/client-fixtures.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';

let pki: Pki;
let tls13: SslCluster;
let plain: TestCluster;

before(async () => {
  pki = await makePki();
  tls13 = await startSslCluster(pki, { ssl_min_protocol_version: 'TLSv1.3' });
  plain = await startTestCluster({
    hba: ['local all all trust', 'host all all 127.0.0.1/32 trust'],
    settings: { ssl: 'off' },
  });
});
after(async () => {
  await tls13?.destroy();
  await plain?.destroy();
});

async function same(conninfo: string, env: Record<string, string> = {}, expect?: string): Promise<string | undefined> {
  const libpq = await psqlOutcome(conninfo, env);
  const ours = await pgtlsOutcome(conninfo, env);
  const kind = libpq.result === 'refused' ? 'refused' : libpq.tls ? 'tls' : 'plain';
  if (expect && expect !== kind) return `${conninfo}: expected ${expect}, libpq gave ${JSON.stringify(libpq)}`;
  if (JSON.stringify(libpq) !== JSON.stringify(ours)) {
    return `${conninfo} ${JSON.stringify(env)}\n  libpq: ${JSON.stringify(libpq)}\n  pgtls: ${JSON.stringify(ours)}`;
  }
  return undefined;
}

test('TLS 1.3-only server: version bounds and the protocol-version hint match libpq', async () => {
  const b = `host=127.0.0.1 port=${tls13.port} user=postgres dbname=postgres`;
  const problems = (
    await Promise.all(
      [
        [`${b} sslmode=require`, 'tls'],
        [`${b} sslmode=require ssl_max_protocol_version=TLSv1.2`, 'refused'],
        [`${b} sslmode=prefer ssl_max_protocol_version=TLSv1.2`, 'plain'],
        [`${b} sslmode=require ssl_min_protocol_version=TLSv1.3`, 'tls'],
        [`${b} sslmode=require sslnegotiation=direct ssl_max_protocol_version=TLSv1.2`, 'refused'],
      ].map(async ([c, e]) => same(c!, {}, e)),
    )
  ).filter((x) => x !== undefined);
  assert.deepEqual(problems, []);
});

test('ssl=off server: require refuses with libpq message, prefer/allow fall back to plaintext', async () => {
  const b = `host=127.0.0.1 port=${plain.port} user=postgres dbname=postgres`;
  const problems: string[] = [];
  for (const [c, e] of [
    [`${b} sslmode=disable`, 'plain'],
    [`${b} sslmode=allow`, 'plain'],
    [`${b} sslmode=prefer`, 'plain'],
    [`${b} sslmode=require`, 'refused'],
    [`${b} sslmode=verify-full`, 'refused'],
    [`${b} sslmode=require sslnegotiation=direct`, 'refused'],
    [`${b} requiressl=1`, 'refused'],
    [`postgresql://postgres@127.0.0.1:${plain.port}/postgres?ssl=true`, 'refused'],
  ] as const) {
    const p = await same(c, {}, e);
    if (p) problems.push(p);
  }
  const r = await pgtlsOutcome(`${b} sslmode=require`);
  assert.deepEqual(r, {
    result: 'refused',
    message: `connection to server at "127.0.0.1", port ${plain.port} failed: server does not support SSL, but SSL was required\n`,
  });
  assert.deepEqual(problems, []);
});

test('~/.postgresql defaults (root.crt, root.crl, postgresql.crt/key) with a temporary HOME', async () => {
  const home = mkdtempSync(join(tmpdir(), 'pgtls-client-home-'));
  const dot = join(home, '.postgresql');
  mkdirSync(dot);
  const b = `host=localhost port=${tls13.port} dbname=postgres`;
  const problems: string[] = [];
  const check = async (c: string, e: string) => {
    const p = await same(c, { HOME: home }, e);
    if (p) problems.push(p);
  };
  // no files: verify-full names the default path in libpq's message
  await check(`${b} user=postgres sslmode=verify-full`, 'refused');
  // root.crt present: require verifies the chain (an unrelated root refuses), verify-full passes with the right one
  copyFileSync(pki.files['other-root.crt']!, join(dot, 'root.crt'));
  await check(`${b} user=postgres sslmode=require`, 'refused');
  await check(`${b} user=postgres sslmode=prefer`, 'plain');
  copyFileSync(pki.files['root.crt']!, join(dot, 'root.crt'));
  await check(`${b} user=postgres sslmode=verify-full`, 'tls');
  await check(`${b} user=postgres`, 'tls');
  // root.crl: a CRL for the root only makes every intermediate-issued certificate fail (no CRL for its issuer)
  copyFileSync(pki.files['crl-root-only.pem']!, join(dot, 'root.crl'));
  await check(`${b} user=postgres sslmode=verify-full`, 'refused');
  copyFileSync(pki.files['crl-clean.pem']!, join(dot, 'root.crl'));
  await check(`${b} user=postgres sslmode=verify-full`, 'tls');
  // client certificate and key from ~/.postgresql; key permissions enforced
  copyFileSync(pki.files['client.crt']!, join(dot, 'postgresql.crt'));
  copyFileSync(pki.files['client.key']!, join(dot, 'postgresql.key'));
  chmodSync(join(dot, 'postgresql.key'), 0o600);
  await check(`${b} user=certuser sslmode=verify-full`, 'tls');
  chmodSync(join(dot, 'postgresql.key'), 0o644);
  await check(`${b} user=certuser sslmode=verify-full`, 'refused');
  await check(`${b} user=certuser sslmode=verify-full sslcertmode=disable`, 'refused');
  chmodSync(join(dot, 'postgresql.key'), 0o600);
  // environment overrides the defaults
  await check(`${b} user=postgres sslmode=verify-full`, 'tls');
  problems.push(
    ...[await same(`${b} user=postgres`, { HOME: home, PGSSLROOTCERT: pki.files['other-root.crt']! }, 'plain')].filter(
      (x): x is string => x !== undefined,
    ),
  );
  assert.deepEqual(problems, []);
});

test('connect(): facts for SSLRequest refused (N → plaintext), direct TLS with ALPN, and a verification failure', async () => {
  const { connect, resolve } = await import('../../src/client/index.js');
  const { cleanEnv } = await import('../support/clients.js');
  const env = cleanEnv() as Record<string, string>;
  const plainPlan = resolve(`host=127.0.0.1 port=${plain.port} sslmode=prefer`, env);
  const a = await connect(plainPlan);
  a.socket.destroy();
  assert.equal(a.facts.method, 'plain');
  assert.equal(a.facts.sslResponse, 'N');
  assert.equal(a.facts.tls, undefined);
  assert.ok(plainPlan.steps.some((s) => s.startsWith('sslmode=prefer')));

  const directConninfo = `host=localhost port=${tls13.port} sslmode=verify-full sslnegotiation=direct sslrootcert=${pki.files['root.crt']}`;
  const direct = resolve(directConninfo, env);
  const keylog = join(mkdtempSync(join(tmpdir(), 'pgtls-keylog-')), 'keys.log');
  const b = await connect(resolve(`${directConninfo} sslkeylogfile=${keylog}`, env));
  b.socket.destroy();
  assert.match(readFileSync(keylog, 'utf8'), /^CLIENT_HANDSHAKE_TRAFFIC_SECRET /m);
  assert.equal(b.facts.method, 'direct');
  assert.equal(b.facts.sslResponse, undefined);
  assert.equal(b.facts.tls?.alpn, 'postgresql');
  assert.equal(b.facts.tls?.protocol, 'TLSv1.3');
  assert.equal(b.facts.tls?.verified, 'chain+host');
  assert.equal(b.facts.tls?.rootSource, pki.files['root.crt']);
  // the chain as OpenSSL built it: leaf, intermediate (sent by the server), root (from sslrootcert)
  assert.deepEqual(
    b.facts.tls?.peerChain.map((c) => c.subject.replace(/\n/g, ',')),
    ['CN=localhost', 'CN=pgtls test intermediate', 'CN=pgtls test root'],
  );

  await tls13.use('expired');
  try {
    const c = resolve(`host=localhost port=${tls13.port} sslmode=verify-ca sslrootcert=${pki.files['root.crt']}`, env);
    await assert.rejects(connect(c), (err: unknown) => {
      const e = err as import('../../src/client/errors.js').ClientError;
      assert.equal(e.code, 'PGTLS_ERR_CLIENT_CONNECT');
      assert.equal(
        e.libpqMessage,
        `connection to server at "localhost" (127.0.0.1), port ${tls13.port} failed: SSL error: certificate verify failed\n`,
      );
      assert.equal(e.reason, 'certificate has expired (CERT_HAS_EXPIRED)');
      assert.equal(e.attempts.length, 1);
      return true;
    });
    // require without a root file does not verify: the expired certificate is accepted, and the facts say so
    const d = await connect(resolve(`host=localhost port=${tls13.port} sslmode=require`, env));
    d.socket.destroy();
    assert.equal(d.facts.tls?.verified, 'none');
  } finally {
    await tls13.use('good');
  }
});

test('sslcertmode=require: whether the server asked for a certificate is read from its handshake (TLS 1.2 and 1.3)', async () => {
  const srv = await startSslCluster(pki);
  try {
    const base = `host=localhost port=${srv.port} dbname=postgres sslmode=require sslcertmode=require`;
    const withCert = `${base} user=postgres sslcert=${pki.files['client.crt']} sslkey=${pki.files['client.key']}`;
    const problems: string[] = [];
    const check = async (c: string, e: string) => {
      const p = await same(c, {}, e);
      if (p) problems.push(p);
    };
    // ssl_ca_file set: the server asks
    for (const v of ['', ' ssl_max_protocol_version=TLSv1.2']) {
      await check(`${withCert}${v}`, 'tls');
      await check(`${base} user=postgres${v}`, 'refused');
    }
    // no ssl_ca_file: the server never asks, and libpq refuses even with a certificate configured
    await srv.sql("alter system set ssl_ca_file = ''");
    await srv.sql('select pg_reload_conf()');
    await new Promise((r) => setTimeout(r, 300));
    for (const v of ['', ' ssl_max_protocol_version=TLSv1.2']) {
      await check(`${withCert}${v}`, 'refused');
      await check(`${base} user=postgres${v}`, 'refused');
      await check(`${withCert.replace('sslcertmode=require', 'sslcertmode=allow')}${v}`, 'tls');
    }
    assert.deepEqual(problems, []);
  } finally {
    await srv.destroy();
  }
});
