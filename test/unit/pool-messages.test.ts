/**
 * src/protocol/messages.ts (the messages the pool rewrites and makes up), the pooling keys of the configuration, and
 * the prepared-statement names: byte fixtures written from the protocol documentation, frames split at every offset.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { PgtlsError } from '../../src/errors.js';
import { StatementNames } from '../../src/gateway/pool/prepared.js';
import { DEFAULT_POOL_SETTINGS, poolSettingsFrom } from '../../src/gateway/pool/settings.js';
import { MessageReader } from '../../src/protocol/framing.js';
import {
  AUTHENTICATION_OK,
  PARSE_COMPLETE,
  decodeBind,
  decodeCommandTag,
  decodeParameterStatus,
  decodeParse,
  decodeTarget,
  encodeBackendKeyData,
  encodeBind,
  encodeParameterStatus,
  encodeParse,
  encodeQuery,
  encodeReadyForQuery,
  encodeTarget,
  quoteIdent,
  quoteLiteral,
} from '../../src/protocol/messages.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('Parse: name, query and parameter types; renamed with the rest unchanged', () => {
  // 'P' len | "s1\0" | "select $1\0" | Int16 1 | Int32 23 (int4)
  const frame = hex('50 00000017 733100 73656c65637420243100 0001 00000017');
  assert.equal(frame.readInt32BE(1), frame.length - 1);
  const p = decodeParse(frame.subarray(5));
  assert.ok(p);
  assert.equal(p.name, 's1');
  assert.equal(p.query, 'select $1');
  assert.deepEqual(p.rest, hex('73656c65637420243100 0001 00000017'));
  const renamed = encodeParse('PGTLS_7', p.rest);
  assert.deepEqual(renamed, Buffer.concat([hex('50 0000001c'), Buffer.from('PGTLS_7\0'), p.rest]));
  assert.equal(decodeParse(hex('733100 73656c656374')), undefined, 'a query without its NUL is malformed');
});

test('Bind: portal and statement; only the statement name is replaced', () => {
  // portal "" | statement "s1" | formats 0 | params 1: len 1 "7" | result formats 0
  const body = hex('00 733100 0000 0001 00000001 37 0000');
  const b = decodeBind(body);
  assert.deepEqual(b, { portal: '', statement: 's1', restAt: 4 });
  const out = encodeBind(body, b!, 'PGTLS_1');
  assert.deepEqual(out.subarray(5), Buffer.concat([hex('00'), Buffer.from('PGTLS_1\0'), body.subarray(4)]));
  assert.equal(out.readInt32BE(1), out.length - 1);
});

test('Describe / Close targets: S or P, anything else refused', () => {
  assert.deepEqual(decodeTarget(hex('53 733100')), { kind: 'S', name: 's1' });
  assert.deepEqual(decodeTarget(hex('50 00')), { kind: 'P', name: '' });
  assert.equal(decodeTarget(hex('58 733100')), undefined);
  assert.deepEqual(
    encodeTarget(0x43, 'S', 'PGTLS_2'),
    Buffer.concat([hex('43 0000000d 53'), Buffer.from('PGTLS_2\0')]),
  );
});

test('backend messages the pool makes up', () => {
  assert.deepEqual(AUTHENTICATION_OK, hex('52 00000008 00000000'));
  assert.deepEqual(PARSE_COMPLETE, hex('31 00000004'));
  assert.deepEqual(encodeReadyForQuery('T'), hex('5a 00000005 54'));
  assert.deepEqual(encodeBackendKeyData(42, hex('01020304')), hex('4b 0000000c 0000002a 01020304'));
  const k32 = Buffer.alloc(32, 7);
  assert.equal(encodeBackendKeyData(1, k32).readInt32BE(1), 4 + 4 + 32, 'protocol 3.2: a 32-byte key');
  const ps = encodeParameterStatus('TimeZone', 'Asia/Tokyo');
  assert.deepEqual(decodeParameterStatus(ps.subarray(5)), { name: 'TimeZone', value: 'Asia/Tokyo' });
  assert.deepEqual(encodeQuery(''), hex('51 00000005 00'), 'the empty query server_check_query sends');
  assert.equal(decodeCommandTag(Buffer.from('DISCARD ALL\0')), 'DISCARD ALL');
});

test('a stream of extended-protocol messages frames the same when split at every offset', () => {
  const stream = Buffer.concat([
    encodeParse('s1', Buffer.from('select 1\0\0\0', 'latin1')),
    encodeBind(hex('00 733100 0000 0000 0000'), decodeBind(hex('00 733100 0000 0000 0000'))!, 's1'),
    encodeTarget(0x44, 'P', ''),
    hex('45 00000009 00 00000000'), // Execute "" 0
    hex('53 00000004'), // Sync
  ]);
  const whole: string[] = [];
  const r0 = new MessageReader(1 << 20);
  r0.push(stream);
  for (let m = r0.next(); m; m = r0.next()) whole.push(m.frame.toString('hex'));
  assert.equal(whole.length, 5);
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new MessageReader(1 << 20, 16);
    const got: string[] = [];
    for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
      r.push(part);
      for (let m = r.next(); m; m = r.next()) got.push(m.frame.toString('hex'));
    }
    assert.deepEqual(got, whole, `split at ${cut}`);
  }
});

test('SET quoting: literals with quotes and backslashes, identifiers with capitals', () => {
  assert.equal(quoteLiteral('ISO, MDY'), "'ISO, MDY'");
  assert.equal(quoteLiteral("it's"), "'it''s'");
  assert.equal(quoteLiteral('a\\b'), "E'a\\\\b'");
  assert.equal(quoteIdent('timezone'), 'timezone');
  assert.equal(quoteIdent('DateStyle'), '"DateStyle"');
  assert.equal(quoteIdent('my.setting'), 'my.setting');
});

test('server-side statement names: one per distinct statement, shared by every client', () => {
  const n = new StatementNames();
  const a = n.nameFor(Buffer.from('select 1\0\0\0', 'latin1'));
  const b = n.nameFor(Buffer.from('select 2\0\0\0', 'latin1'));
  assert.equal(a, 'PGTLS_1');
  assert.equal(b, 'PGTLS_2');
  assert.equal(n.nameFor(Buffer.from('select 1\0\0\0', 'latin1')), 'PGTLS_1');
  // The same text with other parameter types is another statement.
  assert.equal(n.nameFor(Buffer.from('select 1\0\0\x01\0\0\0\x17', 'latin1')), 'PGTLS_3');
});

test("pooling keys: PgBouncer's defaults, durations in ms, relay the default mode", () => {
  const cfg = loadConfig({ env: {} });
  const s = poolSettingsFrom(cfg);
  assert.deepEqual(s, DEFAULT_POOL_SETTINGS);
  assert.equal(s.pool_mode, 'relay');
  assert.equal(s.server_lifetime, 3_600_000);
  assert.equal(s.query_wait_timeout, 120_000);
  assert.equal(s.server_check_query, '<empty>');
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-pool-conf-'));
  const file = join(dir, 'pgtls.conf');
  writeFileSync(file, "pool_mode = transaction\ndefault_pool_size = 4\nquery_wait_timeout = '1500ms'\n");
  const t = poolSettingsFrom(loadConfig({ file, env: {} }));
  assert.equal(t.pool_mode, 'transaction');
  assert.equal(t.default_pool_size, 4);
  assert.equal(t.query_wait_timeout, 2000, "seconds, rounded as PostgreSQL's parse_int does");
  writeFileSync(file, 'pool_mode = statement\n');
  assert.throws(
    () => loadConfig({ file, env: {} }),
    (e: unknown) =>
      e instanceof PgtlsError &&
      e.message === `invalid value for parameter "pool_mode": "statement" in file "${file}" line 1` &&
      e.details.hint === 'Available values: relay, session, transaction.',
  );
});
