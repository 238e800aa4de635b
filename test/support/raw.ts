/**
 * A raw protocol peer for tests that need bytes no well-behaved client sends (buffer stuffing, bad lengths, an old
 * protocol version, direct TLS with or without ALPN). Reads everything until the server closes or a timeout.
 */
import { type Socket, connect } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { decodeErrorFields } from '../../src/protocol/error-response.js';

export interface Exchange {
  readonly data: Buffer;
  /** 'closed' when the server closed, 'timeout' when it kept the connection open. */
  readonly end: 'closed' | 'timeout';
}

export function readAll(sock: Socket | TLSSocket, timeoutMs = 3000): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (end: Exchange['end']) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), end });
    };
    const t = setTimeout(() => finish('timeout'), timeoutMs);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('close', () => finish('closed'));
    sock.on('error', () => finish('closed'));
  });
}

export function rawConnect(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host, () => resolve(s));
    s.once('error', reject);
  });
}

/** Send `bytes` on a fresh connection and collect the answer. */
export async function exchange(port: number, bytes: Buffer, timeoutMs = 3000): Promise<Exchange> {
  const s = await rawConnect(port);
  const r = readAll(s, timeoutMs);
  s.write(bytes);
  return r;
}

/** The ErrorResponse fields in a server answer (first 'E' message), or undefined. */
export function errorIn(data: Buffer): Record<string, string> | undefined {
  let at = data.indexOf(0x45);
  while (at >= 0 && at + 5 <= data.length) {
    const len = data.readInt32BE(at + 1);
    if (len >= 4 && at + 1 + len <= data.length) return decodeErrorFields(data.subarray(at + 5, at + 1 + len));
    at = data.indexOf(0x45, at + 1);
  }
  return undefined;
}

/** Direct TLS (no SSLRequest), optionally with ALPN; resolves once the handshake is done. */
export function directTls(port: number, alpn?: string[], ca?: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      port,
      host: '127.0.0.1',
      servername: 'localhost',
      rejectUnauthorized: false,
      ...(ca ? { ca } : {}),
      ...(alpn ? { ALPNProtocols: alpn } : {}),
    });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** SSLRequest, then a TLS handshake on the same socket; `extra` bytes are sent together with the SSLRequest. */
export async function negotiatedTls(
  port: number,
  extra: Buffer = Buffer.alloc(0),
  alpn?: string[],
): Promise<TLSSocket> {
  const s = await rawConnect(port);
  const req = Buffer.alloc(8);
  req.writeInt32BE(8, 0);
  req.writeUInt32BE(80877103, 4);
  s.write(Buffer.concat([req, extra]));
  await new Promise<void>((resolve, reject) => {
    s.once('data', (d: Buffer) => (d[0] === 0x53 ? resolve() : reject(new Error(`answer ${d.toString()}`))));
  });
  return new Promise((resolve, reject) => {
    const t = tlsConnect({
      socket: s,
      servername: 'localhost',
      rejectUnauthorized: false,
      ...(alpn ? { ALPNProtocols: alpn } : {}),
    });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
}

export function startupPacket(params: Record<string, string>, version = 3 << 16): Buffer {
  const body = Buffer.from(
    `${Object.entries(params)
      .map(([k, v]) => `${k}\0${v}\0`)
      .join('')}\0`,
  );
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeUInt32BE(version, 4);
  body.copy(b, 8);
  return b;
}
