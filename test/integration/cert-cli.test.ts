/**
 * `pgtls cert …` as users run it: the compiled CLI as a child process, its files checked with the openssl binary.
 */
import assert from 'node:assert/strict';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { opensslHash, opensslVerify, pgtlsCert, tempDir } from '../support/cert-helpers.js';
import { run } from '../support/clients.js';

let dir: string;
const cert = (...args: string[]) => pgtlsCert(args, dir);

async function ok(...args: string[]) {
  const r = await cert(...args);
  assert.equal(r.code, 0, `pgtls cert ${args.join(' ')}\n${r.stdout}${r.stderr}`);
  return r;
}

before(async () => {
  dir = await tempDir();
  await ok('ca', '--cn', 'CLI Root');
  await ok('intermediate', '--ca', 'root.crt', '--cn', 'CLI Inter');
  await ok('server', '--ca', 'intermediate.crt', '--host', 'db.example.com', '--ip', '127.0.0.1');
  await ok('client', '--ca', 'intermediate.crt', '--user', 'alice', '--pk8', 'alice.pk8', '--der', 'alice.der');
});

test('--help on every subcommand exits 0 and shows its usage', async () => {
  const subs = [
    'ca',
    'intermediate',
    'server',
    'client',
    'revoke',
    'crl',
    'bundle',
    'convert',
    'inspect',
    'verify',
    'roots',
  ];
  for (const s of subs) {
    const r = await cert(s, '--help');
    assert.equal(r.code, 0, s);
    assert.match(r.stdout, new RegExp(`^Usage: pgtls cert ${s}`), s);
  }
  const top = await cert('--help');
  assert.equal(top.code, 0);
  assert.match(top.stdout, /Subcommands:/);
  const unknown = await cert('frobnicate');
  assert.equal(unknown.code, 2, 'usage errors exit 2');
  assert.match(unknown.stderr, /^pgtls: unknown cert subcommand "frobnicate" \[PGTLS_ERR_USAGE\]/);
});

test('the recipe writes keys 0600, a server chain leaf-first without the root, accepted by openssl verify', async () => {
  for (const k of ['root.key', 'intermediate.key', 'server.key', 'alice.key', 'alice.pk8']) {
    assert.equal((await stat(join(dir, k))).mode & 0o777, 0o600, k);
  }
  assert.equal((await stat(join(dir, 'server.crt'))).mode & 0o777, 0o644);
  const chain = await readFile(join(dir, 'server.crt'), 'utf8');
  assert.equal(chain.match(/BEGIN CERTIFICATE/g)?.length, 2, 'leaf + intermediate, no root');
  const subjects = await run('sh', [
    '-c',
    `cd '${dir}' && openssl crl2pkcs7 -nocrl -certfile server.crt | openssl pkcs7 -print_certs -noout`,
  ]);
  assert.match(subjects.stdout, /subject=CN = db\.example\.com[\s\S]*subject=CN = CLI Inter/);
  assert.equal(
    (
      await opensslVerify(
        ['-purpose', 'sslserver', '-CAfile', 'root.crt', '-untrusted', 'server.crt', 'server.crt'],
        dir,
      )
    ).ok,
    true,
  );
  assert.equal(
    (await opensslVerify(['-purpose', 'sslclient', '-CAfile', 'root.crt', '-untrusted', 'alice.crt', 'alice.crt'], dir))
      .ok,
    true,
  );
  const text = await run('sh', [
    '-c',
    `cd '${dir}' && openssl x509 -in server.crt -noout -ext subjectAltName,basicConstraints,extendedKeyUsage`,
  ]);
  assert.match(text.stdout, /DNS:db\.example\.com, IP Address:127\.0\.0\.1/);
  assert.match(text.stdout, /CA:FALSE/);
  assert.match(text.stdout, /TLS Web Server Authentication/);
  const inter = await run('sh', [
    '-c',
    `cd '${dir}' && openssl x509 -in intermediate.crt -noout -ext basicConstraints,keyUsage`,
  ]);
  assert.match(inter.stdout, /CA:TRUE, pathlen:0/);
  assert.match(inter.stdout, /Certificate Sign, CRL Sign/);
});

test('JDBC outputs: DER certificate and DER PKCS#8 key (plain and encrypted) open with openssl', async () => {
  const der = await run('openssl', ['x509', '-inform', 'DER', '-in', join(dir, 'alice.der'), '-noout', '-subject']);
  assert.equal(der.stdout.trim(), 'subject=CN = alice');
  const pk8 = await run('openssl', ['pkcs8', '-inform', 'DER', '-nocrypt', '-in', join(dir, 'alice.pk8')]);
  assert.equal(pk8.code, 0, pk8.stderr);
  await ok('client', '--ca', 'intermediate.crt', '--user', 'bob', '--pk8', 'bob.pk8', '--passout', 'pass:jdbc-secret');
  const enc = await run('openssl', [
    'pkcs8',
    '-inform',
    'DER',
    '-in',
    join(dir, 'bob.pk8'),
    '-passin',
    'pass:jdbc-secret',
  ]);
  assert.equal(enc.code, 0, enc.stderr);
  const wrong = await run('openssl', ['pkcs8', '-inform', 'DER', '-in', join(dir, 'bob.pk8'), '-passin', 'pass:nope']);
  assert.notEqual(wrong.code, 0);
});

test('an existing output is refused with exit 1 and nothing is written; --force replaces', async () => {
  const before = await readFile(join(dir, 'root.key'));
  const r = await cert('ca', '--cn', 'Again');
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr,
    'pgtls: root.crt: the file already exists; nothing was written [PGTLS_ERR_PKI_OUTPUT_EXISTS]\nhint: Choose another output name, or pass --force to replace it.\n',
  );
  assert.deepEqual(await readFile(join(dir, 'root.key')), before);
  // Only the key exists: still refused, and the certificate is not created alone.
  await writeFile(join(dir, 'lonely.key'), 'keep');
  const r2 = await cert('ca', '--out', 'lonely.crt');
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /^pgtls: lonely\.key: the file already exists; nothing was written/);
  await assert.rejects(stat(join(dir, 'lonely.crt')));
  assert.equal(await readFile(join(dir, 'lonely.key'), 'utf8'), 'keep');
  const forced = await cert('ca', '--out', 'lonely.crt', '--force');
  assert.equal(forced.code, 0, forced.stderr);
});

test('encrypted CA key: missing and wrong passphrase are explained; the right one signs', async () => {
  await ok('ca', '--out', 'enc-root.crt', '--passout', 'pass:s3cret');
  assert.match(await readFile(join(dir, 'enc-root.key'), 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
  const none = await cert('server', '--ca', 'enc-root.crt', '--host', 'a', '--out', 'a.crt');
  assert.equal(none.code, 1);
  assert.equal(
    none.stderr,
    'pgtls: enc-root.key: the private key is encrypted and no passphrase was given [PGTLS_ERR_PKI_KEY_PASSPHRASE]\nhint: Pass --passin pass:…, env:VAR or file:PATH.\n',
  );
  const wrong = await cert('server', '--ca', 'enc-root.crt', '--host', 'a', '--out', 'a.crt', '--passin', 'pass:guess');
  assert.equal(wrong.code, 1);
  assert.match(
    wrong.stderr,
    /^pgtls: enc-root\.key: wrong passphrase for the encrypted private key \[PGTLS_ERR_PKI_KEY_PASSPHRASE\]/,
  );
  await assert.rejects(stat(join(dir, 'a.crt')));
  const env = await pgtlsCert(
    ['server', '--ca', 'enc-root.crt', '--host', 'a', '--out', 'a.crt', '--passin', 'env:CA_PASS'],
    dir,
    { CA_PASS: 's3cret' },
  );
  assert.equal(env.code, 0, env.stderr);
});

test('bad inputs: key of another certificate, not a certificate, a missing file, a leaf as CA', async () => {
  const mismatch = await cert('server', '--ca', 'root.crt', '--ca-key', 'server.key', '--host', 'x', '--out', 'x.crt');
  assert.equal(mismatch.code, 1);
  assert.match(
    mismatch.stderr,
    /^pgtls: server\.key: this private key does not belong to the certificate in root\.crt \[PGTLS_ERR_PKI_KEY_MISMATCH\]/,
  );
  await writeFile(join(dir, 'notes.txt'), 'not a certificate\n');
  const junk = await cert('inspect', 'notes.txt');
  assert.equal(junk.code, 1);
  assert.match(
    junk.stderr,
    /^pgtls: notes\.txt: no certificate found: neither PEM nor DER \[PGTLS_ERR_PKI_NOT_CERTIFICATE\]/,
  );
  const missing = await cert('inspect', 'nope.crt');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^pgtls: nope\.crt: cannot read the file \(no such file\) \[PGTLS_ERR_PKI_READ\]/);
  const leafCa = await cert('server', '--ca', 'alice.crt', '--host', 'x', '--out', 'x.crt');
  assert.equal(leafCa.code, 1);
  assert.match(
    leafCa.stderr,
    /^pgtls: alice\.crt: CN=alice is not a CA certificate \(no CA:TRUE basic constraint\) \[PGTLS_ERR_PKI_NOT_CA\]/,
  );
  const noHost = await cert('server', '--ca', 'root.crt');
  assert.equal(noHost.code, 2);
  assert.match(noHost.stderr, /^pgtls: give at least one --host or --ip \[PGTLS_ERR_USAGE\]/);
});

test('revoke + crl: file and hashed directory accepted by openssl (-crl_check_all, -CApath), hash as openssl computes', async () => {
  await ok('client', '--ca', 'intermediate.crt', '--user', 'mallory');
  await ok('revoke', '--ca', 'intermediate.crt', '--cert', 'mallory.crt', '--reason', 'keyCompromise');
  const again = await cert('revoke', '--ca', 'intermediate.crt', '--cert', 'mallory.crt');
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^pgtls: serial [0-9a-f]+ is already revoked \(keyCompromise, /);
  const unknown = await cert('revoke', '--ca', 'intermediate.crt', '--serial', '01:02:03');
  assert.equal(unknown.code, 1);
  assert.match(
    unknown.stderr,
    /^pgtls: serial 010203 was not issued by CN=CLI Inter \(not in intermediate\.db\.json\)/,
  );
  await ok('crl', '--ca', 'root.crt', '--ca', 'intermediate.crt', '--out', 'crl.pem', '--dir', 'crl.d');
  const revoked = await opensslVerify(
    ['-crl_check_all', '-CRLfile', 'crl.pem', '-CAfile', 'root.crt', '-untrusted', 'mallory.crt', 'mallory.crt'],
    dir,
  );
  assert.equal(revoked.reason, 'certificate revoked');
  assert.equal(revoked.depth, 0);
  const good = await opensslVerify(
    ['-crl_check_all', '-CRLfile', 'crl.pem', '-CAfile', 'root.crt', '-untrusted', 'alice.crt', 'alice.crt'],
    dir,
  );
  assert.equal(good.ok, true, good.output);
  // The hashed directory is found by OpenSSL's own lookup (-CApath), as PostgreSQL's ssl_crl_dir uses it.
  const files = (await readdir(join(dir, 'crl.d'))).sort();
  assert.equal(files.length, 2);
  for (const f of files) assert.equal(`${await opensslHash('crl', join(dir, 'crl.d', f))}.r0`, f);
  const viaDir = await opensslVerify(
    ['-crl_check_all', '-CApath', 'crl.d', '-CAfile', 'root.crt', '-untrusted', 'mallory.crt', 'mallory.crt'],
    dir,
  );
  assert.equal(viaDir.reason, 'certificate revoked');
  const ours = await cert('verify', '--root', 'root.crt', '--crl-dir', 'crl.d', '--purpose', 'client', 'mallory.crt');
  assert.equal(ours.code, 1);
  assert.match(
    ours.stdout,
    /^error X509_V_ERR_CERT_REVOKED at depth 0 \(CN=mallory\): certificate revoked\n {2}revoked on .*, reason keyCompromise/,
  );
  // Re-issuing into the same directory replaces each CA's CRL instead of adding .r1 files.
  await ok('crl', '--ca', 'root.crt', '--ca', 'intermediate.crt', '--dir', 'crl.d');
  assert.deepEqual((await readdir(join(dir, 'crl.d'))).sort(), files);
  const exists = await cert('crl', '--ca', 'root.crt', '--out', 'crl.pem');
  assert.equal(exists.code, 1);
});

test('bundle: orders shuffled files, drops duplicates, warns on a root, refuses a broken chain', async () => {
  const r = await ok('bundle', '--out', 'chain.pem', '--json', 'root.crt', 'server.crt', 'intermediate.crt');
  const j = JSON.parse(r.stdout) as { order: { subject: string }[]; notes: string[] };
  assert.deepEqual(
    j.order.map((o) => o.subject),
    ['CN=db.example.com', 'CN=CLI Inter', 'CN=CLI Root'],
  );
  assert.ok(j.notes.some((n) => n.startsWith('dropped a duplicate of CN=CLI Inter')));
  assert.ok(j.notes.some((n) => n.startsWith('warning: the chain includes the root CN=CLI Root')));
  await ok('bundle', '--out', 'chain2.pem', '--drop-root', 'root.crt', 'server.crt');
  assert.equal((await readFile(join(dir, 'chain2.pem'), 'utf8')).match(/BEGIN CERTIFICATE/g)?.length, 2);
  await ok('convert', 'intermediate.crt', '--out', 'inter-only.der');
  const broken = await cert('bundle', '--out', 'broken.pem', 'alice.der', 'root.crt');
  assert.equal(broken.code, 1);
  assert.equal(
    broken.stderr,
    'pgtls: the certificates do not form one chain: 2 of them sign nothing else (CN=alice (alice.der); CN=CLI Root (root.crt)); nothing given signed CN=alice (alice.der) [PGTLS_ERR_PKI_CHAIN_BROKEN]\nhint: Add the certificate of CN=CLI Inter, or remove the unrelated ones.\n',
  );
  await assert.rejects(stat(join(dir, 'broken.pem')));
  await ok('bundle', '--ca-bundle', '--out', 'cas.pem', 'inter-only.der', 'root.crt');
  const cas = await readFile(join(dir, 'cas.pem'), 'utf8');
  assert.ok(cas.startsWith('-----BEGIN CERTIFICATE-----'));
  const first = await run('openssl', ['x509', '-in', join(dir, 'cas.pem'), '-noout', '-subject']);
  assert.equal(first.stdout.trim(), 'subject=CN = CLI Root', 'roots first');
});

test('convert: DER ↔ PEM as openssl x509 -inform DER does; PKCS#8 → PKCS#1; format detected by content', async () => {
  await ok('convert', 'alice.der', '--out', 'alice-from-der.pem');
  const theirs = await run('openssl', ['x509', '-inform', 'DER', '-in', join(dir, 'alice.der')]);
  assert.equal(await readFile(join(dir, 'alice-from-der.pem'), 'utf8'), theirs.stdout);
  await ok('ca', '--out', 'rsa.crt', '--key-type', 'rsa-2048');
  await ok('convert', 'rsa.key', '--to', 'pem', '--key-format', 'pkcs1', '--out', 'rsa-pkcs1.key');
  assert.match(await readFile(join(dir, 'rsa-pkcs1.key'), 'utf8'), /^-----BEGIN RSA PRIVATE KEY-----/);
  assert.equal((await stat(join(dir, 'rsa-pkcs1.key'))).mode & 0o777, 0o600);
  const check = await run('openssl', ['rsa', '-check', '-noout', '-in', join(dir, 'rsa-pkcs1.key')]);
  assert.equal(check.code, 0, check.stderr);
  await ok('convert', 'rsa-pkcs1.key', '--out', 'rsa.pk8');
  const pk8 = await run('openssl', ['pkcs8', '-inform', 'DER', '-nocrypt', '-in', join(dir, 'rsa.pk8')]);
  assert.equal(pk8.code, 0);
  const bad = await cert('convert', 'root.db.json', '--out', 'x.der');
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr,
    /^pgtls: root\.db\.json: not a certificate, CRL or private key in PEM or DER \[PGTLS_ERR_PKI_UNKNOWN_FORMAT\]/,
  );
});

test('inspect: a correct chain exits 0; wrong order and a mismatched key exit 1 with the reason', async () => {
  const good = await ok('inspect', 'server.crt', '--key', 'server.key', '--json');
  const j = JSON.parse(good.stdout) as { ok: boolean; certificates: { subject: string; signedBy: number | null }[] };
  assert.equal(j.ok, true);
  assert.equal(j.certificates[0]!.signedBy, 1);
  await ok('bundle', '--out', 'reversed.pem', '--ca-bundle', 'server.crt');
  const rev = await cert('inspect', 'reversed.pem');
  assert.equal(rev.code, 1);
  assert.match(
    rev.stdout,
    /error: wrong order: #2 \(CN=db\.example\.com\) is signed by #1, which must come right after it/,
  );
  const key = await cert('inspect', 'server.crt', '--key', 'alice.key');
  assert.equal(key.code, 1);
  assert.match(key.stdout, /error: the key does not belong to #1 \(CN=db\.example\.com\) \(different public key\)/);
});

test('verify: exit 0 with the path; exit 1 with OpenSSL reason or libpq host-name text', async () => {
  const good = await ok('verify', '--root', 'root.crt', '--host', 'db.example.com', 'server.crt');
  assert.match(
    good.stdout,
    /^OK for host db\.example\.com: server\.crt\n {2}0: CN=db\.example\.com\n {2}1: CN=CLI Inter\n {2}2: CN=CLI Root {2}\[trusted root store\]/,
  );
  const noInter = await cert('verify', '--root', 'root.crt', 'alice.der');
  assert.equal(noInter.code, 1);
  assert.match(
    noInter.stdout,
    /^error X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY at depth 0 \(CN=alice\): unable to get local issuer certificate/,
  );
  const host = await cert('verify', '--root', 'root.crt', '--host', 'evil.example.com', 'server.crt');
  assert.equal(host.code, 1);
  assert.match(
    host.stdout,
    /^error: server certificate for "db\.example\.com" \(and 1 other name\) does not match host name "evil\.example\.com"/,
  );
  const purpose = await cert('verify', '--root', 'root.crt', '--json', 'alice.crt');
  assert.equal(purpose.code, 1);
  assert.equal(
    (JSON.parse(purpose.stdout) as { error: { reason: string } }).error.reason,
    'unsuitable certificate purpose',
  );
});

test('roots azure: the three roots from the local stores, each its known fingerprint; unknown subject exits 1', async () => {
  const r = await ok('roots', 'azure', '--out', 'azure.pem', '--json');
  const j = JSON.parse(r.stdout) as { roots: { name: string; found: boolean; foundIn: string[] }[] };
  assert.deepEqual(
    j.roots.map((x) => [x.name, x.found]),
    [
      ['DigiCert Global Root G2', true],
      ['Microsoft RSA Root Certificate Authority 2017', true],
      ['DigiCert Global Root CA', true],
    ],
  );
  const fps = await run('sh', [
    '-c',
    `cd '${dir}' && openssl crl2pkcs7 -nocrl -certfile azure.pem | openssl pkcs7 -print_certs | awk '/BEGIN/,/END/' > split.pem && csplit -s -z -f az split.pem '/BEGIN/' '{*}' && for f in az*; do openssl x509 -in $f -noout -fingerprint -sha256; done`,
  ]);
  assert.match(
    fps.stdout,
    /CB:3C:CB:B7:60:31:E5:E0:13:8F:8D:D3:9A:23:F9:DE:47:FF:C3:5E:43:C1:14:4C:EA:27:D4:6A:5A:B1:CB:5F/,
  );
  assert.match(
    fps.stdout,
    /C7:41:F7:0F:4B:2A:8D:88:BF:2E:71:C1:41:22:EF:53:EF:10:EB:A0:CF:A5:E6:4C:FA:20:F4:18:85:30:73:E0/,
  );
  assert.match(
    fps.stdout,
    /43:48:A0:E9:44:4C:78:CB:26:5E:05:8D:5E:89:44:B4:D8:4F:96:62:BD:26:DB:25:7F:89:34:A4:43:C7:01:61/,
  );
  const none = await cert('roots', '--subject', 'No Such Root Anywhere');
  assert.equal(none.code, 1);
  assert.equal(none.stdout, 'no root certificate matches "No Such Root Anywhere"\n');
});

test('a deeper hierarchy: root → intermediate (pathlen 1) → sub-intermediate → server keeps the whole chain', async () => {
  await ok('intermediate', '--ca', 'root.crt', '--cn', 'Policy CA', '--pathlen', '1', '--out', 'policy.crt');
  await ok('intermediate', '--ca', 'policy.crt', '--cn', 'Issuing CA', '--out', 'issuing.crt');
  await ok('server', '--ca', 'issuing.crt', '--host', 'deep.example.com', '--out', 'deep.crt');
  const chain = await readFile(join(dir, 'deep.crt'), 'utf8');
  assert.equal(chain.match(/BEGIN CERTIFICATE/g)?.length, 3, 'leaf, issuing, policy; no root');
  assert.equal((await opensslVerify(['-CAfile', 'root.crt', '-untrusted', 'deep.crt', 'deep.crt'], dir)).ok, true);
  const ours = await ok('verify', '--root', 'root.crt', '--host', 'deep.example.com', 'deep.crt');
  assert.match(ours.stdout, /3: CN=CLI Root {2}\[trusted root store\]/);
  // Below the pathlen-0 intermediate, a further CA breaks the chain: OpenSSL and pgtls agree on why.
  await ok('intermediate', '--ca', 'intermediate.crt', '--cn', 'Too Deep', '--out', 'too-deep.crt');
  await ok('server', '--ca', 'too-deep.crt', '--host', 'x.example.com', '--out', 'too-deep-leaf.crt');
  const theirs = await opensslVerify(
    ['-CAfile', 'root.crt', '-untrusted', 'too-deep-leaf.crt', 'too-deep-leaf.crt'],
    dir,
  );
  assert.equal(theirs.reason, 'path length constraint exceeded');
  const mine = await cert('verify', '--root', 'root.crt', 'too-deep-leaf.crt');
  assert.equal(mine.code, 1);
  assert.match(
    mine.stdout,
    new RegExp(
      `^error X509_V_ERR_PATH_LENGTH_EXCEEDED at depth ${theirs.depth} \\(CN=CLI Inter\\): path length constraint exceeded`,
    ),
  );
});

test("a root made with the seed's openssl recipe (RSA, -text output in the file) signs pgtls certificates", async () => {
  const seed = await run('sh', [
    '-c',
    `cd '${dir}' && openssl req -new -nodes -text -out seed-root.csr -keyout seed-root.key -subj "/CN=root.yourdomain.com" && openssl x509 -req -in seed-root.csr -text -days 3650 -extfile /etc/ssl/openssl.cnf -extensions v3_ca -signkey seed-root.key -out seed-root.crt`,
  ]);
  assert.equal(seed.code, 0, seed.stderr);
  await ok('server', '--ca', 'seed-root.crt', '--host', 'dbhost.yourdomain.com', '--out', 'seed-server.crt');
  assert.equal((await opensslVerify(['-CAfile', 'seed-root.crt', 'seed-server.crt'], dir)).ok, true);
  const r = await ok('inspect', 'seed-root.crt', '--key', 'seed-root.key');
  assert.match(r.stdout, /key {9}RSA 2048/);
});
