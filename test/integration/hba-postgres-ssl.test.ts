/**
 * Server TLS settings side by side with PostgreSQL 18: the same certificate, key, CA, DH and passphrase settings are
 * given to a running server (ALTER SYSTEM + reload, read back from its log) and to loadTlsMaterial() /
 * checkServerKeyFile(); the messages must be the same. Differences that come from the OpenSSL version are asserted as
 * such.
 */
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { PgtlsError } from '../../src/errors.js';
import { postgresRunAs } from '../../src/gateway/embedded-postgres.js';
import { createRootCA, createServerCert } from '../../src/pki/generate.js';
import { type TlsSettings, loadTlsMaterial } from '../../src/tls/context.js';
import { checkServerKeyFile } from '../../src/tls/key-file.js';
import { type HbaReference, sslReloadLog, startReference } from '../support/hba-pg.js';

const isRoot = process.getuid?.() === 0;
let ref: HbaReference;
let pgUid: number;
let pgGid: number;
/** Files PostgreSQL reads (owned by its OS user) and our copies (owned by us), with the same names. */
const pgDir = mkdtempSync(join(tmpdir(), 'pgtls-sslref-pg-'));
const ourDir = mkdtempSync(join(tmpdir(), 'pgtls-sslref-us-'));
let base: TlsSettings;

const DH = [
  '-----BEGIN DH PARAMETERS-----',
  'MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz',
  '+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a',
  '87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7',
  'YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi',
  '7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD',
  'ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==',
  '-----END DH PARAMETERS-----',
  '',
].join('\n');

/** Write `name` into both directories: PostgreSQL's copy owned by its user, ours by us. */
function put(name: string, content: string, mode = 0o600): void {
  for (const d of [pgDir, ourDir]) {
    const p = join(d, name);
    writeFileSync(p, content);
    chmodSync(p, mode);
    if (d === pgDir && isRoot) chownSync(p, pgUid, pgGid);
  }
}

before(async () => {
  ref = await startReference();
  const runAs = await postgresRunAs();
  pgUid = runAs.uid ?? process.getuid?.() ?? 0;
  pgGid = runAs.gid ?? process.getgid?.() ?? 0;
  for (const d of [pgDir, ourDir]) chmodSync(d, 0o755);
  const root = await createRootCA({ subject: { CN: 'pgtls ssl reference root' } });
  const server = await createServerCert(root, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
  const other = await createServerCert(root, { subject: { CN: 'other' }, hosts: ['other'] });
  put('server.crt', server.certPem + root.certPem, 0o644);
  put('server.key', server.keyPem);
  put('other.key', other.keyPem);
  put(
    'enc.key',
    createPrivateKey(server.keyPem).export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'secret',
    }) as string,
  );
  put('root.crt', root.certPem, 0o644);
  put('junk.pem', 'junk\n', 0o644);
  put('dh.pem', DH, 0o644);
  // The ssl_* defaults of the configuration contract (PostgreSQL 18's), with this test's certificate and key.
  base = {
    ...loadConfig({ env: {} }),
    ssl_cert_file: join(ourDir, 'server.crt'),
    ssl_key_file: join(ourDir, 'server.key'),
  };
});
after(async () => {
  await ref?.destroy();
});

const norm = (s: string) => s.split(pgDir).join('<dir>').split(ourDir).join('<dir>');

/** PostgreSQL's first message for these settings ("ok" when it took them) and ours, paths normalised. */
async function both(
  settings: Record<string, string>,
  opts: { isReload?: boolean } = {},
): Promise<{ pg: string[]; ours: PgtlsError | undefined }> {
  const files = ['ssl_cert_file', 'ssl_key_file', 'ssl_ca_file', 'ssl_dh_params_file', 'ssl_crl_file'];
  const pgSettings: Record<string, string> = {
    ssl_cert_file: join(pgDir, 'server.crt'),
    ssl_key_file: join(pgDir, 'server.key'),
    ...Object.fromEntries(Object.entries(settings).map(([k, v]) => [k, files.includes(k) && v ? join(pgDir, v) : v])),
  };
  const pg = (await sslReloadLog(ref, pgSettings)).map(norm);
  const ourSettings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(settings)) {
    ourSettings[k] =
      files.includes(k) && v ? join(ourDir, v) : k === 'ssl_passphrase_command_supports_reload' ? v === 'on' : v;
  }
  let ours: PgtlsError | undefined;
  try {
    loadTlsMaterial({ ...base, ...ourSettings } as TlsSettings, opts);
  } catch (e) {
    if (!(e instanceof PgtlsError)) throw e;
    ours = e;
  }
  return { pg, ours };
}

async function same(settings: Record<string, string>, opts: { isReload?: boolean } = {}): Promise<void> {
  const { pg, ours } = await both(settings, opts);
  const label = JSON.stringify(settings);
  if (ours === undefined) {
    assert.deepEqual(pg, [], `${label}: pgtls accepts, PostgreSQL says ${pg.join(' / ')}`);
    return;
  }
  assert.equal(norm(ours.message), pg[0], label);
  if (ours.details.detail !== undefined) assert.equal(ours.details.detail, pg[1], `${label} (detail)`);
}

test('accepted by both: good files, a DH parameter file, TLS 1.3 only, other groups and suites', async () => {
  await same({});
  await same({ ssl_dh_params_file: 'dh.pem' });
  await same({ ssl_min_protocol_version: 'TLSv1.3' });
  await same({ ssl_groups: 'prime256v1' });
  await same({ ssl_ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', ssl_tls13_ciphers: 'TLS_AES_128_GCM_SHA256' });
  await same({ ssl_ca_file: 'root.crt' });
  // a CRL directory that does not exist (yet) is accepted; it holds no CRLs
  await same({ ssl_ca_file: 'root.crt', ssl_crl_dir: join(pgDir, 'no-such-crl-dir') });
});

test('refused by both with the same message: certificate, key, CA and DH files', async () => {
  await same({ ssl_cert_file: 'none.crt' });
  await same({ ssl_cert_file: 'junk.pem' });
  await same({ ssl_key_file: 'other.key' });
  await same({ ssl_ca_file: 'none.crt' });
  await same({ ssl_ca_file: 'junk.pem' });
  await same({ ssl_dh_params_file: 'none.pem' });
  await same({ ssl_dh_params_file: 'junk.pem' });
  await same({ ssl_ca_file: 'root.crt', ssl_crl_file: 'none.crl' });
  await same({ ssl_ca_file: 'root.crt', ssl_crl_file: 'junk.pem' });
});

test('refused by both with the same message (and detail): protocol range, TLS 1.3 suites, groups', async () => {
  await same({ ssl_min_protocol_version: 'TLSv1.3', ssl_max_protocol_version: 'TLSv1.2' });
  await same({ ssl_tls13_ciphers: 'FOO' });
  const { pg, ours } = await both({ ssl_groups: 'FOO' });
  assert.equal(ours?.message, pg[0]);
  assert.equal(ours?.details.hint, pg[1]);
});

test('encrypted key with ssl_passphrase_command, including the reload rule', async () => {
  await same(
    { ssl_key_file: 'enc.key', ssl_passphrase_command: 'echo secret', ssl_passphrase_command_supports_reload: 'on' },
    { isReload: true },
  );
  await same(
    { ssl_key_file: 'enc.key', ssl_passphrase_command: 'echo wrong', ssl_passphrase_command_supports_reload: 'on' },
    { isReload: true },
  );
  await same(
    { ssl_key_file: 'enc.key', ssl_passphrase_command: 'exit 3', ssl_passphrase_command_supports_reload: 'on' },
    { isReload: true },
  );
  await same({ ssl_key_file: 'enc.key', ssl_passphrase_command: 'echo secret' }, { isReload: true });
});

test('known difference: an ssl_ciphers list with no TLS <= 1.2 suite', async () => {
  // PostgreSQL 18 as packaged by embedded-postgres links OpenSSL 1.1, whose SSL_CTX_set_cipher_list() takes "FOO" and
  // leaves only TLS 1.3; OpenSSL 3 (Node's, and e.g. Debian's PostgreSQL) refuses it, and so does pgtls.
  const { pg, ours } = await both({ ssl_ciphers: 'FOO' });
  assert.deepEqual(pg, []);
  assert.equal(ours?.message, 'could not set the cipher list (no valid ciphers available)');
});

test(
  'key file permissions: the same verdicts as check_ssl_key_file_permissions() for the server user',
  {
    skip: !isRoot && 'needs root to create files owned by other users',
  },
  async () => {
    const cases: [string, number, number][] = [
      ['open.key', pgUid, 0o644],
      ['group.key', pgUid, 0o640],
      ['nobody.key', 65534, 0o600],
      ['rootgw.key', 0, 0o660],
    ];
    for (const [name, uid, mode] of cases) {
      const p = join(pgDir, name);
      copyFileSync(join(pgDir, 'server.key'), p);
      chownSync(p, uid, pgGid);
      chmodSync(p, mode);
    }
    mkdirSync(join(pgDir, 'dir.key'), { recursive: true });
    for (const name of ['open.key', 'group.key', 'nobody.key', 'rootgw.key', 'missing.key', 'dir.key']) {
      const p = join(pgDir, name);
      const pg = (await sslReloadLog(ref, { ssl_cert_file: join(pgDir, 'server.crt'), ssl_key_file: p })).map(norm);
      let ours = 'ok';
      try {
        checkServerKeyFile(p, pgUid);
      } catch (e) {
        ours = norm((e as Error).message);
      }
      assert.equal(ours, pg[0], name);
    }
    // root-owned 0640 passes the permission rule in both (PostgreSQL then cannot read it: not a permission verdict)
    const p = join(pgDir, 'root640.key');
    copyFileSync(join(pgDir, 'server.key'), p);
    chownSync(p, 0, 0);
    chmodSync(p, 0o640);
    const pg = await sslReloadLog(ref, { ssl_cert_file: join(pgDir, 'server.crt'), ssl_key_file: p });
    assert.doesNotMatch(pg.join('\n'), /group or world access|must be owned/);
    checkServerKeyFile(p, pgUid);
  },
);
