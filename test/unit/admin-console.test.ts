/** The console grammar (PgBouncer's: one command, WORD [WORD], SET key = value|'value') and its answers' shapes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { parseConsoleCommand } from '../../src/gateway/admin/console.js';
import { rangeError, withOverrides } from '../../src/gateway/admin/overrides.js';
import { consoleRole } from '../../src/gateway/admin/session.js';
import { clip63, decimalSerial, displayValue, pgTextArray, pgTimestamp } from '../../src/gateway/admin/tables.js';

test('commands parse case-insensitively, with an optional semicolon; anything else is invalid', () => {
  const cases: [string, ReturnType<typeof parseConsoleCommand>][] = [
    ['SHOW CLIENTS', { kind: 'show', what: 'clients' }],
    ['  show clients ;  ', { kind: 'show', what: 'clients' }],
    ['Show "would_refuse"', { kind: 'show', what: 'would_refuse' }],
    ['RELOAD;', { kind: 'reload' }],
    ['KILL_CLIENT 42', { kind: 'kill_client', arg: '42' }],
    ['kill client 42', { kind: 'kill_client', arg: '42' }],
    ['SET require_secure_transport = off', { kind: 'set', key: 'require_secure_transport', value: 'off' }],
    ["set ssl_min_protocol_version to 'TLSv1.3';", { kind: 'set', key: 'ssl_min_protocol_version', value: 'TLSv1.3' }],
    ["SET application_name = 'it''s me'", { kind: 'set', key: 'application_name', value: "it's me" }],
    ['', { kind: 'empty' }],
    [' ; ', { kind: 'empty' }],
    ['SELECT 1', { kind: 'invalid' }],
    ['SHOW', { kind: 'invalid' }],
    ['SHOW CLIENTS; SHOW SSL', { kind: 'invalid' }],
    ['RELOAD now', { kind: 'invalid' }],
    ['KILL CLIENT', { kind: 'invalid' }],
    ["SET x = 'unterminated", { kind: 'invalid' }],
  ];
  for (const [sql, want] of cases) assert.deepEqual(parseConsoleCommand(sql), want, sql);
});

test('values are rendered as PostgreSQL prints them, so clients parse them', () => {
  assert.equal(pgTimestamp(new Date(Date.UTC(2026, 11, 2, 1, 2, 3, 45))), '2026-12-02 01:02:03.045+00');
  assert.equal(pgTextArray(['all', 'a b', 'x"y', 'NULL', '', 'c\\d']), '{all,"a b","x\\"y","NULL","","c\\\\d"}');
  assert.equal(decimalSerial('0a1b'), '2587');
  assert.equal(decimalSerial('00:ff'), '255');
  // pg_stat_ssl's char[NAMEDATALEN]: 63 bytes, never half a character.
  assert.equal(clip63('x'.repeat(70)), 'x'.repeat(63));
  assert.equal(Buffer.byteLength(clip63(`${'x'.repeat(62)}é`)), 62);
});

test('SHOW CONFIG hides what could be a secret', () => {
  assert.equal(displayValue('ssl_passphrase_command', 'echo hunter2'), '(set, not shown)');
  assert.equal(displayValue('ssl_passphrase_command', ''), '');
  assert.equal(displayValue('upstream', 'postgres://gw:s3cret@db:5432'), 'postgres://gw:(hidden)@db:5432');
  assert.equal(displayValue('upstream', 'postgres://db:5432'), 'postgres://db:5432');
  assert.equal(displayValue('require_secure_transport', true), 'on');
});

test('withOverrides: SET values replace the configuration for new connections, with their source; a bad range is refused', () => {
  const config = loadConfig({ env: {} });
  assert.equal(withOverrides(config, new Map()), config);
  const since = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  const c = withOverrides(
    config,
    new Map([
      ['ssl_min_protocol_version', { value: 'TLSv1.3', since }],
      ['require_secure_transport', { value: 'off', since }],
    ]),
  );
  assert.equal(c.ssl_min_protocol_version, 'TLSv1.3');
  assert.equal(c.require_secure_transport, false);
  assert.equal(c.sources.ssl_min_protocol_version, 'SET at 2026-01-02T03:04:05.000Z');
  assert.equal(c.port, config.port);
  assert.ok(Object.isFrozen(c));
  assert.equal(config.ssl_min_protocol_version, 'TLSv1.2', 'the loaded configuration is untouched');
  assert.equal(rangeError('TLSv1.3', ''), undefined);
  assert.equal(rangeError('TLSv1.2', 'TLSv1.3'), undefined);
  assert.equal(
    rangeError('TLSv1.3', 'TLSv1.2'),
    'ssl_min_protocol_version "TLSv1.3" is higher than ssl_max_protocol_version "TLSv1.2"',
  );
});

test('consoleRole: admin_users before stats_users, PgBouncer list syntax, exact names', () => {
  const c = { admin_users: 'ops, root ', stats_users: 'grafana,ops' };
  assert.equal(consoleRole(c, 'ops'), 'admin');
  assert.equal(consoleRole(c, 'root'), 'admin');
  assert.equal(consoleRole(c, 'grafana'), 'stats');
  assert.equal(consoleRole(c, 'Grafana'), undefined);
  assert.equal(consoleRole(c, ''), undefined);
  assert.equal(consoleRole({ admin_users: '', stats_users: '' }, 'ops'), undefined);
});
