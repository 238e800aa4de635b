/** Pure parts of the doctor: targets, policies, sslmode verdicts, startup replies, raw ClientHello, cipher table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AttemptFailure } from '../../src/client/errors.js';
import { explainedFailure, refusedEndpoints, skippedAttempts } from '../../src/doctor/attempts.js';
import { chainEnd, inspectChain, verifyAgainstStore } from '../../src/doctor/chain.js';
import { CIPHER_SUITES, findSuite, suitesFor } from '../../src/doctor/cipher-suites.js';
import { type SslmodeFacts, judgeStartup, sslmodeVerdicts, verifyReason } from '../../src/doctor/facts.js';
import { LEGACY_SUITES, clientHello, legacyBits, parseServerHello } from '../../src/doctor/legacy-suites.js';
import { checkPolicy, customPolicy, parseTlsVersion, policyByName } from '../../src/doctor/policy.js';
import type { ScanResult } from '../../src/doctor/scan.js';
import { parseEndpoint } from '../../src/doctor/wire.js';
import { isPgtlsError } from '../../src/errors.js';
import { type Issued, createIntermediateCA, createRootCA, createServerCert } from '../../src/pki/generate.js';

test('parseEndpoint: host, host:port, [v6]:port, bare v6; bad ports are coded errors', () => {
  assert.deepEqual(parseEndpoint('db.example.com'), { host: 'db.example.com', port: 5432 });
  assert.deepEqual(parseEndpoint('db:6432'), { host: 'db', port: 6432 });
  assert.deepEqual(parseEndpoint('[::1]:5433'), { host: '::1', port: 5433 });
  assert.deepEqual(parseEndpoint('::1'), { host: '::1', port: 5432 });
  for (const bad of ['db:0', 'db:70000', 'db:x', ':5432', '']) {
    assert.throws(
      () => parseEndpoint(bad),
      (e: unknown) => isPgtlsError(e, 'PGTLS_ERR_DOCTOR_TARGET'),
      bad,
    );
  }
});

test('cipher table: OpenSSL and IANA names resolve to the same suite; TLS 1.3 suites only at 1.3', () => {
  assert.equal(findSuite('ECDHE-RSA-AES128-GCM-SHA256'), findSuite('TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'));
  assert.equal(suitesFor('TLSv1.3').length, 5);
  assert.ok(suitesFor('TLSv1').every((s) => s.minVersion === 'TLSv1'));
  assert.ok(suitesFor('TLSv1.2').length > suitesFor('TLSv1').length);
  const ids = new Set(CIPHER_SUITES.map((s) => s.id));
  assert.equal(ids.size, CIPHER_SUITES.length, 'duplicate code points');
  assert.ok(
    LEGACY_SUITES.every(([id]) => !ids.has(id)),
    'legacy suites overlap the OpenSSL table',
  );
  assert.equal(legacyBits('TLS_RSA_WITH_SEED_CBC_SHA'), 128);
  assert.equal(legacyBits('TLS_RSA_WITH_3DES_EDE_CBC_SHA'), 112);
  assert.equal(legacyBits('TLS_RSA_EXPORT_WITH_RC4_40_MD5'), 40);
});

test('raw ClientHello: well-formed record, offers exactly the given suites (+ SCSV); ServerHello parsed', () => {
  const hello = clientHello('TLSv1.2', [0x0096, 0x009a], 'db.example.com');
  assert.equal(hello[0], 22);
  assert.equal(hello.readUInt16BE(3), hello.length - 5);
  assert.equal(hello[5], 1); // ClientHello
  assert.equal(hello.readUInt16BE(9), 0x0303);
  const suitesLen = hello.readUInt16BE(9 + 2 + 32 + 1);
  assert.equal(suitesLen, 6);
  assert.deepEqual([...hello.subarray(46, 52)], [0x00, 0x96, 0x00, 0x9a, 0x00, 0xff]);
  // A ServerHello choosing 0x009a at TLS 1.2 with a 32-byte session id.
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    Buffer.alloc(32),
    Buffer.from([32]),
    Buffer.alloc(32),
    Buffer.from([0x00, 0x9a, 0]),
  ]);
  const hs = Buffer.concat([Buffer.from([2, 0, 0, body.length]), body]);
  const rec = Buffer.concat([Buffer.from([22, 3, 3, 0, hs.length]), hs]);
  assert.deepEqual(parseServerHello(rec), { accepted: true, version: 0x0303, suite: 0x009a });
  assert.equal(parseServerHello(rec.subarray(0, 20)), undefined, 'incomplete');
  assert.deepEqual(parseServerHello(Buffer.from([21, 3, 3, 0, 2, 2, 40])), { accepted: false, why: 'alert' });
});

function scanResult(versions: string[], suites: [string, string][]): ScanResult {
  return {
    host: 'h',
    port: 1,
    sslRequest: 'S',
    versions: {
      TLSv1: versions.includes('TLSv1'),
      'TLSv1.1': versions.includes('TLSv1.1'),
      'TLSv1.2': versions.includes('TLSv1.2'),
      'TLSv1.3': versions.includes('TLSv1.3'),
    },
    suites: suites.map(([version, name], i) => ({
      version: version as 'TLSv1.2',
      name,
      iana: findSuite(name)?.iana ?? name,
      id: '',
      bits: 0,
      preferred: i === 0,
    })),
    groups: [],
    handshakes: 0,
  };
}

test('policies: each passes a conforming server and fails an offending one, listing what offends', () => {
  const modern = scanResult(['TLSv1.3'], [['TLSv1.3', 'TLS_AES_256_GCM_SHA384']]);
  const mixed = scanResult(
    ['TLSv1.2', 'TLSv1.3'],
    [
      ['TLSv1.3', 'TLS_AES_256_GCM_SHA384'],
      ['TLSv1.2', 'ECDHE-RSA-AES256-GCM-SHA384'],
      ['TLSv1.2', 'ECDHE-RSA-AES128-SHA256'],
    ],
  );
  assert.equal(checkPolicy(modern, policyByName('modern')).pass, true);
  assert.deepEqual(checkPolicy(mixed, policyByName('modern')).offendingVersions, ['TLSv1.2']);
  const inter = checkPolicy(mixed, policyByName('intermediate'));
  assert.equal(inter.pass, false);
  assert.deepEqual(
    inter.offendingSuites.map((s) => s.name),
    ['ECDHE-RSA-AES128-SHA256'],
  );
  assert.equal(checkPolicy(mixed, policyByName('azure-single-server')).pass, true);
  assert.deepEqual(checkPolicy(mixed, policyByName('azure-single-server')).missingSuites, [
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES256-SHA384',
  ]);
  assert.equal(checkPolicy(mixed, policyByName('azure-flexible')).pass, true);
  const legacy = scanResult(['TLSv1', 'TLSv1.2'], [['TLSv1.2', 'TLS_RSA_WITH_SEED_CBC_SHA']]);
  const flex = checkPolicy(legacy, policyByName('azure-flexible'));
  assert.deepEqual(flex.offendingVersions, ['TLSv1']);
  assert.deepEqual(
    flex.offendingSuites.map((s) => s.name),
    ['TLS_RSA_WITH_SEED_CBC_SHA'],
  );
  assert.equal(checkPolicy({ ...modern, sslRequest: 'N' }, policyByName('modern')).pass, false);
  const custom = customPolicy({ min: '1.2', ciphers: 'AEAD' });
  assert.deepEqual(custom.versions, ['TLSv1.2', 'TLSv1.3']);
  assert.deepEqual(
    checkPolicy(mixed, custom).offendingSuites.map((s) => s.name),
    ['ECDHE-RSA-AES128-SHA256'],
  );
  assert.throws(() => policyByName('nope'), /unknown policy/);
  assert.throws(() => customPolicy({ ciphers: 'NOT-A-SUITE' }), /unknown cipher suite/);
  assert.equal(parseTlsVersion('tls1.3'), 'TLSv1.3');
  assert.equal(parseTlsVersion('TLSv1'), 'TLSv1');
});

const baseFacts: SslmodeFacts = {
  sslAnswer: 'S',
  tlsOk: true,
  tlsSessionAccepted: true,
  plaintextAccepted: true,
  rootStore: { label: 'root.crt', present: true, verified: true, reason: 'verifies' },
  requireVerifies: false,
  hostnameMatch: true,
};
const connecting = (f: SslmodeFacts) =>
  sslmodeVerdicts(f)
    .filter((v) => v.connects)
    .map((v) => v.sslmode);

test('sslmode verdicts follow libpq: fallbacks, default root.crt turning require into verify-ca, host names', () => {
  assert.deepEqual(connecting(baseFacts), ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']);
  assert.deepEqual(connecting({ ...baseFacts, plaintextAccepted: false }), [
    'allow',
    'prefer',
    'require',
    'verify-ca',
    'verify-full',
  ]);
  assert.deepEqual(connecting({ ...baseFacts, sslAnswer: 'N', tlsOk: false }), ['disable', 'allow', 'prefer']);
  assert.deepEqual(connecting({ ...baseFacts, hostnameMatch: false }), [
    'disable',
    'allow',
    'prefer',
    'require',
    'verify-ca',
  ]);
  const unverified = { ...baseFacts, rootStore: { ...baseFacts.rootStore, verified: false, reason: 'x' } };
  assert.deepEqual(connecting(unverified), ['disable', 'allow', 'prefer', 'require']);
  assert.deepEqual(connecting({ ...unverified, requireVerifies: true }), ['disable', 'allow', 'prefer']);
  assert.deepEqual(connecting({ ...baseFacts, tlsSessionAccepted: false, plaintextAccepted: false }), []);
});

test('startup replies: hba refusals, client-certificate demands and auth requests are told apart', () => {
  assert.equal(judgeStartup({ reply: 'auth', code: 10 }).accepted, true);
  const hba = judgeStartup({
    reply: 'error',
    error: {
      S: 'FATAL',
      C: '28000',
      M: 'no pg_hba.conf entry for host "1.2.3.4", user "u", database "d", no encryption',
    },
  });
  assert.equal(hba.accepted, false);
  const cert = judgeStartup({
    reply: 'error',
    error: { S: 'FATAL', C: '28000', M: 'connection requires a valid client certificate' },
  });
  assert.equal(cert.accepted === false && cert.reason, 'client-certificate');
  const role = judgeStartup({ reply: 'error', error: { S: 'FATAL', C: '28000', M: 'role "x" does not exist' } });
  assert.equal(role.accepted, undefined);
  assert.match(verifyReason('X509_V_ERR_CERT_HAS_EXPIRED'), /expired/);
  assert.match(
    verifyReason('UNABLE_TO_GET_ISSUER_CERT_LOCALLY', { kind: 'pinned-intermediate', subject: 'CN=I', issuer: 'CN=R' }),
    /intermediate "CN=I" but not the root above it \("CN=R"\)/,
  );
});

/** One of libpq's attempts, as pgtls/client records it. */
const attempt = (address: string, method: AttemptFailure['method'], message: string, host = 'localhost') =>
  Object.freeze({
    host,
    address,
    port: '5432',
    method,
    message,
    prefix: `connection to server at "${host}" (${address}), port 5432 failed: `,
  });

test('explained attempt: the last one that reached a server, not the first refused address', () => {
  const refused = attempt(
    '::1',
    'ssl',
    'Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?',
  );
  const cert = attempt('127.0.0.1', 'ssl', 'SSL error: certificate verify failed');
  assert.equal(explainedFailure([refused, cert]), cert);
  assert.deepEqual(skippedAttempts([refused, cert], cert), ['libpq tried ::1 port 5432 first: Connection refused']);
  // A timeout on the first address is passed over the same way.
  const slow = attempt('10.0.0.1', 'ssl', 'timeout expired');
  const pw = attempt('10.0.0.2', 'ssl', 'fe_sendauth: no password supplied');
  assert.equal(explainedFailure([slow, pw]), pw);
  // Nothing reached: the first attempt, and every refused endpoint is named ([v6]:port).
  const refused4 = attempt('127.0.0.1', 'ssl', 'Connection refused');
  assert.equal(explainedFailure([refused, refused4]), refused);
  assert.deepEqual(refusedEndpoints([refused, refused4, refused4]), ['[::1]:5432', '127.0.0.1:5432']);
  assert.equal(explainedFailure([]), undefined);
});

test('explained attempt: TLS then plaintext on one address (sslmode=prefer) explains the TLS attempt', () => {
  const refused = attempt('::1', 'ssl', 'Connection refused');
  const tls = attempt('127.0.0.1', 'ssl', 'SSL error: certificate verify failed');
  const plain = attempt(
    '127.0.0.1',
    'plain',
    'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "u", database "d", no encryption',
  );
  assert.equal(explainedFailure([refused, tls, plain]), tls);
  assert.deepEqual(skippedAttempts([refused, tls, plain], tls), [
    'libpq tried ::1 port 5432 first: Connection refused',
  ]);
  // A later host that refused does not hide an earlier host's real failure (target_session_attrs moves on).
  const readOnly = attempt('127.0.0.1', 'ssl', 'session is read-only', 'a');
  const other = attempt('127.0.0.2', 'ssl', 'Connection refused', 'b');
  assert.equal(explainedFailure([readOnly, other]), readOnly);
});

test('chainEnd: untrusted private root vs missing intermediate, from generated chains', async () => {
  const root = await createRootCA({ subject: { CN: 'Root' } });
  const inter = await createIntermediateCA(root, { subject: { CN: 'Inter' } });
  const viaInter = await createServerCert(inter, { subject: { CN: 'db' }, hosts: ['db'] });
  const direct = await createServerCert(root, { subject: { CN: 'db' }, hosts: ['db'] });
  const der = (...c: Issued[]) => c.map((x) => Buffer.from(x.cert.rawData));
  const store = (...c: Issued[]) => ({
    label: 'root.crt',
    path: 'root.crt',
    exists: true,
    certificates: c.map((x) => x.cert),
  });
  const end = async (sent: Buffer[], ...stores: ReturnType<typeof store>[]) =>
    chainEnd(await inspectChain(sent), await Promise.all(stores.map((s) => verifyAgainstStore(sent, s))), stores);
  // Leaf issued by the root, sent alone, no store of the user's: the root is not trusted here (not "missing").
  assert.deepEqual(await end(der(direct)), {
    kind: 'untrusted-root',
    subject: 'CN=Root',
    sent: false,
    selfSignedLeaf: false,
    leafOnly: true,
  });
  // Leaf + intermediate: ends at the root above the intermediate.
  assert.deepEqual(await end(der(viaInter, inter)), {
    kind: 'untrusted-root',
    subject: 'CN=Root',
    sent: false,
    selfSignedLeaf: false,
    leafOnly: false,
  });
  // Root sent; a self-signed server certificate.
  assert.deepEqual(await end(der(viaInter, inter, root)), {
    kind: 'untrusted-root',
    subject: 'CN=Root',
    sent: true,
    selfSignedLeaf: false,
    leafOnly: false,
  });
  assert.deepEqual(await end(der(root)), {
    kind: 'untrusted-root',
    subject: 'CN=Root',
    sent: true,
    selfSignedLeaf: true,
    leafOnly: false,
  });
  // Leaf from the intermediate sent alone, and the user's root is not its issuer: the intermediate is missing.
  assert.deepEqual(await end(der(viaInter), store(root)), {
    kind: 'missing-intermediate',
    issuer: 'CN=Inter',
    store: 'root.crt',
    roots: ['CN=Root'],
  });
  // Verifies, or the store's content already explains it (pinned intermediate): nothing to add.
  assert.equal(await end(der(viaInter, inter), store(root)), undefined);
  assert.equal(await end(der(direct), store(root)), undefined);
  assert.equal(await end(der(viaInter), store(inter)), undefined);
});
