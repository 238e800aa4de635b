/**
 * Session pooling on the native data plane: the session's native relay (native/src/txrelay.c in session mode)
 * carries the whole session — transactions, SET and the ParameterStatus it brings, DISCARD ALL, COPY both ways, a
 * 4 MB row, named statements, a cancel — and hands back only at the client's Terminate, which is not forwarded: the
 * server goes back to the pool when it is known idle, and is discarded otherwise. What the relay cannot follow (a
 * full request queue) is handed back mid-session and the JavaScript splice carries on, byte for byte. The counters
 * of src/gateway/pool/session-relay.ts say which path ran.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import pg from 'pg';
import postgres from 'postgres';
import { sessionRelayCounters } from '../../src/gateway/pool/session-relay.js';
import { nativeTxCounters } from '../../src/gateway/pool/tx-relay.js';
import { encodeQuery } from '../../src/protocol/messages.js';
import { nativeUnavailableReason } from '../../src/tls/native.js';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import type { TestGateway } from '../support/gateway.js';
import { startPooledGateway } from '../support/pooled-gateway.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const PW = 'pool-session-native-pw';
const skip = nativeUnavailableReason();

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;

let client: () => pg.Client;

before(async () => {
  if (skip) return;
  fx = await makeFixtures();
  cluster = await startTestCluster();
  const p = await startPooledGateway(fx, cluster, 'dora', PW, {
    pool_mode: 'session',
    default_pool_size: '1',
    native_data_plane: 'on',
  });
  gw = p.gw;
  client = p.client;
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

const counters = () => ({ ...sessionRelayCounters });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pidOf(c: pg.Client): Promise<number> {
  return ((await c.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p;
}

/** Wait until the gateway has finished with the clients that left (their relay ended, the server released). */
async function settled(): Promise<void> {
  await gw.settle();
  await sleep(50);
}

/** Whether backend `pid` is still there, waiting up to `ms` for it to go. */
async function backendAlive(pid: number, ms: number): Promise<boolean> {
  const su = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
  await su.connect();
  try {
    const until = Date.now() + ms;
    for (;;) {
      const r = await su.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
      if ((r.rows[0] as { n: number }).n === 0) return false;
      if (Date.now() > until) return true;
      await sleep(100);
    }
  } finally {
    await su.end();
  }
}

/** The raw TLS stream under a connected pg client, taken away from pg's parser (the test speaks the protocol). */
function takeStream(c: pg.Client): TLSSocket {
  const s = (c as unknown as { connection: { stream: TLSSocket } }).connection.stream;
  s.removeAllListeners('data');
  return s;
}

/** Read messages from `s` until `count` ReadyForQuery have come; returns the messages (type, body). */
function readUntilReady(s: TLSSocket, count: number): Promise<Array<[string, Buffer]>> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: Array<[string, Buffer]> = [];
    let seen = 0;
    const t = setTimeout(() => reject(new Error(`${seen} of ${count} ReadyForQuery`)), 10_000);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
        const len = buf.readInt32BE(1);
        out.push([String.fromCharCode(buf[0]!), buf.subarray(5, 1 + len)]);
        if (buf[0] === 0x5a) seen++;
        buf = buf.subarray(1 + len);
      }
      if (seen >= count) {
        clearTimeout(t);
        s.off('data', onData);
        resolve(out);
      }
    };
    s.on('data', onData);
  });
}

describe('native session relay', { skip }, () => {
  test('a whole session runs natively until its Terminate: transactions, SET, DISCARD ALL, COPY, 4 MB', async () => {
    const before = counters();
    const tx = { ...nativeTxCounters };
    const params: Array<[string, string]> = [];
    const sql = postgres({
      host: '127.0.0.1',
      port: gw.port,
      user: 'dora',
      password: PW,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
      max: 1,
      onparameter: (k: string, v: string) => params.push([k, v]),
    });
    let pid: number;
    try {
      pid = (await sql`SELECT pg_backend_pid() AS p`)[0]!.p as number;
      // Named prepared statements (postgres.js prepares by default): in session mode they are the client's own.
      for (let i = 0; i < 20; i++) assert.equal((await sql`SELECT ${i}::int * 2 AS v`)[0]!.v, i * 2);
      // A SET the backend reports (ParameterStatus TimeZone) reaches the client as it was sent.
      await sql`SET TimeZone = 'Asia/Tokyo'`;
      assert.deepEqual(params.at(-1), ['TimeZone', 'Asia/Tokyo']);
      await sql.begin(async (t) => {
        await t`CREATE TEMP TABLE c (v int) ON COMMIT DROP`;
        const rows = Array.from({ length: 5000 }, (_, i) => `${i + 1}\n`).join('');
        await pipeline(Readable.from([rows]), await t`COPY c FROM STDIN`.writable());
        assert.equal((await t`SELECT sum(v)::int AS s FROM c`)[0]!.s, 12502500);
      });
      let copied = '';
      for await (const chunk of await sql`COPY (SELECT generate_series(1, 20000)) TO STDOUT`.readable())
        copied += chunk.toString();
      assert.equal(copied.split('\n').length, 20001);
      const big = (await sql`SELECT repeat('x', 4194304) AS b`)[0]!.b as string;
      assert.equal(big.length, 4194304);
      // DISCARD ALL inside the session: the backend drops the statements and resets TimeZone (a ParameterStatus).
      await sql.unsafe('DISCARD ALL', [], { prepare: false });
      assert.notEqual(params.at(-1)?.[1], 'Asia/Tokyo');
      const after = (await sql.unsafe("SELECT current_setting('TimeZone') AS tz, pg_backend_pid() AS p"))[0]!;
      assert.notEqual(after.tz, 'Asia/Tokyo');
      assert.equal(after.p, pid, 'one server for the whole session');
      const mid = counters();
      assert.equal(mid.native - before.native, 1, 'the session relayed natively');
      assert.equal(mid.splices - before.splices, 0, 'no JavaScript splice');
      assert.equal(mid.handbacks - before.handbacks, 0, 'no handback');
      assert.equal(mid.nativeEnds - before.nativeEnds, 0, 'the relay runs until the Terminate');
    } finally {
      await sql.end();
    }
    await settled();
    const d = counters();
    assert.equal(d.nativeEnds - before.nativeEnds, 1, 'the Terminate ended the native relay');
    assert.equal(d.splices - before.splices, 0);
    assert.deepEqual({ ...nativeTxCounters }, tx, 'the transaction relay was not involved');
    const rec = gw.records.at(-1)!;
    assert.ok((rec.bytes_from_backend ?? 0) > 4194304, `bytes from the backend: ${rec.bytes_from_backend}`);
    assert.ok((rec.bytes_from_client ?? 0) > 20000, `bytes from the client: ${rec.bytes_from_client}`);
    // The Terminate was not forwarded: the next client gets the same backend, reset by DISCARD ALL.
    const b = client();
    await b.connect();
    assert.equal(await pidOf(b), pid, 'the server went back to the pool');
    await b.end();
  });

  test('a clean goodbye returns the server reset; a SET does not reach the next client', async () => {
    const a = client();
    await a.connect();
    const pid = await pidOf(a);
    await a.query("SET application_name = 'leaky'");
    await a.query('SET search_path = leaked');
    const before = counters();
    await a.end();
    await settled();
    assert.equal(counters().nativeEnds - before.nativeEnds, 1);
    const b = client();
    await b.connect();
    const r = (await b.query("SELECT pg_backend_pid() AS p, current_setting('search_path') AS sp")).rows[0] as {
      p: number;
      sp: string;
    };
    assert.equal(r.p, pid, 'the same backend');
    assert.equal(r.sp, '"$user", public', 'reset by server_reset_query');
    await b.end();
  });

  test('a Terminate inside a transaction: the server is discarded, its backend gone', async () => {
    const a = client();
    await a.connect();
    const pid = await pidOf(a);
    await a.query('BEGIN');
    await a.query('SELECT 1');
    await a.end(); // Terminate with the transaction open ('T')
    await settled();
    const b = client();
    await b.connect();
    assert.notEqual(await pidOf(b), pid, 'a server left in a transaction was reused');
    await b.end();
    assert.equal(await backendAlive(pid, 5000), false, 'the discarded backend is gone');
  });

  test('a client killed while its query runs: the server is discarded, nothing leaks', async () => {
    const a = client();
    a.on('error', () => undefined);
    await a.connect();
    const pid = await pidOf(a);
    const running = a.query('SELECT pg_sleep(2)').catch(() => undefined);
    await sleep(300);
    (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await running;
    await settled();
    const b = client();
    await b.connect();
    assert.notEqual(await pidOf(b), pid, 'the server with a query running was reused');
    await b.end();
    // The backend notices once pg_sleep returns and its answer has nowhere to go.
    assert.equal(await backendAlive(pid, 8000), false, 'the discarded backend is gone');
    await settled();
    const su = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: SUPERUSER_PASSWORD });
    await su.connect();
    const n = (await su.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'dora'")).rows[0] as {
      n: number;
    };
    await su.end();
    assert.ok(n.n <= 1, `backends of the pool: ${n.n} (pool size 1)`);
  });

  test('a full request queue (300 pipelined Syncs) is handed back and the session goes on in JavaScript', async () => {
    const c = client();
    c.on('error', () => undefined);
    await c.connect();
    const pid = await pidOf(c);
    const before = counters();
    const s = takeStream(c);
    const syncs = Buffer.alloc(300 * 5);
    for (let i = 0; i < 300; i++) syncs.write('S\0\0\0\x04', i * 5, 'latin1');
    const got = readUntilReady(s, 301);
    s.write(Buffer.concat([syncs, encodeQuery('SELECT 42 AS v')]));
    const msgs = await got;
    assert.equal(msgs.filter(([t]) => t === 'Z').length, 301);
    const row = msgs.find(([t]) => t === 'D');
    assert.ok(row, 'the query after the Syncs was answered');
    assert.equal(row[1].subarray(6).toString(), '42');
    const mid = counters();
    assert.equal(mid.handbacks - before.handbacks, 1, 'handed back at the 257th request');
    assert.equal(mid.splices - before.splices, 1, 'the JavaScript splice carries on');
    // The same session, on the same server, still answers.
    const next = readUntilReady(s, 1);
    s.write(encodeQuery('SELECT pg_backend_pid()'));
    const again = (await next).find(([t]) => t === 'D');
    assert.equal(again?.[1].subarray(6).toString(), String(pid));
    // Its goodbye (now seen by the splice) returns the server idle: the next client gets it.
    s.end(Buffer.from('X\0\0\0\x04', 'latin1'));
    await settled();
    const b = client();
    await b.connect();
    assert.equal(await pidOf(b), pid);
    await b.end();
  });

  test("a CancelRequest with the gateway's key cancels pg_sleep on the session's server", async () => {
    const before = counters();
    const sql = postgres({
      host: '127.0.0.1',
      port: gw.port,
      user: 'dora',
      password: PW,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
      max: 1,
    });
    try {
      const q = sql`SELECT pg_sleep(30)`;
      const t0 = Date.now();
      setTimeout(() => q.cancel(), 500);
      await assert.rejects(q, { code: '57014', message: 'canceling statement due to user request' });
      assert.ok(Date.now() - t0 < 10_000);
      assert.deepEqual([...(await sql`SELECT 1 AS one`)], [{ one: 1 }]);
    } finally {
      await sql.end();
    }
    await settled();
    const d = counters();
    assert.equal(d.native - before.native, 1);
    assert.equal(d.handbacks - before.handbacks, 0);
    assert.equal(d.nativeEnds - before.nativeEnds, 1);
  });
});
