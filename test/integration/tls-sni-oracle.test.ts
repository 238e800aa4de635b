/**
 * The refusal bytes against OpenSSL itself. PostgreSQL 19 refuses in an OpenSSL ClientHello callback that returns
 * SSL_CLIENT_HELLO_ERROR with unrecognized_name (a name no entry lists, no default) or missing_extension (no SNI, no
 * /no_sni/ or default entry). A 30-line server with such a callback is compiled here (clang, the system's OpenSSL),
 * and what it writes for a real ClientHello is compared byte for byte with what src/tls/sni.ts sends for the same
 * hello — including OpenSSL's mapping of missing_extension to handshake_failure before the version is chosen.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { buildHosts, parseHostsLines, selectHost } from '../../src/hba/hosts.js';
import { tokenizeAuthText } from '../../src/hba/tokenize.js';
import { decodeClientHello, encodeTlsAlert } from '../../src/protocol/tls-client-hello.js';

const ORACLE_C = `
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <unistd.h>
/* Refuse every ClientHello the way sni_clienthello_cb() refuses one it has no configuration for. */
static int hello_cb(SSL *s, int *al, void *arg) {
  const unsigned char *ext; size_t len; (void)arg;
  *al = SSL_client_hello_get0_ext(s, TLSEXT_TYPE_server_name, &ext, &len) ? SSL_AD_UNRECOGNIZED_NAME
                                                                          : SSL_AD_MISSING_EXTENSION;
  return SSL_CLIENT_HELLO_ERROR;
}
int main(int argc, char **argv) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (argc < 3 || SSL_CTX_use_certificate_file(ctx, argv[1], SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) return 2;
  SSL_CTX_set_client_hello_cb(ctx, hello_cb, NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 8) || getsockname(fd, (struct sockaddr *)&a, &l)) return 3;
  printf("%d\\n", ntohs(a.sin_port)); fflush(stdout);
  for (;;) {
    int c = accept(fd, NULL, NULL); SSL *s = SSL_new(ctx);
    SSL_set_fd(s, c); SSL_accept(s); SSL_free(s); close(c);
  }
}
`;

const clangOk = existsSync('/usr/bin/clang') && existsSync('/usr/include/openssl/ssl.h');

/** A ClientHello from Node's TLS client, captured on a plain TCP server. */
function captureHello(servername: string | undefined): Promise<Buffer> {
  return new Promise((resolve) => {
    const srv = createServer((c) => {
      let buf = Buffer.alloc(0);
      // Until one whole TLS record (the ClientHello) has arrived, framed by its header alone.
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          resolve(buf);
          c.destroy();
          srv.close();
        }
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      const t = tlsConnect({
        host: '127.0.0.1',
        port,
        rejectUnauthorized: false,
        ...(servername ? { servername } : {}),
      });
      t.on('error', () => undefined);
    });
  });
}

/** Send bytes, collect everything until the server closes (bounded by a 5 s timeout). */
function exchange(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const c = connect({ host: '127.0.0.1', port }, () => c.write(bytes));
    const timer = setTimeout(() => c.destroy(), 5000);
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', () => undefined);
    c.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

describe(
  'refusal bytes compared with an OpenSSL ClientHello callback',
  { skip: !clangOk && 'clang or OpenSSL headers missing' },
  () => {
    let oracle: ChildProcess;
    let port: number;

    before(async () => {
      const dir = mkdtempSync(join(tmpdir(), 'pgtls-oracle-'));
      writeFileSync(join(dir, 'oracle.c'), ORACLE_C);
      execFileSync('clang', ['-O1', '-o', join(dir, 'oracle'), join(dir, 'oracle.c'), '-lssl', '-lcrypto']);
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
          '/CN=x',
        ].concat(['-days', '1', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')]),
        { stdio: 'ignore' },
      );
      oracle = spawn(join(dir, 'oracle'), [join(dir, 'c.pem'), join(dir, 'k.pem')], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      port = await new Promise<number>((resolve, reject) => {
        oracle.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
        oracle.once('exit', (code) => reject(new Error(`oracle exited with ${code}`)));
      });
    });

    after(() => {
      oracle?.kill();
    });

    // A strict pg_hosts.conf: one named entry, no default, no /no_sni/.
    const hosts = buildHosts(
      parseHostsLines(tokenizeAuthText('example.org org.crt org.key\n', '/virtual/pg_hosts.conf')),
    );

    for (const [label, name, alert] of [
      ['an unlisted server name', 'example.com', 'unrecognized_name'],
      ['no server name', undefined, 'handshake_failure'],
    ] as const) {
      test(`${label}: the same alert record as OpenSSL writes`, async () => {
        const hello = await captureHello(name);
        const decoded = decodeClientHello(hello);
        assert.equal(decoded.status, 'client-hello');
        const sel = selectHost(hosts, (decoded as { servername: string | undefined }).servername);
        assert.equal('alert' in sel && sel.alert, alert);
        const fromOpenssl = await exchange(port, hello);
        assert.deepEqual([...encodeTlsAlert(alert)], [...fromOpenssl]);
      });
    }
  },
);
