import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRootCA } from '../../src/pki/generate.js';
import { AZURE_ROOTS, findKnownRoots, nodeRoots, searchRoots, systemRoots } from '../../src/pki/roots.js';
import { put, tempDir } from '../support/cert-helpers.js';

test("Azure's three roots are in Node's store and in the system store, each by its fingerprint", async () => {
  const node = findKnownRoots(AZURE_ROOTS, nodeRoots());
  assert.deepEqual(
    node.map((r) => [r.root.name, r.foundIn]),
    AZURE_ROOTS.map((r) => [r.name, ['node']]),
  );
  const system = findKnownRoots(AZURE_ROOTS, await systemRoots());
  assert.ok(system.every((r) => r.cert && r.foundIn.includes('system')));
});

test('a lookalike with the same subject is not taken, and a missing root is reported as not found', async () => {
  const dir = await tempDir();
  const fake = await createRootCA({
    subject: { C: 'US', O: 'DigiCert Inc', OU: 'www.digicert.com', CN: 'DigiCert Global Root G2' },
  });
  const bundle = await put(dir, 'bundle.pem', fake.certPem);
  const store = await systemRoots({ bundles: [bundle], dir: `${dir}/none` });
  assert.equal(store.length, 1);
  const r = findKnownRoots(AZURE_ROOTS, store);
  assert.deepEqual(
    r.map((x) => [x.root.name, x.cert === undefined, x.foundIn]),
    AZURE_ROOTS.map((x) => [x.name, true, []]),
  );
  assert.equal(searchRoots(store, 'global root g2').length, 1, 'a subject search does find it, for inspection');
});

test('subject search is case-insensitive and de-duplicates across stores', async () => {
  const hits = searchRoots([...nodeRoots(), ...(await systemRoots())], 'isrg root x1');
  assert.equal(hits.length, 1);
  assert.deepEqual(hits[0]!.foundIn.sort(), ['node', 'system']);
});
