/**
 * Every verification rule, passing and failing, compared with `openssl verify` on the same files: same verdict,
 * same depth, and OpenSSL's exact text as our reason.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  type Issued,
  createCRL,
  createClientCert,
  createCrossCertificate,
  createIntermediateCA,
  createRootCA,
  createServerCert,
} from '../../src/pki/generate.js';
import { verifyHostName } from '../../src/pki/hostname.js';
import { type VerifyOptions, verifyChain } from '../../src/pki/verify.js';
import { x509 } from '../../src/pki/x509.js';
import { opensslVerify, pems, put, tempDir } from '../support/cert-helpers.js';

const DAY = 86_400_000;
let dir: string;
let root: Issued;
let inter: Issued;
let leaf: Issued;

before(async () => {
  dir = await tempDir();
  root = await createRootCA({ subject: { CN: 'Verify Root' } });
  inter = await createIntermediateCA(root, { subject: { CN: 'Verify Inter' } });
  leaf = await createServerCert(inter, { subject: { CN: 'db.example.com' }, hosts: ['db.example.com'] });
});

interface Case {
  readonly chain: Issued[];
  readonly roots: Issued[];
  readonly untrusted?: Issued[];
  readonly crls?: string[];
  readonly purpose?: 'sslserver' | 'sslclient';
}

let n = 0;
/** Run our verifier and openssl on the same inputs; return both verdicts. */
async function both(c: Case) {
  const id = n++;
  const chainFile = await put(dir, `chain${id}.pem`, pems(...c.chain.map((i) => i.cert)));
  const rootsFile = await put(dir, `roots${id}.pem`, pems(...c.roots.map((i) => i.cert)));
  const args = ['-CAfile', rootsFile];
  const untrusted = [...c.chain.slice(1), ...(c.untrusted ?? [])];
  if (untrusted.length)
    args.push('-untrusted', await put(dir, `untrusted${id}.pem`, pems(...untrusted.map((i) => i.cert))));
  if (c.crls?.length) args.push('-crl_check_all', '-CRLfile', await put(dir, `crl${id}.pem`, c.crls.join('')));
  if (c.purpose) args.push('-purpose', c.purpose);
  const openssl = await opensslVerify([...args, chainFile], dir);
  const opts: VerifyOptions = {
    roots: c.roots.map((i) => i.cert),
    untrusted: (c.untrusted ?? []).map((i) => i.cert),
    crls: (c.crls ?? [])
      .flatMap((p) => p.split(/(?<=-----END X509 CRL-----\n?)/).filter((s) => s.trim()))
      .map((p) => new x509.X509Crl(p)),
    purpose: c.purpose ?? 'any',
  };
  const ours = await verifyChain(
    c.chain.map((i) => i.cert),
    opts,
  );
  return { openssl, ours };
}

/** Assert both fail with `reason` at `depth`. */
async function failsLikeOpenssl(c: Case, reason: string, depth: number) {
  const { openssl, ours } = await both(c);
  assert.equal(openssl.ok, false, `openssl should fail: ${openssl.output}`);
  assert.equal(openssl.reason, reason, openssl.output);
  assert.equal(openssl.depth, depth, openssl.output);
  assert.equal(ours.ok, false, 'pgtls should fail');
  assert.equal(ours.error?.reason, reason);
  assert.equal(ours.error?.depth, depth);
}

async function passesLikeOpenssl(c: Case) {
  const { openssl, ours } = await both(c);
  assert.equal(openssl.ok, true, openssl.output);
  assert.equal(ours.ok, true, JSON.stringify(ours.error));
  return ours;
}

test('complete chain verifies; the path ends at the trusted root', async () => {
  const r = await passesLikeOpenssl({ chain: [leaf, inter], roots: [root] });
  assert.deepEqual(
    r.path.map((c) => c.subject),
    ['CN=db.example.com', 'CN=Verify Inter', 'CN=Verify Root'],
  );
});

test('missing intermediate: unable to get local issuer certificate', async () => {
  await failsLikeOpenssl({ chain: [leaf], roots: [root] }, 'unable to get local issuer certificate', 0);
});

test('trusting only the intermediate: unable to get issuer certificate (no partial chains)', async () => {
  await failsLikeOpenssl({ chain: [leaf], roots: [inter] }, 'unable to get issuer certificate', 1);
});

test('untrusted self-signed leaf: self-signed certificate', async () => {
  const other = await createRootCA({ subject: { CN: 'Some Other Root' } });
  await failsLikeOpenssl({ chain: [root], roots: [other] }, 'self-signed certificate', 0);
  await passesLikeOpenssl({ chain: [root], roots: [root] });
});

test('a root the client does not trust sent in the chain: self-signed certificate in certificate chain', async () => {
  const other = await createRootCA({ subject: { CN: 'Some Other Root' } });
  await failsLikeOpenssl(
    { chain: [leaf, inter, root], roots: [other] },
    'self-signed certificate in certificate chain',
    2,
  );
});

test('expired leaf and expired intermediate: certificate has expired, at their depth', async () => {
  const old = new Date(Date.now() - 400 * DAY);
  const expired = await createServerCert(inter, { subject: { CN: 'old' }, hosts: ['old'], notBefore: old, days: 10 });
  await failsLikeOpenssl({ chain: [expired, inter], roots: [root] }, 'certificate has expired', 0);
  const oldInter = await createIntermediateCA(root, { subject: { CN: 'Old Inter' }, notBefore: old, days: 10 });
  const under = await createServerCert(oldInter, { subject: { CN: 'x' }, hosts: ['x'] });
  await failsLikeOpenssl({ chain: [under, oldInter], roots: [root] }, 'certificate has expired', 1);
});

test('not yet valid: certificate is not yet valid', async () => {
  const future = await createServerCert(inter, {
    subject: { CN: 'future' },
    hosts: ['future'],
    notBefore: new Date(Date.now() + 5 * DAY),
  });
  await failsLikeOpenssl({ chain: [future, inter], roots: [root] }, 'certificate is not yet valid', 0);
});

test('issuer that is not a CA: invalid CA certificate', async () => {
  // A CA:FALSE certificate whose key usage still allows signing certificates, so OpenSSL builds the path and then
  // rejects it in check_chain_extensions, as it does for a leaf misused as an issuer.
  const fakeCa = await createClientCert(root, { subject: { CN: 'Not A CA' } });
  const fakeCaCert = await x509.X509CertificateGenerator.create({
    serialNumber: '0a0b0c',
    subject: 'CN=Not A CA',
    issuer: root.cert.subjectName,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * DAY),
    publicKey: fakeCa.keys.publicKey,
    signingKey: root.keys.privateKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(fakeCa.keys.publicKey),
    ],
  });
  const issuer: Issued = { ...fakeCa, cert: fakeCaCert, certPem: fakeCaCert.toString('pem') };
  const victim = await createServerCert(issuer, { subject: { CN: 'v' }, hosts: ['v'] });
  await failsLikeOpenssl({ chain: [victim, issuer], roots: [root] }, 'invalid CA certificate', 1);
});

test('a certificate naming the CA and its key identifier but signed by another key: certificate signature failure', async () => {
  const forger = await createRootCA({ subject: { CN: 'Forger' } });
  const victim = await createServerCert(forger, { subject: { CN: 'forged' }, hosts: ['forged'] });
  const forged = await x509.X509CertificateGenerator.create({
    serialNumber: '0badc0de',
    subject: 'CN=forged',
    issuer: inter.cert.subjectName,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * DAY),
    publicKey: victim.keys.publicKey,
    signingKey: forger.keys.privateKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.AuthorityKeyIdentifierExtension(inter.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId),
    ],
  });
  const issued: Issued = { ...victim, cert: forged, certPem: forged.toString('pem') };
  await failsLikeOpenssl({ chain: [issued, inter], roots: [root] }, 'certificate signature failure', 0);
});

test('pathlen 0 on the root with an intermediate below: path length constraint exceeded', async () => {
  const strict = await createRootCA({ subject: { CN: 'Strict Root' }, pathLength: 0 });
  const i = await createIntermediateCA(strict, { subject: { CN: 'Strict Inter' } });
  const l = await createServerCert(i, { subject: { CN: 'l' }, hosts: ['l'] });
  await failsLikeOpenssl({ chain: [l, i], roots: [strict] }, 'path length constraint exceeded', 2);
  const direct = await createServerCert(strict, { subject: { CN: 'd' }, hosts: ['d'] });
  await passesLikeOpenssl({ chain: [direct], roots: [strict] });
});

test('key rollover: a self-issued old-with-new certificate chains to the old root and does not count for pathlen', async () => {
  const oldRoot = await createRootCA({ subject: { CN: 'Rolling Root' }, pathLength: 0 });
  const newRoot = await createRootCA({ subject: { CN: 'Rolling Root' }, pathLength: 0 });
  const oldWithNew = await createCrossCertificate(oldRoot, newRoot);
  const server = await createServerCert(newRoot, { subject: { CN: 'rolled' }, hosts: ['rolled'] });
  const r = await passesLikeOpenssl({ chain: [server, oldWithNew], roots: [oldRoot] });
  assert.equal(r.path.length, 3);
  await passesLikeOpenssl({ chain: [server, oldWithNew], roots: [newRoot] });
});

test('purpose: a client certificate presented as a server one is an unsuitable certificate purpose', async () => {
  const client = await createClientCert(inter, { subject: { CN: 'alice' } });
  await failsLikeOpenssl(
    { chain: [client, inter], roots: [root], purpose: 'sslserver' },
    'unsuitable certificate purpose',
    0,
  );
  await passesLikeOpenssl({ chain: [client, inter], roots: [root], purpose: 'sslclient' });
  await passesLikeOpenssl({ chain: [leaf, inter], roots: [root], purpose: 'sslserver' });
});

test('revocation with CRLs for every CA: revoked leaf refused, others pass', async () => {
  const revoked = await createClientCert(inter, { subject: { CN: 'mallory' } });
  const rootCrl = await createCRL(root, []);
  const interCrl = await createCRL(inter, [{ serial: revoked.serial, reason: x509.X509CrlReason.keyCompromise }]);
  await failsLikeOpenssl(
    { chain: [revoked, inter], roots: [root], crls: [rootCrl, interCrl] },
    'certificate revoked',
    0,
  );
  await passesLikeOpenssl({ chain: [leaf, inter], roots: [root], crls: [rootCrl, interCrl] });
  // A reason-less revocation too (encoded with an explicit "unspecified" reason OpenSSL can load).
  const plain = await createCRL(inter, [{ serial: revoked.serial }]);
  await failsLikeOpenssl({ chain: [revoked, inter], roots: [root], crls: [rootCrl, plain] }, 'certificate revoked', 0);
});

test('CRL check of every CA: a CA without a CRL is unable to get certificate CRL', async () => {
  const interCrl = await createCRL(inter, []);
  await failsLikeOpenssl({ chain: [leaf, inter], roots: [root], crls: [interCrl] }, 'unable to get certificate CRL', 1);
  const rootCrl = await createCRL(root, []);
  await failsLikeOpenssl({ chain: [leaf, inter], roots: [root], crls: [rootCrl] }, 'unable to get certificate CRL', 0);
});

test('a CRL under the CA name from another key is not its CRL: unable to get certificate CRL', async () => {
  const impostor = await createRootCA({ subject: { CN: 'Verify Inter' } });
  const forged = await createCRL(impostor, []);
  await failsLikeOpenssl(
    { chain: [leaf, inter], roots: [root], crls: [await createCRL(root, []), forged] },
    'unable to get certificate CRL',
    0,
  );
  await passesLikeOpenssl({
    chain: [leaf, inter],
    roots: [root],
    crls: [await createCRL(root, []), forged, await createCRL(inter, [])],
  });
});

test('an expired CRL: CRL has expired', async () => {
  const stale = await createCRL(inter, [], {
    thisUpdate: new Date(Date.now() - 40 * DAY),
    nextUpdate: new Date(Date.now() - 10 * DAY),
  });
  await failsLikeOpenssl(
    { chain: [leaf, inter], roots: [root], crls: [await createCRL(root, []), stale] },
    'CRL has expired',
    0,
  );
});

test('cross-signed root (Azure "alternate trust path"): any of the roots verifies, as OpenSSL does', async () => {
  const oldRoot = await createRootCA({ subject: { CN: 'Old Root G2' } });
  const newRoot = await createRootCA({ subject: { CN: 'New RSA Root 2017' } });
  const cross = await createCrossCertificate(oldRoot, newRoot);
  const issuing = await createIntermediateCA(newRoot, { subject: { CN: 'Issuing CA 07' } });
  const server = await createServerCert(issuing, { subject: { CN: 'srv' }, hosts: ['srv'] });
  // The server sends leaf, issuing CA and the cross-certificate.
  const chain = [server, issuing, cross];
  const viaNew = await passesLikeOpenssl({ chain, roots: [newRoot] });
  assert.equal(viaNew.path.at(-1)?.subject, 'CN=New RSA Root 2017');
  assert.equal(viaNew.path.length, 3, 'trusted-first stops at the self-signed new root');
  const viaOld = await passesLikeOpenssl({ chain, roots: [oldRoot] });
  assert.equal(viaOld.path.at(-1)?.subject, 'CN=Old Root G2');
  await passesLikeOpenssl({ chain, roots: [oldRoot, newRoot] });
  // The old root expired: trusting both still works through the new one.
  const expiredOld = await createRootCA({
    subject: { CN: 'Old Root G2' },
    notBefore: new Date(Date.now() - 400 * DAY),
    days: 10,
  });
  const crossFromExpired = await createCrossCertificate(expiredOld, newRoot);
  await passesLikeOpenssl({ chain: [server, issuing, crossFromExpired], roots: [expiredOld, newRoot] });
  await failsLikeOpenssl(
    { chain: [server, issuing, crossFromExpired], roots: [expiredOld] },
    'certificate has expired',
    3,
  );
  // An expired copy of the new root in the store shadows the valid route through the cross-certificate: OpenSSL
  // takes the trusted issuer first and does not look further, so it fails; the other route is reported.
  const expiredNew = await createCrossCertificate(newRoot, newRoot, {
    notBefore: new Date(Date.now() - 400 * DAY),
    days: 10,
  });
  const { ours } = await both({ chain, roots: [expiredNew, oldRoot] });
  await failsLikeOpenssl({ chain, roots: [expiredNew, oldRoot] }, 'certificate has expired', 2);
  assert.deepEqual(
    ours.alternative?.path.map((c) => c.subject),
    ['CN=srv', 'CN=Issuing CA 07', 'CN=New RSA Root 2017', 'CN=Old Root G2'],
  );
  // Neither root: the cross-certificate's issuer is missing.
  await failsLikeOpenssl({ chain, roots: [root] }, 'unable to get local issuer certificate', 2);
});

test('host name by libpq rules, after the chain: mismatch reported with libpq text', async () => {
  const checkHost = (c: x509.X509Certificate, h: string) => {
    const r = verifyHostName(new Uint8Array(c.rawData), h);
    return r.ok ? undefined : r.message;
  };
  const ok = await verifyChain([leaf.cert, inter.cert], { roots: [root.cert], host: 'db.example.com', checkHost });
  assert.equal(ok.ok, true);
  const bad = await verifyChain([leaf.cert, inter.cert], { roots: [root.cert], host: 'other.example.com', checkHost });
  assert.equal(bad.ok, false);
  assert.equal(bad.error?.code, 'X509_V_ERR_HOSTNAME_MISMATCH');
  assert.equal(
    bad.error?.reason,
    'server certificate for "db.example.com" does not match host name "other.example.com"',
  );
});
