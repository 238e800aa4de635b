/**
 * src/tls/native.ts: the loader and its fallback, the per-material native context cache, and the addon's linkage
 * (it must use the OpenSSL inside Node, not the system's libssl).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config/load.js';
import { PgtlsError } from '../../src/errors.js';
import { createRootCA, createServerCert } from '../../src/pki/generate.js';
import { ERR_TLS_CONFIG, type TlsSettings, loadTlsMaterial } from '../../src/tls/context.js';
import { createNativeServerContext, loadNativeTransport, nativeUnavailableReason } from '../../src/tls/native.js';

const dir = mkdtempSync(join(tmpdir(), 'pgtls-native-'));
const addon = fileURLToPath(new URL('../../../native/build/Release/pgtls_native.node', import.meta.url));
const nativeModule = fileURLToPath(new URL('../../src/tls/native.js', import.meta.url));
let base: TlsSettings;
let otherCert: string;

before(async () => {
  const root = await createRootCA({ subject: { CN: 'pgtls native test root' } });
  const server = await createServerCert(root, { subject: { CN: 'localhost' }, hosts: ['localhost'] });
  const other = await createServerCert(root, { subject: { CN: 'other' }, hosts: ['other'] });
  writeFileSync(join(dir, 'server.crt'), server.certPem + root.certPem);
  writeFileSync(join(dir, 'server.key'), server.keyPem, { mode: 0o600 });
  otherCert = join(dir, 'other.crt');
  writeFileSync(otherCert, other.certPem);
  base = {
    ...loadConfig({ env: {} }),
    ssl_cert_file: join(dir, 'server.crt'),
    ssl_key_file: join(dir, 'server.key'),
  };
});

test('the addon is built and loads', () => {
  assert.equal(nativeUnavailableReason(), undefined);
  assert.equal(loadNativeTransport()?.name, 'native');
});

test("the addon links no libssl: OpenSSL's symbols come from the node binary", () => {
  const ldd = execFileSync('ldd', [addon], { encoding: 'utf8' });
  assert.doesNotMatch(ldd, /libssl|libcrypto/);
  const undef = execFileSync('nm', ['-D', '--undefined-only', addon], { encoding: 'utf8' });
  assert.match(undef, /\bU SSL_new\b/);
  assert.match(undef, /\bU uv_poll_start\b/);
  const nodeSyms = execFileSync('nm', ['-D', '--defined-only', process.execPath], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  assert.match(nodeSyms, /\bT SSL_new\b/);
});

test('one native context per material: the same material reuses it, a reloaded one gets its own', () => {
  const m1 = loadTlsMaterial(base);
  const m2 = loadTlsMaterial(base);
  const c1 = createNativeServerContext(m1);
  assert.equal(createNativeServerContext(m1), c1);
  assert.notEqual(createNativeServerContext(m2), c1);
});

test('a certificate file replaced after loading changes nothing: the context is built from the loaded chain', () => {
  // The reload test's case: a broken or different file on disk must not reach handshakes until a reload accepts it.
  const copy = join(dir, 'moving.crt');
  copyFileSync(base.ssl_cert_file, copy);
  const m = loadTlsMaterial({ ...base, ssl_cert_file: copy });
  copyFileSync(otherCert, copy); // a certificate of another key: paired with m's key, OpenSSL would refuse it
  assert.doesNotThrow(() => createNativeServerContext(m));
  writeFileSync(copy, 'garbage\n');
  assert.doesNotThrow(() => createNativeServerContext(loadTlsMaterial({ ...base })));
});

test("an unknown group set natively is a TLS_CONFIG error with OpenSSL's reason", () => {
  // loadTlsMaterial checks names with Node's parser first; this reaches the native check through a material whose
  // settings object is edited after loading (as no caller should), to show the native error path and its text.
  const m = loadTlsMaterial(base);
  const bad = { ...m, settings: { ...m.settings, ssl_groups: 'no-such-group' } };
  assert.throws(
    () => createNativeServerContext(bad),
    (e: unknown) =>
      e instanceof PgtlsError &&
      e.code === ERR_TLS_CONFIG &&
      /^could not create the native TLS context: could not set group names specified in ssl_groups: /.test(e.message),
  );
});

function childReason(addonPath: string): string {
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const m = await import(${JSON.stringify(nativeModule)}); console.log(JSON.stringify([m.loadNativeTransport() === undefined, m.nativeUnavailableReason()]));`,
    ],
    { env: { ...process.env, PGTLS_NATIVE_ADDON: addonPath }, encoding: 'utf8' },
  );
  const [missing, reason] = JSON.parse(r.stdout) as [boolean, string];
  assert.equal(missing, true);
  return reason;
}

test('fallback: no addon built -> undefined, with the reason', () => {
  assert.equal(childReason(join(dir, 'no-such.node')), 'the native addon was not built (npm run build:native)');
});

test("fallback: a broken addon file -> undefined, with the loader's reason", () => {
  const broken = join(dir, 'broken.node');
  writeFileSync(broken, Buffer.alloc(4096, 'x'));
  assert.match(childReason(broken), /^the native addon could not be loaded: .*invalid ELF header$/);
});
