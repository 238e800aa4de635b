/**
 * The ClientHello server_name reader, on ClientHellos captured at test time from Node's TLS client and from
 * `openssl s_client`, split at every offset, re-fragmented into many records, and damaged in the ways
 * PostgreSQL's sni_clienthello_cb() checks.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import fc from 'fast-check';
import { decodeClientHello, encodeTlsAlert } from '../../src/protocol/tls-client-hello.js';

/**
 * Accept one connection and keep what the client sends until one whole TLS record (its ClientHello: Node and OpenSSL
 * send it in one record) has arrived, framed by the record header alone; at most 15 s.
 */
async function capture(start: (port: number) => () => void): Promise<Buffer> {
  let resolveHello: (b: Buffer) => void = () => undefined;
  const done = new Promise<Buffer>((r) => {
    resolveHello = r;
  });
  const srv = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        resolveHello(buf);
        s.destroy();
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const stop = start((srv.address() as AddressInfo).port);
  const timer = setTimeout(() => resolveHello(Buffer.alloc(0)), 15_000);
  const hello = await done;
  clearTimeout(timer);
  stop();
  await new Promise((r) => srv.close(r));
  return hello;
}

const fromNode = (servername: string | undefined) =>
  capture((port) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername ? { servername } : {}) });
    s.on('error', () => undefined);
    return () => s.destroy();
  });

const fromOpenssl = (args: string[]) =>
  capture((port) => {
    const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { stdio: 'pipe' });
    p.on('error', () => undefined);
    return () => p.kill();
  });

/** Re-cut the handshake bytes of one record into records of `size` bytes. */
function refragment(hello: Buffer, size: number): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const part = body.subarray(i, i + size);
    out.push(Buffer.from([22, 3, 1, part.length >> 8, part.length & 0xff]), part);
  }
  return Buffer.concat(out);
}

/** Locate the server_name extension's data inside a single-record ClientHello (offset into the buffer). */
function sniOffset(hello: Buffer): number {
  let p = 5 + 4 + 2 + 32;
  p += 1 + hello[p]!;
  p += 2 + hello.readUInt16BE(p);
  p += 1 + hello[p]!;
  const end = p + 2 + hello.readUInt16BE(p);
  p += 2;
  while (p < end) {
    if (hello.readUInt16BE(p) === 0) return p + 4;
    p += 4 + hello.readUInt16BE(p + 2);
  }
  throw new Error('no server_name extension');
}

describe('ClientHello server_name', () => {
  test('Node client: with and without a server name; every prefix needs more', async () => {
    const named = await fromNode('db.example.org');
    assert.equal(named[0], 22);
    for (let i = 0; i < named.length; i++) {
      assert.equal(decodeClientHello(named.subarray(0, i)).status, 'need-more', `prefix ${i}`);
    }
    assert.deepEqual(decodeClientHello(named), { status: 'client-hello', servername: 'db.example.org' });
    // Node sends no SNI for an IP address.
    assert.deepEqual(decodeClientHello(await fromNode(undefined)), { status: 'client-hello', servername: undefined });
  });

  test('openssl s_client: -servername and -noservername; the same hello cut into 7-byte records', async () => {
    const named = await fromOpenssl(['-servername', 'Example.ORG']);
    assert.deepEqual(decodeClientHello(named), { status: 'client-hello', servername: 'Example.ORG' });
    const cut = refragment(named, 7);
    for (let i = 0; i < cut.length; i += 13) {
      assert.equal(decodeClientHello(cut.subarray(0, i)).status, 'need-more', `prefix ${i}`);
    }
    assert.deepEqual(decodeClientHello(cut), { status: 'client-hello', servername: 'Example.ORG' });
    const none = await fromOpenssl(['-noservername']);
    assert.deepEqual(decodeClientHello(none), { status: 'client-hello', servername: undefined });
  });

  test('damaged server_name extensions are decode errors, as sni_clienthello_cb() has them', async () => {
    const hello = await fromNode('db.example.org');
    const at = sniOffset(hello);
    const damage = (f: (b: Buffer) => void) => {
      const b = Buffer.from(hello);
      f(b);
      return decodeClientHello(b);
    };
    assert.deepEqual(
      damage((b) => b.writeUInt16BE(b.readUInt16BE(at) + 1, at)),
      { status: 'invalid', reason: 'server_name list length mismatch' },
    );
    assert.deepEqual(
      damage((b) => {
        b[at + 2] = 1;
      }),
      { status: 'invalid', reason: 'server_name entry is not a host_name' },
    );
    assert.deepEqual(
      damage((b) => b.writeUInt16BE(b.readUInt16BE(at + 3) + 1, at + 3)),
      { status: 'invalid', reason: 'server_name entry runs past the extension' },
    );
    assert.deepEqual(
      damage((b) => {
        b[at + 5] = 0;
      }),
      { status: 'invalid', reason: 'bad host_name' },
    );
  });

  test('not TLS at all', () => {
    assert.deepEqual(decodeClientHello(Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])), {
      status: 'invalid',
      reason: 'not a TLS handshake record',
    });
    assert.deepEqual(decodeClientHello(Buffer.from([22, 3, 1, 0, 0])), {
      status: 'invalid',
      reason: 'bad record length',
    });
    assert.deepEqual(decodeClientHello(Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0])), {
      status: 'invalid',
      reason: 'first handshake message is not a ClientHello',
    });
  });

  test('random bytes after a handshake record header never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (tail, framed) => {
        const b = framed
          ? Buffer.concat([Buffer.from([22, 3, 1, tail.length >> 8, tail.length & 0xff]), tail])
          : Buffer.from(tail);
        decodeClientHello(b);
      }),
      { numRuns: 2000 },
    );
  });

  test('the alert record: fatal, with the RFC 8446 description code', () => {
    assert.deepEqual([...encodeTlsAlert('unrecognized_name')], [21, 3, 3, 0, 2, 2, 112]);
    assert.deepEqual([...encodeTlsAlert('handshake_failure')], [21, 3, 3, 0, 2, 2, 40]);
    assert.deepEqual([...encodeTlsAlert('decode_error')], [21, 3, 3, 0, 2, 2, 50]);
  });
});
