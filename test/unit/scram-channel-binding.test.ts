/**
 * tls-server-end-point data from certificates made by openssl at test time with each signature algorithm: the hash
 * is the signature's hash, SHA-256 for MD5 and SHA-1 (RFC 5929 4.1, be_tls_get_certificate_hash), none for Ed25519.
 * openssl's own `x509 -text` reading of the signature algorithm is the oracle for the DER parsing.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { certificateSignatureDigest, tlsServerEndPoint } from '../../src/protocol/scram.js';

const dir = mkdtempSync(join(tmpdir(), 'pgtls-cbind-'));

function makeCert(name: string, keyArgs: string[], digestArgs: string[]): Buffer {
  const key = join(dir, `${name}.key`);
  const der = join(dir, `${name}.der`);
  execFileSync('openssl', ['genpkey', ...keyArgs, '-out', key], { stdio: 'pipe' });
  const pem = execFileSync(
    'openssl',
    ['req', '-x509', '-new', '-key', key, '-subj', `/CN=${name}`, '-days', '1', ...digestArgs],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  execFileSync('openssl', ['x509', '-outform', 'DER', '-out', der], { input: pem, stdio: ['pipe', 'pipe', 'pipe'] });
  return readFileSync(der);
}

function opensslSigAlg(der: Buffer): string {
  const text = execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-text'], { input: der }).toString();
  return /Signature Algorithm: (\S+)/.exec(text)![1]!;
}

const rsa = ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'];
const cases: { name: string; key: string[]; digest: string[]; sig: RegExp; want: string | undefined; hash?: string }[] =
  [
    { name: 'rsa-sha1', key: rsa, digest: ['-sha1'], sig: /^sha1WithRSAEncryption$/, want: 'sha1', hash: 'sha256' },
    {
      name: 'rsa-sha224',
      key: rsa,
      digest: ['-sha224'],
      sig: /^sha224WithRSAEncryption$/,
      want: 'sha224',
      hash: 'sha224',
    },
    {
      name: 'rsa-sha256',
      key: rsa,
      digest: ['-sha256'],
      sig: /^sha256WithRSAEncryption$/,
      want: 'sha256',
      hash: 'sha256',
    },
    {
      name: 'rsa-sha384',
      key: rsa,
      digest: ['-sha384'],
      sig: /^sha384WithRSAEncryption$/,
      want: 'sha384',
      hash: 'sha384',
    },
    {
      name: 'rsa-sha512',
      key: rsa,
      digest: ['-sha512'],
      sig: /^sha512WithRSAEncryption$/,
      want: 'sha512',
      hash: 'sha512',
    },
    {
      name: 'ec-p256-sha384',
      key: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      digest: ['-sha384'],
      sig: /^ecdsa-with-SHA384$/,
      want: 'sha384',
      hash: 'sha384',
    },
    {
      name: 'rsa-pss-sha512',
      key: rsa,
      digest: ['-sha512', '-sigopt', 'rsa_padding_mode:pss'],
      sig: /^rsassaPss$/,
      want: 'sha512',
      hash: 'sha512',
    },
    { name: 'ed25519', key: ['-algorithm', 'ED25519'], digest: [], sig: /^ED25519$/i, want: undefined },
  ];

for (const c of cases) {
  test(`tls-server-end-point for ${c.name}`, () => {
    const der = makeCert(c.name, c.key, c.digest);
    assert.match(opensslSigAlg(der), c.sig);
    assert.equal(certificateSignatureDigest(der), c.want);
    const got = tlsServerEndPoint(der);
    if (c.hash === undefined) assert.equal(got, undefined);
    else assert.deepEqual(got, createHash(c.hash).update(der).digest());
  });
}

test('garbage is not a certificate', () => {
  assert.equal(tlsServerEndPoint(Buffer.from('not a certificate')), undefined);
  assert.equal(tlsServerEndPoint(Buffer.alloc(0)), undefined);
});
