/**
 * The negotiation and startup phase, side by side with a real PostgreSQL 18 given the same certificate: the same
 * bytes in must give the same answer out (SQLSTATE, message, detail), or the documented difference.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { cleanEnv, psql, run } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, sslClusterOptions } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';
import { directTls, errorIn, exchange, negotiatedTls, rawConnect, readAll, startupPacket } from '../support/raw.js';

let fx: GatewayFixtures;
let pg: TestCluster;
let gw: TestGateway;
const env = { PGPASSWORD: SUPERUSER_PASSWORD };

before(async () => {
  fx = await makeFixtures();
  pg = await startTestCluster(sslClusterOptions(fx));
  gw = await startTestGateway(fx, pg, { authentication_timeout: '2s' });
});
after(async () => {
  await gw?.close();
  await pg?.destroy();
});

/** Run the same probe against PostgreSQL and the gateway. */
async function both<T>(probe: (port: number) => Promise<T>): Promise<{ pg: T; gw: T }> {
  return { pg: await probe(pg.port), gw: await probe(gw.port) };
}

const sslRequest = () => {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeUInt32BE(80877103, 4);
  return b;
};

describe('negotiation, as PostgreSQL 18', () => {
  test('buffer stuffing after SSLRequest (CVE-2021-23214): FATAL 08P01, connection closed', async () => {
    const t = await negotiatedTls(gw.port, startupPacket({ user: 'postgres', database: 'postgres' }));
    const e = errorIn((await readAll(t)).data);
    assert.deepEqual(
      { C: e?.C, M: e?.M, D: e?.D },
      {
        C: '08P01',
        M: 'received unencrypted data after SSL request',
        D: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
      },
    );
    // PostgreSQL 18 refuses too, differently: it feeds the stuffed bytes to OpenSSL, whose handshake fails ("wrong
    // version number"), and closes after 'S' without a TLS session (PostgreSQL ≤ 16 sent the FATAL above). The
    // gateway keeps the explicit FATAL (docs/gateway.md, "Differences").
    await assert.rejects(negotiatedTls(pg.port, startupPacket({ user: 'postgres', database: 'postgres' })));
  });

  test('GSSENCRequest is answered N and SSLRequest may follow on the same connection', async () => {
    const r = await both(async (port) => {
      const s = await rawConnect(port);
      const gss = Buffer.alloc(8);
      gss.writeInt32BE(8, 0);
      gss.writeUInt32BE(80877104, 4);
      const answers: string[] = [];
      s.write(gss);
      answers.push(String.fromCharCode((await new Promise<Buffer>((res) => s.once('data', res)))[0]!));
      s.write(sslRequest());
      answers.push(String.fromCharCode((await new Promise<Buffer>((res) => s.once('data', res)))[0]!));
      s.destroy();
      return answers.join('');
    });
    assert.equal(r.gw, 'NS');
    assert.equal(r.gw, r.pg);
  });

  test('a second SSLRequest inside TLS is an unsupported protocol version (0A000)', async () => {
    const r = await both(async (port) => {
      const t = await negotiatedTls(port);
      const done = readAll(t);
      t.write(sslRequest());
      return errorIn((await done).data);
    });
    assert.equal(r.gw?.C, '0A000');
    assert.equal(r.gw?.M, 'unsupported frontend protocol 1234.5679: server supports 3.0 to 3.2');
    assert.deepEqual([r.gw?.C, r.gw?.M], [r.pg?.C, r.pg?.M]);
  });

  test('protocol 2.0 is refused with PostgreSQL 18 text, in the protocol-2 error format', async () => {
    const r = await both(async (port) => {
      const t = await negotiatedTls(port);
      const done = readAll(t);
      t.write(startupPacket({ user: 'postgres' }, 2 << 16));
      return (await done).data.toString('latin1');
    });
    assert.equal(r.gw, 'EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.2\n\0');
    assert.equal(r.gw, r.pg);
  });

  test('a StartupMessage without a user is refused (28000)', async () => {
    const r = await both(async (port) => {
      const t = await negotiatedTls(port);
      const done = readAll(t);
      t.write(startupPacket({ database: 'postgres' }));
      return errorIn((await done).data);
    });
    assert.equal(r.gw?.C, '28000');
    assert.equal(r.gw?.M, 'no PostgreSQL user name specified in startup packet');
    assert.deepEqual([r.gw?.C, r.gw?.M], [r.pg?.C, r.pg?.M]);
  });

  test('a StartupMessage without its terminator is refused (08P01)', async () => {
    // A correctly framed packet whose last string lacks its NUL terminator.
    const probe = async (port: number) => {
      const t = await negotiatedTls(port);
      const done = readAll(t);
      const p = Buffer.from('\0\0\0\0\0\x03\0\0user\0postgres', 'binary');
      p.writeInt32BE(p.length, 0);
      t.write(p);
      return errorIn((await done).data);
    };
    const pgAnswer = await probe(pg.port);
    const gwAnswer = await probe(gw.port);
    assert.equal(gwAnswer?.C, '08P01');
    assert.equal(gwAnswer?.M, 'invalid startup packet layout: expected terminator as last byte');
    assert.deepEqual([gwAnswer?.C, gwAnswer?.M], [pgAnswer?.C, pgAnswer?.M]);
  });

  test('an invalid startup length is refused with FATAL 08P01, and the gateway keeps serving', async () => {
    const bad = Buffer.alloc(8);
    bad.writeInt32BE(100_000, 0);
    bad.writeUInt32BE(3 << 16, 4);
    const g = await exchange(gw.port, bad);
    assert.equal(g.end, 'closed');
    const e = errorIn(g.data);
    assert.equal(e?.C, '08P01');
    assert.equal(e?.M, 'invalid length of startup packet');
    // PostgreSQL only logs this (COMMERROR) and closes: the outcome (refused) is the same, the gateway says why.
    const p = await exchange(pg.port, bad);
    assert.equal(p.end, 'closed');
    assert.equal(p.data.length, 0);
    const ok = await psql(`host=localhost port=${gw.port} user=postgres sslmode=require`, 'select 1', { env });
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('direct TLS with ALPN postgresql reaches authentication', async () => {
    const r = await both(async (port) => {
      const t = await directTls(port, ['postgresql']);
      const done = readAll(t, 1500);
      t.write(startupPacket({ user: 'postgres', database: 'postgres' }));
      const got = await done;
      return { alpn: t.alpnProtocol, first: String.fromCharCode(got.data[0] ?? 0) };
    });
    assert.deepEqual(r.gw, { alpn: 'postgresql', first: 'R' });
    assert.deepEqual(r.gw, r.pg);
  });

  test('direct TLS without ALPN: handshake, then closed without a word (as PostgreSQL)', async () => {
    const r = await both(async (port) => {
      const t = await directTls(port);
      const got = await readAll(t, 3000);
      return { end: got.end, bytes: got.data.length };
    });
    assert.deepEqual(r.gw, { end: 'closed', bytes: 0 });
    assert.deepEqual(r.gw, r.pg);
    assert.equal(
      gw.records.at(-1)?.reason,
      'received direct SSL connection request without ALPN protocol negotiation extension',
    );
  });

  test('an ALPN offer without postgresql is a fatal no_application_protocol alert, negotiated or direct', async () => {
    for (const mode of ['negotiated', 'direct'] as const) {
      const r = await both(async (port) => {
        try {
          if (mode === 'direct') await directTls(port, ['http/1.1']);
          else await negotiatedTls(port, Buffer.alloc(0), ['http/1.1']);
          return 'connected';
        } catch (e) {
          return /no application protocol|alert number 120/i.test((e as Error).message)
            ? 'alert 120'
            : (e as Error).message;
        }
      });
      assert.equal(r.gw, 'alert 120', mode);
      assert.equal(r.gw, r.pg, mode);
    }
  });

  test('openssl s_client -starttls postgres -alpn postgresql negotiates ALPN', async () => {
    const r = await run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${gw.port}`, '-starttls', 'postgres', '-alpn', 'postgresql'],
      {
        input: '',
      },
    );
    assert.match(r.stdout, /ALPN protocol: postgresql/);
  });

  test('a silent client is dropped after authentication_timeout', async () => {
    const s = await rawConnect(gw.port);
    const got = await readAll(s, 15_000);
    assert.equal(got.end, 'closed');
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(gw.records.some((x) => x.reason === 'authentication timeout'));
  });
});

describe('cancel through the gateway', () => {
  test("psql's cancel (SIGINT) reaches the backend that runs the query", async () => {
    // psql sends the CancelRequest from its signal handler over a new plaintext connection (libpq's PQcancel);
    // the gateway relays it to the backend owning the (pid, key) pair.
    const r = await run(
      'timeout',
      [
        '-s',
        'INT',
        '2',
        'psql',
        '-X',
        '-c',
        'select pg_sleep(20)',
        `host=localhost port=${gw.port} user=postgres sslmode=require`,
      ],
      { env: cleanEnv(env) },
    );
    assert.match(r.stderr, /canceling statement due to user request/);
    assert.ok(gw.records.some((x) => x.outcome === 'cancel' && /cancel forwarded/.test(x.reason ?? '')));
  });

  test('a cancel with an unknown key is ignored and closed', async () => {
    const c = Buffer.alloc(16);
    c.writeInt32BE(16, 0);
    c.writeUInt32BE(80877102, 4);
    c.writeInt32BE(424242, 8);
    c.writeInt32BE(1, 12);
    const r = await exchange(gw.port, c);
    assert.equal(r.end, 'closed');
    assert.equal(r.data.length, 0);
    assert.equal(gw.records.at(-1)?.reason, 'cancel request for an unknown backend');
  });
});
