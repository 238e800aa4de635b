/**
 * `pgtls probe` against real PostgreSQL 18 servers: a correct chain, a missing intermediate, a wrong order with the
 * root sent, hostssl-only pg_hba.conf, client certificates requested, ssl = off. Each sslmode verdict is checked
 * against what psql (libpq 18) actually does with the same files.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { psql } from '../support/clients.js';
import { type Pki, makePki, pgtls, pgtlsJson, startServer } from '../support/doctor-servers.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

interface ProbeJson {
  reachable: boolean;
  sslRequest?: { answer: string };
  plaintext?: { accepted: boolean | null; summary: string };
  directTls?: { supported: boolean };
  tls?: {
    ok: boolean;
    protocol?: string;
    cipher?: string;
    group?: string;
    certificateRequested?: boolean;
    chainAsSent?: boolean;
  };
  chain?: {
    certificates: { subject: string; ca: boolean }[];
    findings: { code: string; level: string }[];
    endsAtLeaf: boolean;
  };
  missingIntermediate?: boolean;
  hostname?: { ok: boolean; names: string[] };
  trust: { label: string; present: boolean; verified: boolean; error?: string; content?: { kind: string } }[];
  sslmodes: { sslmode: string; connects: boolean; why: string }[];
}

const mode = (r: ProbeJson, m: string) => r.sslmodes.find((x) => x.sslmode === m)!;

/** Does psql (libpq 18) connect with this sslmode and rootcert? */
async function psqlConnects(port: number, sslmode: string, rootcert?: string, host = 'localhost'): Promise<boolean> {
  const r = await psql(
    `host=${host} port=${port} user=postgres dbname=postgres sslmode=${sslmode}${rootcert ? ` sslrootcert=${rootcert}` : ''}`,
    'select 1',
    { libpq: 18, env: { PGPASSWORD: SUPERUSER_PASSWORD } },
  );
  return r.code === 0;
}

describe('probe', () => {
  let pki: Pki;
  const servers: TestCluster[] = [];
  before(async () => {
    pki = await makePki();
  });
  after(async () => {
    for (const s of servers) await s.destroy();
  });

  test('correct chain: everything connects with the root; chain as sent, complete; verdicts match psql', async () => {
    const pg = await startServer(pki);
    servers.push(pg);
    const root = `${pki.dir}/root.crt`;
    const { code, json } = await pgtlsJson<ProbeJson>([
      'probe',
      `localhost:${pg.port}`,
      '--rootcert',
      root,
      '--user',
      'postgres',
    ]);
    assert.equal(code, 0);
    assert.equal(json.sslRequest?.answer, 'S');
    assert.equal(json.tls?.ok, true);
    assert.equal(json.tls?.protocol, 'TLSv1.3');
    assert.equal(json.tls?.chainAsSent, true);
    assert.equal(json.tls?.certificateRequested, false);
    assert.equal(json.directTls?.supported, true);
    assert.deepEqual(
      json.chain?.certificates.map((c) => c.subject),
      ['CN=localhost', 'CN=pgtls Test Intermediate CA, O=pgtls tests'],
    );
    assert.deepEqual(
      json.chain?.findings.filter((f) => f.level !== 'info'),
      [],
    );
    assert.equal(json.hostname?.ok, true);
    assert.equal(json.trust.find((t) => t.label === root)?.verified, true);
    assert.equal(json.plaintext?.accepted, true); // default pg_hba.conf: host … scram-sha-256
    for (const m of ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']) {
      assert.equal(mode(json, m).connects, await psqlConnects(pg.port, m, root), `sslmode=${m} disagrees with psql`);
    }
    // Pinned intermediate: verify-* fail, and probe says why; psql agrees.
    const inter = `${pki.dir}/inter.crt`;
    const pinned = await pgtlsJson<ProbeJson>(['probe', `localhost:${pg.port}`, '--rootcert', inter]);
    assert.equal(mode(pinned.json, 'verify-full').connects, false);
    assert.match(mode(pinned.json, 'verify-full').why, /holds the intermediate "CN=pgtls Test Intermediate CA/);
    assert.equal(await psqlConnects(pg.port, 'verify-full', inter), false);
    // Wrong host name: the certificate has localhost and 127.0.0.1, not 127.0.0.2.
    const wrong = await pgtlsJson<ProbeJson>(['probe', `127.0.0.2:${pg.port}`, '--rootcert', root]);
    if (wrong.json.reachable) {
      assert.equal(wrong.json.hostname?.ok, false);
      assert.equal(mode(wrong.json, 'verify-ca').connects, true);
      assert.equal(mode(wrong.json, 'verify-full').connects, false);
      assert.match(mode(wrong.json, 'verify-full').why, /does not match host name "127\.0\.0\.2"/);
    }
    // Human output is readable and has no colour codes when not on a TTY.
    const human = await pgtls(['probe', `localhost:${pg.port}`, '--rootcert', root]);
    assert.equal(human.code, 0);
    assert.doesNotMatch(human.stdout, /\x1b\[/);
    assert.match(human.stdout, /SSLRequest\s+S: the server accepts TLS/);
    assert.match(human.stdout, /✓ verify-full/);
  });

  test('missing intermediate: only the server certificate is sent; verify-* fail like psql', async () => {
    const pg = await startServer(pki, { chain: [pki.server.certPem] });
    servers.push(pg);
    const root = `${pki.dir}/root.crt`;
    const { code, json } = await pgtlsJson<ProbeJson>(['probe', `localhost:${pg.port}`, '--rootcert', root]);
    assert.equal(code, 0); // require still connects
    assert.equal(json.chain?.certificates.length, 1);
    assert.equal(json.missingIntermediate, true);
    assert.equal(mode(json, 'verify-ca').connects, false);
    assert.equal(await psqlConnects(pg.port, 'verify-ca', root), false);
    assert.equal(mode(json, 'require').connects, await psqlConnects(pg.port, 'require'));
    const human = await pgtls(['probe', `localhost:${pg.port}`, '--rootcert', root]);
    assert.match(
      human.stdout,
      /the server is missing its intermediate — append "CN=pgtls Test Intermediate CA, O=pgtls tests" to ssl_cert_file/,
    );
  });

  test('wrong order and root sent: findings name them; OpenSSL still verifies (as psql does)', async () => {
    const pg = await startServer(pki, { chain: [pki.server.certPem, pki.root.certPem, pki.inter.certPem] });
    servers.push(pg);
    const root = `${pki.dir}/root.crt`;
    const { json } = await pgtlsJson<ProbeJson>(['probe', `localhost:${pg.port}`, '--rootcert', root]);
    const codes = json.chain?.findings.map((f) => f.code) ?? [];
    assert.ok(codes.includes('wrong-order'), codes.join());
    assert.ok(codes.includes('root-included'), codes.join());
    assert.equal(mode(json, 'verify-full').connects, await psqlConnects(pg.port, 'verify-full', root));
  });

  test('hostssl-only pg_hba.conf and a CA file: plaintext refused, client certificate requested', async () => {
    const pg = await startServer(pki, {
      hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256'],
      files: { 'ca.crt': pki.root.certPem },
      settings: { ssl_ca_file: 'ca.crt' },
    });
    servers.push(pg);
    const { json } = await pgtlsJson<ProbeJson>(['probe', `127.0.0.1:${pg.port}`, '--user', 'postgres']);
    assert.equal(json.plaintext?.accepted, false);
    assert.match(json.plaintext?.summary ?? '', /no pg_hba\.conf entry .* no encryption/);
    assert.equal(json.tls?.certificateRequested, true);
    assert.equal(mode(json, 'disable').connects, false);
    assert.equal(mode(json, 'allow').connects, true);
    assert.equal(await psqlConnects(pg.port, 'disable', undefined, '127.0.0.1'), false);
    assert.equal(await psqlConnects(pg.port, 'allow', undefined, '127.0.0.1'), true);
  });

  test("ssl = off: 'N', only the plaintext modes connect; unreachable port exits 1", async () => {
    const pg = await startTestCluster();
    servers.push(pg);
    const { code, json } = await pgtlsJson<ProbeJson>(['probe', `127.0.0.1:${pg.port}`]);
    assert.equal(code, 0);
    assert.equal(json.sslRequest?.answer, 'N');
    assert.deepEqual(
      json.sslmodes.filter((m) => m.connects).map((m) => m.sslmode),
      ['disable', 'allow', 'prefer'],
    );
    assert.match(mode(json, 'require').why, /answered N/);
    const port = pg.port;
    const closed = await pgtls(['probe', `127.0.0.1:${port + 1 === 65536 ? 1 : port + 1}`]);
    assert.equal(closed.code, 1);
    assert.match(closed.stdout, /cannot connect: ECONNREFUSED/);
  });

  test('legacy-only server (TLS 1.0–1.1): libpq defaults fail; probe still shows the chain; doctor explains the window', async () => {
    const rsa = await makePki({ keyType: 'rsa-2048' });
    const pg = await startServer(rsa, {
      settings: {
        ssl_min_protocol_version: 'TLSv1',
        ssl_max_protocol_version: 'TLSv1.1',
        ssl_ciphers: 'HIGH:!aNULL:@SECLEVEL=0',
      },
    });
    servers.push(pg);
    const { json } = await pgtlsJson<ProbeJson & { legacyTls?: { protocol: string } }>([
      'probe',
      `localhost:${pg.port}`,
      '--rootcert',
      `${rsa.dir}/root.crt`,
    ]);
    assert.equal(json.tls?.ok, false);
    assert.equal(json.legacyTls?.protocol, 'TLSv1.1');
    assert.equal(json.chain?.certificates.length, 2);
    assert.equal(mode(json, 'require').connects, false);
    assert.equal(mode(json, 'require').connects, await psqlConnects(pg.port, 'require'));
    assert.equal(mode(json, 'prefer').connects, true);
    const { diagnose, assertCause } = await import('../support/doctor-run.js');
    const j = await diagnose(`host=localhost port=${pg.port} user=postgres sslmode=require`, {
      PGPASSWORD: SUPERUSER_PASSWORD,
    });
    assertCause(j, 'tls-version-mismatch', 'tls');
    assert.match(j.diagnosis!.cause, /server accepts TLSv1 to TLSv1\.1/);
  });

  test('usage: --help, bad target', async () => {
    const h = await pgtls(['probe', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: pgtls probe HOST\[:PORT\]/);
    const bad = await pgtls(['probe', 'db:notaport']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /PGTLS_ERR_DOCTOR_TARGET/);
  });
});
