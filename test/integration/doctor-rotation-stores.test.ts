/**
 * `doctor --rotation` on Azure's roots says which store it judged — this client's sslrootcert file or the system
 * store — and reports separately, as a fact of this Node release, which of the roots Node's bundled store lacks.
 * Nothing assumes a store's contents: the expectations come from an independent count with node:crypto.
 * The server is a closed loopback port: the store alone is judged ("server-unreachable").
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { rootCertificates } from 'node:tls';
import { type RotationFinding, rotation } from '../../src/doctor/rotation.js';
import { createRootCA } from '../../src/pki/generate.js';
import { AZURE_ROOTS, findKnownRoots, nodeRoots, systemRoots } from '../../src/pki/roots.js';
import { tempDir } from '../support/cert-helpers.js';
import { freePort } from '../support/postgres.js';

const inNode = new Set(
  rootCertificates.map((p) => new X509Certificate(p).fingerprint256.replace(/:/g, '').toLowerCase()),
);
const codes = (f: readonly RotationFinding[], code: string) => f.filter((x) => x.code === code).map((x) => x.message);

test("the roots in a file: found in 'the file …'; Node's gaps reported for exactly the roots its store lacks", async () => {
  const dir = await tempDir();
  const real = findKnownRoots(AZURE_ROOTS, [...nodeRoots(), ...(await systemRoots())]).filter((r) => r.cert);
  assert.ok(real.length > 0, 'neither store has any of the three roots');
  const file = `${dir}/azure.pem`;
  writeFileSync(file, real.map((r) => r.cert!.toString('pem')).join('\n'));
  const port = await freePort();
  const r = await rotation(`host=127.0.0.1 port=${port} sslmode=verify-full sslrootcert=${file}`, { env: {} });
  assert.deepEqual(
    codes(r.findings, 'azure-root-present'),
    real.map((x) => `${x.root.name} is in this client's store, the file ${file}`),
  );
  assert.equal(codes(r.findings, 'azure-root-missing').length, 3 - real.length);
  const gaps = codes(r.findings, 'azure-root-not-in-node-store');
  assert.deepEqual(
    gaps.map((g) => g.split(' is not in ')[0]),
    AZURE_ROOTS.filter((x) => !inNode.has(x.sha256)).map((x) => x.name),
  );
  for (const g of gaps)
    assert.match(g, new RegExp(`is not in Node ${process.version.replace(/\./g, '\\.')}'s bundled store`));
  assert.ok(r.findings.some((f) => f.code === 'server-unreachable'));
});

test('a lookalike root in the file: all three missing, each naming the file', async () => {
  const dir = await tempDir();
  const fake = await createRootCA({ subject: { CN: 'DigiCert Global Root G2', O: 'DigiCert Inc' } });
  const file = `${dir}/fake.pem`;
  writeFileSync(file, fake.certPem);
  const r = await rotation(`host=127.0.0.1 port=${await freePort()} sslmode=verify-full sslrootcert=${file}`, {
    env: {},
  });
  assert.equal(r.ready, false);
  assert.deepEqual(
    codes(r.findings, 'azure-root-missing'),
    AZURE_ROOTS.map(
      (x) =>
        `${x.name} is not in this client's store, the file ${file}: Azure servers can move to it (root migration, read replicas)`,
    ),
  );
});

test("sslrootcert=system: the findings name the system store's file", async () => {
  const r = await rotation(`host=127.0.0.1 port=${await freePort()} sslmode=verify-full sslrootcert=system`, {
    env: {},
  });
  const sys = findKnownRoots(AZURE_ROOTS, await systemRoots({ dir: '/nonexistent' }));
  const present = codes(r.findings, 'azure-root-present');
  assert.deepEqual(
    present.map((m) => m.split(' is in ')[0]),
    sys.filter((x) => x.cert).map((x) => x.root.name),
  );
  for (const m of present)
    assert.match(m, /is in this client's store, the system store \(\/etc\/ssl\/certs\/ca-certificates\.crt\)$/);
});
