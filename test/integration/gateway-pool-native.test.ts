/**
 * Transaction pooling on the native data plane: the native relay between ReadyForQuery boundaries
 * (native/src/txrelay.c) carries the transactions, and hands back to the JavaScript relay for what only it can do —
 * named prepared statements (max_prepared_statements > 0), ParameterStatus, DISCARD ALL, a bad message length —
 * mid-transaction, with the answers still in order. The process-wide counters of src/gateway/pool/tx-relay.ts say
 * which path ran.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { nativeTxCounters } from '../../src/gateway/pool/tx-relay.js';
import { nativeUnavailableReason } from '../../src/tls/native.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { startPooledGateway } from '../support/pooled-gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const PW = 'pool-native-pw';
const skip = nativeUnavailableReason();

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;
let userlistLine: string;

let client: () => pg.Client;

before(async () => {
  if (skip) return;
  fx = await makeFixtures();
  cluster = await startTestCluster();
  const p = await startPooledGateway(fx, cluster, 'carol', PW, {
    pool_mode: 'transaction',
    default_pool_size: '1',
    max_prepared_statements: '10',
    native_data_plane: 'on',
  });
  gw = p.gw;
  client = p.client;
  userlistLine = p.userlistLine;
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

const counters = () => ({ ...nativeTxCounters });

describe('native transaction relay', { skip }, () => {
  test('simple and unnamed extended queries run natively, one boundary per transaction', async () => {
    const c = client();
    await c.connect();
    const before = counters();
    for (let i = 0; i < 20; i++) {
      const r = await c.query(i % 2 ? 'SELECT $1::int * 2 AS v' : `SELECT ${i} * 2 AS v`, i % 2 ? [i] : []);
      assert.equal((r.rows[0] as { v: number }).v, i * 2);
    }
    // A transaction block: BEGIN leaves the server attached ('T'), the relay carries on natively until COMMIT.
    await c.query('BEGIN');
    await c.query('CREATE TEMP TABLE t (v int) ON COMMIT DROP');
    await c.query('INSERT INTO t SELECT generate_series(1, 1000)');
    const sum = await c.query('SELECT sum(v)::int AS s FROM t');
    await c.query('COMMIT');
    assert.equal((sum.rows[0] as { s: number }).s, 500500);
    // The lane reports the transactions it ended itself when it hands the session back (here: the Terminate).
    await c.end();
    const d = counters();
    assert.equal(d.boundaries - before.boundaries, 21, 'every transaction ended natively at its ReadyForQuery I');
    assert.equal(d.laneBoundaries - before.laneBoundaries, 21, 'the lane ended each one without JavaScript');
    assert.equal(d.handbacks - before.handbacks, 0);
    assert.equal(d.laneEnds - before.laneEnds, 1, 'the Terminate between transactions');
  });

  test('named statements, ParameterStatus and DISCARD ALL are handed back mid-transaction', async () => {
    const c = client();
    await c.connect();
    const before = counters();
    const q = { name: 'plus1', text: 'SELECT $1::int + 1 AS v', values: [41] };
    await c.query('BEGIN');
    assert.equal(((await c.query(q)).rows[0] as { v: number }).v, 42);
    assert.equal(((await c.query({ ...q, values: [1] })).rows[0] as { v: number }).v, 2);
    await c.query("SET TimeZone = 'Asia/Tokyo'"); // ParameterStatus TimeZone inside the transaction
    const tz = await c.query("SELECT current_setting('TimeZone') AS tz");
    await c.query('COMMIT');
    assert.equal((tz.rows[0] as { tz: string }).tz, 'Asia/Tokyo');
    // The client's value follows it to the next server use (the pool's varcache saw the ParameterStatus).
    assert.equal(((await c.query('SHOW TimeZone')).rows[0] as { TimeZone: string }).TimeZone, 'Asia/Tokyo');
    await c.query('DISCARD ALL');
    // PostgreSQL's answer once DISCARD ALL dropped the statement the client still believes prepared.
    await assert.rejects(c.query({ ...q, values: [2] }), {
      code: '26000',
      message: 'prepared statement "plus1" does not exist',
    });
    assert.equal(((await c.query('SELECT 7 AS v')).rows[0] as { v: number }).v, 7);
    const d = counters();
    await c.end();
    assert.ok(d.handbacks - before.handbacks >= 4, `handbacks: ${d.handbacks - before.handbacks}`);
    assert.ok(d.relays - before.relays >= 4, `native relays: ${d.relays - before.relays}`);
  });

  test('COPY FROM STDIN inside a transaction (CopyInResponse, CopyData, CopyDone) runs natively', async () => {
    const sql = postgres({
      host: '127.0.0.1',
      port: gw.port,
      user: 'carol',
      password: PW,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
      prepare: false,
      max: 1,
    });
    const before = counters();
    try {
      const sum = await sql.begin(async (tx) => {
        await tx`CREATE TEMP TABLE c (v int) ON COMMIT DROP`;
        const rows = Array.from({ length: 5000 }, (_, i) => `${i + 1}\n`).join('');
        await pipeline(Readable.from([rows]), await tx`COPY c FROM STDIN`.writable());
        return (await tx`SELECT sum(v)::int AS s FROM c`)[0]!.s as number;
      });
      assert.equal(sum, 12502500);
    } finally {
      await sql.end();
    }
    const d = counters();
    assert.ok(d.boundaries > before.boundaries, 'the transaction ended natively');
    assert.equal(d.handbacks, before.handbacks, 'nothing was handed back');
  });

  test('COPY TO STDOUT of 20,000 short rows runs natively (headers cut at the end of a full relay buffer)', async () => {
    // Regression: a full server buffer ending in the first bytes of a message was never compacted, and the relay
    // waited for room that never came (the client got ~16 KB, then nothing).
    const sql = postgres({
      host: '127.0.0.1',
      port: gw.port,
      user: 'carol',
      password: PW,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
      prepare: false,
      max: 1,
    });
    const before = counters();
    try {
      let copied = '';
      for await (const chunk of await sql`COPY (SELECT generate_series(1, 20000)) TO STDOUT`.readable())
        copied += String(chunk);
      assert.equal(copied.split('\n').length, 20001);
    } finally {
      await sql.end();
    }
    assert.equal(counters().handbacks, before.handbacks, 'nothing was handed back');
  });

  test('a client vanishing inside a native transaction: its server is discarded, never handed out', async () => {
    const a = client();
    a.on('error', () => undefined); // its socket is destroyed below: 'Connection terminated unexpectedly'
    await a.connect();
    await a.query('BEGIN');
    const pid = ((await a.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p;
    const relays = nativeTxCounters.relays;
    // The native relay holds the server (a transaction is open) when the client's socket goes.
    (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    const b = client();
    await b.connect();
    const pidB = ((await b.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p;
    assert.notEqual(pidB, pid, 'the server left in a transaction was reused');
    assert.equal(((await b.query('SELECT 1 AS v')).rows[0] as { v: number }).v, 1);
    await b.end();
    assert.ok(nativeTxCounters.relays > relays);
    const su = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
    await su.connect();
    let left = 1;
    for (let i = 0; i < 50 && left > 0; i++) {
      left = (
        (await su.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0] as {
          n: number;
        }
      ).n;
      if (left > 0) await new Promise((r) => setTimeout(r, 100));
    }
    await su.end();
    assert.equal(left, 0, 'the discarded backend is gone');
  });

  test('a bad message length inside a native stretch gets the JavaScript relay FATAL', async () => {
    const c = client();
    await c.connect();
    await c.query('SELECT 1');
    const err = new Promise<Error & { code?: string }>((resolve) => c.once('error', resolve));
    const before = counters();
    // A Query whose length is 2^31 - 1: more than the 1 GiB a client message may have.
    (c as unknown as { connection: { stream: { write(b: Buffer): void } } }).connection.stream.write(
      Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff, 0x53]),
    );
    const e = await err;
    assert.equal(e.code, '08P01');
    assert.equal(e.message, 'invalid message length');
    // The session was in the lane since its first query: the lane took a server for the bad message and handed
    // both back.
    assert.equal(nativeTxCounters.relays - before.relays, 0);
    assert.equal(nativeTxCounters.handbacks - before.handbacks, 1, 'the bytes went to the native relay first');
    await c.end().catch(() => undefined);
  });

  test('the lane hands the one server from client to client, and a waiting client gets it at the boundary', async () => {
    const a = client();
    const b = client();
    await a.connect();
    await b.connect();
    // The test before this one left the pool without a server (its bad message made the server unusable): the
    // first query asks the pool for a new one, which may or may not be ready yet. Count from when the lane has it.
    await a.query('SELECT 1');
    await b.query('SELECT 1');
    const before = counters();
    const pids = new Set<number>();
    for (let i = 0; i < 10; i++) {
      for (const c of [a, b]) pids.add(((await c.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p);
    }
    assert.equal(pids.size, 1, 'default_pool_size = 1: one backend for both clients');
    // a holds the server in a transaction; b's next query waits in the lane and runs once a commits.
    await a.query('BEGIN');
    let bDone = false;
    const bq = b.query('SELECT 42 AS v').then((r) => {
      bDone = true;
      return (r.rows[0] as { v: number }).v;
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(bDone, false, 'b waits while a is inside its transaction');
    await a.query('COMMIT');
    assert.equal(await bq, 42);
    await a.end();
    await b.end();
    const d = counters();
    // 24: the lane reports the transactions it ended when it hands the session back, so the two warm-up queries
    // count here too.
    assert.equal(d.laneBoundaries - before.laneBoundaries, 24, 'every transaction ended in the lane');
    assert.equal(d.handbacks - before.handbacks, 0, 'nothing went back to JavaScript');
    assert.equal(d.laneNeedServer - before.laneNeedServer, 0, 'the pool was never asked for a server');
  });

  test('query_wait_timeout for a client waiting in the lane: FATAL 08P01, the other client goes on', async () => {
    const gw2 = await startTestGateway(fx, cluster, {
      hba_file: writeFixture(fx, 'native-pool-hba2.conf', 'hostssl all carol all scram-sha-256\n'),
      auth_file: writeFixture(fx, 'native-pool-userlist2.txt', userlistLine, 0o600),
      pool_mode: 'transaction',
      default_pool_size: '1',
      query_wait_timeout: '1s',
      native_data_plane: 'on',
    });
    const on = (port: number) =>
      new pg.Client({
        host: '127.0.0.1',
        port,
        user: 'carol',
        password: PW,
        database: 'postgres',
        ssl: { rejectUnauthorized: false },
      });
    const a = on(gw2.port);
    const b = on(gw2.port);
    try {
      await a.connect();
      await b.connect();
      await b.query('SELECT 1'); // b is in the lane from here on
      await a.query('BEGIN');
      const before = counters();
      const t0 = Date.now();
      const err = new Promise<Error & { code?: string; severity?: string }>((resolve) => b.once('error', resolve));
      await assert.rejects(b.query('SELECT 2'), { code: '08P01', message: 'query_wait_timeout' });
      const waited = Date.now() - t0;
      assert.ok(waited >= 900 && waited < 5000, `waited ${waited} ms`);
      assert.equal((await err).message, 'Connection terminated unexpectedly');
      assert.equal(counters().laneEnds - before.laneEnds, 1, 'the lane timed it out');
      await a.query('COMMIT');
      assert.equal(((await a.query('SELECT 3 AS v')).rows[0] as { v: number }).v, 3);
    } finally {
      await a.end().catch(() => undefined);
      await b.end().catch(() => undefined);
      await gw2.close();
    }
  });

  test('30 clients on one server through the lane: every answer its own, a client leaving while it waits', async () => {
    const before = counters();
    const clients = Array.from({ length: 30 }, () => client());
    await Promise.all(clients.map((c) => c.connect()));
    const gone = client();
    gone.on('error', () => undefined);
    await gone.connect();
    await gone.query('SELECT 1'); // in the lane from here on
    const hold = client();
    await hold.connect();
    await hold.query('BEGIN'); // the one server is held: the next query of `gone` waits in the lane
    const waiting = gone.query('SELECT 2').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    (gone as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await waiting;
    await hold.query('COMMIT');
    await hold.end();
    const results = await Promise.all(
      clients.map(async (c, i) => {
        const got: number[] = [];
        for (let k = 0; k < 20; k++)
          got.push(((await c.query(`SELECT ${i * 100 + k} AS v`)).rows[0] as { v: number }).v);
        return got;
      }),
    );
    results.forEach((got, i) =>
      assert.deepEqual(
        got,
        Array.from({ length: 20 }, (_, k) => i * 100 + k),
      ),
    );
    await Promise.all(clients.map((c) => c.end()));
    const d = counters();
    assert.ok(
      d.laneBoundaries - before.laneBoundaries >= 600,
      `lane boundaries: ${d.laneBoundaries - before.laneBoundaries}`,
    );
  });

  test('an idle server that dies in the lane is discarded: the next transaction gets a new backend', async () => {
    const c = client();
    await c.connect();
    const pid = ((await c.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p;
    const su = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
    await su.connect();
    await su.query('SELECT pg_terminate_backend($1)', [pid]);
    await su.end();
    await new Promise((r) => setTimeout(r, 200)); // its FATAL reaches the lane's watch on the idle server
    const pid2 = ((await c.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p;
    assert.notEqual(pid2, pid);
    await c.end();
  });
});
