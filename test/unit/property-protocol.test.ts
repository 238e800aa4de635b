/**
 * Property-based tests of the protocol codec (src/protocol): framing, the initial packets and ErrorResponse.
 * Random input never makes a parser throw anything but its coded error, and the real properties hold: encode →
 * decode round trips, a stream split at every offset yields the same messages, bad length words are refused before
 * the body is awaited. Sizes: PGTLS_PROPERTY_SCALE (test/support/property.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PgtlsError } from '../../src/errors.js';
import { MAX_CANCEL_KEY_LENGTH, MAX_STARTUP_PACKET_LENGTH, RequestCode } from '../../src/protocol/constants.js';
import { type WireError, decodeErrorFields, encodeErrorResponse } from '../../src/protocol/error-response.js';
import { ERR_MESSAGE_LENGTH, type Message, MessageReader } from '../../src/protocol/framing.js';
import {
  decodeInitialPacket,
  encodeCancelRequest,
  encodeStartupMessage,
  parseStartupMessage,
} from '../../src/protocol/startup.js';
import { onlyCodedErrors, runs } from '../support/property.js';

const LIMIT = 1 << 16;

/** Drain a reader, copying each message (views are only valid until the next push). */
function drain(r: MessageReader, out: { type: number; body: Buffer }[]): void {
  for (let i = 0; i < 1_000_000; i++) {
    const m: Message | undefined = r.next();
    if (!m) return;
    out.push({ type: m.type, body: Buffer.from(m.body) });
  }
  assert.fail('reader did not stop');
}

function frame(type: number, body: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type;
  b.writeInt32BE(4 + body.length, 1);
  b.set(body, 5);
  return b;
}

const messages = fc.array(
  fc.record({ type: fc.integer({ min: 0, max: 255 }), body: fc.uint8Array({ maxLength: 40 }) }),
  { maxLength: 6 },
);

test('framing: random bytes in random chunks never throw anything but PGTLS_ERR_PROTOCOL_MESSAGE_LENGTH', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 48 }), { maxLength: 4 }), (chunks) => {
      const r = new MessageReader(LIMIT, 8);
      const got: { type: number; body: Buffer }[] = [];
      const res = onlyCodedErrors(() => {
        for (const c of chunks) {
          r.push(c);
          drain(r, got);
        }
      }, [ERR_MESSAGE_LENGTH]);
      if (!(res instanceof PgtlsError)) {
        // Whatever was not returned is still buffered, exactly.
        const total = chunks.reduce((n, c) => n + c.length, 0);
        const used = got.reduce((n, m) => n + 5 + m.body.length, 0);
        assert.equal(r.buffered, total - used);
      }
    }),
    { numRuns: runs(200_000) },
  );
});

test('framing: a stream split at every offset yields the same messages', () => {
  fc.assert(
    fc.property(messages, (msgs) => {
      const stream = Buffer.concat(msgs.map((m) => frame(m.type, m.body)));
      const want = msgs.map((m) => ({ type: m.type, body: Buffer.from(m.body) }));
      for (let k = 0; k <= stream.length; k++) {
        const r = new MessageReader(LIMIT, 4);
        const got: { type: number; body: Buffer }[] = [];
        r.push(stream.subarray(0, k));
        drain(r, got);
        r.push(stream.subarray(k));
        drain(r, got);
        assert.deepEqual(got, want);
        assert.equal(r.buffered, 0);
      }
    }),
    { numRuns: runs(20_000) },
  );
});

test('framing: a stream fed one byte at a time, then the remainder handed over, loses no byte', () => {
  fc.assert(
    fc.property(messages, fc.uint8Array({ maxLength: 4 }), (msgs, tail) => {
      const stream = Buffer.concat([...msgs.map((m) => frame(m.type, m.body)), tail]);
      const r = new MessageReader(LIMIT, 1);
      const got: { type: number; body: Buffer }[] = [];
      for (const byte of stream) {
        r.push(Buffer.from([byte]));
        drain(r, got);
      }
      assert.equal(got.length, msgs.length);
      assert.deepEqual(r.takeRemaining(), Buffer.from(tail));
    }),
    { numRuns: runs(20_000) },
  );
});

test('framing: a declared length < 4 or > the limit is refused as soon as the 5-byte header is in', () => {
  const bad = fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 3 }),
    fc.integer({ min: LIMIT + 1, max: 2 ** 31 - 1 }),
    fc.constantFrom(-1, 0, 1, 2, 3, LIMIT + 1, 2 ** 31 - 1, -(2 ** 31)),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), bad, messages, (type, length, before) => {
      const r = new MessageReader(LIMIT, 8);
      const head = Buffer.alloc(5);
      head[0] = type;
      head.writeInt32BE(length, 1);
      r.push(Buffer.concat([...before.map((m) => frame(m.type, m.body)), head]));
      const got: { type: number; body: Buffer }[] = [];
      const res = onlyCodedErrors(() => drain(r, got), [ERR_MESSAGE_LENGTH]);
      assert.ok(res instanceof PgtlsError, `length ${length} was accepted`);
      assert.equal(got.length, before.length);
      assert.equal(res.message, `invalid message length ${length} for message type "${String.fromCharCode(type)}"`);
    }),
    { numRuns: runs(50_000) },
  );
});

/** A length word drawn mostly from the interesting boundaries, plus anything. */
const lengthWord = fc.oneof(
  fc.constantFrom(0, 4, 7, 8, 9, 12, 16, 4 + MAX_STARTUP_PACKET_LENGTH, 5 + MAX_STARTUP_PACKET_LENGTH, -1, 2 ** 31 - 1),
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
);
const requestCode = fc.oneof(
  fc.constantFrom(RequestCode.SSLRequest, RequestCode.GSSENCRequest, RequestCode.CancelRequest, 3 << 16, 2 << 16),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }),
);

test('initial packet: any bytes decode to incomplete, a packet of exactly its length, or a refusal', () => {
  fc.assert(
    fc.property(lengthWord, requestCode, fc.uint8Array({ maxLength: 64 }), fc.nat(80), (length, code, rest, cut) => {
      const full = Buffer.alloc(8 + rest.length);
      full.writeInt32BE(length, 0);
      full.writeUInt32BE(code, 4);
      full.set(rest, 8);
      const buf = full.subarray(0, Math.min(cut, full.length));
      const d = decodeInitialPacket(buf);
      if (buf.length < 4) return assert.equal(d.status, 'incomplete');
      if (length < 8 || length > 4 + MAX_STARTUP_PACKET_LENGTH) {
        assert.equal(d.status, 'invalid');
        if (d.status === 'invalid') {
          assert.deepEqual(d.error, {
            severity: 'FATAL',
            code: '08P01',
            message: 'invalid length of startup packet',
          });
        }
        return;
      }
      if (buf.length < length) return assert.equal(d.status, 'incomplete');
      if (d.status === 'packet') {
        assert.equal(d.consumed, length);
        if (d.packet.kind === 'StartupMessage') assert.equal(d.packet.raw.length, length);
        if (d.packet.kind === 'CancelRequest') assert.ok(d.packet.key.length <= MAX_CANCEL_KEY_LENGTH);
      } else {
        // Only a CancelRequest can be refused once its length word is in range: its key length is bounded.
        assert.equal(d.status, 'invalid');
        assert.equal(code, RequestCode.CancelRequest);
      }
    }),
    { numRuns: runs(200_000) },
  );
});

test('CancelRequest: encode → decode gives back pid and key for every key length PostgreSQL 18 allows', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      fc.uint8Array({ minLength: 4, maxLength: MAX_CANCEL_KEY_LENGTH }),
      (pid, key) => {
        const d = decodeInitialPacket(encodeCancelRequest(pid, Buffer.from(key)));
        assert.equal(d.status, 'packet');
        if (d.status === 'packet' && d.packet.kind === 'CancelRequest') {
          assert.equal(d.packet.pid, pid);
          assert.deepEqual(d.packet.key, Buffer.from(key));
        } else assert.fail(`decoded as ${JSON.stringify(d)}`);
      },
    ),
    { numRuns: runs(30_000) },
  );
});

test('StartupMessage body: random bytes and protocol words parse to a value or a WireError, never an exception', () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.constant(3 << 16), fc.constant((3 << 16) | 2), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
      fc.oneof(
        fc.uint8Array({ maxLength: 64 }),
        fc
          .array(fc.constantFrom('user', 'database', 'replication', 'options', 'x', 'true', 'database', 'on', ''), {
            maxLength: 8,
          })
          .map((words) => Buffer.from(words.join('\0'))),
      ),
      (code, body) => {
        const r = parseStartupMessage(code, Buffer.from(body));
        if (r.ok) {
          assert.ok(r.value.user.length > 0);
          assert.equal(r.value.major, 3);
        } else {
          assert.equal(r.error.severity, 'FATAL');
          assert.match(r.error.code, /^[0-9A-Z]{5}$/);
        }
      },
    ),
    { numRuns: runs(200_000) },
  );
});

const cstring = fc.string({ unit: 'binary', maxLength: 24 }).filter((s) => !s.includes('\0'));

test('StartupMessage: encode → decode → parse gives back every parameter in order', () => {
  const name = cstring.filter((s) => s.length > 0 && s !== 'replication');
  fc.assert(
    fc.property(
      fc.array(fc.tuple(name, cstring), { maxLength: 8 }),
      cstring.filter((s) => s.length > 0),
      (extra, user) => {
        const params: [string, string][] = [...extra, ['user', user]];
        const packet = encodeStartupMessage(params);
        const d = decodeInitialPacket(packet);
        if (packet.length - 4 > MAX_STARTUP_PACKET_LENGTH) return assert.equal(d.status, 'invalid');
        assert.equal(d.status, 'packet');
        if (d.status !== 'packet' || d.packet.kind !== 'StartupMessage') return assert.fail('not a StartupMessage');
        const p = parseStartupMessage(d.packet.code, d.packet.body);
        assert.ok(p.ok, JSON.stringify(p));
        if (!p.ok) return;
        assert.deepEqual(p.value.params, params);
        assert.equal(p.value.user, user);
        const db = [...params].reverse().find(([k]) => k === 'database')?.[1];
        assert.equal(p.value.database, db ? db : user);
      },
    ),
    { numRuns: runs(60_000) },
  );
});

const wireError: fc.Arbitrary<WireError> = fc.record(
  {
    severity: fc.constantFrom('FATAL', 'ERROR', 'PANIC'),
    code: fc.stringMatching(/^[0-9A-Z]{5}$/),
    message: cstring,
    detail: cstring,
    hint: cstring,
  },
  { requiredKeys: ['severity', 'code', 'message'] },
) as fc.Arbitrary<WireError>;

test('ErrorResponse: encode → decode gives back every field', () => {
  fc.assert(
    fc.property(wireError, (e) => {
      const wire = encodeErrorResponse(e);
      assert.equal(wire[0], 0x45);
      assert.equal(wire.readInt32BE(1), wire.length - 1);
      const f = decodeErrorFields(wire.subarray(5));
      const want: Record<string, string> = { S: e.severity, V: e.severity, C: e.code, M: e.message };
      if (e.detail !== undefined) want.D = e.detail;
      if (e.hint !== undefined) want.H = e.hint;
      assert.deepEqual({ ...f }, want);
    }),
    { numRuns: runs(60_000) },
  );
});

test('ErrorResponse: decoding random bytes never throws and yields NUL-free fields', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 96 }), fc.nat(8), (bytes, off) => {
      // A view with a non-zero byteOffset, as the framing reader hands out.
      const backing = new Uint8Array(bytes.length + off);
      backing.set(bytes, off);
      const f = decodeErrorFields(backing.subarray(off));
      for (const [k, v] of Object.entries(f)) {
        assert.equal(k.length, 1);
        assert.ok(!v.includes('\0'));
      }
    }),
    { numRuns: runs(100_000) },
  );
});
