/**
 * The admin console end to end with real clients: psql (rendered output with -At -F) and node-postgres (typed row
 * objects), over TLS with real certificates, against a tiny server whose OperatorView is real data (a configuration
 * file, an hba file parsed by src/hba/hba.ts, generated certificates, its own live TLS connections). Expected values
 * come from openssl (subjects, serials, fingerprints, dates), not from the code under test.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { cleanEnv, run } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type ConsoleServer, FileView, startConsoleServer } from '../support/operator-console.js';

let fx: GatewayFixtures;
let srv: ConsoleServer;
let configFile: string;
let configText: string;
const HBA =
  'hostssl pgtls admin 127.0.0.1/32 cert\nhostssl pgtls watcher all trust clientcert=verify-ca\nhost all all ::1/128 reject\n';

before(async () => {
  fx = await makeFixtures();
  const hba = writeFixture(fx, 'pg_hba.conf', HBA);
  configText = [
    `ssl_cert_file = '${fx.server.cert}'`,
    `ssl_key_file = '${fx.server.key}'`,
    `ssl_ca_file = '${fx.clientCa}'`,
    `ssl_crl_file = '${fx.clientCrl}'`,
    `hba_file = '${hba}'`,
    "admin_users = 'admin'",
    "stats_users = 'watcher'",
    "report_min_protocol_version = 'TLSv1.3'",
    '',
  ].join('\n');
  configFile = writeFixture(fx, 'pgtls.conf', configText);
  const view = new FileView(configFile);
  srv = await startConsoleServer(view, {
    cert: readFileSync(fx.server.cert),
    key: readFileSync(fx.server.key),
    ca: readFileSync(fx.clientCa),
  });
});

after(async () => {
  await srv?.close();
});

const conninfo = (user: string, extra = '') =>
  `host=127.0.0.1 port=${srv.port} dbname=pgtls user=${user} sslmode=verify-full sslrootcert=${fx.root} ` +
  `sslcert=${fx.clients.alice!.cert} sslkey=${fx.clients.alice!.key} host=localhost ${extra}`;

/** psql -X -A -t -F '|' -c SQL: the unaligned rendering an operator's script reads. */
async function psqlRows(
  sql: string,
  user = 'admin',
  extra = '',
): Promise<{ rows: string[][]; stderr: string; code: number | null }> {
  const r = await run('psql', ['-X', '-A', '-t', '-F', '|', '-c', sql, conninfo(user, extra)], { env: cleanEnv() });
  const rows = r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('|'));
  return { rows, stderr: r.stderr, code: r.code };
}

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8' }).trim();
}
/** openssl's RFC 2253 rendering of a certificate's subject or issuer. */
const dn = (file: string, what: 'subject' | 'issuer') =>
  openssl(['x509', '-noout', `-${what}`, '-nameopt', 'RFC2253', '-in', file]).replace(/^(subject|issuer)=/, '');
const enddate = (file: string) =>
  new Date(openssl(['x509', '-noout', '-enddate', '-in', file]).replace('notAfter=', ''));

function pgClient(user: string, extra: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({
    host: 'localhost',
    port: srv.port,
    user,
    database: 'pgtls',
    ssl: {
      ca: readFileSync(fx.root),
      cert: readFileSync(fx.clients.alice!.cert),
      key: readFileSync(fx.clients.alice!.key),
    },
    ...extra,
  });
}

test('SHOW CLIENTS in psql: the session itself, with the TLS facts and client certificate openssl reads', async () => {
  const r = await psqlRows('SHOW CLIENTS', 'admin', 'application_name=ops-psql');
  assert.equal(r.code, 0, r.stderr);
  const row = r.rows.find((x) => x[7] === 'ops-psql');
  assert.ok(row, JSON.stringify(r.rows));
  const [id, user, database, state, addr, port, connectTime, app, negotiation, version, cipher, bits, group] = row;
  assert.match(id!, /^\d+$/);
  assert.deepEqual(
    [user, database, state, addr, app, negotiation],
    ['admin', 'pgtls', 'active', '127.0.0.1', 'ops-psql', 'sslrequest'],
  );
  assert.match(port!, /^\d+$/);
  assert.ok(
    Math.abs(Date.parse(connectTime!.replace(' ', 'T').replace('+00', 'Z')) - Date.now()) < 60_000,
    connectTime,
  );
  assert.equal(version, 'TLSv1.3');
  assert.equal(cipher, 'TLS_AES_256_GCM_SHA384');
  assert.equal(bits, '256');
  // Node reports the key-exchange group only on the client side of a handshake (getEphemeralKeyInfo()), so this
  // test server has none to show; the gateway fills TlsFacts.group where its transport knows it.
  assert.equal(group, '');
  const cert = fx.clients.alice!.cert;
  const [sni, alpn, clientDn, serial, issuer, notAfter, certError, hba, backendPid] = row.slice(13);
  assert.equal(sni, 'localhost');
  assert.equal(alpn, '', 'libpq 15 offers no ALPN over SSLRequest');
  assert.equal(clientDn, dn(cert, 'subject'));
  assert.equal(serial, openssl(['x509', '-noout', '-serial', '-in', cert]).replace('serial=', '').toLowerCase());
  assert.equal(issuer, dn(cert, 'issuer'));
  assert.equal(Date.parse(notAfter!.replace(' ', 'T').replace('+00', 'Z')), enddate(cert).getTime());
  assert.equal(certError, '');
  assert.match(hba!, /pg_hba\.conf:1$/);
  assert.match(backendPid!, /^4\d{4}$/);
});

test('SHOW SSL through node-postgres: pg_stat_ssl columns, typed as pg_stat_ssl types them', async () => {
  const c = pgClient('admin');
  await c.connect();
  try {
    const r = await c.query('SHOW SSL');
    assert.deepEqual(
      r.fields.map((f) => [f.name, f.dataTypeID]),
      [
        ['pid', 23],
        ['ssl', 16],
        ['version', 25],
        ['cipher', 25],
        ['bits', 23],
        ['client_dn', 25],
        ['client_serial', 1700],
        ['issuer_dn', 25],
      ],
    );
    const serialHex = openssl(['x509', '-noout', '-serial', '-in', fx.clients.alice!.cert]).replace('serial=', '');
    const mine = r.rows.find((x) => x.client_serial === BigInt(`0x${serialHex}`).toString());
    assert.ok(mine, JSON.stringify(r.rows));
    assert.equal(typeof mine.pid, 'number');
    assert.equal(mine.ssl, true);
    assert.equal(mine.version, 'TLSv1.3');
    assert.equal(mine.bits, 256);
    assert.equal(mine.client_dn, dn(fx.clients.alice!.cert, 'subject'));
    assert.equal(mine.issuer_dn, dn(fx.clients.alice!.cert, 'issuer'));
    const clients = await c.query('SHOW CLIENTS');
    const me = clients.rows.find((x) => x.backend_pid === mine.pid);
    assert.ok(me.connect_time instanceof Date);
    assert.ok(me.client_not_after instanceof Date);
    assert.equal(me.client_not_after.getTime(), enddate(fx.clients.alice!.cert).getTime());
    assert.equal(typeof me.bytes_from_client, 'string', 'int8 stays a string in node-postgres');
    assert.ok(Number(me.bytes_from_client) > 0);
  } finally {
    await c.end();
  }
});

test('an unknown command is an ERROR 42601 with a hint, and the session goes on (psql and node-postgres)', async () => {
  const r = await psqlRows('SELECT 1');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ERROR: {2}invalid command 'SELECT 1', use SHOW HELP;/);
  assert.match(
    r.stderr,
    /HINT: {2}Commands: SHOW CLIENTS\|SSL\|CONFIG\|HBA\|CERTS\|STATS\|VERSION\|WOULD_REFUSE\|POOLS\|SERVERS\|WORKERS\|HELP/,
  );
  const c = pgClient('admin');
  await c.connect();
  try {
    await assert.rejects(c.query('SHOW NOTHING'), (e: pg.DatabaseError) => {
      assert.equal(e.code, '42601');
      assert.equal(e.severity, 'ERROR');
      assert.equal(e.message, "invalid command 'SHOW NOTHING', use SHOW HELP;");
      assert.match(e.hint ?? '', /KILL_CLIENT <id>/);
      return true;
    });
    const v = await c.query('show version;');
    assert.deepEqual(v.rows, [{ version: 'pgtls 0.1.0-test' }]);
  } finally {
    await c.end();
  }
});

test('stats_users may SHOW but not SET, RELOAD or KILL_CLIENT (42501 admin access needed)', async () => {
  const ok = await psqlRows('SHOW STATS', 'watcher');
  assert.equal(ok.code, 0, ok.stderr);
  const names = ok.rows.map((r) => r[0]);
  assert.ok(names.includes('connections_total') && names.includes('active_sessions'), JSON.stringify(names));
  for (const sql of ['SET require_secure_transport = off', 'RELOAD', 'KILL_CLIENT 1']) {
    const r = await psqlRows(sql, 'watcher');
    assert.equal(r.code, 1, sql);
    assert.match(r.stderr, /ERROR: {2}admin access needed/, sql);
  }
  const c = pgClient('watcher');
  await c.connect();
  try {
    await assert.rejects(c.query('RELOAD'), (e: pg.DatabaseError) => e.code === '42501');
  } finally {
    await c.end();
  }
});

test('SET ssl_min_protocol_version at runtime: validated like the config file, shown in SHOW CONFIG until RELOAD', async () => {
  const bad = await psqlRows("SET ssl_min_protocol_version = 'TLSv1.4'");
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /ERROR: {2}invalid value for parameter "ssl_min_protocol_version": "TLSv1.4"/);
  assert.match(bad.stderr, /HINT: {2}Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3./);
  const other = await psqlRows('SET port = 1');
  assert.match(other.stderr, /ERROR: {2}parameter "port" cannot be changed at runtime/);
  const set = await run('psql', ['-X', '-c', "SET ssl_min_protocol_version TO 'tlsv1.3'", conninfo('admin')], {
    env: cleanEnv(),
  });
  assert.equal(set.code, 0, set.stderr);
  assert.equal(set.stdout.trim(), 'SET');
  assert.deepEqual(srv.view.overrides().get('ssl_min_protocol_version')?.value, 'TLSv1.3');
  const cfg = await psqlRows('SHOW CONFIG');
  const line = cfg.rows.find((r) => r[0] === 'ssl_min_protocol_version');
  assert.equal(line?.[1], 'TLSv1.3');
  assert.equal(line?.[2], 'TLSv1.2');
  assert.equal(line?.[3], 'yes');
  assert.match(line?.[4] ?? '', /^SET at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+00 \(until reload or restart\)$/);
  const rst = await psqlRows('SET require_secure_transport = off');
  assert.equal(rst.code, 0, rst.stderr);
  assert.equal(srv.view.overrides().get('require_secure_transport')?.value, 'off');
  const reload = await run('psql', ['-X', '-c', 'RELOAD', conninfo('admin')], { env: cleanEnv() });
  assert.equal(reload.stdout.trim(), 'RELOAD', reload.stderr);
  const after = await psqlRows('SHOW CONFIG');
  const l2 = after.rows.find((r) => r[0] === 'ssl_min_protocol_version');
  assert.equal(l2?.[1], 'TLSv1.2');
  assert.match(l2?.[4] ?? '', /default/);
  assert.equal(srv.view.overrides().size, 0);
});

test('RELOAD with a broken configuration file: F0000 with the reason as DETAIL, the old configuration stays', async () => {
  writeFixture(fx, 'pgtls.conf', `${configText}no_such_key = 1\n`);
  try {
    const r = await psqlRows('RELOAD');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERROR: {2}RELOAD failed, see logs for additional details/);
    assert.match(
      r.stderr,
      /DETAIL: {2}unrecognized configuration parameter "no_such_key" in file ".*pgtls\.conf" line 9/,
    );
    const s = await psqlRows('SHOW STATS');
    assert.equal(s.rows.find((x) => x[0] === 'reloads_failed')?.[1], '1');
  } finally {
    writeFixture(fx, 'pgtls.conf', configText);
  }
});

test('KILL CLIENT closes that client; an unknown id is 42704 client not found', async () => {
  const victim = pgClient('admin', { application_name: 'victim' });
  await victim.connect();
  const ended = new Promise<void>((resolve) => victim.once('end', () => resolve()));
  victim.on('error', () => undefined);
  const list = await psqlRows('SHOW CLIENTS');
  const id = list.rows.find((r) => r[7] === 'victim')?.[0];
  assert.ok(id);
  const k = await run('psql', ['-X', '-c', `KILL CLIENT ${id}`, conninfo('admin')], { env: cleanEnv() });
  assert.equal(k.stdout.trim(), 'KILL_CLIENT', k.stderr);
  await ended;
  const again = await psqlRows('SHOW CLIENTS');
  assert.equal(
    again.rows.find((r) => r[7] === 'victim'),
    undefined,
  );
  const none = await psqlRows('KILL_CLIENT 99999');
  assert.match(none.stderr, /ERROR: {2}client not found/);
  const bad = await psqlRows('KILL_CLIENT abc');
  assert.match(bad.stderr, /ERROR: {2}invalid client pointer supplied/);
});

test('SHOW CERTS: every served, CA and CRL file, with the fingerprint, dates and names openssl prints', async () => {
  const r = await psqlRows('SHOW CERTS');
  assert.equal(r.code, 0, r.stderr);
  const leaf = r.rows.find((x) => x[0] === fx.server.cert && x[2] === '0');
  assert.ok(leaf);
  assert.equal(leaf[1], 'server');
  assert.equal(leaf[4], dn(fx.server.cert, 'subject'));
  assert.equal(leaf[5], dn(fx.server.cert, 'issuer'));
  assert.equal(Date.parse(leaf[6]!.replace(' ', 'T').replace('+00', 'Z')), enddate(fx.server.cert).getTime());
  assert.equal(Number(leaf[7]), Math.floor((enddate(fx.server.cert).getTime() - Date.now()) / 86_400_000));
  assert.equal(
    leaf[8],
    openssl(['x509', '-noout', '-fingerprint', '-sha256', '-in', fx.server.cert]).replace(/^.*Fingerprint=/, ''),
  );
  assert.ok(
    r.rows.some((x) => x[0] === fx.server.cert && x[2] === '1'),
    'the intermediate is listed too',
  );
  const ca = r.rows.find((x) => x[0] === fx.clientCa);
  assert.equal(ca?.[4], dn(fx.clientCa, 'subject'));
  const crl = r.rows.find((x) => x[0] === fx.clientCrl);
  assert.equal(crl?.[3], 'crl');
  const next = openssl(['crl', '-noout', '-nextupdate', '-in', fx.clientCrl]).replace('nextUpdate=', '');
  assert.equal(Date.parse(crl![6]!.replace(' ', 'T').replace('+00', 'Z')), new Date(next).getTime());
  assert.equal(
    crl?.[5],
    openssl(['crl', '-noout', '-issuer', '-nameopt', 'RFC2253', '-in', fx.clientCrl]).replace('issuer=', ''),
  );
  assert.equal(
    crl?.[8],
    openssl(['crl', '-noout', '-fingerprint', '-sha256', '-in', fx.clientCrl]).replace(/^.*Fingerprint=/, ''),
  );
});

test('SHOW HBA: pg_hba_file_rules-shaped, reading the file on disk, with an error row for a bad line', async () => {
  const c = pgClient('admin');
  await c.connect();
  try {
    const r = await c.query('SHOW HBA');
    assert.deepEqual(r.rows[0], {
      rule_number: 1,
      file_name: srv.view.config().hba_file,
      line_number: 1,
      type: 'hostssl',
      database: ['pgtls'],
      user_name: ['admin'],
      address: '127.0.0.1',
      netmask: '255.255.255.255',
      auth_method: 'cert',
      options: ['clientcert=verify-full'],
      error: null,
    });
    assert.deepEqual(r.rows[2]?.address, '::1');
    assert.deepEqual(r.rows[2]?.netmask, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
    writeFixture(fx, 'pg_hba.conf', `${HBA}hostssl all all all trust clientcert=maybe\n`);
    const e = await c.query('SHOW HBA');
    assert.deepEqual(e.rows[3], {
      rule_number: null,
      file_name: srv.view.config().hba_file,
      line_number: 4,
      type: null,
      database: null,
      user_name: null,
      address: null,
      netmask: null,
      auth_method: null,
      options: null,
      error: 'invalid value for clientcert: "maybe"',
    });
  } finally {
    writeFixture(fx, 'pg_hba.conf', HBA);
    await c.end();
  }
});

test('report-only: a TLS 1.2 and a TLS 1.3 client connect; SHOW WOULD_REFUSE lists only the TLS 1.2 one', async () => {
  const before = (await psqlRows('SHOW WOULD_REFUSE')).rows.length;
  const old = await psqlRows('SHOW VERSION', 'admin', 'ssl_max_protocol_version=TLSv1.2 application_name=legacy-app');
  assert.equal(old.code, 0, old.stderr);
  const modern = await psqlRows('SHOW VERSION', 'admin', 'application_name=modern-app');
  assert.equal(modern.code, 0, modern.stderr);
  const r = await psqlRows('SHOW WOULD_REFUSE');
  const added = r.rows.slice(before);
  assert.equal(added.length, 1, JSON.stringify(r.rows));
  const [, addr, , user, database, app, negotiation, version, cipher, hasCert, reasons] = added[0]!;
  assert.deepEqual(
    [addr, user, database, app, negotiation, version, hasCert],
    ['127.0.0.1', 'admin', 'pgtls', 'legacy-app', 'sslrequest', 'TLSv1.2', 't'],
  );
  assert.match(cipher!, /^ECDHE-ECDSA-/);
  assert.equal(reasons, '{"TLSv1.2 is below report_min_protocol_version TLSv1.3"}');
  assert.ok(!r.rows.some((x) => x[5] === 'modern-app'));
});

test('JDBC (pgjdbc, Java 17): SHOW CLIENTS and SHOW SSL read with typed getters; the ERROR keeps its SQLSTATE and hint', async (t) => {
  const jar = '/usr/share/java/postgresql.jar';
  if (!existsSync('/usr/bin/java') || !existsSync(jar)) {
    t.skip(
      'java or /usr/share/java/postgresql.jar is not installed (apt-get install default-jre-headless libpostgresql-jdbc-java)',
    );
    return;
  }
  const prog = new URL('../../../test/support/jdbc/ConsoleProbe.java', import.meta.url).pathname;
  const url =
    `jdbc:postgresql://localhost:${srv.port}/pgtls?user=admin&ssl=true&sslmode=verify-full` +
    `&sslrootcert=${fx.root}&preferQueryMode=simple&ApplicationName=jdbc-probe` +
    // Without it pgjdbc 42.5 sends application_name with a SET after connecting, which the console ignores
    // (PgBouncer's fake SET); with it, application_name travels in the StartupMessage as from libpq.
    '&assumeMinServerVersion=10';
  const r = await run('java', ['-cp', jar, prog, url], { env: cleanEnv(), timeoutMs: 120_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const facts = Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  assert.equal(facts['clients.user'], 'admin');
  assert.equal(facts['clients.database'], 'pgtls');
  assert.equal(facts['clients.addr'], '127.0.0.1');
  assert.equal(facts['clients.tls_version'], 'TLSv1.3');
  assert.equal(facts['clients.cipher'], 'TLS_AES_256_GCM_SHA384');
  assert.equal(facts['clients.client_dn'], 'null', 'no client certificate: SQL NULL');
  assert.equal(facts['clients.id.int'], facts['clients.id']);
  assert.ok(Math.abs(Number(facts['clients.connect_time.millis']) - Date.now()) < 120_000);
  const pid = facts['clients.backend_pid'];
  assert.ok(r.stdout.includes(`ssl.row=${pid}|true|TLSv1.3|256|null`), r.stdout);
  assert.equal(facts['error.sqlstate'], '42601');
  assert.equal(facts['error.message'], "invalid command 'SELECT 1', use SHOW HELP;");
  assert.match(facts['error.hint'] ?? '', /^Commands: SHOW CLIENTS\|/);
  assert.equal(facts.version, 'pgtls 0.1.0-test');
});
