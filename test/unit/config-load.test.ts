/**
 * src/config/schema.ts + load.ts: value parsing with PostgreSQL's messages (checked against PostgreSQL 18's log after
 * a reload), precedence flag > file > env > default, paths relative to the config file, unknown keys, conflicts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  ERR_CONFIG_CONFLICT,
  ERR_CONFIG_UNKNOWN_KEY,
  ERR_CONFIG_VALUE,
  type GatewayConfig,
  loadConfig,
} from '../../src/config/load.js';
import { SCHEMA, parseDuration, parseValue } from '../../src/config/schema.js';
import { PgtlsError } from '../../src/errors.js';

function fails(fn: () => unknown, code: string, message: string, details?: Record<string, unknown>): PgtlsError {
  let err: PgtlsError | undefined;
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PgtlsError, String(e));
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    for (const [k, v] of Object.entries(details ?? {})) assert.equal(e.details[k], v, k);
    err = e;
    return true;
  });
  return err!;
}

function confFile(text: string): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-load-'));
  const file = join(dir, 'pgtls.conf');
  writeFileSync(file, text);
  return { dir, file };
}

test('defaults are PostgreSQL 18 defaults for the ssl_* keys', () => {
  const c = loadConfig({ cwd: '/srv' });
  assert.equal(c.port, 6432);
  assert.equal(c.ssl, true);
  assert.equal(c.ssl_ciphers, 'HIGH:MEDIUM:+3DES:!aNULL');
  assert.equal(c.ssl_groups, 'X25519:prime256v1');
  assert.equal(c.ssl_prefer_server_ciphers, true);
  assert.equal(c.ssl_min_protocol_version, 'TLSv1.2');
  assert.equal(c.ssl_max_protocol_version, '');
  assert.equal(c.ssl_passphrase_command_supports_reload, false);
  assert.equal(c.require_secure_transport, true);
  assert.equal(c.authentication_timeout, 60_000);
  assert.equal(c.data_directory, '/srv/pgtls-data');
  assert.equal(c.sources.port, 'default');
  assert.ok(Object.isFrozen(c));
});

test('booleans: every spelling PostgreSQL accepts, and its message for the rest', () => {
  for (const v of ['on', 'ON', 'true', 'tr', 't', 'yes', 'y', '1'])
    assert.deepEqual(parseValue('ssl', v), { ok: true, value: true }, v);
  for (const v of ['off', 'of', 'false', 'f', 'no', 'n', '0'])
    assert.deepEqual(parseValue('ssl', v), { ok: true, value: false }, v);
  for (const v of ['maybe', 'o', '2', '', ' on', 'off ']) {
    assert.deepEqual(parseValue('ssl_passphrase_command_supports_reload', v), {
      ok: false,
      message: 'parameter "ssl_passphrase_command_supports_reload" requires a Boolean value',
    });
  }
});

test('enums match case-insensitively and store PostgreSQL spelling; bad values list the choices', () => {
  assert.deepEqual(parseValue('ssl_min_protocol_version', 'tlsv1.3'), { ok: true, value: 'TLSv1.3' });
  assert.deepEqual(parseValue('ssl_max_protocol_version', ''), { ok: true, value: '' });
  assert.deepEqual(parseValue('ssl_min_protocol_version', 'TLSv1.4'), {
    ok: false,
    message: 'invalid value for parameter "ssl_min_protocol_version": "TLSv1.4"',
    hint: 'Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.',
  });
  // PostgreSQL lists the empty value of ssl_max_protocol_version too.
  assert.deepEqual(parseValue('ssl_max_protocol_version', 'x'), {
    ok: false,
    message: 'invalid value for parameter "ssl_max_protocol_version": "x"',
    hint: 'Available values: , TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.',
  });
  assert.deepEqual(parseValue('ssl_min_protocol_version', ''), {
    ok: false,
    message: 'invalid value for parameter "ssl_min_protocol_version": ""',
    hint: 'Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.',
  });
});

test('integers: range and syntax messages', () => {
  assert.deepEqual(parseValue('port', '5432'), { ok: true, value: 5432 });
  assert.deepEqual(parseValue('port', '70000'), {
    ok: false,
    message: '70000 is outside the valid range for parameter "port" (0 .. 65535)',
  });
  assert.deepEqual(parseValue('port', 'abc'), { ok: false, message: 'invalid value for parameter "port": "abc"' });
});

test('durations: units, fractions, rounding to the parameter unit as PostgreSQL (rint), range and unit messages', () => {
  const ok = (v: string, ms: number) =>
    assert.deepEqual(parseValue('authentication_timeout', v), { ok: true, value: ms }, v);
  ok('60', 60_000);
  ok('60s', 60_000);
  ok('10 min', 600_000);
  ok('1500ms', 2000); // 1.5 s rounds to 2 s
  ok('2500ms', 2000); // half to even
  ok('2.5', 2000);
  ok('1.5min', 90_000);
  ok('1000000us', 1000);
  const range = (v: string, shown: string) =>
    assert.deepEqual(
      parseValue('authentication_timeout', v),
      {
        ok: false,
        message: `${shown} s is outside the valid range for parameter "authentication_timeout" (1 s .. 600 s)`,
      },
      v,
    );
  range('500ms', '0');
  range('-1', '-1');
  range('1h', '3600');
  assert.deepEqual(parseValue('authentication_timeout', '10x'), {
    ok: false,
    message: 'invalid value for parameter "authentication_timeout": "10x"',
    hint: 'Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".',
  });
  assert.equal(parseDuration('1d', 's'), 86_400_000);
  assert.equal(parseDuration('', 's'), undefined);
});

test('every key of the schema has a valid default', () => {
  for (const key of Object.keys(SCHEMA) as (keyof typeof SCHEMA)[]) {
    assert.equal(parseValue(key, SCHEMA[key].default).ok, true, key);
  }
});

test('precedence: flag > file > env PGTLS_<KEY> > default, and sources say where each value came from', () => {
  const { file } = confFile('port = 7000\nssl_ciphers = HIGH\n');
  const env = { PGTLS_PORT: '8000', PGTLS_SSL_CIPHERS: 'MEDIUM', PGTLS_ERROR_STYLE: 'azure' };
  const c = loadConfig({ file, env, flags: { port: '9000' }, cwd: '/' });
  assert.equal(c.port, 9000);
  assert.equal(c.sources.port, '--port');
  assert.equal(c.ssl_ciphers, 'HIGH');
  assert.equal(c.sources.ssl_ciphers, `${file}:2`);
  assert.equal(c.error_style, 'azure');
  assert.equal(c.sources.error_style, 'PGTLS_ERROR_STYLE');
  assert.equal(c.upstream_sslmode, 'prefer');
  assert.equal(c.sources.upstream_sslmode, 'default');
  assert.equal(c.config_file, file);
  // without the flag the file wins over the environment
  assert.equal(loadConfig({ file, env, cwd: '/' }).port, 7000);
  // without the file the environment wins over the default
  assert.equal(loadConfig({ env, cwd: '/' }).port, 8000);
});

test('flags accept dashes and the ssl_ecdh_curve alias; the last line of a file wins', () => {
  const { file } = confFile('ssl_ecdh_curve = prime256v1\nport = 1\nport = 2\n');
  const c = loadConfig({ file, cwd: '/' });
  assert.equal(c.ssl_groups, 'prime256v1');
  assert.equal(c.port, 2);
  assert.equal(c.sources.port, `${file}:3`);
  const f = loadConfig({ flags: { 'ssl-min-protocol-version': 'TLSv1.3', 'ssl-ecdh-curve': 'X25519' }, cwd: '/' });
  assert.equal(f.ssl_min_protocol_version, 'TLSv1.3');
  assert.equal(f.ssl_groups, 'X25519');
  assert.equal(f.sources.ssl_groups, '--ssl-groups');
});

test('paths in the file are relative to the file that sets them; from flags and env, to the working directory', () => {
  const { dir, file } = confFile(
    "ssl_cert_file = 'certs/server.crt'\nssl_key_file = '/abs/server.key'\ninclude 'sub/more.conf'\n",
  );
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'more.conf'), "ssl_ca_file = 'ca.crt'\n");
  const c = loadConfig({ file, cwd: '/work', env: { PGTLS_SSL_CRL_FILE: 'crl.pem' }, flags: { hba_file: 'hba.conf' } });
  assert.equal(c.ssl_cert_file, join(dir, 'certs/server.crt'));
  assert.equal(c.ssl_key_file, '/abs/server.key');
  assert.equal(c.ssl_ca_file, join(dir, 'sub', 'ca.crt'));
  assert.equal(c.ssl_crl_file, '/work/crl.pem');
  assert.equal(c.hba_file, '/work/hba.conf');
  assert.equal(c.ssl_crl_dir, '', 'an empty path stays empty');
  // a relative --config is relative to the working directory
  assert.equal(loadConfig({ file: 'pgtls.conf', cwd: dir }).config_file, file);
});

test('unknown key in a file: PostgreSQL message with file and line; unknown flag', () => {
  const { file } = confFile('port = 1\n\nssl_bogus = on\n');
  fails(
    () => loadConfig({ file, cwd: '/' }),
    ERR_CONFIG_UNKNOWN_KEY,
    `unrecognized configuration parameter "ssl_bogus" in file "${file}" line 3`,
    { file, line: 3, key: 'ssl_bogus' },
  );
  // as written, as PostgreSQL prints it; and in an included file, that file and line
  const inc = confFile('');
  writeFileSync(inc.file, "include 'more.conf'\n");
  writeFileSync(join(inc.dir, 'more.conf'), '\nSsl_Bogus = on\n');
  fails(
    () => loadConfig({ file: inc.file, cwd: '/' }),
    ERR_CONFIG_UNKNOWN_KEY,
    `unrecognized configuration parameter "Ssl_Bogus" in file "${join(inc.dir, 'more.conf')}" line 2`,
  );
  fails(
    () => loadConfig({ flags: { 'no-such': '1' }, cwd: '/' }),
    ERR_CONFIG_UNKNOWN_KEY,
    'unrecognized configuration parameter "no-such"',
  );
  // unknown PGTLS_* environment variables are not configuration keys and are ignored
  assert.equal(loadConfig({ env: { PGTLS_NO_SUCH: '1' }, cwd: '/' }).port, 6432);
});

test('bad values say where they came from: file:line, flag, environment', () => {
  const { file } = confFile('ssl = on\nssl_min_protocol_version = TLSv1.4\n');
  const e = fails(
    () => loadConfig({ file, cwd: '/' }),
    ERR_CONFIG_VALUE,
    `invalid value for parameter "ssl_min_protocol_version": "TLSv1.4" in file "${file}" line 2`,
    { key: 'ssl_min_protocol_version', source: `${file}:2` },
  );
  assert.equal(e.details.hint, 'Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.');
  fails(
    () => loadConfig({ flags: { port: '99999' }, cwd: '/' }),
    ERR_CONFIG_VALUE,
    '99999 is outside the valid range for parameter "port" (0 .. 65535) (from --port)',
  );
  fails(
    () => loadConfig({ env: { PGTLS_SSL: 'maybe' }, cwd: '/' }),
    ERR_CONFIG_VALUE,
    'parameter "ssl" requires a Boolean value (from PGTLS_SSL)',
  );
});

test('ssl = off is refused while require_secure_transport = on, accepted with it off', () => {
  const e = fails(
    () => loadConfig({ flags: { ssl: 'off' }, cwd: '/' }),
    ERR_CONFIG_CONFLICT,
    'ssl = off cannot be combined with require_secure_transport = on',
  );
  assert.equal(e.details.ssl, '--ssl');
  assert.equal(e.details.require_secure_transport, 'default');
  const c: GatewayConfig = loadConfig({ flags: { ssl: 'off', require_secure_transport: 'off' }, cwd: '/' });
  assert.equal(c.ssl, false);
});

test('upstream must be a postgres:// URI', () => {
  assert.equal(loadConfig({ flags: { upstream: 'postgresql://db:5432' }, cwd: '/' }).upstream, 'postgresql://db:5432');
  fails(
    () => loadConfig({ flags: { upstream: 'db:5432' }, cwd: '/' }),
    ERR_CONFIG_VALUE,
    'invalid value for parameter "upstream": "db:5432"',
    { source: '--upstream' },
  );
});
