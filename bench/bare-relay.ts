/**
 * The floor of a Node.js TLS relay, for bench/pgbench.ts to compare the gateway with: answer SSLRequest with 'S',
 * terminate TLS, then splice bytes to PostgreSQL with nothing else (no hba, no startup parsing, no logging).
 * Not a product: it accepts anyone and checks nothing.
 *
 *   node dist/bench/bare-relay.js PORT CERT KEY UPSTREAM   (UPSTREAM: host:port, or a Unix socket path)
 */
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { TLSSocket, createSecureContext } from 'node:tls';

const [port, cert, key, upstream] = process.argv.slice(2) as [string, string, string, string];
const context = createSecureContext({ cert: readFileSync(cert), key: readFileSync(key) });
const target = upstream.startsWith('/')
  ? { path: upstream }
  : { host: upstream.split(':')[0]!, port: Number(upstream.split(':')[1]) };

createServer({ noDelay: true }, (sock) => {
  sock.once('data', () => {
    sock.pause();
    sock.write('S');
    const tls = new TLSSocket(sock, { isServer: true, secureContext: context });
    tls.once('secure', () => {
      const backend = connect(target);
      backend.setNoDelay(true);
      tls.on('data', (d: Buffer) => {
        if (!backend.write(d)) tls.pause();
      });
      backend.on('drain', () => tls.resume());
      backend.on('data', (d: Buffer) => {
        if (!tls.write(d)) backend.pause();
      });
      tls.on('drain', () => backend.resume());
      tls.on('close', () => backend.destroy());
      backend.on('close', () => tls.destroy());
      tls.on('error', () => tls.destroy());
      backend.on('error', () => backend.destroy());
    });
    tls.on('error', () => tls.destroy());
  });
}).listen(Number(port), '127.0.0.1');
