/**
 * The shared SCRAM module against real PostgreSQL 18 (ssl on, scram-sha-256) and real psql (libpq 18):
 * - the client role logs in with channel binding; PostgreSQL itself rejects a wrong password and wrong binding data;
 * - pass-through: a ClientKey derived from pg_authid's secret logs in without the password; another salt does not;
 * - SASLprep: PostgreSQL's stored secrets for tricky passwords verify with ours (normalised or raw bytes);
 * - the server role in test/support/scram-harness.ts: psql authenticates to it with channel_binding=require, the
 *   harness logs in to PostgreSQL with the recovered ClientKey and relays; psql's exact failure texts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { md5Secret, verifyCleartextPassword } from '../../src/auth/password.js';
import {
  b64decode,
  buildScramSecret,
  deriveKeys,
  parseScramSecret,
  tlsServerEndPoint,
} from '../../src/protocol/scram.js';
import { psql } from '../support/clients.js';
import { type Pki, makePki, startServer } from '../support/doctor-servers.js';
import type { TestCluster } from '../support/postgres.js';
import { type Harness, scramLogin, startScramHarness } from '../support/scram-harness.js';

let pki: Pki;
let pg: TestCluster;
const PW = 'alice-pw';

async function sql(text: string): Promise<string> {
  const r = await psql(`host=${pg.socketDir} port=${pg.port} user=postgres dbname=postgres`, text);
  if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`);
  return r.stdout.trim();
}
const secretOf = (role: string) => sql(`select rolpassword from pg_authid where rolname = '${role}'`);
const login = (o: Partial<Parameters<typeof scramLogin>[0]> = {}) =>
  scramLogin({
    host: '127.0.0.1',
    port: pg.port,
    user: 'alice',
    database: 'postgres',
    channelBinding: 'require',
    ...o,
  });

before(async () => {
  pki = await makePki();
  pg = await startServer(pki, { hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256'] });
  await sql(`create role alice login password '${PW}'`);
});
after(async () => {
  await pg?.destroy();
});

describe('client role against PostgreSQL 18', () => {
  test('password + channel binding (SCRAM-SHA-256-PLUS): logged in, bound', async () => {
    const r = await login({ password: PW });
    assert.equal(r.ok, true, JSON.stringify(r.serverError ?? r.clientError));
    assert.equal(r.channelBound, true);
    assert.equal(r.afterAuth.at(-1)?.[0], 0x5a, 'ReadyForQuery last');
    r.socket.destroy();
  });

  test('wrong password: PostgreSQL answers 28P01', async () => {
    const r = await login({ password: 'nope' });
    assert.equal(r.ok, false);
    assert.equal(r.serverError?.C, '28P01');
    assert.equal(r.serverError?.M, 'password authentication failed for user "alice"');
  });

  test('binding data of another certificate: PostgreSQL answers 28000 SCRAM channel binding check failed', async () => {
    const other = await makePki();
    const der = Buffer.from(new (await import('node:crypto')).X509Certificate(other.server.certPem).raw);
    const r = await login({ password: PW, bindingData: tlsServerEndPoint(der)! });
    assert.equal(r.serverError?.C, '28000');
    assert.equal(r.serverError?.M, 'SCRAM channel binding check failed');
  });

  test('pass-through: the ClientKey of the stored secret logs in; the same password under another salt does not', async () => {
    const stored = parseScramSecret(await secretOf('alice'))!;
    const keys = deriveKeys(PW, b64decode(stored.salt)!, stored.iterations);
    const ok = await login({ keys, expect: { salt: stored.salt, iterations: stored.iterations } });
    assert.equal(ok.ok, true, JSON.stringify(ok.serverError ?? ok.clientError));
    assert.equal(ok.channelBound, true);
    ok.socket.destroy();
    const foreign = parseScramSecret(buildScramSecret(PW))!;
    const wrongKeys = deriveKeys(PW, b64decode(foreign.salt)!, foreign.iterations);
    const early = await login({ keys: wrongKeys, expect: { salt: foreign.salt, iterations: foreign.iterations } });
    assert.equal(
      early.clientError,
      'SCRAM pass-through impossible: the server uses another salt or iteration count than the secret the keys come from',
    );
    const late = await login({ keys: wrongKeys });
    assert.equal(late.serverError?.M, 'password authentication failed for user "alice"');
  });

  test("SASLprep: PostgreSQL's secrets for tricky passwords verify with ours, and log in with our client", async () => {
    // U&'' escapes keep the SQL ASCII; the server encoding decides nothing for SCRAM (bytes are hashed)
    const cases: { role: string; literal: string; password: string; alias?: string; aliasOk: boolean }[] = [
      { role: 'nfkc', literal: "U&'\\2168-pw'", password: '\u2168-pw', alias: 'IX-pw', aliasOk: true },
      { role: 'mapped', literal: "U&'p\\00ADw\\00A0x'", password: 'p\u00adw\u00a0x', alias: 'pw x', aliasOk: true },
      // prohibited (BEL) or bidi-invalid: PostgreSQL hashes the raw bytes, so the NFKC form must *not* match
      { role: 'prohib', literal: "U&'\\2168\\0007'", password: '\u2168\u0007', alias: 'IX\u0007', aliasOk: false },
      { role: 'bidi', literal: "U&'\\FB501'", password: '\ufb501', alias: '\u06711', aliasOk: false },
      {
        role: 'bidiok',
        literal: "U&'\\FB501\\FB50'",
        password: '\ufb501\ufb50',
        alias: '\u06711\u0671',
        aliasOk: true,
      },
      // unassigned in Unicode 3.2, checked before normalisation (PostgreSQL's order): raw bytes again
      { role: 'unassigned', literal: "U&'\\+01F100x'", password: '\u{1F100}x', alias: '0.x', aliasOk: false },
    ];
    for (const c of cases) {
      await sql(`create role ${c.role} login password ${c.literal}`);
      const secret = await secretOf(c.role);
      assert.deepEqual(verifyCleartextPassword(c.role, secret, c.password), { ok: true }, c.role);
      if (c.alias) assert.equal(verifyCleartextPassword(c.role, secret, c.alias).ok, c.aliasOk, `${c.role} alias`);
      const r = await login({ user: c.role, password: c.password });
      assert.equal(r.ok, true, `${c.role}: ${JSON.stringify(r.serverError ?? r.clientError)}`);
      r.socket.destroy();
    }
  });
});

describe('stored secrets as PostgreSQL 18 makes and takes them', () => {
  test('a SCRAM secret built by pgtls is accepted by ALTER ROLE and logs in with the password', async () => {
    await sql('create role built login');
    await sql(`alter role built password '${buildScramSecret('built-pw', { iterations: 5000 })}'`);
    assert.match(await secretOf('built'), /^SCRAM-SHA-256\$5000:/);
    const r = await login({ user: 'built', password: 'built-pw' });
    assert.equal(r.ok, true, JSON.stringify(r.serverError ?? r.clientError));
    r.socket.destroy();
    assert.equal((await login({ user: 'built', password: 'built-PW' })).serverError?.C, '28P01');
  });

  test("md5 secrets: PostgreSQL's stored value is md5Secret(user, password)", async () => {
    const r = await psql(
      `host=${pg.socketDir} port=${pg.port} user=postgres dbname=postgres`,
      "set password_encryption = 'md5'; create role md5user login password 'md5-pw'",
    );
    assert.equal(r.code, 0, r.stderr);
    const stored = await secretOf('md5user');
    assert.equal(stored, md5Secret('md5user', 'md5-pw'));
    assert.deepEqual(verifyCleartextPassword('md5user', stored, 'md5-pw'), { ok: true });
  });
});

describe('server role (test/support/scram-harness.ts) against psql (libpq 18)', () => {
  let harness: Harness;
  let noPlus: Harness;
  const mockSecret = Buffer.alloc(32, 9);
  before(async () => {
    const users = new Map([['alice', await secretOf('alice')]]);
    const base = {
      certPem: pki.server.certPem,
      keyPem: pki.server.keyPem,
      users,
      mockSecret,
      backend: { host: '127.0.0.1', port: pg.port },
    };
    harness = await startScramHarness(base);
    noPlus = await startScramHarness({ ...base, offerChannelBinding: false });
  });
  after(async () => {
    await harness?.close();
    await noPlus?.close();
  });
  const conn = (h: Harness, user: string, password: string, cb: string) =>
    `host=127.0.0.1 port=${h.port} user=${user} password=${password} dbname=postgres sslmode=require channel_binding=${cb}`;
  const QUERY = 'select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()';

  test('channel_binding=require: authenticated at the harness, pass-through login to PostgreSQL, query relayed', async () => {
    const r = await psql(conn(harness, 'alice', PW, 'require'), QUERY, { libpq: 18 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'alice|t');
    assert.deepEqual(harness.log.slice(-2), [
      'alice: authenticated with channel binding',
      'alice: backend login by SCRAM pass-through with channel binding',
    ]);
  });

  test('channel_binding=disable (gs2 "n") is accepted too', async () => {
    const r = await psql(conn(harness, 'alice', PW, 'disable'), QUERY, { libpq: 18 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(harness.log.at(-2), 'alice: authenticated');
  });

  test('wrong password and unknown user: the same FATAL 28P01 as PostgreSQL', async () => {
    for (const user of ['alice', 'ghost']) {
      const r = await psql(conn(harness, user, 'wrong', 'require'), QUERY, { libpq: 18 });
      assert.equal(r.code, 2);
      assert.match(
        r.stderr,
        new RegExp(`failed: FATAL:  password authentication failed for user "${user}"\\n$`),
        r.stderr,
      );
    }
    assert.deepEqual(harness.log.slice(-2), [
      'alice: 28P01 password authentication failed for user "alice"',
      'ghost: 28P01 password authentication failed for user "ghost" (Role "ghost" does not exist.)',
    ]);
  });

  test("the binding hash follows the certificate's signature, as libpq computes it (ECDSA-SHA-384, RSA-SHA-1)", async () => {
    const p384 = await makePki({ keyType: 'ec-p384' });
    const dir = mkdtempSync(join(tmpdir(), 'pgtls-sha1-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-sha1',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        join(dir, 'k.pem'),
        '-out',
        join(dir, 'c.pem'),
      ],
      { stdio: 'pipe' },
    );
    const certs = [
      { name: 'ecdsa-with-SHA384', certPem: p384.server.certPem, keyPem: p384.server.keyPem },
      {
        name: 'sha1WithRSAEncryption',
        certPem: readFileSync(join(dir, 'c.pem'), 'utf8'),
        keyPem: readFileSync(join(dir, 'k.pem'), 'utf8'),
      },
    ];
    for (const c of certs) {
      const users = new Map([['alice', await secretOf('alice')]]);
      const h = await startScramHarness({
        certPem: c.certPem,
        keyPem: c.keyPem,
        users,
        mockSecret,
        backend: { host: '127.0.0.1', port: pg.port },
      });
      try {
        const r = await psql(conn(h, 'alice', PW, 'require'), QUERY, { libpq: 18 });
        assert.equal(r.code, 0, `${c.name}: ${r.stderr}`);
        assert.equal(h.log[0], 'alice: authenticated with channel binding', c.name);
      } finally {
        await h.close();
      }
    }
  });

  test('channel_binding=require against a server not offering SCRAM-SHA-256-PLUS: libpq refuses', async () => {
    const r = await psql(conn(noPlus, 'alice', PW, 'require'), QUERY, { libpq: 18 });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /channel binding is required, but server did not offer an authentication method that supports channel binding\n$/,
    );
    // prefer: libpq sends "y", which a server that cannot bind accepts
    const ok = await psql(conn(noPlus, 'alice', PW, 'prefer'), QUERY, { libpq: 18 });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'alice|t');
  });
});
