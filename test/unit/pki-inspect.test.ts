import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { before, test } from 'node:test';
import { type Issued, createIntermediateCA, createRootCA, createServerCert } from '../../src/pki/generate.js';
import { type FindingCode, inspectCertificates } from '../../src/pki/inspect.js';
import type { x509 } from '../../src/pki/x509.js';

const DAY = 86_400_000;
let root: Issued;
let inter: Issued;
let leaf: Issued;

before(async () => {
  root = await createRootCA({ subject: { CN: 'Inspect Root' }, keyType: 'rsa-2048' });
  inter = await createIntermediateCA(root, { subject: { CN: 'Inspect Inter' }, keyType: 'ec-p384' });
  leaf = await createServerCert(inter, { subject: { CN: 'db' }, hosts: ['db.example.com', '10.0.0.5'] });
});

const codes = (fs: { code: FindingCode; level: string }[]) => fs.map((f) => `${f.level}:${f.code}`).sort();

test('summary: subject, SANs, key, CA flag, pathlen, usages, fingerprint, days left, who signed whom', async () => {
  const r = await inspectCertificates([leaf.cert, inter.cert]);
  const [l, i] = r.certificates;
  assert.deepEqual(l!.sans.dns, ['db.example.com']);
  assert.deepEqual(l!.sans.ip, ['10.0.0.5']);
  assert.deepEqual(l!.key, { type: 'EC', bits: 256, curve: 'prime256v1' });
  assert.equal(l!.ca, false);
  assert.deepEqual(l!.extendedKeyUsage, ['serverAuth']);
  assert.equal(l!.signedBy, 1);
  assert.equal(l!.status, 'valid');
  assert.ok(l!.daysLeft >= 396 && l!.daysLeft <= 398);
  assert.match(l!.sha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.deepEqual(i!.key, { type: 'EC', bits: 384, curve: 'secp384r1' });
  assert.equal(i!.ca, true);
  assert.equal(i!.pathLength, 0);
  assert.deepEqual(i!.keyUsage, ['keyCertSign', 'cRLSign']);
  assert.equal(i!.signedBy, null);
  const rr = await inspectCertificates([root.cert]);
  assert.deepEqual(rr.certificates[0]!.key, { type: 'RSA', bits: 2048 });
  assert.equal(rr.certificates[0]!.selfSigned, true);
});

test('a correct chain file has only the informational "issuer not included" finding', async () => {
  const r = await inspectCertificates([leaf.cert, inter.cert], { key: createPrivateKey(leaf.keyPem) });
  assert.deepEqual(codes(r.findings), ['info:issuer-not-included']);
});

test('wrong order: intermediate before the leaf', async () => {
  const r = await inspectCertificates([inter.cert, leaf.cert]);
  assert.ok(codes(r.findings).includes('error:wrong-order'), JSON.stringify(r.findings));
  const f = r.findings.find((x) => x.code === 'wrong-order')!;
  assert.equal(f.message, 'wrong order: #2 (CN=db) is signed by #1, which must come right after it');
});

test('missing link: leaf followed by the root, without the intermediate', async () => {
  const r = await inspectCertificates([leaf.cert, root.cert]);
  const f = r.findings.find((x) => x.code === 'missing-link');
  assert.equal(
    f?.message,
    'missing link: nothing in the file signed #1 (CN=db); its issuer, CN=Inspect Inter, must follow it',
  );
});

test('key that does not match, and a key that matches another certificate of the file', async () => {
  const other = await createServerCert(inter, { subject: { CN: 'other' }, hosts: ['other'] });
  const r = await inspectCertificates([leaf.cert, inter.cert], { key: createPrivateKey(other.keyPem) });
  assert.equal(
    r.findings.find((x) => x.code === 'key-mismatch')?.message,
    'the key does not belong to #1 (CN=db) (different public key)',
  );
  const r2 = await inspectCertificates([inter.cert, leaf.cert], { key: createPrivateKey(leaf.keyPem) });
  assert.ok(codes(r2.findings).includes('error:key-matches-other'));
});

test('expired, not yet valid and expiring within 30 days; fine beyond 30 days', async () => {
  const now = Date.now();
  const mk = (cn: string, notBefore: number, days: number) =>
    createServerCert(inter, { subject: { CN: cn }, hosts: [cn], notBefore: new Date(notBefore), days });
  const expired = await mk('expired', now - 100 * DAY, 10);
  const future = await mk('future', now + 10 * DAY, 100);
  const soon = await mk('soon', now - DAY, 20);
  const later = await mk('later', now - DAY, 60);
  const r = await inspectCertificates([expired.cert, future.cert, soon.cert, later.cert], { mode: 'bundle' });
  assert.deepEqual(
    r.certificates.map((c) => c.status),
    ['expired', 'not-yet-valid', 'expiring', 'valid'],
  );
  assert.deepEqual(codes(r.findings), ['error:expired', 'error:not-yet-valid', 'warning:expiring']);
  assert.match(r.findings.find((f) => f.code === 'expiring')!.message, /^#3 \(CN=soon\) expires in 1[89] days/);
});

test('duplicates and a root inside a chain file are reported', async () => {
  const r = await inspectCertificates([leaf.cert, inter.cert, inter.cert, root.cert]);
  const c = codes(r.findings);
  assert.ok(c.includes('warning:duplicate'), c.join());
  assert.ok(c.includes('info:root-included'), c.join());
});

test('a bundle does not care about order', async () => {
  const certs: x509.X509Certificate[] = [inter.cert, root.cert];
  const r = await inspectCertificates(certs, { mode: 'bundle' });
  assert.deepEqual(r.findings, []);
});
