/**
 * The PROXY decoder against a real sender: HAProxy relays clients to a small Node server that decodes the header
 * with src/protocol/proxy.ts and answers with what it decoded. The client's own socket says what the answer must be.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { type ProxyHeader, decodeProxyHeader } from '../../src/protocol/proxy.js';
import { type RunningHaproxy, startHaproxy } from '../support/haproxy.js';

interface Decoded {
  header?: ProxyHeader;
  invalid?: string;
  /** The first application bytes after the header, as text. */
  payload: string;
}

/** Reads a PROXY header with the decoder, then the payload up to "\n", and answers with JSON. */
function decoderServer(): Promise<Server> {
  const srv = createServer((sock: Socket) => {
    let buf = Buffer.alloc(0);
    let header: ProxyHeader | undefined;
    sock.on('error', () => undefined);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!header) {
        const r = decodeProxyHeader(buf);
        if (r.status === 'need-more') return;
        if (r.status === 'invalid') {
          sock.end(`${JSON.stringify({ invalid: r.reason, payload: '' })}\n`);
          return;
        }
        header = r.header;
        buf = buf.subarray(r.consumed);
      }
      const nl = buf.indexOf(0x0a);
      if (nl < 0) return;
      const tlvs = header.tlvs.map((t) => ({ type: t.type, value: t.value.toString('hex') }));
      sock.end(`${JSON.stringify({ header: { ...header, tlvs }, payload: buf.toString('utf8', 0, nl) })}\n`);
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

async function exchange(sock: Socket): Promise<Decoded> {
  let text = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    text += d;
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('end', () => resolve());
    sock.once('error', reject);
  });
  return JSON.parse(text) as Decoded;
}

describe('PROXY protocol from HAProxy', () => {
  let server: Server;
  let haproxy: RunningHaproxy;
  let pem: string;

  before(async () => {
    server = await decoderServer();
    const backendPort = (server.address() as AddressInfo).port;
    const dir = execFileSync('mktemp', ['-d']).toString().trim();
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        '/CN=db.test',
        '-days',
        '1',
        '-keyout',
        join(dir, 'k.pem'),
        '-out',
        join(dir, 'c.pem'),
      ],
      { stdio: 'ignore' },
    );
    pem = join(dir, 'both.pem');
    writeFileSync(pem, readFileSync(join(dir, 'c.pem'), 'utf8') + readFileSync(join(dir, 'k.pem'), 'utf8'));
    haproxy = await startHaproxy([
      { name: 'v1', backendPort, sendProxy: 'v1' },
      { name: 'v2', backendPort, sendProxy: 'v2' },
      {
        name: 'v2tls',
        backendPort,
        sendProxy: 'v2',
        tlsPem: pem,
        v2Options: ['ssl', 'cert-cn', 'ssl-cipher', 'authority', 'crc32c', 'unique-id'],
      },
    ]);
  });

  after(async () => {
    await haproxy?.stop();
    await new Promise((r) => server?.close(r));
  });

  for (const version of ['v1', 'v2'] as const) {
    test(`send-proxy${version === 'v2' ? '-v2' : ''}: the decoded source is the client's own address and port`, async () => {
      const port = haproxy.ports[version]!;
      const sock = connect({ host: '127.0.0.1', port });
      await new Promise<void>((r) => sock.once('connect', () => r()));
      const local = { address: sock.localAddress!, port: sock.localPort! };
      sock.write('hello through haproxy\n');
      const got = await exchange(sock);
      assert.equal(got.invalid, undefined, haproxy.output());
      assert.equal(got.header?.version, version === 'v1' ? 1 : 2);
      assert.equal(got.header?.command, 'PROXY');
      assert.equal(got.header?.family, 'INET');
      assert.deepEqual(got.header?.source, local);
      assert.deepEqual(got.header?.destination, { address: '127.0.0.1', port });
      assert.equal(got.payload, 'hello through haproxy');
    });
  }

  test('send-proxy-v2 from a TLS frontend: SSL, CN-less client, cipher, AUTHORITY (SNI) and a valid CRC32C', async () => {
    const port = haproxy.ports.v2tls!;
    const sock = tlsConnect({ host: '127.0.0.1', port, servername: 'db.test', rejectUnauthorized: false });
    await new Promise<void>((r) => sock.once('secureConnect', () => r()));
    const local = { address: sock.localAddress!, port: sock.localPort! };
    const cipher = sock.getCipher().standardName;
    const version = sock.getProtocol();
    sock.write('over tls\n');
    const got = await exchange(sock as unknown as Socket);
    assert.equal(got.invalid, undefined, haproxy.output());
    const h = got.header!;
    assert.deepEqual(h.source, local);
    assert.equal(h.authority, 'db.test');
    assert.equal(h.ssl?.client, 0x01, 'PP2_CLIENT_SSL only: no client certificate was sent');
    assert.equal(h.ssl?.version, version);
    // HAProxy names the cipher as OpenSSL does (TLS_AES_256_GCM_SHA384 for TLS 1.3).
    assert.equal(h.ssl?.cipher, cipher);
    assert.ok(
      h.tlvs.some((t) => t.type === 0x03),
      'a CRC32C TLV was sent and verified',
    );
    assert.ok(
      h.tlvs.some((t) => t.type === 0x05),
      'a UNIQUE_ID TLV was sent',
    );
    assert.equal(got.payload, 'over tls');
  });

  test('a header split by the sender into one-byte writes decodes the same (the decoder is incremental)', async () => {
    // HAProxy always sends the header in one segment; replay one of its headers byte by byte to the same server.
    const port = (server.address() as AddressInfo).port;
    const sock = connect({ host: '127.0.0.1', port });
    sock.setNoDelay(true);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const line = 'PROXY TCP4 203.0.113.7 127.0.0.1 40000 5432\r\nbyte by byte\n';
    for (const ch of line) {
      sock.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    const got = await exchange(sock);
    assert.deepEqual(got.header?.source, { address: '203.0.113.7', port: 40000 });
    assert.equal(got.payload, 'byte by byte');
  });

  test('a connection without a header is refused by the decoder', async () => {
    const port = (server.address() as AddressInfo).port;
    const sock = connect({ host: '127.0.0.1', port });
    sock.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    const got = await exchange(sock);
    assert.equal(got.invalid, 'not a PROXY protocol header');
  });
});
