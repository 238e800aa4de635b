import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { isPgtlsError } from '../../src/errors.js';
import { CaDatabase, normaliseSerial } from '../../src/pki/ca-database.js';
import { writeOutputs } from '../../src/pki/files.js';
import { type Issued, createRootCA, createServerCert } from '../../src/pki/generate.js';
import { exportPrivateKey, loadSigningCA } from '../../src/pki/keys.js';
import { classifyDer, detectEncoding, parseCertificates, parsePrivateKey, splitPem } from '../../src/pki/pem.js';
import { put, tempDir } from '../support/cert-helpers.js';

let dir: string;
let ca: Issued;
let leaf: Issued;
before(async () => {
  dir = await tempDir();
  ca = await createRootCA({ subject: { CN: 'Pem Root' } });
  leaf = await createServerCert(ca, { subject: { CN: 'x' }, hosts: ['x'] });
});

async function rejects(fn: () => unknown, code: string, message: string | RegExp) {
  await assert.rejects(
    async () => fn(),
    (err: unknown) => {
      assert.ok(isPgtlsError(err, code), `expected ${code}, got ${String(err)}`);
      if (typeof message === 'string') assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

test('PEM blocks are split in order, text around them ignored; DER and PEM are told apart by content', () => {
  const text = `subject=CN = x\n${leaf.certPem}${ca.certPem}\ntrailing`;
  assert.deepEqual(
    splitPem(text).map((b) => b.label),
    ['CERTIFICATE', 'CERTIFICATE'],
  );
  assert.equal(detectEncoding(Buffer.from(text)), 'pem');
  assert.equal(detectEncoding(new Uint8Array(leaf.cert.rawData)), 'der');
  assert.equal(detectEncoding(Buffer.from('hello')), 'unknown');
  assert.equal(classifyDer(Buffer.from(leaf.cert.rawData)), 'certificate');
  const keyDer = createPrivateKey(leaf.keyPem).export({ type: 'pkcs8', format: 'der' });
  assert.equal(classifyDer(keyDer), 'private-key');
  assert.equal(parseCertificates(new Uint8Array(leaf.cert.rawData), 'leaf.der').length, 1);
});

test('not a certificate: empty file, garbage, a key, a DER key — each names the file and what it is', async () => {
  await rejects(
    () => parseCertificates(Buffer.alloc(0), 'empty.crt'),
    'PGTLS_ERR_PKI_NOT_CERTIFICATE',
    'empty.crt: no certificate found: the file is empty',
  );
  await rejects(
    () => parseCertificates(Buffer.from('hello'), 'junk.crt'),
    'PGTLS_ERR_PKI_NOT_CERTIFICATE',
    'junk.crt: no certificate found: neither PEM nor DER',
  );
  await rejects(
    () => parseCertificates(Buffer.from(leaf.keyPem), 'server.key'),
    'PGTLS_ERR_PKI_NOT_CERTIFICATE',
    'server.key: no certificate found: the file holds PEM blocks but no CERTIFICATE block',
  );
  const keyDer = createPrivateKey(leaf.keyPem).export({ type: 'pkcs8', format: 'der' });
  await rejects(
    () => parseCertificates(keyDer, 'key.der'),
    'PGTLS_ERR_PKI_NOT_CERTIFICATE',
    'key.der: no certificate found: it is a DER private-key',
  );
});

test('encrypted keys: no passphrase, wrong passphrase, right passphrase; PKCS#1, SEC1 and DER read too', async () => {
  const key = createPrivateKey(leaf.keyPem);
  const enc = exportPrivateKey(key, 'pkcs8', 'pem', 'right') as string;
  await rejects(
    () => parsePrivateKey(Buffer.from(enc), 'k.pem'),
    'PGTLS_ERR_PKI_KEY_PASSPHRASE',
    'k.pem: the private key is encrypted and no passphrase was given',
  );
  await rejects(
    () => parsePrivateKey(Buffer.from(enc), 'k.pem', 'wrong'),
    'PGTLS_ERR_PKI_KEY_PASSPHRASE',
    'k.pem: wrong passphrase for the encrypted private key',
  );
  assert.equal(parsePrivateKey(Buffer.from(enc), 'k.pem', 'right').format, 'pkcs8-encrypted');
  const encDer = exportPrivateKey(key, 'pkcs8', 'der', 'right') as Buffer;
  assert.equal(parsePrivateKey(encDer, 'k.pk8', 'right').format, 'pkcs8-encrypted');
  assert.equal(parsePrivateKey(Buffer.from(exportPrivateKey(key, 'sec1', 'pem') as string), 'k').format, 'sec1');
  const rsa = await createRootCA({ subject: { CN: 'r' }, keyType: 'rsa-2048' });
  const rsaKey = createPrivateKey(rsa.keyPem);
  assert.equal(parsePrivateKey(Buffer.from(exportPrivateKey(rsaKey, 'pkcs1', 'pem') as string), 'k').format, 'pkcs1');
  assert.equal(parsePrivateKey(exportPrivateKey(rsaKey, 'pkcs1', 'der') as Buffer, 'k').format, 'pkcs1');
  await rejects(
    () => exportPrivateKey(key, 'pkcs1', 'pem'),
    'PGTLS_ERR_PKI_KEY_FORMAT',
    'PKCS#1 holds RSA keys only; this key is not RSA',
  );
});

test('a CA key that does not belong to the CA certificate, and a leaf used as a CA, are refused', async () => {
  const caFile = await put(dir, 'ca.crt', ca.certPem);
  const wrongKey = await put(dir, 'wrong.key', leaf.keyPem);
  await rejects(
    () => loadSigningCA(caFile, wrongKey),
    'PGTLS_ERR_PKI_KEY_MISMATCH',
    `${wrongKey}: this private key does not belong to the certificate in ${caFile}`,
  );
  const leafFile = await put(dir, 'leaf.crt', leaf.certPem);
  await rejects(
    () => loadSigningCA(leafFile, wrongKey),
    'PGTLS_ERR_PKI_NOT_CA',
    `${leafFile}: CN=x is not a CA certificate (no CA:TRUE basic constraint)`,
  );
  await rejects(
    () => loadSigningCA(join(dir, 'missing.crt'), wrongKey),
    'PGTLS_ERR_PKI_READ',
    `${join(dir, 'missing.crt')}: cannot read the file (no such file)`,
  );
  await rejects(
    () => loadSigningCA(dir, wrongKey),
    'PGTLS_ERR_PKI_READ',
    `${dir}: cannot read the file (is a directory)`,
  );
});

test('outputs: existing files refused before anything is written; keys 0600; --force replaces', async () => {
  const a = join(dir, 'out-a.crt');
  const b = join(dir, 'out-b.key');
  await writeFile(b, 'old');
  await rejects(
    () =>
      writeOutputs([
        { path: a, data: 'A', mode: 0o644 },
        { path: b, data: 'B', mode: 0o600 },
      ]),
    'PGTLS_ERR_PKI_OUTPUT_EXISTS',
    `${b}: the file already exists; nothing was written`,
  );
  await assert.rejects(stat(a), 'nothing half-written');
  assert.equal(await readFile(b, 'utf8'), 'old');
  await writeOutputs(
    [
      { path: a, data: 'A', mode: 0o644 },
      { path: b, data: 'B', mode: 0o600 },
    ],
    { force: true },
  );
  assert.equal((await stat(b)).mode & 0o777, 0o600);
  assert.equal((await stat(a)).mode & 0o777, 0o644);
  assert.equal(await readFile(b, 'utf8'), 'B');
  // A missing directory fails cleanly and leaves no temporary files behind.
  await rejects(
    () => writeOutputs([{ path: join(dir, 'nope', 'x.crt'), data: 'x', mode: 0o644 }]),
    'PGTLS_ERR_PKI_WRITE',
    /nope\/x\.crt: cannot write \(ENOENT\); nothing was written/,
  );
  assert.deepEqual(
    (await readdir(dir)).filter((n) => n.endsWith('.tmp')),
    [],
  );
});

test('CA database: unknown serial, double revocation and a database of another CA are refused', async () => {
  const caFile = await put(dir, 'dbca.crt', ca.certPem);
  const db = await CaDatabase.open(caFile, ca.cert);
  db.recordIssued(leaf.cert, 'server');
  await rejects(
    () => db.revoke('abcdef', 'keyCompromise'),
    'PGTLS_ERR_PKI_UNKNOWN_SERIAL',
    `serial abcdef was not issued by CN=Pem Root (not in ${join(dir, 'dbca.db.json')})`,
  );
  const rec = db.revoke(leaf.serial.toUpperCase().match(/../g)!.join(':'), 'keyCompromise');
  assert.equal(rec.serial, normaliseSerial(leaf.serial));
  await rejects(
    () => db.revoke(leaf.serial, 'superseded'),
    'PGTLS_ERR_PKI_ALREADY_REVOKED',
    /^serial [0-9a-f]+ is already revoked \(keyCompromise, /,
  );
  await db.save();
  const other = await createRootCA({ subject: { CN: 'Other' } });
  await rejects(
    () => CaDatabase.open(caFile, other.cert),
    'PGTLS_ERR_PKI_CA_DATABASE',
    `${join(dir, 'dbca.db.json')}: this database belongs to another CA (CN=Pem Root)`,
  );
  const reopened = await CaDatabase.open(caFile, ca.cert);
  assert.equal(reopened.data.revoked.length, 1);
});
