/**
 * The driver adapters with real queries: node-postgres (Client, Pool, cancel) and postgres.js (queries, concurrency,
 * cancel) over pgtls-negotiated TLS with libpq semantics, including SCRAM authentication and the prefer → plaintext
 * fallback when pg_hba.conf rejects TLS for a user.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { pgtlsPg } from '../../src/client/adapters/pg.js';
import { pgtlsPostgres } from '../../src/client/adapters/postgres.js';
import { ClientError } from '../../src/client/errors.js';
import { resolve } from '../../src/client/resolve.js';
import type { PgtlsSocket } from '../../src/client/stream.js';
import { type Pki, type SslCluster, makePki, startSslCluster } from '../support/client-fixtures.js';
import { cleanEnv } from '../support/clients.js';

let pki: Pki;
let srv: SslCluster;
let env: Record<string, string>;

before(async () => {
  pki = await makePki();
  srv = await startSslCluster(pki);
  env = cleanEnv() as Record<string, string>;
});
after(async () => {
  await srv?.destroy();
});

const full = () =>
  `postgresql://pwuser:pw-secret@localhost:${srv.port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(pki.files['root.crt']!)}`;

test('pg.Client: verify-full + SCRAM, facts report TLS 1.3, the chain and ALPN', async () => {
  const sockets: PgtlsSocket[] = [];
  const client = new pg.Client(pgtlsPg(full(), { env, onSocket: (s) => sockets.push(s) }));
  await client.connect();
  try {
    const r = await client.query('select ssl, version from pg_stat_ssl where pid = pg_backend_pid()');
    assert.equal(r.rows[0].ssl, true);
    assert.equal(r.rows[0].version, 'TLSv1.3');
    const facts = sockets[0]!.facts!;
    assert.equal(facts.method, 'ssl');
    assert.equal(facts.sslResponse, 'S');
    assert.equal(facts.tls?.verified, 'chain+host');
    assert.equal(facts.tls?.protocol, 'TLSv1.3');
    assert.equal(facts.tls?.alpn, 'postgresql');
    assert.equal(facts.tls?.servername, 'localhost');
    assert.match(facts.tls!.peerChain[0]!.subject, /CN=localhost/);
  } finally {
    await client.end();
  }
});

test('pg.Client: a verification failure is a ClientError with libpq text and the reason', async () => {
  const bad = `postgresql://pwuser:pw-secret@localhost:${srv.port}/postgres?sslmode=verify-ca&sslrootcert=${encodeURIComponent(pki.files['other-root.crt']!)}`;
  const client = new pg.Client(pgtlsPg(bad, { env }));
  await assert.rejects(client.connect(), (err: unknown) => {
    assert.ok(err instanceof ClientError);
    assert.equal(
      err.message,
      `connection to server at "localhost" (127.0.0.1), port ${srv.port} failed: SSL error: certificate verify failed`,
    );
    assert.match(err.reason ?? '', /unable to get local issuer certificate|self-signed/);
    return true;
  });
});

test('pg.Pool: concurrent queries over several pgtls connections; cancel goes through pgtls too', async () => {
  const config = pgtlsPg(full(), { env });
  const pool = new pg.Pool({ ...config, max: 3 });
  try {
    const results = await Promise.all(
      Array.from({ length: 9 }, (_, i) =>
        pool.query('select $1::int as n, ssl from pg_stat_ssl where pid = pg_backend_pid()', [i]),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.rows[0].n),
      [0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.ok(results.every((r) => r.rows[0].ssl === true));
    assert.ok(pool.totalCount <= 3);

    const client = await pool.connect();
    try {
      const query = new pg.Query('select pg_sleep(30)');
      const done = new Promise<unknown>((res) => {
        query.on('error', res);
        query.on('end', () => res(undefined));
      });
      client.query(query);
      await new Promise((r) => setTimeout(r, 300));
      (new pg.Client(config) as unknown as { cancel(c: unknown, q: unknown): void }).cancel(client, query);
      const err = (await done) as { code?: string } | undefined;
      assert.equal(err?.code, '57014');
    } finally {
      client.release();
    }
  } finally {
    await pool.end();
  }
});

test('postgres.js: queries, concurrency and cancel over verify-full', async () => {
  const sql = postgres({ ...pgtlsPostgres(full(), { env }), max: 2, onnotice: () => undefined });
  try {
    const [row] = await sql`select ssl, version from pg_stat_ssl where pid = pg_backend_pid()`;
    assert.equal(row?.ssl, true);
    const many = await Promise.all(Array.from({ length: 6 }, (_, i) => sql`select ${i}::int as n`));
    assert.deepEqual(
      many.map((r) => r[0]?.n),
      [0, 1, 2, 3, 4, 5],
    );
    const q = sql`select pg_sleep(30)`;
    setTimeout(() => q.cancel(), 300);
    await assert.rejects(q, (err: { code?: string }) => err.code === '57014');
  } finally {
    await sql.end({ timeout: 5 });
  }
});

test('postgres.js: sslmode=prefer falls back to plaintext when pg_hba.conf refuses TLS for the user', async () => {
  const plan = resolve(`host=127.0.0.1 port=${srv.port} user=plainonly dbname=postgres sslmode=prefer`, env);
  const sockets: PgtlsSocket[] = [];
  const sql = postgres({ ...pgtlsPostgres(plan, { onSocket: (s) => sockets.push(s) }), max: 1 });
  try {
    const [row] = await sql`select ssl from pg_stat_ssl where pid = pg_backend_pid()`;
    assert.equal(row?.ssl, false);
    const facts = sockets[0]!.facts!;
    assert.equal(facts.method, 'plain');
    assert.equal(facts.fallbacks.length, 1);
    assert.match(facts.fallbacks[0]!.message, /no pg_hba.conf entry .* SSL encryption/);
  } finally {
    await sql.end({ timeout: 5 });
  }
});

test('postgres.js: a refused connection rejects the query with libpq text', async () => {
  const sql = postgres({
    ...pgtlsPostgres(`host=127.0.0.1 port=${srv.port} user=postgres dbname=postgres sslmode=verify-full`, { env }),
    max: 1,
  });
  try {
    await assert.rejects(sql`select 1`, (err: unknown) => {
      assert.ok(err instanceof ClientError);
      assert.match(
        err.message,
        /failed: root certificate file ".*\/\.postgresql\/root\.crt" does not exist\nEither provide the file/,
      );
      return true;
    });
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test('no password anywhere: both drivers fail with libpq text (fe_sendauth: no password supplied)', async () => {
  const url = `postgresql://pwuser@localhost:${srv.port}/postgres?sslmode=require`;
  const expected = `connection to server at "localhost" (127.0.0.1), port ${srv.port} failed: fe_sendauth: no password supplied`;
  const client = new pg.Client(pgtlsPg(url, { env }));
  client.on('error', () => undefined);
  await assert.rejects(client.connect(), (err: unknown) => err instanceof ClientError && err.message === expected);
  const sql = postgres({ ...pgtlsPostgres(url, { env }), max: 1 });
  try {
    await assert.rejects(sql`select 1`, (err: unknown) => err instanceof ClientError && err.message === expected);
  } finally {
    await sql.end({ timeout: 1 });
  }
});
