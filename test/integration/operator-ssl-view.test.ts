/**
 * The client's TLS facts visible to SQL, against a real PostgreSQL 18: custom settings in the startup packet
 * (current_setting('pgtls.ssl_version')), and the pgtls.pg_stat_ssl view / pgtls.ssl_is_used() kept by
 * SslViewWriter over its own backend connection, read with the source documents' query. The facts come from real
 * TLS handshakes on loopback (TLS 1.2 with a client certificate, TLS 1.3 without).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import pg from 'pg';
import postgres from 'postgres';
import { isPgtlsError } from '../../src/errors.js';
import type { ConnectionRecord } from '../../src/gateway/runtime.js';
import {
  ERR_SSL_VIEW_PRIVILEGE,
  type QueryFn,
  SslViewWriter,
  sessionSslFacts,
  stripClientFacts,
  tlsFactsAsStartupOptions,
} from '../../src/gateway/ssl-view.js';
import type { TlsFacts } from '../../src/gateway/transport.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { SUPERUSER, SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let admin: pg.Client;

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  admin = connectAs(SUPERUSER, SUPERUSER_PASSWORD);
  await admin.connect();
  await admin.query("CREATE ROLE app LOGIN PASSWORD 'app-pw'; CREATE ROLE weak LOGIN PASSWORD 'weak-pw'");
});

after(async () => {
  await admin?.end();
  await cluster?.destroy();
});

function connectAs(user: string, password: string, extra: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: cluster.port, user, password, database: 'postgres', ...extra });
}
const queryFn =
  (c: pg.Client): QueryFn =>
  async (sql, params) =>
    (await c.query(sql, params as unknown[] | undefined)).rows;

/** A real loopback TLS handshake; returns the server side's facts and record, as the gateway would see them. */
async function handshake(opts: { maxVersion: 'TLSv1.2' | 'TLSv1.3'; cert: boolean }): Promise<{
  facts: TlsFacts;
  record: ConnectionRecord;
}> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const accepted = new Promise<{ facts: TlsFacts; record: ConnectionRecord }>((resolve, reject) => {
    server.once('connection', (raw) => {
      const t = new TLSSocket(raw, {
        isServer: true,
        cert: readFileSync(fx.server.cert),
        key: readFileSync(fx.server.key),
        ca: readFileSync(fx.clientCa),
        requestCert: true,
        rejectUnauthorized: false,
      });
      t.once('error', reject);
      t.once('secure', () => {
        const c = t.getCipher();
        const peer = t.getPeerX509Certificate();
        const sni = (t as TLSSocket & { servername?: string | false }).servername;
        const facts: TlsFacts = {
          version: t.getProtocol() ?? '',
          cipher: c.name,
          bits: /AES_?128/.test(c.name) ? 128 : 256,
          ...(sni ? { sni } : {}),
          ...(peer ? { peerCertificate: peer.raw } : {}),
        };
        const record: ConnectionRecord = {
          id: 1,
          client: raw.remoteAddress ?? '',
          client_port: raw.remotePort ?? 0,
          negotiation: 'sslrequest',
          tls_version: facts.version,
          cipher: facts.cipher,
          ...(sni ? { sni } : {}),
          outcome: 'relayed',
          ...(peer
            ? {
                client_cert: {
                  subject: peer.subject.split('\n').reverse().join(','),
                  serial: peer.serialNumber.toLowerCase(),
                  issuer: peer.issuer.split('\n').reverse().join(','),
                  not_after: new Date(peer.validTo).toISOString(),
                },
              }
            : {}),
        };
        t.destroy();
        resolve({ facts, record });
      });
    });
  });
  const client = tlsConnect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ca: readFileSync(fx.root),
    maxVersion: opts.maxVersion,
    ...(opts.maxVersion === 'TLSv1.2' ? { ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' } : {}),
    ...(opts.cert ? { cert: readFileSync(fx.clients.alice!.cert), key: readFileSync(fx.clients.alice!.key) } : {}),
  });
  client.on('error', () => undefined);
  try {
    return await accepted;
  } finally {
    client.destroy();
    server.close();
  }
}

test('startup settings: PostgreSQL 18 accepts pgtls.* in the StartupMessage and current_setting() reads them', async () => {
  const { facts, record } = await handshake({ maxVersion: 'TLSv1.2', cert: true });
  const options = tlsFactsAsStartupOptions(facts, record);
  const sql = postgres({
    host: '127.0.0.1',
    port: cluster.port,
    user: 'app',
    password: 'app-pw',
    database: 'postgres',
    max: 1,
    connection: Object.fromEntries(options),
  });
  try {
    const [row] = await sql`
      SELECT current_setting('pgtls.ssl') AS ssl, current_setting('pgtls.ssl_version') AS version,
             current_setting('pgtls.ssl_cipher') AS cipher, current_setting('pgtls.client_dn') AS dn,
             current_setting('pgtls.client_serial') AS serial, current_setting('pgtls.client_addr') AS addr,
             current_setting('pgtls.sni') AS sni, current_setting('pgtls.negotiation') AS negotiation`;
    assert.deepEqual(row, {
      ssl: 'on',
      version: 'TLSv1.2',
      cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384',
      dn: record.client_cert!.subject,
      serial: BigInt(`0x${record.client_cert!.serial}`).toString(),
      addr: '127.0.0.1',
      sni: 'localhost',
      negotiation: 'sslrequest',
    });
    // A setting the gateway did not send is an error, as for any unknown placeholder (the failing case).
    await assert.rejects(sql`SELECT current_setting('pgtls.no_such_fact')`, (e: postgres.PostgresError) => {
      assert.equal(e.code, '42704');
      assert.equal(e.message, 'unrecognized configuration parameter "pgtls.no_such_fact"');
      return true;
    });
  } finally {
    await sql.end();
  }
  assert.deepEqual(
    stripClientFacts([
      ['user', 'app'],
      ['PGTLS.ssl_version', 'TLSv1.3'],
      ['pgtls.client_dn', 'CN=root'],
    ]),
    [['user', 'app']],
  );
});

test("the view: the source documents' query with pgtls.pg_stat_ssl tells each session's truth; ssl_is_used() too", async () => {
  const writer = new SslViewWriter(queryFn(admin), { flushIntervalMs: 10 });
  await writer.install();
  await writer.install(); // idempotent
  const old = await handshake({ maxVersion: 'TLSv1.2', cert: true });
  const modern = await handshake({ maxVersion: 'TLSv1.3', cert: false });
  const s12 = connectAs('app', 'app-pw', { application_name: 'legacy' });
  const s13 = connectAs('app', 'app-pw', { application_name: 'modern' });
  const direct = connectAs('app', 'app-pw', { application_name: 'direct' });
  await Promise.all([s12.connect(), s13.connect(), direct.connect()]);
  try {
    const pid = async (c: pg.Client) => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const [p12, p13] = [await pid(s12), await pid(s13)];
    assert.equal(writer.sessionStarted(p12, sessionSslFacts(old.facts, old.record)), true);
    assert.equal(writer.sessionStarted(p13, sessionSslFacts(modern.facts, modern.record)), true);
    await writer.flush();
    // The source documents' query, with pgtls. in front, run by an ordinary role.
    const r = await direct.query(
      `SELECT a.application_name, s.ssl, s.version, s.cipher, s.bits, s.client_dn, s.client_serial, s.issuer_dn,
              host(s.client_addr) AS client_addr, s.sni, s.negotiation
       FROM pgtls.pg_stat_ssl s JOIN pg_stat_activity a USING (pid) ORDER BY a.application_name`,
    );
    assert.deepEqual(r.rows, [
      {
        application_name: 'legacy',
        ssl: true,
        version: 'TLSv1.2',
        cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384',
        bits: 256,
        client_dn: old.record.client_cert!.subject,
        client_serial: BigInt(`0x${old.record.client_cert!.serial}`).toString(),
        issuer_dn: old.record.client_cert!.issuer,
        client_addr: '127.0.0.1',
        sni: 'localhost',
        negotiation: 'sslrequest',
      },
      {
        application_name: 'modern',
        ssl: true,
        version: 'TLSv1.3',
        cipher: 'TLS_AES_256_GCM_SHA384',
        bits: 256,
        client_dn: null,
        client_serial: null,
        issuer_dn: null,
        client_addr: '127.0.0.1',
        sni: 'localhost',
        negotiation: 'sslrequest',
      },
    ]);
    // The columns of pg_stat_ssl, in its order, then the gateway's.
    const cols = await admin.query(
      "SELECT attname FROM pg_attribute WHERE attrelid = 'pgtls.pg_stat_ssl'::regclass AND attnum > 0 ORDER BY attnum",
    );
    const real = await admin.query(
      "SELECT attname FROM pg_attribute WHERE attrelid = 'pg_catalog.pg_stat_ssl'::regclass AND attnum > 0 ORDER BY attnum",
    );
    assert.deepEqual(
      cols.rows.map((x) => x.attname),
      [...real.rows.map((x) => x.attname), 'client_addr', 'client_port', 'sni', 'negotiation'],
    );
    const used = async (c: pg.Client) => (await c.query('SELECT pgtls.ssl_is_used() AS u')).rows[0].u as boolean;
    assert.equal(await used(s12), true);
    // A session that did not come through the gateway gets its own pg_stat_ssl answer (this cluster has no TLS).
    assert.equal(await used(direct), false);
    // Plaintext through the gateway: ssl false, TLS columns null.
    writer.sessionStarted(
      p13,
      sessionSslFacts(undefined, {
        id: 2,
        client: '10.9.8.7',
        client_port: 4242,
        negotiation: 'plaintext',
        outcome: 'relayed',
      }),
    );
    await writer.flush();
    assert.equal(await used(s13), false);
    const plain = await direct.query(
      'SELECT ssl, version, host(client_addr) AS a, negotiation FROM pgtls.pg_stat_ssl WHERE pid = $1',
      [p13],
    );
    assert.deepEqual(plain.rows, [{ ssl: false, version: null, a: '10.9.8.7', negotiation: 'plaintext' }]);
    // Ended sessions disappear; an ordinary role cannot write the table.
    writer.sessionEnded(p12);
    await writer.flush();
    const left = await direct.query('SELECT pid FROM pgtls.pg_stat_ssl');
    assert.deepEqual(
      left.rows.map((x) => x.pid),
      [p13],
    );
    await assert.rejects(direct.query('DELETE FROM pgtls.sessions'), (e: pg.DatabaseError) => {
      assert.equal(e.code, '42501');
      assert.equal(e.message, 'permission denied for table sessions');
      return true;
    });
  } finally {
    await Promise.all([s12.end(), s13.end(), direct.end()]);
    await writer.close();
  }
});

test('rows of sessions that ended without a delete never show (the view joins pg_stat_activity)', async () => {
  await admin.query(
    "INSERT INTO pgtls.sessions (pid, ssl, version, negotiation) VALUES (999999, true, 'TLSv1.3', 'direct') ON CONFLICT DO NOTHING",
  );
  const r = await admin.query('SELECT count(*)::int AS n FROM pgtls.pg_stat_ssl WHERE pid = 999999');
  assert.equal(r.rows[0].n, 0);
  const raw = await admin.query('SELECT count(*)::int AS n FROM pgtls.sessions WHERE pid = 999999');
  assert.equal(raw.rows[0].n, 1);
  // install() sweeps such rows away.
  await new SslViewWriter(queryFn(admin)).install();
  const swept = await admin.query('SELECT count(*)::int AS n FROM pgtls.sessions WHERE pid = 999999');
  assert.equal(swept.rows[0].n, 0);
});

test('a role without CREATE on the database gets a clear error naming the grant', async () => {
  await admin.query('DROP SCHEMA pgtls CASCADE');
  const weak = connectAs('weak', 'weak-pw');
  await weak.connect();
  try {
    await assert.rejects(new SslViewWriter(queryFn(weak)).install(), (e: unknown) => {
      assert.ok(isPgtlsError(e, ERR_SSL_VIEW_PRIVILEGE));
      assert.equal(
        e.message,
        "client_tls_facts_to_backend: the gateway's backend role may not create or write the pgtls schema: permission denied for database postgres",
      );
      assert.match(String(e.details.hint), /^GRANT CREATE ON DATABASE <db> TO <gateway role>/);
      return true;
    });
    await admin.query('GRANT CREATE ON DATABASE postgres TO weak');
    await new SslViewWriter(queryFn(weak)).install();
    const owner = await admin.query(
      "SELECT tableowner FROM pg_tables WHERE schemaname = 'pgtls' AND tablename = 'sessions'",
    );
    assert.equal(owner.rows[0].tableowner, 'weak');
  } finally {
    await weak.end();
  }
});

test('the queue is bounded: beyond maxQueue new sessions are dropped and counted, ends always pass', async () => {
  const writer = new SslViewWriter(queryFn(admin), { maxQueue: 2, flushIntervalMs: 60_000 });
  await writer.install();
  const f = sessionSslFacts(undefined, {
    id: 3,
    client: '127.0.0.1',
    client_port: 1,
    negotiation: 'plaintext',
    outcome: 'relayed',
  });
  assert.equal(writer.sessionStarted(1001, f), true);
  assert.equal(writer.sessionStarted(1002, f), true);
  assert.equal(writer.sessionStarted(1003, f), false);
  assert.equal(writer.sessionStarted(1001, f), true, 'an update of a queued pid takes no new slot');
  assert.equal(writer.dropped, 1);
  assert.equal(writer.pending, 2);
  writer.sessionEnded(1002); // never written: cancelled in the queue, no statement
  assert.equal(writer.pending, 1);
  await writer.flush();
  assert.equal(writer.writes, 1, 'one batched statement');
  const rows = await admin.query('SELECT pid FROM pgtls.sessions WHERE pid BETWEEN 1001 AND 1003');
  assert.deepEqual(
    rows.rows.map((x) => x.pid),
    [1001],
  );
  // A batch that fails (here: the backend terminated the writer's session) is dropped, counted and reported.
  const victim = connectAs(SUPERUSER, SUPERUSER_PASSWORD);
  await victim.connect();
  victim.on('error', () => undefined);
  const vpid = (await victim.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  await admin.query('SELECT pg_terminate_backend($1)', [vpid]);
  const errors: Error[] = [];
  const broken = new SslViewWriter(queryFn(victim), { onError: (e) => errors.push(e) });
  broken.sessionStarted(1, f);
  broken.sessionStarted(2, f);
  await broken.flush();
  assert.equal(broken.dropped, 2);
  assert.equal(errors.length, 1);
  await victim.end().catch(() => undefined);
  await writer.close();
});
