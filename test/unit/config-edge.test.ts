/** The edge settings: proxy_protocol needs a trusted list; the list takes only addresses and CIDR ranges. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ERR_CONFIG_CONFLICT, ERR_CONFIG_VALUE, loadConfig } from '../../src/config/load.js';
import { PgtlsError } from '../../src/errors.js';

function fails(fn: () => unknown, code: string, message: string, details: Record<string, unknown> = {}): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PgtlsError, String(e));
    assert.equal(e.code, code);
    assert.equal(e.message, message);
    for (const [k, v] of Object.entries(details)) assert.equal(e.details[k], v, k);
    return true;
  });
}

test('defaults: PROXY protocol off and nobody trusted; ssl_sni off, no hosts_file', () => {
  const c = loadConfig({ cwd: '/srv' });
  assert.equal(c.proxy_protocol, false);
  assert.equal(c.proxy_protocol_trusted, '');
  assert.equal(c.ssl_sni, false);
  assert.equal(c.hosts_file, '');
});

test('proxy_protocol = on with an empty trusted list is refused, naming both keys and where they came from', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-edge-'));
  const file = join(dir, 'pgtls.conf');
  writeFileSync(file, 'proxy_protocol = on\n');
  fails(
    () => loadConfig({ file }),
    ERR_CONFIG_CONFLICT,
    'proxy_protocol = on requires a non-empty proxy_protocol_trusted',
    {
      proxy_protocol: `${file}:1`,
      proxy_protocol_trusted: 'default',
      hint: 'Set proxy_protocol_trusted to the addresses of the load balancers that send the PROXY header.',
    },
  );
});

test('proxy_protocol = on with a trusted list loads', () => {
  const c = loadConfig({ flags: { proxy_protocol: 'on', proxy_protocol_trusted: '127.0.0.1, 10.0.0.0/8 ::1' } });
  assert.equal(c.proxy_protocol, true);
  assert.equal(c.proxy_protocol_trusted, '127.0.0.1, 10.0.0.0/8 ::1');
});

test('a host name or a bad range in proxy_protocol_trusted is refused even with proxy_protocol off', () => {
  fails(
    () => loadConfig({ env: { PGTLS_PROXY_PROTOCOL_TRUSTED: '10.0.0.0/8, lb.internal' } }),
    ERR_CONFIG_VALUE,
    'invalid value for parameter "proxy_protocol_trusted": "lb.internal" is not an IP address or CIDR range',
    { source: 'PGTLS_PROXY_PROTOCOL_TRUSTED' },
  );
  fails(
    () => loadConfig({ flags: { proxy_protocol_trusted: '10.0.0.0/40' } }),
    ERR_CONFIG_VALUE,
    'invalid value for parameter "proxy_protocol_trusted": "10.0.0.0/40" is not an IP address or CIDR range',
  );
});

test('hosts_file is a path relative to the config file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-edge-'));
  const file = join(dir, 'pgtls.conf');
  writeFileSync(file, "ssl_sni = on\nhosts_file = 'pg_hosts.conf'\n");
  const c = loadConfig({ file });
  assert.equal(c.ssl_sni, true);
  assert.equal(c.hosts_file, join(dir, 'pg_hosts.conf'));
});
