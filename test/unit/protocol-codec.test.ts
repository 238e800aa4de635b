/** The pure wire codec: byte fixtures, every split offset, every declared-length limit. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BackendMessage,
  MAX_STARTUP_PACKET_LENGTH,
  MessageReader,
  decodeErrorFields,
  decodeInitialPacket,
  encodeCancelRequest,
  encodeErrorResponse,
  encodeErrorResponseV2,
  encodeSSLRequest,
  encodeStartupMessage,
  parseBackendKeyData,
  parsePgBool,
  parseStartupMessage,
  unsupportedProtocolError,
} from '../../src/protocol/index.js';

describe('initial packets', () => {
  test('SSLRequest: Int32(8) Int32(80877103)', () => {
    const b = encodeSSLRequest();
    assert.deepEqual([...b], [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert.deepEqual(decodeInitialPacket(b), { status: 'packet', packet: { kind: 'SSLRequest' }, consumed: 8 });
  });

  test('every prefix of a packet is incomplete, the whole packet decodes, trailing bytes are left', () => {
    const startup = encodeStartupMessage([
      ['user', 'alice'],
      ['database', 'app'],
    ]);
    for (let i = 0; i < startup.length; i++) {
      assert.equal(decodeInitialPacket(startup.subarray(0, i)).status, 'incomplete', `prefix ${i}`);
    }
    const withTail = Buffer.concat([startup, Buffer.from('xyz')]);
    const r = decodeInitialPacket(withTail);
    assert.equal(r.status, 'packet');
    assert.equal(r.status === 'packet' && r.consumed, startup.length);
  });

  test('lengths outside [8, 4 + 10000] are refused before the body is awaited (08P01)', () => {
    for (const len of [0, 4, 7, MAX_STARTUP_PACKET_LENGTH + 5, 0x7fffffff, -1]) {
      const b = Buffer.alloc(8);
      b.writeInt32BE(len, 0);
      const r = decodeInitialPacket(b);
      assert.equal(r.status, 'invalid', `length ${len}`);
      assert.deepEqual(r.status === 'invalid' && r.error, {
        severity: 'FATAL',
        code: '08P01',
        message: 'invalid length of startup packet',
      });
    }
    const ok = Buffer.alloc(4);
    ok.writeInt32BE(MAX_STARTUP_PACKET_LENGTH + 4, 0);
    assert.equal(decodeInitialPacket(ok).status, 'incomplete');
  });

  test('CancelRequest: 4-byte keys and protocol 3.2 long keys; a too-long key is refused', () => {
    const short = decodeInitialPacket(encodeCancelRequest(1234, Buffer.from([1, 2, 3, 4])));
    assert.deepEqual(short.status === 'packet' && short.packet, {
      kind: 'CancelRequest',
      pid: 1234,
      key: Buffer.from([1, 2, 3, 4]),
    });
    const long = decodeInitialPacket(encodeCancelRequest(7, Buffer.alloc(32, 9)));
    assert.equal(long.status === 'packet' && long.packet.kind === 'CancelRequest' && long.packet.key.length, 32);
    assert.equal(decodeInitialPacket(encodeCancelRequest(7, Buffer.alloc(257))).status, 'invalid');
    assert.equal(decodeInitialPacket(encodeCancelRequest(7, Buffer.alloc(3))).status, 'invalid');
  });
});

describe('StartupMessage', () => {
  const body = (s: string) => Buffer.from(s, 'binary');

  test('parameters in order; database defaults to the user', () => {
    const r = parseStartupMessage(3 << 16, body('user\0alice\0application_name\0psql\0\0'));
    assert.ok(r.ok);
    assert.equal(r.value.user, 'alice');
    assert.equal(r.value.database, 'alice');
    assert.deepEqual(r.value.params, [
      ['user', 'alice'],
      ['application_name', 'psql'],
    ]);
  });

  test('no user: 28000; no terminator: 08P01; bad replication value: 22023 with the hint', () => {
    const noUser = parseStartupMessage(3 << 16, body('database\0x\0\0'));
    assert.deepEqual(!noUser.ok && [noUser.error.code, noUser.error.message], [
      '28000',
      'no PostgreSQL user name specified in startup packet',
    ]);
    const noTerm = parseStartupMessage(3 << 16, body('user\0alice\0'));
    assert.deepEqual(!noTerm.ok && [noTerm.error.code, noTerm.error.message], [
      '08P01',
      'invalid startup packet layout: expected terminator as last byte',
    ]);
    const repl = parseStartupMessage(3 << 16, body('user\0a\0replication\0maybe\0\0'));
    assert.deepEqual(!repl.ok && [repl.error.code, repl.error.message, repl.error.hint], [
      '22023',
      'invalid value for parameter "replication": "maybe"',
      'Valid values are: "false", 0, "true", 1, "database".',
    ]);
  });

  test('replication=true is physical (no database), replication=database is logical', () => {
    const phys = parseStartupMessage(3 << 16, body('user\0r\0replication\0on\0\0'));
    assert.deepEqual(phys.ok && [phys.value.replication, phys.value.database], ['physical', '']);
    const logical = parseStartupMessage(3 << 16, body('user\0r\0database\0d\0replication\0database\0\0'));
    assert.deepEqual(logical.ok && [logical.value.replication, logical.value.database], ['logical', 'd']);
  });

  test('a major version other than 3 is refused with PostgreSQL 18 text', () => {
    assert.equal(
      unsupportedProtocolError(2 << 16).message,
      'unsupported frontend protocol 2.0: server supports 3.0 to 3.2',
    );
    assert.equal(
      unsupportedProtocolError(80877103).message,
      'unsupported frontend protocol 1234.5679: server supports 3.0 to 3.2',
    );
    const r = parseStartupMessage(4 << 16, body('user\0a\0\0'));
    assert.equal(!r.ok && r.error.code, '0A000');
  });

  test("parse_bool: PostgreSQL's spellings and prefixes", () => {
    for (const t of ['on', 'true', 'TRUE', 'yes', 'y', '1', 't']) assert.equal(parsePgBool(t), true, t);
    for (const f of ['off', 'false', 'no', 'n', '0', 'f', 'of']) assert.equal(parsePgBool(f), false, f);
    for (const x of ['o', '', '2', 'maybe', 'onn']) assert.equal(parsePgBool(x), undefined, x);
  });
});

describe('ErrorResponse', () => {
  test('round trip: S, V, C, M, D, H fields', () => {
    const e = encodeErrorResponse({
      severity: 'FATAL',
      code: '28000',
      message: 'nope',
      detail: 'why',
      hint: 'do this',
    });
    assert.equal(e[0], 0x45);
    assert.equal(e.readInt32BE(1), e.length - 1);
    assert.deepEqual(
      { ...decodeErrorFields(e.subarray(5)) },
      { S: 'FATAL', V: 'FATAL', C: '28000', M: 'nope', D: 'why', H: 'do this' },
    );
  });

  test('protocol 2 format: E, "FATAL:  message\\n", NUL', () => {
    assert.equal(
      encodeErrorResponseV2({ severity: 'FATAL', code: '0A000', message: 'm' }).toString('latin1'),
      'EFATAL:  m\n\0',
    );
  });
});

describe('MessageReader', () => {
  const msg = (type: number, body: Buffer) => {
    const b = Buffer.alloc(5 + body.length);
    b[0] = type;
    b.writeInt32BE(4 + body.length, 1);
    body.copy(b, 5);
    return b;
  };
  const key = Buffer.concat([Buffer.from([0, 0, 0x30, 0x39]), Buffer.alloc(4, 7)]);
  const stream = Buffer.concat([
    msg(0x52, Buffer.from([0, 0, 0, 0])),
    msg(BackendMessage.BackendKeyData, key),
    msg(BackendMessage.ReadyForQuery, Buffer.from('I')),
  ]);

  test('split at every offset, the same messages come out', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new MessageReader(1024, 4);
      const types: number[] = [];
      for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
        r.push(part);
        for (let m = r.next(); m; m = r.next()) {
          types.push(m.type);
          if (m.type === BackendMessage.BackendKeyData)
            assert.deepEqual(parseBackendKeyData(m.body), { pid: 12345, key: Buffer.alloc(4, 7) });
        }
      }
      assert.deepEqual(types, [0x52, 0x4b, 0x5a], `cut at ${cut}`);
      assert.equal(r.buffered, 0);
    }
  });

  test('a declared length below 4 or above the limit throws a coded error', () => {
    for (const len of [3, 0, 2049]) {
      const r = new MessageReader(2048);
      const b = Buffer.alloc(5);
      b[0] = 0x45;
      b.writeInt32BE(len, 1);
      r.push(b);
      assert.throws(() => r.next(), { code: 'PGTLS_ERR_PROTOCOL_MESSAGE_LENGTH' });
    }
  });
});
