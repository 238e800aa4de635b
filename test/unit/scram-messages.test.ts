/**
 * Malformed SCRAM input: every check of PostgreSQL's read_client_first_message / read_client_final_message and of
 * libpq's readers, with the exact texts; PostgreSQL's base64 rules; the stored secret format; SASLprep.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ScramServer, type ScramServerStep } from '../../src/auth/scram-server.js';
import { ScramClient } from '../../src/protocol/scram-client.js';
import {
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  b64decode,
  buildScramSecret,
  encodeSASLInitialResponse,
  formatScramSecret,
  parseClientFirstMessage,
  parseScramSecret,
  parseServerFinalMessage,
  parseServerFirstMessage,
  saslprep,
} from '../../src/protocol/scram.js';

const MOCK = Buffer.alloc(32, 1);
const secret = buildScramSecret('pw', { iterations: 4096 });
const P = 0x70;
const payload = (m: Buffer) => m.subarray(9).toString('latin1');

function failure(step: ScramServerStep) {
  assert.equal(step.kind, 'failure');
  return step.kind === 'failure' ? step.error : undefined;
}
const malformed = (detail: string) => ({ sqlstate: '08P01', message: 'malformed SCRAM message', detail });

describe('server role: client-first-message checks', () => {
  const first = (data: string, mech = SCRAM_SHA_256, tls = false) =>
    new ScramServer({ user: 'u', secret, mockSecret: MOCK, tls }).receive(
      P,
      encodeSASLInitialResponse(mech, data).subarray(5),
    );
  const cases: [string, object, string?, boolean?][] = [
    ['', malformed('The message is empty.')],
    ['x,,n=,r=abc', malformed('Unexpected channel-binding flag "\'x\'".')],
    ['n;,n=,r=abc', malformed('Comma expected, but found character "\';\'".')],
    ['n,a=bob,n=,r=abc', { sqlstate: '0A000', message: 'client uses authorization identity, but it is not supported' }],
    ['n,x,n=,r=abc', malformed('Unexpected attribute "\'x\'" in client-first-message.')],
    ['n,,m=ext,n=,r=abc', { sqlstate: '0A000', message: 'client requires an unsupported SCRAM extension' }],
    ['n,,r=abc', malformed('Expected attribute "n" but found "\'r\'".')],
    ['n,,n', malformed('Expected character "=" for attribute "n".')],
    ['n,,n=', malformed('Expected attribute "r" but found "0x00".')],
    ['n,,n=,r=a\u00e9c', { sqlstate: '08P01', message: 'non-printable characters in SCRAM nonce' }],
    ['n,,n=,r=abc,1=x', malformed('Attribute expected, but found invalid character "\'1\'".')],
    [
      'p=tls-server-end-point,,n=,r=abc',
      malformed(
        'The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.',
      ),
    ],
    [
      'n,,n=,r=abc',
      malformed('The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.'),
      SCRAM_SHA_256_PLUS,
      true,
    ],
    [
      'p=tls-unique,,n=,r=abc',
      { sqlstate: '08P01', message: 'unsupported SCRAM channel-binding type "tls-unique"' },
      SCRAM_SHA_256_PLUS,
      true,
    ],
  ];
  for (const [data, want, mech, tls] of cases) {
    test(JSON.stringify(data), () => assert.deepEqual(failure(first(data, mech, tls)), want));
  }
  test('extensions after the nonce are ignored', () => {
    assert.equal(first('n,,n=,r=abc,x=1,y=2').kind, 'continue');
  });
  test('NUL inside the message', () => {
    assert.deepEqual(failure(first('n,,n=,r=a\0bc')), malformed('Message length does not match input length.'));
  });
  test('PLUS without TLS is an invalid mechanism, so is an unknown one', () => {
    const want = { sqlstate: '08P01', message: 'client selected an invalid SASL authentication mechanism' };
    assert.deepEqual(failure(first('p=tls-server-end-point,,n=,r=abc', SCRAM_SHA_256_PLUS, false)), want);
    assert.deepEqual(failure(first('n,,n=,r=abc', 'SCRAM-SHA-1')), want);
  });
  test('SASLInitialResponse framing errors', () => {
    const s = () => new ScramServer({ user: 'u', secret, mockSecret: MOCK, tls: false });
    assert.deepEqual(failure(s().receive(P, Buffer.from('SCRAM-SHA-256'))), {
      sqlstate: '08P01',
      message: 'invalid string in message',
    });
    assert.deepEqual(failure(s().receive(P, Buffer.from('SCRAM-SHA-256\0\0\0'))), {
      sqlstate: '08P01',
      message: 'insufficient data left in message',
    });
    const extra = Buffer.concat([
      encodeSASLInitialResponse(SCRAM_SHA_256, 'n,,n=,r=abc').subarray(5),
      Buffer.from('x'),
    ]);
    assert.deepEqual(failure(s().receive(P, extra)), { sqlstate: '08P01', message: 'invalid message format' });
    assert.deepEqual(failure(s().receive(0x51, Buffer.alloc(0))), {
      sqlstate: '08P01',
      message: 'expected SASL response, got message type 81',
    });
    // longer than PG_MAX_SASL_MESSAGE_LENGTH: refused like a wrong password, as pq_getmessage() makes it
    const long = encodeSASLInitialResponse(SCRAM_SHA_256, `n,,n=,r=${'a'.repeat(1100)}`).subarray(5);
    assert.deepEqual(failure(s().receive(P, long)), {
      sqlstate: '28P01',
      message: 'password authentication failed for user "u"',
    });
  });
});

describe('server role: client-final-message checks', () => {
  const final = (build: (nonce: string) => string) => {
    const s = new ScramServer({ user: 'u', secret, mockSecret: MOCK, tls: false });
    const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: 'pw' });
    const s1 = s.receive(P, c.initialResponse().subarray(5));
    const nonce = /^r=([^,]+)/.exec(s1.kind === 'continue' ? payload(s1.message) : '')![1]!;
    return s.receive(P, Buffer.from(build(nonce), 'latin1'));
  };
  const proof = Buffer.alloc(32).toString('base64');
  test('channel-binding attribute that does not match the flag', () => {
    assert.deepEqual(failure(final((n) => `c=eSws,r=${n},p=${proof}`)), {
      sqlstate: '08P01',
      message: 'unexpected SCRAM channel-binding attribute in client-final-message',
    });
  });
  test('nonce mismatch', () => {
    assert.deepEqual(failure(final((n) => `c=biws,r=${n}x,p=${proof}`)), {
      sqlstate: '08P01',
      message: 'invalid SCRAM response',
      detail: 'Nonce does not match.',
    });
  });
  test('malformed proof, garbage, missing proof', () => {
    assert.deepEqual(
      failure(final((n) => `c=biws,r=${n},p=AAAA`)),
      malformed('Malformed proof in client-final-message.'),
    );
    assert.deepEqual(
      failure(final((n) => `c=biws,r=${n},p=${proof},x=1`)),
      malformed('Garbage found at the end of client-final-message.'),
    );
    assert.deepEqual(failure(final((n) => `c=biws,r=${n}`)), malformed('Attribute expected, but found end of string.'));
    assert.deepEqual(
      failure(final((n) => `r=${n},p=${proof}`)),
      malformed('Expected attribute "c" but found "\'r\'".'),
    );
  });
  test('a wrong proof with extensions before it still reaches the proof check', () => {
    assert.deepEqual(failure(final((n) => `c=biws,r=${n},x=y,p=${proof}`)), {
      sqlstate: '28P01',
      message: 'password authentication failed for user "u"',
    });
  });
});

describe('client role: libpq readers', () => {
  test('server-first-message', () => {
    assert.deepEqual(parseServerFirstMessage('r=abcXYZ,s=AAAA,i=4096', 'abc'), {
      nonce: 'abcXYZ',
      salt: Buffer.alloc(3),
      iterations: 4096,
    });
    assert.deepEqual(parseServerFirstMessage('r=abXYZ,s=AAAA,i=4096', 'abc'), {
      error: 'invalid SCRAM response (nonce mismatch)',
    });
    assert.deepEqual(parseServerFirstMessage('s=AAAA', 'abc'), {
      error: 'malformed SCRAM message (attribute "r" expected)',
    });
    assert.deepEqual(parseServerFirstMessage('r=abc,s=A!AA,i=1', 'abc'), {
      error: 'malformed SCRAM message (invalid salt)',
    });
    assert.deepEqual(parseServerFirstMessage('r=abc,s=AAAA,i=0', 'abc'), {
      error: 'malformed SCRAM message (invalid iteration count)',
    });
    assert.deepEqual(parseServerFirstMessage('r=abc,s=AAAA,i=12x', 'abc'), {
      error: 'malformed SCRAM message (invalid iteration count)',
    });
    assert.deepEqual(parseServerFirstMessage('r=abc,s=AAAA,j', 'abc'), {
      error: 'malformed SCRAM message (attribute "i" expected)',
    });
    assert.deepEqual(parseServerFirstMessage('r=abc,sAAAA', 'abc'), {
      error: 'malformed SCRAM message (expected character "=" for attribute "s")',
    });
  });
  test('server-final-message', () => {
    assert.deepEqual(parseServerFinalMessage('e=invalid-proof'), {
      error: 'error received from server in SCRAM exchange: invalid-proof',
    });
    assert.deepEqual(parseServerFinalMessage('v=AAAA'), {
      error: 'malformed SCRAM message (invalid server signature)',
    });
    const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: 'x' });
    assert.deepEqual(c.serverFinalMessage('v=AAAA'), { ok: false, error: 'invalid SCRAM exchange state' });
    assert.deepEqual(c.serverFirstMessage(''), { ok: false, error: 'malformed SCRAM message (empty message)' });
  });
  test('PLUS with a certificate that has no digest (Ed25519) fails as libpq does', () => {
    const c = new ScramClient({ mechanism: SCRAM_SHA_256_PLUS, flag: 'p', password: 'x' });
    assert.deepEqual(c.serverFirstMessage(`r=${c.nonce}x,s=AAAA,i=1`), {
      ok: false,
      error: 'could not find digest for NID UNDEF',
    });
  });
});

describe('base64 and the stored secret', () => {
  test("pg_b64_decode's rules", () => {
    assert.deepEqual(b64decode('QUJD'), Buffer.from('ABC'));
    assert.deepEqual(b64decode('QUI='), Buffer.from('AB'));
    assert.deepEqual(b64decode('QQ=='), Buffer.from('A'));
    for (const bad of ['QUJ', 'QU JD', 'Q===', 'QUJD\n', 'QU*D']) assert.equal(b64decode(bad), undefined, bad);
  });
  test('parse and format round trip; invalid secrets', () => {
    const s = parseScramSecret(secret)!;
    assert.equal(s.iterations, 4096);
    assert.equal(formatScramSecret(s), secret);
    assert.match(secret, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    const [, , keys] = secret.split('$');
    for (const bad of [
      secret.replace('SCRAM-SHA-256', 'SCRAM-SHA-1'),
      secret.replace('4096', '4096x'),
      secret.replace('4096', '0'),
      secret.replace(keys!, 'AAAA:AAAA'),
      'SCRAM-SHA-256$4096',
      'md5abc',
    ]) {
      assert.equal(parseScramSecret(bad), undefined, bad);
    }
    assert.equal(
      parseScramSecret(secret.replace('$4096:', '$ +4096:'))?.iterations,
      4096,
      'strtol accepts blanks and a sign',
    );
  });
});

describe('SASLprep as PostgreSQL applies it', () => {
  const prep = (s: string | Buffer) => {
    const r = saslprep(s);
    return r.ok ? r.value.toString('utf8') : r.reason;
  };
  test('ASCII passes unchanged, control characters included', () => {
    assert.equal(prep('pencil'), 'pencil');
    assert.equal(prep('a\u0007b'), 'a\u0007b');
  });
  test('mapping and NFKC (RFC 4013 section 3 examples)', () => {
    assert.equal(prep('I\u00adX'), 'IX');
    assert.equal(prep('\u00aa'), 'a');
    assert.equal(prep('\u2168'), 'IX');
    assert.equal(prep('a\u00a0b\u00e9'), 'a b\u00e9');
  });
  test('prohibited, unassigned, bidi, empty after mapping, invalid UTF-8', () => {
    assert.equal(prep('\u00e9\u0007'), 'prohibited');
    assert.equal(prep('\u00e9\ue000'), 'prohibited');
    assert.equal(prep('\u0221'), 'prohibited');
    assert.equal(prep('\u0627\u0031'), 'prohibited');
    assert.equal(prep('\u0627\u0031\u0628'), '\u0627\u0031\u0628');
    assert.equal(prep('\u0627a\u0628'), 'prohibited');
    assert.equal(prep('\u00ad'), 'prohibited');
    assert.equal(prep(Buffer.from([0x70, 0xff])), 'invalid-utf8');
    assert.equal(prep(Buffer.from([0xc0, 0x80])), 'invalid-utf8');
    assert.equal(prep(Buffer.from([0xed, 0xa0, 0x80])), 'invalid-utf8');
  });
});

test('parseClientFirstMessage returns the bare message for AuthMessage', () => {
  assert.deepEqual(
    parseClientFirstMessage('y,,n=bob,r=xyz,e=1', { plusSelected: false, serverSupportsBinding: false }),
    {
      flag: 'y',
      bare: 'n=bob,r=xyz,e=1',
      username: 'bob',
      nonce: 'xyz',
    },
  );
});
