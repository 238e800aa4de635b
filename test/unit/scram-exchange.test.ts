/**
 * The shared SCRAM module, both roles against each other and against RFC 7677's test vector: successes, and every
 * failure with PostgreSQL's exact SQLSTATE, message and detail.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { ScramServer, type ScramServerStep } from '../../src/auth/scram-server.js';
import { createRootCA } from '../../src/pki/generate.js';
import { ScramClient, selectScramMechanism } from '../../src/protocol/scram-client.js';
import {
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  b64decode,
  buildScramSecret,
  deriveKeys,
  encodeSASLInitialResponse,
  parseScramSecret,
  tlsServerEndPoint,
} from '../../src/protocol/scram.js';

const MOCK = Buffer.alloc(32, 7);
const payload = (m: Buffer) => m.subarray(9).toString('latin1');
const body = (m: Buffer) => m.subarray(5);
const P = 0x70;

function expectFailure(step: ScramServerStep, sqlstate: string, message: string, detail?: string) {
  assert.equal(step.kind, 'failure', `expected a failure, got ${step.kind}`);
  if (step.kind !== 'failure') return;
  assert.deepEqual(step.error, { sqlstate, message, ...(detail !== undefined ? { detail } : {}) });
}

/** One full exchange; returns the server's last step and the client. */
function run(server: ScramServer, client: ScramClient, tamper?: (clientFinal: Buffer) => Buffer) {
  const s1 = server.receive(P, body(client.initialResponse()));
  if (s1.kind !== 'continue') return { step: s1, client };
  const c2 = client.serverFirstMessage(payload(s1.message));
  assert.ok(c2.ok, c2.ok ? '' : c2.error);
  const s2 = server.receive(P, body(tamper ? tamper(c2.message) : c2.message));
  return { step: s2, client };
}

describe('RFC 7677 test vector (user "user", password "pencil")', () => {
  const clientNonce = 'rOprNGfwEbeRWgbNEkqO';
  const serverNonce = '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
  const serverFirst = `r=${clientNonce}${serverNonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`;
  const clientFinal = `c=biws,r=${clientNonce}${serverNonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`;
  const serverFinal = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

  test('client role: client-first, client-final and the server signature check', () => {
    const c = new ScramClient({
      mechanism: SCRAM_SHA_256,
      flag: 'n',
      password: 'pencil',
      nonce: clientNonce,
      username: 'user',
    });
    assert.equal(c.clientFirst, `n,,n=user,r=${clientNonce}`);
    const step = c.serverFirstMessage(serverFirst);
    assert.ok(step.ok);
    assert.equal(body(step.message).toString('latin1'), clientFinal);
    assert.deepEqual(c.serverFinalMessage(serverFinal), { ok: true });
    assert.deepEqual(c.serverFinalMessage('v=6rrjTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='), {
      ok: false,
      error: 'incorrect server signature',
    });
  });

  test('server role: server-first and server-final from the stored secret', () => {
    const secret = buildScramSecret('pencil', { salt: b64decode('W22ZaJ0SNY7soEsUEjb6gQ==')!, iterations: 4096 });
    const s = new ScramServer({ user: 'user', secret, mockSecret: MOCK, tls: false, nonce: () => serverNonce });
    assert.deepEqual(s.mechanisms(), [SCRAM_SHA_256]);
    const s1 = s.receive(P, body(encodeSASLInitialResponse(SCRAM_SHA_256, `n,,n=user,r=${clientNonce}`)));
    assert.equal(s1.kind, 'continue');
    if (s1.kind !== 'continue') return;
    assert.equal(payload(s1.message), serverFirst);
    const s2 = s.receive(P, Buffer.from(clientFinal, 'latin1'));
    assert.equal(s2.kind, 'success');
    if (s2.kind !== 'success') return;
    assert.equal(payload(s2.message), serverFinal);
    assert.deepEqual(s2.keys.clientKey, deriveKeys('pencil', b64decode('W22ZaJ0SNY7soEsUEjb6gQ==')!, 4096).clientKey);
  });
});

describe('client ↔ server round trips', () => {
  let cert: Buffer;
  let otherCert: Buffer;
  const secret = buildScramSecret('s3cret', { iterations: 4096 });
  before(async () => {
    cert = Buffer.from(new X509Certificate((await createRootCA({ subject: { CN: 'a' } })).certPem).raw);
    otherCert = Buffer.from(new X509Certificate((await createRootCA({ subject: { CN: 'b' } })).certPem).raw);
  });
  const server = (o: Partial<ConstructorParameters<typeof ScramServer>[0]> = {}) =>
    new ScramServer({ user: 'alice', secret, mockSecret: MOCK, tls: true, serverCertificate: cert, ...o });
  const client = (
    srv: ScramServer,
    o: { password?: string; tls?: boolean; binding?: Buffer; cb?: 'disable' | 'prefer' | 'require' } = {},
  ) => {
    const choice = selectScramMechanism(srv.mechanisms(), { tls: o.tls ?? true, channelBinding: o.cb ?? 'prefer' });
    assert.ok(!('error' in choice));
    return new ScramClient({
      ...choice,
      password: o.password ?? 's3cret',
      channelBinding: o.binding ?? tlsServerEndPoint(cert),
    });
  };

  test('with channel binding (SCRAM-SHA-256-PLUS): success, bound, ClientKey recovered', () => {
    const srv = server();
    const { step, client: c } = run(srv, client(srv));
    assert.equal(step.kind, 'success');
    if (step.kind !== 'success') return;
    assert.equal(step.channelBound, true);
    assert.ok(c.serverFinalMessage(payload(step.message)).ok);
    assert.equal(c.channelBound, true);
    const s = parseScramSecret(secret)!;
    assert.deepEqual(step.keys.clientKey, deriveKeys('s3cret', b64decode(s.salt)!, s.iterations).clientKey);
  });

  test('without TLS: SCRAM-SHA-256 with "n", success, not bound', () => {
    const srv = server({ tls: false, serverCertificate: undefined });
    const { step, client: c } = run(srv, client(srv, { tls: false }));
    assert.equal(step.kind, 'success');
    if (step.kind === 'success') assert.ok(c.serverFinalMessage(payload(step.message)).ok);
    assert.equal(c.channelBound, false);
  });

  test('wrong password → 28P01 password authentication failed', () => {
    const srv = server();
    expectFailure(
      run(srv, client(srv, { password: 'wrong' })).step,
      '28P01',
      'password authentication failed for user "alice"',
    );
  });

  test('tampered proof → 28P01', () => {
    const srv = server();
    const flip = (m: Buffer) => {
      const t = Buffer.from(m);
      const at = t.lastIndexOf('p=') + 4;
      t[at] = t[at] === 0x41 ? 0x42 : 0x41;
      return t;
    };
    expectFailure(run(srv, client(srv), flip).step, '28P01', 'password authentication failed for user "alice"');
  });

  test('wrong channel-binding data → 28000 SCRAM channel binding check failed', () => {
    const srv = server();
    expectFailure(
      run(srv, client(srv, { binding: tlsServerEndPoint(otherCert)! })).step,
      '28000',
      'SCRAM channel binding check failed',
    );
  });

  test('client offering "y" to a server that binds → 28000 negotiation error', () => {
    const srv = server();
    const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'y', password: 's3cret' });
    expectFailure(
      run(srv, c).step,
      '28000',
      'SCRAM channel binding negotiation error',
      'The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding.',
    );
  });

  test('libpq picks "y" when TLS is on but PLUS is not offered, and require refuses', () => {
    assert.deepEqual(selectScramMechanism([SCRAM_SHA_256], { tls: true, channelBinding: 'prefer' }), {
      mechanism: SCRAM_SHA_256,
      flag: 'y',
    });
    assert.deepEqual(selectScramMechanism([SCRAM_SHA_256], { tls: true, channelBinding: 'require' }), {
      error:
        'channel binding is required, but server did not offer an authentication method that supports channel binding',
    });
    assert.deepEqual(
      selectScramMechanism([SCRAM_SHA_256_PLUS, SCRAM_SHA_256], { tls: false, channelBinding: 'prefer' }),
      {
        error: 'server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection',
      },
    );
    assert.deepEqual(selectScramMechanism(['OTHER'], { tls: true, channelBinding: 'prefer' }), {
      error: "none of the server's SASL authentication mechanisms are supported",
    });
  });

  test('"y" is fine for a server without TLS', () => {
    const srv = server({ tls: false });
    const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'y', password: 's3cret' });
    assert.equal(run(srv, c).step.kind, 'success');
  });

  test('unknown user: a server-first like a real one, deterministic, and a failure like a wrong password', () => {
    const first = (user: string, s: string | undefined, mock = MOCK) => {
      const srv = new ScramServer({ user, secret: s, mockSecret: mock, tls: false });
      const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: 'x' });
      const s1 = srv.receive(P, body(c.initialResponse()));
      assert.equal(s1.kind, 'continue');
      return { text: s1.kind === 'continue' ? payload(s1.message) : '', srv, c };
    };
    const shape = /^r=[A-Za-z0-9+/]{24}[A-Za-z0-9+/]{24},s=[A-Za-z0-9+/]{22}==,i=4096$/;
    const real = first('alice', secret).text;
    const ghost = first('ghost', undefined);
    assert.match(real, shape);
    assert.match(ghost.text, shape);
    const salt = (t: string) => /,s=([^,]+),/.exec(t)![1];
    assert.equal(salt(first('ghost', undefined).text), salt(ghost.text), 'same salt on every attempt');
    assert.notEqual(salt(first('ghost2', undefined).text), salt(ghost.text), 'salt depends on the user');
    assert.notEqual(salt(first('ghost', undefined, Buffer.alloc(32, 8)).text), salt(ghost.text), 'and on the secret');
    const c2 = ghost.c.serverFirstMessage(ghost.text);
    assert.ok(c2.ok);
    const end = ghost.srv.receive(P, body(c2.message));
    expectFailure(end, '28P01', 'password authentication failed for user "ghost"');
    assert.equal(end.kind === 'failure' ? end.logDetail : '', 'Role "ghost" does not exist.');
  });

  test('an md5 secret cannot do SCRAM (mock exchange), a plaintext one can (PgBouncer ad hoc secret)', () => {
    const md5 = new ScramServer({ user: 'bob', secret: `md5${'a'.repeat(32)}`, mockSecret: MOCK, tls: false });
    const r = run(md5, new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: 'pw' })).step;
    expectFailure(r, '28P01', 'password authentication failed for user "bob"');
    assert.equal(r.kind === 'failure' ? r.logDetail : '', 'User "bob" does not have a valid SCRAM secret.');
    const plain = new ScramServer({ user: 'bob', secret: 'pw', mockSecret: MOCK, tls: false });
    assert.equal(
      run(plain, new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: 'pw' })).step.kind,
      'success',
    );
  });

  test('no initial response (-1): an empty challenge first, then the exchange', () => {
    const srv = server({ tls: false });
    const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', password: 's3cret' });
    const s0 = srv.receive(P, body(encodeSASLInitialResponse(SCRAM_SHA_256, undefined)));
    assert.equal(s0.kind === 'continue' ? payload(s0.message) : 'x', '');
    const s1 = srv.receive(P, Buffer.from(c.clientFirst, 'latin1'));
    assert.equal(s1.kind, 'continue');
    if (s1.kind !== 'continue') return;
    const c2 = c.serverFirstMessage(payload(s1.message));
    assert.ok(c2.ok);
    assert.equal(srv.receive(P, body(c2.message)).kind, 'success');
  });

  test('SCRAM pass-through: the recovered ClientKey logs in to a server with the same secret, not another', () => {
    const front = server({ tls: false });
    const ok = run(front, client(front, { tls: false })).step;
    assert.equal(ok.kind, 'success');
    if (ok.kind !== 'success') return;
    const keys = { clientKey: ok.keys.clientKey, serverKey: ok.keys.serverKey };
    const expect = { salt: ok.keys.salt, iterations: ok.keys.iterations };
    const backend = new ScramServer({ user: 'alice', secret, mockSecret: MOCK, tls: false });
    const c = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', keys, expect });
    const done = run(backend, c).step;
    assert.equal(done.kind, 'success');
    if (done.kind === 'success') assert.deepEqual(c.serverFinalMessage(payload(done.message)), { ok: true });
    // same password, other salt: refused early with expect, by the server without it
    const other = buildScramSecret('s3cret');
    const mk = () => new ScramServer({ user: 'alice', secret: other, mockSecret: MOCK, tls: false });
    const srv2 = mk();
    const c2 = new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', keys, expect });
    const s1 = srv2.receive(P, body(c2.initialResponse()));
    assert.deepEqual(s1.kind === 'continue' ? c2.serverFirstMessage(payload(s1.message)) : undefined, {
      ok: false,
      error:
        'SCRAM pass-through impossible: the server uses another salt or iteration count than the secret the keys come from',
    });
    expectFailure(
      run(mk(), new ScramClient({ mechanism: SCRAM_SHA_256, flag: 'n', keys })).step,
      '28P01',
      'password authentication failed for user "alice"',
    );
  });
});
