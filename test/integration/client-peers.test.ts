/**
 * Peers that misbehave during SSL negotiation — real TCP servers that answer SSLRequest wrongly — with psql (libpq 18)
 * as the oracle: both must refuse with the same message (and not fall back where libpq gives up).
 */
import assert from 'node:assert/strict';
import { type Server, type Socket, createServer } from 'node:net';
import { after, test } from 'node:test';
import { TLSSocket } from 'node:tls';
import { createRootCA, createServerCert } from '../../src/pki/generate.js';
import { pgtlsOutcome, psqlOutcome } from '../support/client-fixtures.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A TCP server on 127.0.0.1 that runs `onFirst` with the first packet of every connection. */
async function peer(onFirst: (sock: Socket, data: Buffer) => void): Promise<number> {
  const srv = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.once('data', (d) => onFirst(sock, d));
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return (srv.address() as { port: number }).port;
}

const isSSLRequest = (d: Buffer) => d.length >= 8 && d.readUInt32BE(4) === 80877103;

test('SSL negotiation failures: same message as libpq, and no plaintext retry where libpq gives up', async () => {
  const ports = {
    closes: await peer((s) => s.destroy()),
    invalid: await peer((s) => s.end('X')),
    extra: await peer((s) => s.end('Sjunk')),
    error: await peer((s, d) => (isSSLRequest(d) ? s.end('E') : s.destroy())),
    refusesThenCloses: await peer((s, d) => {
      if (!isSSLRequest(d)) {
        s.destroy();
        return;
      }
      s.write('N');
      s.once('data', () => s.destroy());
    }),
    // a man in the middle appends bytes to the 'S', then a real TLS handshake follows
    injected: await (async () => {
      const ca = await createRootCA({ subject: { CN: 'peer CA' } });
      const leaf = await createServerCert(ca, { subject: { CN: 'localhost' }, hosts: ['127.0.0.1'] });
      return peer((s, d) => {
        if (!isSSLRequest(d)) {
          s.destroy();
          return;
        }
        s.write('Sinjected', () => {
          const t = new TLSSocket(s, {
            isServer: true,
            key: leaf.keyPem,
            cert: leaf.certPem,
            ALPNProtocols: ['postgresql'],
          });
          t.on('error', () => undefined);
        });
      });
    })(),
    notPostgres: await peer((s) => {
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    }),
  };
  const problems: string[] = [];
  for (const [name, port] of Object.entries(ports)) {
    for (const mode of ['prefer', 'require', 'allow']) {
      const conninfo = `host=127.0.0.1 port=${port} user=postgres dbname=postgres sslmode=${mode}`;
      const libpq = await psqlOutcome(conninfo);
      const ours = await pgtlsOutcome(conninfo);
      assert.equal(libpq.result, 'refused', `${name} ${mode}: libpq connected?`);
      if (JSON.stringify(libpq) !== JSON.stringify(ours)) {
        problems.push(`${name} ${mode}\n  libpq: ${JSON.stringify(libpq)}\n  pgtls: ${JSON.stringify(ours)}`);
      }
    }
  }
  assert.deepEqual(problems, []);
  const injected = await pgtlsOutcome(`host=127.0.0.1 port=${ports.injected} user=postgres sslmode=require`);
  assert.deepEqual(injected, {
    result: 'refused',
    message: `connection to server at "127.0.0.1", port ${ports.injected} failed: received unencrypted data after SSL response\n`,
  });
});
