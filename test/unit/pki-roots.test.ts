/**
 * Root lookups in the machine's trust stores. Nothing here assumes what a store holds — Node's bundled list changes
 * between releases (DigiCert Global Root CA is in Node 20's, not in 22.23/24.22/26.12's) and distributions update
 * ca-certificates — so the real-store tests compare against an independent count made with node:crypto's
 * X509Certificate (OpenSSL's parser, not the one pgtls uses), and the exact texts are tested with generated roots.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { rootCertificates } from 'node:tls';
import { createRootCA } from '../../src/pki/generate.js';
import {
  AZURE_ROOTS,
  type KnownRoot,
  SYSTEM_BUNDLES,
  type StoreCertificate,
  describeSource,
  fileRoots,
  findKnownRoots,
  nodeRoots,
  nodeStoreGap,
  searchRoots,
  systemRoots,
} from '../../src/pki/roots.js';
import { put, tempDir } from '../support/cert-helpers.js';

const PEM = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;
const fp = (pem: string) => new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();

/** Independent fingerprints of Node's bundled store. */
const nodeOracle = new Set(rootCertificates.map(fp));

/** Independent fingerprints of the system store: the first bundle found plus /etc/ssl/certs/*.{pem,crt}. */
function systemOracle(): Map<string, string> {
  const out = new Map<string, string>();
  const add = (file: string) => {
    for (const m of readFileSync(file, 'utf8').match(PEM) ?? []) if (!out.has(fp(m))) out.set(fp(m), file);
  };
  for (const f of SYSTEM_BUNDLES) {
    try {
      add(f);
      break;
    } catch {}
  }
  let names: string[] = [];
  try {
    names = readdirSync('/etc/ssl/certs');
  } catch {}
  for (const n of names) if (/\.(pem|crt)$/.test(n)) add(`/etc/ssl/certs/${n}`);
  return out;
}

test("Azure's roots are reported found exactly where an independent count finds them, Node's store and the system's", async (t) => {
  const node = findKnownRoots(AZURE_ROOTS, nodeRoots());
  assert.deepEqual(
    node.map((r) => [r.root.name, r.cert !== undefined, r.foundIn, r.origins]),
    AZURE_ROOTS.map((r) =>
      nodeOracle.has(r.sha256)
        ? [r.name, true, ['node'], [`Node ${process.version}'s bundled store`]]
        : [r.name, false, [], []],
    ),
  );
  const sys = systemOracle();
  const system = findKnownRoots(AZURE_ROOTS, await systemRoots());
  for (const r of system) {
    assert.equal(r.cert !== undefined, sys.has(r.root.sha256), r.root.name);
    if (r.cert) {
      assert.deepEqual(r.foundIn, ['system']);
      assert.ok(r.origins.includes(`the system store (${sys.get(r.root.sha256)})`), r.origins.join('; '));
    }
  }
  // What this machine has, for whoever reads the log (Node 20 has all three in its store; 22, 24 and 26 two).
  for (const r of AZURE_ROOTS) {
    t.diagnostic(`${r.name}: node=${nodeOracle.has(r.sha256)} system=${sys.has(r.sha256)}`);
  }
});

test("a root missing from Node's store is explained; one present is not", async () => {
  const ca = await createRootCA({ subject: { CN: 'pgtls Test Gap Root', O: 'pgtls' } });
  const known: KnownRoot = {
    name: 'pgtls Test Gap Root',
    cn: 'pgtls Test Gap Root',
    o: 'pgtls',
    sha256: fp(ca.certPem),
  };
  const store: StoreCertificate[] = [{ cert: ca.cert, source: 'node' }];
  assert.equal(nodeStoreGap(known, store), undefined);
  assert.equal(
    nodeStoreGap(known, []),
    `pgtls Test Gap Root is not in Node ${process.version}'s bundled store (Node builds it from Mozilla's root list, which drops roots it no longer trusts for TLS): Node programs that rely on the default CAs (node-postgres or postgres.js with \`ssl: true\` and no \`ca\`) will not verify a chain ending at it — give them the root file as \`ca\` (or NODE_EXTRA_CA_CERTS), or start Node with --use-system-ca`,
  );
  // and against the real store: a gap exactly for the Azure roots the independent count misses
  for (const r of AZURE_ROOTS) assert.equal(nodeStoreGap(r) === undefined, nodeOracle.has(r.sha256), r.name);
});

test('where a root came from: a file, the system store (with its file), Node', async () => {
  const dir = await tempDir();
  const ca = await createRootCA({ subject: { CN: 'pgtls Test File Root' } });
  const file = await put(dir, 'roots.pem', ca.certPem);
  const known: KnownRoot = { name: 'x', cn: 'pgtls Test File Root', o: '', sha256: fp(ca.certPem) };
  const fromFile = findKnownRoots([known], await fileRoots(file));
  assert.deepEqual(fromFile[0]!.origins, [`the file ${file}`]);
  assert.deepEqual(fromFile[0]!.foundIn, ['file']);
  const fromSystem = findKnownRoots([known], await systemRoots({ bundles: [file], dir: `${dir}/none` }));
  assert.deepEqual(fromSystem[0]!.origins, [`the system store (${file})`]);
  assert.equal(describeSource({ source: 'node' }), `Node ${process.version}'s bundled store`);
  assert.equal(describeSource({ source: 'system' }), 'the system store');
  await assert.rejects(fileRoots(`${dir}/missing.pem`), /ENOENT/);
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
    r.map((x) => [x.root.name, x.cert === undefined, x.foundIn, x.origins]),
    AZURE_ROOTS.map((x) => [x.name, true, [], []]),
  );
  assert.equal(searchRoots(store, 'global root g2').length, 1, 'a subject search does find it, for inspection');
});

test('subject search is case-insensitive and de-duplicates across stores', async () => {
  const ca = await createRootCA({ subject: { CN: 'pgtls Test Twice Root' } });
  const twice: StoreCertificate[] = [
    { cert: ca.cert, source: 'node' },
    { cert: ca.cert, source: 'system', file: '/x.pem' },
  ];
  const hits = searchRoots(twice, 'PGTLS test twice');
  assert.equal(hits.length, 1);
  assert.deepEqual(hits[0]!.foundIn, ['node', 'system']);
  assert.deepEqual(searchRoots(twice, 'no such root'), []);
  // the real stores: a root both independent counts find comes back once, from both (if the stores share any)
  const sys = systemOracle();
  const shared = rootCertificates.find((pem) => sys.has(fp(pem)));
  if (shared) {
    const cn = /CN=([^\n]+)/.exec(new X509Certificate(shared).subject)![1]!;
    const real = searchRoots([...nodeRoots(), ...(await systemRoots())], cn).filter(
      (h) => h.cert.subject.includes(cn) && fp(h.cert.toString('pem')) === fp(shared),
    );
    assert.equal(real.length, 1, cn);
    assert.deepEqual(real[0]!.foundIn.sort(), ['node', 'system']);
  }
});
