/**
 * runConsoleSession on a real loopback socket, driven byte by byte: the greeting, pipelined queries, and the refusals
 * (extended protocol, a malformed Query, an oversized length) that end the session with FATAL 08P01.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { type Socket, connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { runConsoleSession } from '../../src/gateway/admin/session.js';
import { encodeQuery } from '../../src/protocol/rows.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { FileView } from '../support/operator-console.js';
import { decodeBackend } from '../support/operator-decode.js';

let fx: GatewayFixtures;
let view: FileView;

before(async () => {
  fx = await makeFixtures();
  const hba = writeFixture(fx, 'pg_hba.conf', 'hostssl pgtls admin all trust\n');
  view = new FileView(writeFixture(fx, 'pgtls.conf', `hba_file = '${hba}'\n`));
});

/** One console session on loopback; the client writes `bytes` and reads until the server closes. */
async function exchange(bytes: Buffer, pending?: Buffer): Promise<Buffer> {
  let done: Promise<void> = Promise.resolve();
  const server = createServer((s: Socket) => {
    done = runConsoleSession(s, {
      view,
      role: 'stats',
      sendAuthenticationOk: true,
      backendKey: { pid: 4242, key: randomBytes(4) },
      ...(pending ? { pending } : {}),
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = connect((server.address() as { port: number }).port, '127.0.0.1');
  const chunks: Buffer[] = [];
  c.on('data', (d) => chunks.push(d));
  c.on('error', () => undefined); // writes after the server closed (the refusal cases) fail: expected
  const closed = new Promise<void>((r) => c.once('close', () => r()));
  await new Promise<void>((r) => c.once('connect', () => r()));
  // Byte by byte: framing must not depend on how TCP cuts the stream.
  for (const b of bytes) {
    if (c.destroyed) break;
    c.write(Buffer.from([b]));
    await new Promise((r) => setImmediate(r));
  }
  if (!c.destroyed) setTimeout(() => c.end(), 2000).unref();
  await closed;
  await done;
  server.close();
  return Buffer.concat(chunks);
}

const types = (b: Buffer) =>
  decodeBackend(b)
    .map((m) => m.type)
    .join('');

test('greeting, a pipelined query, queries split byte by byte, Terminate', async () => {
  const out = await exchange(
    Buffer.concat([encodeQuery('SHOW VERSION'), encodeQuery('SHOW NOPE'), Buffer.from([0x58, 0, 0, 0, 4])]),
    encodeQuery('SHOW STATS'),
  );
  const msgs = decodeBackend(out);
  const rows = msgs.filter((m) => m.type === 'D').length;
  // AuthenticationOk, 10 ParameterStatus, BackendKeyData, ReadyForQuery; then SHOW STATS (pending), SHOW VERSION,
  // the ERROR for SHOW NOPE, each followed by ReadyForQuery; then the server closes after Terminate.
  assert.equal(types(out), `R${'S'.repeat(10)}KZT${'D'.repeat(rows - 1)}CZTDCZEZ`);
  assert.deepEqual(msgs[0], { type: 'R', code: 0 });
  assert.deepEqual(
    msgs.find((m) => m.type === 'K'),
    { type: 'K', pid: 4242 },
  );
  const enc = msgs.find((m) => m.type === 'S' && m.name === 'client_encoding');
  assert.deepEqual(enc, { type: 'S', name: 'client_encoding', value: 'UTF8' });
  const err = msgs.find((m) => m.type === 'E');
  assert.equal(err?.type === 'E' && err.fields.C, '42601');
});

test('the extended protocol is refused with FATAL 08P01 and the session ends', async () => {
  // Parse ('P'): an unnamed statement "" with query "" and no parameter types.
  const parse = Buffer.from([0x50, 0, 0, 0, 8, 0, 0, 0, 0]);
  const out = await exchange(Buffer.concat([parse, encodeQuery('SHOW VERSION')]));
  const last = decodeBackend(out).at(-1);
  assert.deepEqual(last, {
    type: 'E',
    fields: { S: 'FATAL', V: 'FATAL', C: '08P01', M: 'extended query protocol not supported by admin console' },
  });
  assert.ok(!types(out).includes('T'), 'nothing after the refusal was answered');
});

test('a Query without its NUL, and a declared length over the limit, end the session with FATAL 08P01', async () => {
  const bad = Buffer.from([0x51, 0, 0, 0, 7, 0x61, 0x62, 0x63]);
  const out = await exchange(bad);
  assert.deepEqual(decodeBackend(out).at(-1), {
    type: 'E',
    fields: { S: 'FATAL', V: 'FATAL', C: '08P01', M: 'invalid message format' },
  });
  const huge = Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]);
  const out2 = await exchange(huge);
  assert.deepEqual(decodeBackend(out2).at(-1), {
    type: 'E',
    fields: { S: 'FATAL', V: 'FATAL', C: '08P01', M: 'invalid message length' },
  });
});
