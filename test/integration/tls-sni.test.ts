/**
 * ssl_sni + pg_hosts.conf with real TLS: certificates generated at test time, `openssl s_client` with and without
 * -servername against two servers built the ways the gateway can wire src/tls/sni.ts — reading the ClientHello first
 * (decide(), exact) and Node's SNICallback — following the cases of PostgreSQL 19's src/test/ssl/t/004_sni.pl.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TLSSocket } from 'node:tls';
import { loadConfig } from '../../src/config/load.js';
import { PgtlsError } from '../../src/errors.js';
import { createCRL, createClientCert, createRootCA, createServerCert } from '../../src/pki/generate.js';
import { encodeErrorResponse } from '../../src/protocol/error-response.js';
import { decodeInitialPacket } from '../../src/protocol/startup.js';
import { type SniSelector, loadSniSelector } from '../../src/tls/sni.js';
import { psql } from '../support/clients.js';

let dir: string;
const w = (name: string, content: string, mode = 0o644) => {
  const p = join(dir, name);
  writeFileSync(p, content, { mode });
  chmodSync(p, mode);
  return p;
};

/** The gateway's way: read the ClientHello, refuse with the alert or start TLS with the chosen material. */
function peekServer(sel: SniSelector): Promise<Server> {
  return listen((sock) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const r = sel.decide(buf);
      if (r.status === 'need-more') return;
      sock.off('data', onData);
      sock.pause();
      if (r.status === 'refused') {
        sock.end(r.record);
        return;
      }
      sock.unshift(buf);
      const t = new TLSSocket(sock, {
        isServer: true,
        secureContext: r.material.context,
        requestCert: r.material.requestCert,
        rejectUnauthorized: false,
      });
      t.on('error', () => sock.destroy());
      t.on('secure', () => {
        // The client certificate's verification result, asked of the TLS handle as the gateway does
        // (Node fills `authorized` only for its own tls.Server).
        const handle = (t as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })
          ._handle;
        const verify = t.getPeerX509Certificate() ? (handle?.verifyError?.()?.code ?? 'ok') : 'none';
        t.end(`served ${r.entry ? r.entry.hostnames.join(',') : 'main'} client-cert=${verify}\n`);
      });
    };
    sock.on('data', onData);
  });
}

/**
 * As the gateway will: answer an SSLRequest with 'S', choose from the ClientHello, and once TLS is up answer the
 * StartupMessage with a FATAL naming the entry that served (so libpq shows which one it reached).
 */
function pgServer(sel: SniSelector): Promise<Server> {
  return listen((sock) => {
    let buf = Buffer.alloc(0);
    let answered = false;
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!answered) {
        const p = decodeInitialPacket(buf);
        if (p.status !== 'packet') return;
        if (p.packet.kind !== 'SSLRequest') {
          sock.destroy();
          return;
        }
        answered = true;
        buf = buf.subarray(p.consumed);
        sock.write('S');
      }
      const r = sel.decide(buf);
      if (r.status === 'need-more') return;
      sock.off('data', onData);
      sock.pause();
      if (r.status === 'refused') {
        sock.end(r.record);
        return;
      }
      sock.unshift(buf);
      const t = new TLSSocket(sock, { isServer: true, secureContext: r.material.context, rejectUnauthorized: false });
      t.on('error', () => sock.destroy());
      t.once('data', () => {
        const message = `served ${r.entry ? r.entry.hostnames.join(',') : 'main'}`;
        t.end(encodeErrorResponse({ severity: 'FATAL', code: '28000', message }));
      });
    };
    sock.on('data', onData);
  });
}

/** Node's way: default context for clients without SNI, SNICallback for the rest. */
function callbackServer(sel: SniSelector): Promise<Server> {
  return listen((sock) => {
    const t = new TLSSocket(sock, {
      isServer: true,
      secureContext: sel.defaultContext,
      SNICallback: sel.SNICallback,
      rejectUnauthorized: false,
    });
    t.on('error', () => sock.destroy());
    t.on('secure', () => t.end('served\n'));
  });
}

function listen(onConn: (s: Socket) => void): Promise<Server> {
  const srv = createServer((s) => {
    s.on('error', () => undefined);
    onConn(s);
  });
  return new Promise((r) => srv.listen(0, '127.0.0.1', () => r(srv)));
}

interface SClient {
  code: number | null;
  out: string;
  /** The served leaf's subject CN ("0 s:CN = …"). */
  cn: string | undefined;
  alert: number | undefined;
}

/** `openssl s_client`, keeping the connection until the server closes it (-ign_eof); bounded by a 15 s kill. */
function sClient(srv: Server, args: string[]): Promise<SClient> {
  const port = (srv.address() as AddressInfo).port;
  return new Promise((resolve) => {
    const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof', ...args], { stdio: 'pipe' });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stdin.end();
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      const cn = /^\s*0 s:.*?CN = ([^,\n]+)/m.exec(out)?.[1];
      const alert = /SSL alert number (\d+)/.exec(out)?.[1];
      resolve({ code, out, cn, alert: alert === undefined ? undefined : Number(alert) });
    });
  });
}

const closeAll = (servers: Server[]) => Promise.all(servers.map((s) => new Promise((r) => s.close(r))));

describe('ssl_sni with pg_hosts.conf', () => {
  let files: Record<string, string>;
  const servers: Server[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgtls-sni-'));
    const root = await createRootCA({ subject: { CN: 'sni test root' } });
    const clientCa = await createRootCA({ subject: { CN: 'sni client CA' } });
    const issue = async (name: string, cn: string, hosts: string[], keyMode?: 'encrypted') => {
      const c = await createServerCert(root, { subject: { CN: cn }, hosts });
      const key =
        keyMode === 'encrypted'
          ? (createPrivateKey(c.keyPem).export({
              type: 'pkcs8',
              format: 'pem',
              cipher: 'aes-256-cbc',
              passphrase: 'secret1',
            }) as string)
          : c.keyPem;
      w(`${name}.crt`, c.certPem);
      w(`${name}.key`, key, 0o600);
    };
    await issue('main', 'main.test', ['main.test']);
    await issue('default', 'default.test', ['default.test']);
    await issue('nosni', 'nosni.test', ['nosni.test']);
    await issue('org', 'example.org', ['example.org', 'example.com']);
    await issue('net', 'example.net', ['example.net'], 'encrypted');
    w('client-ca.crt', clientCa.certPem);
    const good = await createClientCert(clientCa, { subject: { CN: 'alice' } });
    const revoked = await createClientCert(clientCa, { subject: { CN: 'mallory' } });
    w('alice.crt', good.certPem);
    w('alice.key', good.keyPem, 0o600);
    w('mallory.crt', revoked.certPem);
    w('mallory.key', revoked.keyPem, 0o600);
    w('client.crl', await createCRL(clientCa, [{ serial: revoked.serial }]));
    files = {
      full: w(
        'full.conf',
        [
          '# HOSTNAME  CERTIFICATE  KEY  CA  PASSPHRASE_CMD  RELOAD',
          '* default.crt default.key',
          '/no_sni/ nosni.crt nosni.key',
          'example.org,example.com org.crt org.key client-ca.crt',
          'example.net net.crt net.key "" "echo secret1" on',
        ].join('\n'),
      ),
      strict: w('strict.conf', 'example.org org.crt org.key client-ca.crt\n'),
      nosniOnly: w('nosni-only.conf', '/no_sni/ nosni.crt nosni.key\n'),
    };
  });

  after(() => closeAll(servers));

  const selector = (flags: Record<string, string>) =>
    loadSniSelector(
      loadConfig({
        cwd: dir,
        flags: { ssl_cert_file: 'main.crt', ssl_key_file: 'main.key', ssl_ca_file: 'client-ca.crt', ...flags },
      }),
    );
  const start = async (s: Promise<Server>) => {
    const srv = await s;
    servers.push(srv);
    return srv;
  };

  test('ssl_sni = off: the main ssl_* files serve every name, pg_hosts.conf is not read', async () => {
    const sel = selector({ ssl_sni: 'off', hosts_file: files.strict! });
    assert.equal(sel.source, 'disabled');
    const srv = await start(peekServer(sel));
    for (const args of [['-servername', 'example.org'], ['-noservername']]) {
      const r = await sClient(srv, args);
      assert.equal(r.cn, 'main.test', r.out);
      assert.match(r.out, /served main/);
    }
  });

  test('ssl_sni = on with a missing or empty pg_hosts.conf: the main files serve', async () => {
    assert.equal(selector({ ssl_sni: 'on', hosts_file: join(dir, 'absent.conf') }).source, 'missing');
    const empty = w('empty.conf', '# nothing here\n\n');
    const sel = selector({ ssl_sni: 'on', hosts_file: empty });
    assert.equal(sel.source, 'empty');
    const r = await sClient(await start(peekServer(sel)), ['-servername', 'example.org']);
    assert.equal(r.cn, 'main.test', r.out);
  });

  describe('a file with *, /no_sni/ and names', () => {
    let sel: SniSelector;
    let peek: Server;
    let hook: Server;
    before(async () => {
      sel = selector({ ssl_sni: 'on', hosts_file: files.full! });
      assert.equal(sel.source, 'ok');
      peek = await start(peekServer(sel));
      hook = await start(callbackServer(sel));
    });

    const cases: [string[], string][] = [
      [['-servername', 'example.org'], 'example.org'],
      [['-servername', 'Example.COM'], 'example.org'],
      [['-servername', 'example.net'], 'example.net'],
      [['-servername', 'example.se'], 'default.test'],
      [['-noservername'], 'nosni.test'],
    ];
    for (const [args, cn] of cases) {
      test(`${args.join(' ')} → ${cn} (ClientHello and SNICallback alike)`, async () => {
        for (const srv of [peek, hook]) {
          const r = await sClient(srv, args);
          assert.equal(r.cn, cn, r.out);
          assert.match(r.out, /served/);
        }
      });
    }

    test("each entry's CA decides the certificate request; ssl_ca_file does not apply to entries", async () => {
      const withCa = await sClient(peek, ['-servername', 'example.org']);
      assert.match(withCa.out, /Acceptable client certificate CA names\n.*CN = sni client CA/, withCa.out);
      for (const name of ['example.net', 'example.se']) {
        const noCa = await sClient(peek, ['-servername', name]);
        assert.match(noCa.out, /No client certificate CA names sent/, noCa.out);
      }
    });

    test("an encrypted key is opened with the entry's own passphrase command", () => {
      const net = sel.materials().find((m) => m.entry?.hostnames.includes('example.net'));
      assert.equal(net?.material.leaf.subject, 'CN=example.net');
    });
  });

  describe('strict: no default entry', () => {
    let sel: SniSelector;
    before(() => {
      sel = selector({ ssl_sni: 'on', hosts_file: files.strict! });
    });

    test('read before TLS: a listed name is served, an unknown one gets unrecognized_name (112)', async () => {
      const srv = await start(peekServer(sel));
      assert.equal((await sClient(srv, ['-servername', 'example.org'])).cn, 'example.org');
      for (const name of ['example.com', 'example']) {
        const r = await sClient(srv, ['-servername', name]);
        assert.equal(r.cn, undefined);
        assert.equal(r.alert, 112, r.out);
        assert.match(r.out, /unrecognized name/);
        assert.notEqual(r.code, 0);
      }
    });

    test('read before TLS: no SNI gets handshake_failure (40), as PostgreSQL 19 puts it on the wire', async () => {
      const srv = await start(peekServer(sel));
      const r = await sClient(srv, ['-noservername']);
      assert.equal(r.alert, 40, r.out);
      assert.match(r.out, /handshake failure/);
    });

    test('SNICallback: no SNI gets handshake_failure too; an unknown name also gets 40 (Node cannot send 112)', async () => {
      const srv = await start(callbackServer(sel));
      assert.equal((await sClient(srv, ['-servername', 'example.org'])).cn, 'example.org');
      for (const args of [['-noservername'], ['-servername', 'example.com']]) {
        const r = await sClient(srv, args);
        assert.equal(r.cn, undefined, r.out);
        assert.equal(r.alert, 40, r.out);
      }
    });
  });

  for (const libpq of [15, 18] as const) {
    test(`libpq ${libpq} (sslsni) through SSLRequest: the messages 004_sni.pl expects`, async () => {
      const srv = await start(pgServer(selector({ ssl_sni: 'on', hosts_file: files.strict! })));
      const port = (srv.address() as AddressInfo).port;
      const conn = (extra: string) =>
        psql(`hostaddr=127.0.0.1 port=${port} user=u dbname=d sslmode=require ${extra}`, 'select 1', { libpq });
      const ok = await conn('host=example.org sslsni=1');
      assert.match(ok.stderr, /FATAL: {2}served example.org/, ok.stderr);
      const upper = await conn('host=Example.ORG sslsni=1');
      assert.match(upper.stderr, /FATAL: {2}served example.org/, upper.stderr);
      for (const host of ['example.com', 'example']) {
        const r = await conn(`host=${host} sslsni=1`);
        assert.match(r.stderr, /SSL error: tlsv1 unrecognized name/, r.stderr);
      }
      const none = await conn('host=example.org sslsni=0');
      assert.match(none.stderr, /SSL error: sslv3 alert handshake failure/, none.stderr);
    });
  }

  test('only /no_sni/: a client sending a name is refused with unrecognized_name', async () => {
    const srv = await start(peekServer(selector({ ssl_sni: 'on', hosts_file: files.nosniOnly! })));
    assert.equal((await sClient(srv, ['-noservername'])).cn, 'nosni.test');
    assert.equal((await sClient(srv, ['-servername', 'example.org'])).alert, 112);
  });

  test("the main CRL applies to the entries' client CAs", async () => {
    const sel = selector({ ssl_sni: 'on', hosts_file: files.strict!, ssl_crl_file: 'client.crl' });
    const srv = await start(peekServer(sel));
    const client = (name: string) =>
      sClient(srv, ['-servername', 'example.org', '-cert', join(dir, `${name}.crt`), '-key', join(dir, `${name}.key`)]);
    const ok = await client('alice');
    assert.match(ok.out, /served example.org client-cert=ok/, ok.out);
    const bad = await client('mallory');
    assert.match(bad.out, /served example.org client-cert=CERT_REVOKED/, bad.out);
    // Without the CRL the same certificate verifies: the revocation came from the main ssl_crl_file.
    const plain = await start(peekServer(selector({ ssl_sni: 'on', hosts_file: files.strict! })));
    const r = await sClient(plain, [
      '-servername',
      'example.org',
      '-cert',
      join(dir, 'mallory.crt'),
      '-key',
      join(dir, 'mallory.key'),
    ]);
    assert.match(r.out, /client-cert=ok/, r.out);
  });

  test("an entry's unreadable file or wrong passphrase fails the load, naming the file and the pg_hosts.conf line", () => {
    const f = w('bad.conf', 'ok.test org.crt org.key\n\nmissing.test nothere.crt org.key\n');
    assert.throws(
      () => selector({ ssl_sni: 'on', hosts_file: f }),
      (e: unknown) => {
        assert.ok(e instanceof PgtlsError);
        assert.equal(
          e.message,
          `could not load server certificate file "${join(dir, 'nothere.crt')}": No such file or directory`,
        );
        assert.equal(e.details.hosts_line, `${f}:3`);
        return true;
      },
    );
    const g = w('badpass.conf', 'example.net net.crt net.key "" "echo wrongpassword" on\n');
    assert.throws(() => selector({ ssl_sni: 'on', hosts_file: g }), {
      message: `could not load private key file "${join(dir, 'net.key')}": bad decrypt`,
    });
  });

  test('reload: an encrypted key whose command may not run again keeps the loaded key, else the reload fails', () => {
    const f = w('noreload.conf', 'example.net net.crt net.key "" "echo secret1" off\n');
    const flags = { ssl_sni: 'on', hosts_file: f };
    const settings = loadConfig({ cwd: dir, flags: { ssl_cert_file: 'main.crt', ssl_key_file: 'main.key', ...flags } });
    const first = loadSniSelector(settings);
    const again = loadSniSelector(settings, { isReload: true, previous: first });
    assert.equal(again.materials()[0]!.material.key, first.materials()[0]!.material.key);
    assert.throws(() => loadSniSelector(settings, { isReload: true }), {
      message: `private key file "${join(dir, 'net.key')}" cannot be reloaded because it requires a passphrase`,
    });
  });

  test('a pg_hosts.conf error stops the load (PostgreSQL refuses to start)', () => {
    const f = w('dup.conf', '* main.crt main.key\n* main.crt main.key\n');
    assert.throws(() => selector({ ssl_sni: 'on', hosts_file: f }), {
      message: `multiple default hosts specified (line 2 of configuration file "${f}")`,
    });
  });
});
