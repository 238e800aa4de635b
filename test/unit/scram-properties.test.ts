/**
 * Properties of the shared SCRAM module: hostile bytes never make either role throw, and any password — Unicode,
 * prohibited by SASLprep or not UTF-8 at all — logs in with itself and only with itself.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { verifyCleartextPassword } from '../../src/auth/password.js';
import { ScramServer } from '../../src/auth/scram-server.js';
import { ScramClient } from '../../src/protocol/scram-client.js';
import {
  SCRAM_SHA_256,
  buildScramSecret,
  encodeSASLInitialResponse,
  parseClientFinalMessage,
  parseClientFirstMessage,
  parseServerFinalMessage,
  parseServerFirstMessage,
} from '../../src/protocol/scram.js';

const MOCK = Buffer.alloc(32, 3);
const secret = buildScramSecret('pw', { iterations: 64 });
const KINDS = new Set(['continue', 'success', 'failure']);

test('the server role answers any bytes with a step, never an exception', () => {
  const bytes = fc.uint8Array({ maxLength: 300 });
  fc.assert(
    fc.property(bytes, bytes, fc.boolean(), (first, second, tls) => {
      const s = new ScramServer({ user: 'u', secret, mockSecret: MOCK, tls, iterations: 64 });
      assert.ok(KINDS.has(s.receive(0x70, first).kind));
      assert.ok(KINDS.has(s.receive(0x70, second).kind));
    }),
    { numRuns: 300 },
  );
});

test('a valid first message followed by any final message: a step, never an exception', () => {
  const text = fc.string({ maxLength: 200, unit: 'binary' });
  fc.assert(
    fc.property(text, (final) => {
      const s = new ScramServer({ user: 'u', secret, mockSecret: MOCK, tls: false, iterations: 64 });
      const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: 'pw' });
      assert.equal(s.receive(0x70, c.initialResponse().subarray(5)).kind, 'continue');
      const step = s.receive(0x70, Buffer.from(final, 'latin1'));
      assert.ok(step.kind === 'failure' || step.kind === 'continue', step.kind);
    }),
    { numRuns: 300 },
  );
});

test('the parsers return a value or an error for any text', () => {
  const text = fc.string({ maxLength: 200, unit: 'binary' });
  fc.assert(
    fc.property(text, fc.boolean(), fc.boolean(), (t, plus, binds) => {
      parseClientFirstMessage(t, { plusSelected: plus, serverSupportsBinding: binds });
      parseClientFinalMessage(t, { flag: plus ? 'p' : 'n', plusSelected: plus, expectedBinding: Buffer.alloc(32) });
      parseServerFirstMessage(t, 'abc');
      parseServerFinalMessage(t);
      encodeSASLInitialResponse(SCRAM_SHA_256, t);
    }),
    { numRuns: 500 },
  );
});

test('any password logs in with itself and not with a different one', () => {
  const password = fc.oneof(
    fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }),
    fc.string({ minLength: 1, maxLength: 20, unit: 'binary' }),
    fc.uint8Array({ minLength: 1, maxLength: 20 }).filter((b) => !b.includes(0)),
  );
  fc.assert(
    fc.property(password, (pw) => {
      const stored = buildScramSecret(pw, { iterations: 16 });
      const run = (attempt: string | Uint8Array) => {
        const s = new ScramServer({ user: 'u', secret: stored, mockSecret: MOCK, tls: false });
        const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: attempt });
        const s1 = s.receive(0x70, c.initialResponse().subarray(5));
        if (s1.kind !== 'continue') return s1.kind;
        const c2 = c.serverFirstMessage(s1.message.subarray(9).toString('latin1'));
        assert.ok(c2.ok);
        return s.receive(0x70, c2.message.subarray(5)).kind;
      };
      assert.equal(run(pw), 'success');
      assert.equal(verifyCleartextPassword('u', stored, pw).ok, true);
      const other = typeof pw === 'string' ? `${pw}x` : Buffer.concat([Buffer.from(pw), Buffer.from('x')]);
      assert.equal(run(other), 'failure');
    }),
    { numRuns: 60 },
  );
});
