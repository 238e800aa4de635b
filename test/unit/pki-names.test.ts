import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { crlHash } from '../../src/pki/crl.js';
import { createCRL, createRootCA } from '../../src/pki/generate.js';
import { canonicalValue, certificateNames, namesEqual, subjectNameHash } from '../../src/pki/names.js';
import { parseCertificates } from '../../src/pki/pem.js';
import { x509 } from '../../src/pki/x509.js';
import { opensslHash, put, tempDir } from '../support/cert-helpers.js';

test('canonical values: trimmed, whitespace runs collapsed, ASCII lower-cased, non-ASCII kept', () => {
  assert.equal(canonicalValue('  Foo   Bar\t '), 'foo bar');
  assert.equal(canonicalValue('ÄBC'), 'Äbc');
  assert.notEqual(canonicalValue('ab'), canonicalValue('a b'));
});

test('subject hash equals `openssl x509 -hash` and CRL hash equals `openssl crl -hash` for awkward names', async () => {
  const dir = await tempDir();
  const subjects: Record<string, string>[] = [
    { CN: 'Simple' },
    { C: 'US', O: 'Example  Corp', OU: '  Mixed Case Unit ', CN: 'DB.Example.COM' },
    { CN: 'Ünïcödé Root – 2026' },
    { O: 'tab\tand  spaces', CN: 'x' },
  ];
  for (const [i, subject] of subjects.entries()) {
    const ca = await createRootCA({ subject });
    const certFile = await put(dir, `c${i}.crt`, ca.certPem);
    const ours = subjectNameHash(certificateNames(new Uint8Array(ca.cert.rawData)).subject);
    assert.equal(ours, await opensslHash('x509', certFile), JSON.stringify(subject));
    const crlPem = await createCRL(ca, []);
    const crlFile = await put(dir, `c${i}.crl`, crlPem);
    assert.equal(crlHash(new x509.X509Crl(crlPem)), await opensslHash('crl', crlFile));
  }
});

test('subject hash matches the <hash>.N names of the system store (c_rehash / openssl rehash)', () => {
  const names = readdirSync('/etc/ssl/certs').filter((n) => /^[0-9a-f]{8}\.\d$/.test(n));
  assert.ok(names.length > 10, 'the system store should have hashed links');
  for (const n of names.slice(0, 400)) {
    const [cert] = parseCertificates(readFileSync(`/etc/ssl/certs/${n}`), n);
    assert.equal(subjectNameHash(certificateNames(new Uint8Array(cert!.rawData)).subject), n.slice(0, 8), n);
  }
});

test('names compare as OpenSSL does: case and spacing differences are equal, other text is not', async () => {
  const a = await createRootCA({ subject: { CN: 'Root  One' } });
  const b = await createRootCA({ subject: { CN: 'root one' } });
  const c = await createRootCA({ subject: { CN: 'root two' } });
  const name = (i: { cert: x509.X509Certificate }) => certificateNames(new Uint8Array(i.cert.rawData)).subject;
  assert.equal(namesEqual(name(a), name(b)), true);
  assert.equal(namesEqual(name(a), name(c)), false);
});
