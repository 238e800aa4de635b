/** The console grammar (PgBouncer's: one command, WORD [WORD], SET key = value|'value') and its answers' shapes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConsoleCommand } from '../../src/gateway/admin/console.js';
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
