/**
 * `pgtls probe` on chains that do not verify here, against real PostgreSQL 18 servers with generated certificates:
 * a private CA whose root this machine does not trust (leaf issued by the root, leaf + intermediate, root sent) must
 * be reported as such with --rootcert suggested — not as a missing intermediate, which is said only when the server
 * sends a leaf whose issuer is not the user's root. psql (libpq 18) checks each verify-ca/verify-full verdict.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRootCA, createServerCert } from '../../src/pki/generate.js';
import { psql } from '../support/clients.js';
import { type Pki, makePki, pgtls, pgtlsJson, startServer } from '../support/doctor-servers.js';
import { SUPERUSER_PASSWORD, type TestCluster } from '../support/postgres.js';

interface ProbeJson {
  chain?: { certificates: { subject: string }[] };
  missingIntermediate?: boolean;
  missingIntermediateEvidence?: { store: string; roots: string[] };
  untrustedRoot?: { subject: string; sent: boolean; selfSignedLeaf: boolean; leafOnly: boolean };
  trust: { label: string; verified: boolean }[];
  sslmodes: { sslmode: string; connects: boolean; why: string }[];
}

const connects = (r: ProbeJson, m: string) => r.sslmodes.find((x) => x.sslmode === m)!.connects;

async function psqlConnects(port: number, sslmode: string, rootcert: string): Promise<boolean> {
  const r = await psql(
    `host=localhost port=${port} user=postgres dbname=postgres sslmode=${sslmode} sslrootcert=${rootcert}`,
    'select 1',
    { libpq: 18, env: { PGPASSWORD: SUPERUSER_PASSWORD } },
  );
  return r.code === 0;
}

const ROOT = 'CN=pgtls Test Root CA, O=pgtls tests';
const INTER = 'CN=pgtls Test Intermediate CA, O=pgtls tests';
const PRIVATE = 'CN=Private Root CA, O=example';

describe('probe: where an unverified chain ends (private root vs missing intermediate)', () => {
  let pki: Pki;
  let privateRoot: string;
  const servers: TestCluster[] = [];
  const start = async (chain: string[], key: string) => {
    const pg = await startServer(pki, { chain, key });
    servers.push(pg);
    return pg;
  };
  const probe = (pg: TestCluster, ...args: string[]) =>
    pgtlsJson<ProbeJson>(['probe', `localhost:${pg.port}`, ...args]).then((r) => r.json);
  const human = (pg: TestCluster, ...args: string[]) =>
    pgtls(['probe', `localhost:${pg.port}`, ...args]).then((r) => r.stdout);

  before(async () => {
    pki = await makePki();
    const root = await createRootCA({ subject: { CN: 'Private Root CA', O: 'example' } });
    privateRoot = pki.file('private-root.crt', root.certPem);
    const leaf = await createServerCert(root, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
    pki.file('direct-leaf.crt', leaf.certPem);
    pki.file('direct-leaf.key', leaf.keyPem, 0o600);
  });
  after(async () => {
    for (const s of servers) await s.destroy();
  });

  test('private CA, server certificate issued by the root itself: an untrusted root, not a missing intermediate', async () => {
    const { readFileSync } = await import('node:fs');
    const pg = await start(
      [readFileSync(`${pki.dir}/direct-leaf.crt`, 'utf8')],
      readFileSync(`${pki.dir}/direct-leaf.key`, 'utf8'),
    );
    const j = await probe(pg);
    assert.equal(j.chain?.certificates.length, 1);
    assert.equal(j.missingIntermediate, undefined);
    assert.deepEqual(j.untrustedRoot, { subject: PRIVATE, sent: false, selfSignedLeaf: false, leafOnly: true });
    const out = await human(pg);
    assert.doesNotMatch(out, /missing its intermediate/);
    assert.match(
      out,
      /✗ the chain ends at "CN=Private Root CA, O=example", the issuer of the server's certificate, which no trust store here holds: if it is your private CA's root, give it with --rootcert FILE \(clients: sslrootcert=FILE\)/,
    );
    // With that root the chain is complete: probe says so, and psql agrees.
    const ok = await probe(pg, '--rootcert', privateRoot);
    assert.equal(ok.untrustedRoot, undefined);
    assert.equal(ok.missingIntermediate, undefined);
    assert.equal(connects(ok, 'verify-full'), true);
    assert.equal(await psqlConnects(pg.port, 'verify-full', privateRoot), true);
    assert.match(await human(pg, '--rootcert', privateRoot), /✓ chain complete and in order/);
  });

  test('private CA, leaf + intermediate sent: the chain ends at a root this machine does not trust', async () => {
    const pg = await start([pki.server.certPem, pki.inter.certPem], pki.server.keyPem);
    const j = await probe(pg);
    assert.equal(j.missingIntermediate, undefined);
    assert.deepEqual(j.untrustedRoot, { subject: ROOT, sent: false, selfSignedLeaf: false, leafOnly: false });
    assert.equal(connects(j, 'verify-ca'), false);
    const out = await human(pg);
    assert.match(
      out,
      /✗ the chain ends at a root this machine does not trust, "CN=pgtls Test Root CA, O=pgtls tests" \(a private CA\?\): give it with --rootcert FILE/,
    );
    assert.doesNotMatch(out, /chain complete and in order/);
    // Complete chain with --rootcert: fine, nothing about the chain's end.
    const root = `${pki.dir}/root.crt`;
    const ok = await probe(pg, '--rootcert', root);
    assert.equal(ok.untrustedRoot, undefined);
    assert.equal(ok.missingIntermediate, undefined);
    assert.equal(connects(ok, 'verify-full'), await psqlConnects(pg.port, 'verify-full', root));
    assert.equal(connects(ok, 'verify-full'), true);
    const okOut = await human(pg, '--rootcert', root);
    assert.match(okOut, /✓ chain complete and in order/);
    assert.doesNotMatch(okOut, /chain ends at|missing its intermediate/);
  });

  test('private CA, root sent (self-signed) but not trusted here: named as the untrusted root that was sent', async () => {
    const pg = await start([pki.server.certPem, pki.inter.certPem, pki.root.certPem], pki.server.keyPem);
    const j = await probe(pg);
    assert.deepEqual(j.untrustedRoot, { subject: ROOT, sent: true, selfSignedLeaf: false, leafOnly: false });
    assert.match(
      await human(pg),
      /✗ the chain ends at the root "CN=pgtls Test Root CA, O=pgtls tests", sent by the server, which no trust store here holds \(a private CA\?\): if you trust it, give it with --rootcert FILE/,
    );
  });

  test('really missing intermediate: leaf issued by the intermediate, sent alone; --rootcert has the root', async () => {
    const pg = await start([pki.server.certPem], pki.server.keyPem);
    const root = `${pki.dir}/root.crt`;
    const j = await probe(pg, '--rootcert', root);
    assert.equal(j.missingIntermediate, true);
    assert.deepEqual(j.missingIntermediateEvidence, { store: root, roots: [ROOT] });
    assert.equal(j.untrustedRoot, undefined);
    assert.equal(connects(j, 'verify-ca'), false);
    assert.equal(await psqlConnects(pg.port, 'verify-ca', root), false);
    assert.match(
      await human(pg, '--rootcert', root),
      new RegExp(
        `✗ the server sends only its own certificate, and its issuer "${INTER}" is not the root in ${root} \\("${ROOT}"\\): the server is missing its intermediate — append "${INTER}" to ssl_cert_file after the server certificate`,
      ),
    );
    // Without any root of the user's, nothing here can tell an intermediate from a private root: no such claim.
    const blind = await probe(pg);
    assert.equal(blind.missingIntermediate, undefined);
    assert.deepEqual(blind.untrustedRoot, { subject: INTER, sent: false, selfSignedLeaf: false, leafOnly: true });
  });
});
