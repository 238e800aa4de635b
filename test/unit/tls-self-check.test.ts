/**
 * Issue 8 item 5: a configuration where no handshake can succeed — an ECDSA key with Azure Single Server's RSA-only
 * cipher list and TLS 1.3 excluded — is refused at start, in `serve --check` and on reload, naming the key type, the
 * cipher list and the fix. Real handshakes (in memory), real generated keys.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { checkConfiguration } from '../../src/gateway/gateway.js';
import { loadTlsMaterial } from '../../src/tls/context.js';
import { assertHandshakePossible, selfHandshake } from '../../src/tls/self-check.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';

const AZURE_SINGLE =
  'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256';
const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
let fx: GatewayFixtures;

before(async () => {
  fx = await makeFixtures();
});

function material(pair: { cert: string; key: string }, flags: Record<string, string>) {
  return loadTlsMaterial(
    loadConfig({ flags: { ssl_cert_file: pair.cert, ssl_key_file: pair.key, ...flags }, env: {} }),
  );
}

test('ECDSA key + RSA-only suites + TLS 1.2 at most: no handshake, and the error names key, list and fix', async () => {
  const m = material(fx.server, { ssl_ciphers: AZURE_SINGLE, ssl_max_protocol_version: 'TLSv1.2' });
  assert.equal(await selfHandshake(m), 'no shared cipher');
  await assert.rejects(assertHandshakePossible(m), (e: Error & { code?: string; details?: { hint?: string } }) => {
    assert.equal(e.code, 'PGTLS_ERR_TLS_CONFIG');
    assert.equal(
      e.message,
      `no TLS handshake can succeed with this configuration: the ECDSA key in "${fx.server.key}" cannot be used with any suite of ssl_ciphers '${AZURE_SINGLE}' (no shared cipher), and TLS 1.3 is excluded`,
    );
    assert.match(
      e.details?.hint ?? '',
      /^Use an RSA key and certificate \(pgtls cert server --key-type rsa-2048\), or add ECDHE-ECDSA suites/,
    );
    return true;
  });
});

test('the same list with an RSA key, or with TLS 1.3 allowed, or the default list: handshakes succeed', async () => {
  assert.equal(
    await selfHandshake(material(fx.serverRsa, { ssl_ciphers: AZURE_SINGLE, ssl_max_protocol_version: 'TLSv1.2' })),
    undefined,
  );
  assert.equal(await selfHandshake(material(fx.server, { ssl_ciphers: AZURE_SINGLE })), undefined);
  assert.equal(await selfHandshake(material(fx.server, { ssl_max_protocol_version: 'TLSv1.2' })), undefined);
});

test('serve --check refuses the impossible pair (exit 1) and accepts the RSA one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-selfcheck-'));
  const conf = (pair: { cert: string; key: string }) => {
    const f = join(dir, `gw-${pair.key.includes('Rsa') ? 'rsa' : 'ec'}.conf`);
    writeFileSync(
      f,
      `ssl_cert_file = '${pair.cert}'\nssl_key_file = '${pair.key}'\nssl_ciphers = '${AZURE_SINGLE}'\nssl_max_protocol_version = 'TLSv1.2'\nupstream = 'postgres://127.0.0.1:5432'\n`,
    );
    return f;
  };
  const bad = spawnSync(process.execPath, [MAIN, 'serve', '--check', '--config', conf(fx.server)], {
    encoding: 'utf8',
  });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^pgtls: no TLS handshake can succeed with this configuration: the ECDSA key/);
  assert.match(bad.stderr, /\nHINT: {2}Use an RSA key and certificate/);
  const ok = spawnSync(process.execPath, [MAIN, 'serve', '--check', '--config', conf(fx.serverRsa)], {
    encoding: 'utf8',
  });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^configuration OK/);
  await assert.rejects(checkConfiguration({ file: conf(fx.server), env: {} }), /no TLS handshake can succeed/);
});
