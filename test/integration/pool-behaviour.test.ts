/**
 * What a pool does beyond relaying, with real clients and PostgreSQL 18: cancel through a pooled connection (3.0 and
 * 3.2 keys), pool exhaustion and query_wait_timeout, session reset, GUCs kept per client across servers, a client
 * leaving mid-transaction, COPY, login failures, and a backend restart healing the pool.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, pbkdf2Sync } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { startCluster } from '../../src/gateway/embedded-postgres.js';
import { embeddedBinaries } from '../../src/gateway/embedded-postgres.js';
import { PasswordLogin, ServerLoginError } from '../../src/gateway/pool/login.js';
import { encodeCancelRequest, encodeStartupMessage } from '../../src/protocol/startup.js';
import { cleanEnv, psql, run } from '../support/clients.js';
import { type PoolFront, startPoolFront } from '../support/pool-front.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

const APP_PASSWORD = 'app-secret-pw';
let cluster: TestCluster;
let restarted: { stop(): Promise<void> } | undefined;
const fronts: PoolFront[] = [];

async function front(
  settings: Parameters<typeof startPoolFront>[0]['settings'],
  passwords: Record<string, string> = { app: APP_PASSWORD },
): Promise<PoolFront> {
  const f = await startPoolFront({
    upstream: { host: '127.0.0.1', port: cluster.port, sslmode: 'disable', sslrootcert: '', sslcert: '', sslkey: '' },
    settings,
    passwords,
  });
  fronts.push(f);
  return f;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: cluster.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
  });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

before(async () => {
  cluster = await startTestCluster();
  await admin(async (c) => {
    await c.query(`create role app login password '${APP_PASSWORD}'`);
    await c.query('create table t(n int); grant all on t to app');
  });
});
after(async () => {
  for (const f of fronts) await f.close();
  await restarted?.stop();
  await cluster?.destroy();
});

function client(f: PoolFront, extra: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: f.port, user: 'app', database: 'postgres', ...extra });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rawCancel(port: number, pid: number, key: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.end(encodeCancelRequest(pid, key)));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

describe('cancel through a pooled connection', () => {
  for (const mode of ['session', 'transaction'] as const) {
    test(`${mode}: postgres.js cancels pg_sleep with the gateway's key (protocol 3.0, 4-byte key)`, async () => {
      const f = await front({ pool_mode: mode, default_pool_size: 2 });
      const sql = postgres({ host: '127.0.0.1', port: f.port, user: 'app', database: 'postgres', max: 1 });
      try {
        const q = sql`select pg_sleep(30)`;
        const t0 = Date.now();
        setTimeout(() => q.cancel(), 500);
        await assert.rejects(q, { code: '57014', message: 'canceling statement due to user request' });
        assert.ok(Date.now() - t0 < 10_000);
        // The server went back clean and serves the next query.
        assert.deepEqual([...(await sql`select 1 as one`)], [{ one: 1 }]);
      } finally {
        await sql.end();
      }
    });
  }

  test("transaction: a CancelRequest with the client's pid but a wrong key cancels nothing; the right key does", async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2 });
    const c = client(f);
    await c.connect();
    try {
      const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
      const key = Buffer.alloc(4);
      key.writeInt32BE(secretKey);
      const wrong = Buffer.from(key);
      wrong[0] = wrong[0]! ^ 0xff;
      const slow = c.query('select pg_sleep(1.5) as slept');
      await sleep(300);
      await rawCancel(f.port, processID, wrong);
      const r = await slow;
      assert.equal(r.rows.length, 1, 'the query ran to its end');
      const slow2 = c.query('select pg_sleep(30)');
      await sleep(300);
      await rawCancel(f.port, processID, key);
      await assert.rejects(slow2, { code: '57014', message: 'canceling statement due to user request' });
    } finally {
      await c.end();
    }
  });

  test('transaction: libpq 18 with protocol 3.2 (32-byte key): psql cancels on SIGINT', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2 });
    const conninfo = `host=127.0.0.1 port=${f.port} user=app dbname=postgres max_protocol_version=3.2`;
    const child = spawn('psql', ['-X', '-A', '-t', '-c', 'select pg_sleep(30)', conninfo], {
      env: cleanEnv({ LD_LIBRARY_PATH: embeddedBinaries().lib }),
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => {
      setTimeout(() => child.kill('SIGINT'), 1500);
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.on('close', (c) => {
        clearTimeout(killer);
        resolve(c);
      });
    });
    assert.match(stderr, /ERROR: {2}canceling statement due to user request/);
    assert.equal(code, 1);
  });
});

describe('pool exhaustion', () => {
  test('session: a client waits for the only server and gets it when the holder leaves (FIFO)', async () => {
    const f = await front({ pool_mode: 'session', default_pool_size: 1, query_wait_timeout: 10_000 });
    const holder = client(f);
    await holder.connect();
    const pidA = (await holder.query('select pg_backend_pid() as p')).rows[0].p;
    const waiting = psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select pg_backend_pid()');
    await sleep(800);
    assert.equal(f.pools.all()[0]?.counts.waiting, 1);
    await holder.end();
    const r = await waiting;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Number(r.stdout.trim()), pidA, 'the same server, handed over');
  });

  test('session: a waiting client that leaves leaves the queue', async () => {
    const f = await front({ pool_mode: 'session', default_pool_size: 1, query_wait_timeout: 10_000 });
    const holder = client(f);
    await holder.connect();
    try {
      const s = connect(f.port, '127.0.0.1');
      s.write(
        encodeStartupMessage([
          ['user', 'app'],
          ['database', 'postgres'],
        ]),
      );
      await sleep(300);
      assert.equal(f.pools.all()[0]?.counts.waiting, 1);
      s.destroy();
      await sleep(200);
      assert.equal(f.pools.all()[0]?.counts.waiting, 0);
    } finally {
      await holder.end();
    }
  });

  test('session: query_wait_timeout ends a waiting client with PgBouncer\'s FATAL (08P01 "query_wait_timeout")', async () => {
    const f = await front({ pool_mode: 'session', default_pool_size: 1, query_wait_timeout: 1000 });
    const holder = client(f);
    await holder.connect();
    try {
      // As PgBouncer: the login completes from the pool's welcome; the wait for a server is the first query's.
      const waiter = client(f);
      await waiter.connect();
      waiter.on('error', () => undefined);
      const t0 = Date.now();
      await assert.rejects(waiter.query('select 1'), {
        code: '08P01',
        message: 'query_wait_timeout',
        severity: 'FATAL',
      });
      const waited = Date.now() - t0;
      assert.ok(waited >= 900 && waited < 5000, `waited ${waited} ms`);
    } finally {
      await holder.end();
    }
  });

  test('session: reserve_pool_size serves a client that waited reserve_pool_timeout; beyond it, clients wait', async () => {
    const f = await front({
      pool_mode: 'session',
      default_pool_size: 1,
      reserve_pool_size: 1,
      reserve_pool_timeout: 300,
      query_wait_timeout: 1500,
    });
    const holder = client(f);
    await holder.connect();
    const second = client(f);
    try {
      await second.connect();
      const t0 = Date.now();
      await second.query('select 1');
      const waited = Date.now() - t0;
      assert.ok(waited >= 250, `served from the reserve after ${waited} ms`);
      const third = client(f);
      await third.connect();
      third.on('error', () => undefined);
      await assert.rejects(third.query('select 1'), { code: '08P01', message: 'query_wait_timeout' });
    } finally {
      await holder.end();
      await second.end();
    }
  });

  test('max_db_connections bounds the servers of a database over all users', async () => {
    const f = await front(
      // 3 s: the eviction below waits for a janitor tick (1 s) and a login; 1 s raced them on a loaded machine.
      { pool_mode: 'session', default_pool_size: 5, max_db_connections: 1, query_wait_timeout: 3000 },
      { app: APP_PASSWORD, postgres: SUPERUSER_PASSWORD },
    );
    const a = client(f);
    await a.connect();
    try {
      const b = client(f, { user: 'postgres' });
      // Its pool never logged in, so there is no welcome to answer from: the login itself waits, as PgBouncer's.
      await assert.rejects(b.connect(), { code: '08P01', message: 'query_wait_timeout' });
      const other = client(f, { database: 'template1' });
      await other.connect(); // another database has its own count
      await other.end();
      await a.end();
      // The idle server of app's pool is evicted for the postgres pool, within a janitor tick.
      const c = client(f, { user: 'postgres' });
      await c.connect();
      assert.equal((await c.query('select current_user as u')).rows[0].u, 'postgres');
      await c.end();
      assert.ok(f.events.some((e) => e.detail.reason === 'evicted for another pool (max_db_connections)'));
    } finally {
      await a.end().catch(() => undefined);
    }
  });

  test('transaction: a client connects while the only server is in a transaction, and its query times out', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 1000 });
    const holder = client(f);
    await holder.connect();
    await holder.query('begin');
    try {
      const waiter = client(f);
      await waiter.connect(); // the welcome comes from the pool, not from a server
      waiter.on('error', () => undefined);
      await assert.rejects(waiter.query('select 1'), { code: '08P01', message: 'query_wait_timeout' });
    } finally {
      await holder.query('commit');
      await holder.end();
    }
  });

  test('transaction: 100 clients on a pool of 4, each with transactions, never more than 4 backends', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 4 });
    const clients = Array.from({ length: 100 }, () => client(f));
    await Promise.all(clients.map((c) => c.connect()));
    const pids = new Set<number>();
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          for (let k = 0; k < 3; k++) {
            await c.query('begin');
            await c.query('insert into t values ($1)', [i]);
            const r = await c.query('select pg_backend_pid() as p, count(*)::int as n from t where n = $1', [i]);
            pids.add(r.rows[0].p);
            assert.equal(r.rows[0].n, k + 1);
            await c.query('commit');
          }
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    assert.ok(pids.size <= 4 && pids.size >= 1, `backends: ${pids.size}`);
    const n = await admin(async (a) => (await a.query('select count(*)::int as n from t')).rows[0].n);
    assert.equal(n, 300);
    const opened = f.events.filter((e) => e.event === 'server opened').length;
    assert.ok(opened <= 4, `servers opened: ${opened}`);
  });
});

describe('session state', () => {
  test('session: DISCARD ALL on release — a SET in one session is not visible to the next client on the same server', async () => {
    const f = await front({ pool_mode: 'session', default_pool_size: 1 });
    const a = await psql(
      `host=127.0.0.1 port=${f.port} user=app dbname=postgres`,
      "set search_path = 'leaked'; select pg_backend_pid()",
    );
    assert.equal(a.code, 0, a.stderr);
    const b = await psql(
      `host=127.0.0.1 port=${f.port} user=app dbname=postgres`,
      "select pg_backend_pid() || ' ' || current_setting('search_path')",
    );
    assert.equal(b.stdout.trim(), `${a.stdout.trim().split('\n').pop()} "$user", public`);
  });

  test("session: with server_reset_query = '' the next client inherits the SET (why the reset exists)", async () => {
    const f = await front({ pool_mode: 'session', default_pool_size: 1, server_reset_query: '' });
    await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, "set search_path = 'leaked'");
    const b = await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'show search_path');
    assert.equal(b.stdout.trim(), 'leaked');
  });

  test('transaction: a client keeps its TimeZone on every server, the others keep theirs', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2 });
    const tokyo = client(f);
    const others = [client(f), client(f), client(f)];
    await Promise.all([tokyo, ...others].map((c) => c.connect()));
    try {
      await tokyo.query("set timezone = 'Asia/Tokyo'");
      const seen = new Set<string>();
      const otherSeen = new Set<string>();
      const pids = new Set<number>();
      await Promise.all([
        (async () => {
          for (let i = 0; i < 20; i++) {
            const r = await tokyo.query('select current_setting($1) as tz, pg_backend_pid() as p', ['TimeZone']);
            seen.add(r.rows[0].tz);
            pids.add(r.rows[0].p);
          }
        })(),
        ...others.map(async (c) => {
          for (let i = 0; i < 20; i++) {
            const r = await c.query('select current_setting($1) as tz', ['TimeZone']);
            otherSeen.add(r.rows[0].tz);
          }
        }),
      ]);
      assert.deepEqual([...seen], ['Asia/Tokyo']);
      assert.ok(!otherSeen.has('Asia/Tokyo'), [...otherSeen].join());
      assert.equal(pids.size, 2, 'the Tokyo client ran on both servers');
    } finally {
      await Promise.all([tokyo, ...others].map((c) => c.end()));
    }
  });

  test('transaction: an error inside a transaction keeps the server until ROLLBACK (25P02 in between)', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2 });
    const c = client(f);
    await c.connect();
    try {
      await c.query('begin');
      const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p;
      await assert.rejects(c.query('select 1/0'), { code: '22012', message: 'division by zero' });
      await assert.rejects(c.query('select 1'), {
        code: '25P02',
        message: 'current transaction is aborted, commands ignored until end of transaction block',
      });
      await c.query('rollback');
      const r = await c.query('select pg_backend_pid() as p, now() = statement_timestamp() as fresh');
      assert.equal(r.rows[0].fresh, true, 'outside any transaction now');
      assert.equal(typeof pid, 'number');
    } finally {
      await c.end();
    }
  });

  test('transaction: server_reset_query_always resets between transactions; without it session state leaks', async () => {
    for (const always of [true, false]) {
      const f = await front({ pool_mode: 'transaction', default_pool_size: 1, server_reset_query_always: always });
      const c = client(f);
      await c.connect();
      try {
        await c.query("set search_path = 'leaked'");
        const r = await c.query('show search_path');
        assert.equal(r.rows[0].search_path, always ? '"$user", public' : 'leaked');
      } finally {
        await c.end();
      }
    }
  });

  test('transaction: a client leaving mid-transaction — its server is discarded, its work rolled back', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 1 });
    const a = client(f);
    a.on('error', () => undefined);
    await a.connect();
    await a.query('begin');
    await a.query('insert into t values (-42)');
    const pid = (await a.query('select pg_backend_pid() as p')).rows[0].p;
    (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await sleep(300);
    const b = client(f);
    await b.connect();
    try {
      const r = await b.query('select pg_backend_pid() as p, (select count(*)::int from t where n = -42) as n');
      assert.notEqual(r.rows[0].p, pid, 'a fresh server');
      assert.equal(r.rows[0].n, 0);
    } finally {
      await b.end();
    }
    assert.ok(f.events.some((e) => e.event === 'server closed' && e.detail.reason === 'released dirty'));
  });

  test('transaction: COPY in and out pass through', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 1 });
    const conninfo = `host=127.0.0.1 port=${f.port} user=app dbname=postgres`;
    const load = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-f', '-', conninfo], {
      env: cleanEnv(),
      input: 'copy t from stdin;\n1001\n1002\n1003\n\\.\n',
    });
    assert.equal(load.code, 0, load.stderr);
    const out = await psql(conninfo, 'copy (select n from t where n > 1000 order by n) to stdout');
    assert.equal(out.stdout, '1001\n1002\n1003\n');
  });
});

describe('server login', () => {
  test("the backend's own FATAL reaches the client: wrong backend password (28P01)", async () => {
    const f = await front({ pool_mode: 'transaction' }, { app: 'not-the-password' });
    const r = await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select 1');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /FATAL: {2}password authentication failed for user "app"/);
  });

  test("unknown database: PostgreSQL's 3D000 text", async () => {
    const f = await front({ pool_mode: 'session' });
    const c = client(f, { database: 'nope' });
    await assert.rejects(c.connect(), { code: '3D000', message: 'database "nope" does not exist' });
  });

  test("one failing login is that client's only: a waiting client of another user still gets in", async () => {
    const f = await front({ pool_mode: 'session', default_pool_size: 1 }, { app: APP_PASSWORD });
    const [bad, good] = await Promise.all([
      psql(`host=127.0.0.1 port=${f.port} user=postgres dbname=postgres`, 'select 1'),
      psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select 1'),
    ]);
    // postgres has no credential here: its login fails at the gateway, not for want of a backend.
    assert.match(
      bad.stderr,
      /FATAL: {2}could not log in to the database server behind the gateway\nHINT: {2}The gateway has no password for this user to log in to the backend with; the gateway log has the reason\./,
    );
    assert.equal(good.stdout.trim(), '1', good.stderr);
  });
});

describe('janitor and stale servers', () => {
  test('server_idle_timeout closes idle servers; server_lifetime closes old ones on release', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2, server_idle_timeout: 1000 });
    const r = await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select 1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(f.pools.all()[0]?.counts.idle, 1);
    await sleep(2600); // the janitor runs every second
    assert.equal(f.pools.all()[0]?.counts.idle, 0);
    assert.ok(
      f.events.some((e) => e.event === 'server closed' && e.detail.reason === 'server idle timeout'),
      JSON.stringify(f.events),
    );

    const g = await front({ pool_mode: 'transaction', default_pool_size: 1, server_lifetime: 500 });
    const c = client(g);
    await c.connect();
    try {
      const p1 = (await c.query('select pg_backend_pid() as p')).rows[0].p;
      await sleep(700);
      await c.query('select 1'); // released past its lifetime: closed
      const p2 = (await c.query('select pg_backend_pid() as p')).rows[0].p;
      assert.notEqual(p1, p2);
      assert.ok(
        g.events.some((e) => e.detail.reason === 'server lifetime over'),
        JSON.stringify(g.events),
      );
    } finally {
      await c.end();
    }
  });

  test('server_check_query runs before reuse after server_check_delay; a server failing it is discarded', async () => {
    const ok = await front({
      pool_mode: 'transaction',
      default_pool_size: 1,
      server_check_query: 'select 1',
      server_check_delay: 0,
    });
    const bad = await front({
      pool_mode: 'transaction',
      default_pool_size: 1,
      server_check_query: 'select 1/0',
      server_check_delay: 0,
    });
    for (const [f, same] of [
      [ok, true],
      [bad, false],
    ] as const) {
      const c = client(f);
      await c.connect();
      try {
        const p1 = (await c.query('select pg_backend_pid() as p')).rows[0].p;
        await sleep(20);
        const p2 = (await c.query('select pg_backend_pid() as p')).rows[0].p;
        assert.equal(p1 === p2, same);
      } finally {
        await c.end();
      }
    }
    assert.ok(bad.events.some((e) => e.detail.reason === 'server_check_query failed: division by zero'));
    assert.ok(!ok.events.some((e) => String(e.detail.reason).startsWith('server_check_query')));
  });

  test('a server whose backend was terminated while idle is discarded, never handed out', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 1 });
    const c = client(f);
    await c.connect();
    try {
      const p1 = (await c.query('select pg_backend_pid() as p')).rows[0].p;
      await admin((a) => a.query('select pg_terminate_backend($1)', [p1]));
      await sleep(200);
      const r = await c.query('select pg_backend_pid() as p');
      assert.notEqual(r.rows[0].p, p1);
      assert.ok(f.events.some((e) => e.event === 'server closed' && e.detail.reason === 'broken while idle'));
    } finally {
      await c.end();
    }
  });
});

describe('ServerLogin (PasswordLogin) directly', () => {
  const upstream = () =>
    ({ host: '127.0.0.1', port: cluster.port, sslmode: 'disable', sslrootcert: '', sslcert: '', sslkey: '' }) as const;

  test("trust, password (cleartext) and md5 backend methods; a wrong password gets the backend's 28P01", async () => {
    await admin(async (a) => {
      await a.query("set password_encryption = 'md5'");
      await a.query("create role md5user login password 'md5-pw'");
      await a.query("create role pwuser login password 'pw-pw'");
      await a.query('create role trustuser login');
    });
    await cluster.install(
      'pg_hba.conf',
      [
        'local all all trust',
        'host all md5user 127.0.0.1/32 md5',
        'host all pwuser 127.0.0.1/32 password',
        'host all trustuser 127.0.0.1/32 trust',
        'host all all 127.0.0.1/32 scram-sha-256',
        '',
      ].join('\n'),
    );
    await cluster.reload();
    await sleep(300);
    const login = new PasswordLogin({ upstream: upstream() });
    for (const [user, password] of [
      ['md5user', 'md5-pw'],
      ['pwuser', 'pw-pw'],
      ['trustuser', undefined],
    ] as const) {
      const server = await login.open({
        key: { database: 'postgres', user },
        params: new Map([['application_name', 'via-pool']]),
        credentials: password === undefined ? undefined : { password },
      });
      try {
        assert.equal((await server.query('select 1')).status, 'I');
        assert.equal(server.params.get('application_name'), 'via-pool');
      } finally {
        server.discard();
      }
    }
    for (const user of ['md5user', 'pwuser']) {
      await assert.rejects(
        login.open({ key: { database: 'postgres', user }, params: new Map(), credentials: { password: 'wrong' } }),
        (e: unknown) =>
          e instanceof ServerLoginError &&
          e.backendError?.C === '28P01' &&
          e.backendError.M === `password authentication failed for user "${user}"`,
      );
    }
    await assert.rejects(
      login.open({ key: { database: 'postgres', user: 'md5user' }, params: new Map(), credentials: undefined }),
      {
        message: 'no password for user "md5user"',
      },
    );
  });

  test('SCRAM pass-through: ClientKey and ServerKey instead of a password; a wrong ClientKey is refused (28P01)', async () => {
    // What the gateway would recover from a client's SCRAM proof, computed here from the stored secret + password.
    const secret: string = await admin(
      async (a) => (await a.query("select rolpassword from pg_authid where rolname = 'app'")).rows[0].rolpassword,
    );
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(secret);
    assert.ok(m, secret.slice(0, 14));
    const salted = pbkdf2Sync(APP_PASSWORD, Buffer.from(m[2]!, 'base64'), Number(m[1]), 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const serverKey = Buffer.from(m[4]!, 'base64');
    const login = new PasswordLogin({ upstream: upstream() });
    const key = { database: 'postgres', user: 'app' };
    const server = await login.open({ key, params: new Map(), credentials: { scramKeys: { clientKey, serverKey } } });
    try {
      const r = await server.query('select 1');
      assert.equal(r.status, 'I');
      assert.equal(r.error, undefined);
      assert.ok(server.cancelKey && server.cancelKey.key.length === 4);
    } finally {
      server.discard();
    }
    const wrong = Buffer.from(clientKey);
    wrong[0] = wrong[0]! ^ 1;
    await assert.rejects(
      login.open({ key, params: new Map(), credentials: { scramKeys: { clientKey: wrong, serverKey } } }),
      (e: unknown) =>
        e instanceof ServerLoginError &&
        e.backendError?.C === '28P01' &&
        e.backendError.M === 'password authentication failed for user "app"',
    );
    // A backend that does not know the secret cannot prove it: a wrong ServerKey fails the server signature check.
    await assert.rejects(
      login.open({ key, params: new Map(), credentials: { scramKeys: { clientKey, serverKey: Buffer.alloc(32) } } }),
      { message: 'SCRAM with the backend: incorrect server signature' },
    );
  });
});

describe('backend restart', () => {
  test('the pool heals: dead servers are discarded, new ones logged in, no gateway restart', async () => {
    const f = await front({ pool_mode: 'transaction', default_pool_size: 2 });
    const before1 = await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select pg_backend_pid()');
    assert.equal(before1.code, 0, before1.stderr);
    await cluster.stop();
    const down = await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select 1');
    assert.match(down.stderr, /FATAL: {2}could not connect to the database server behind the gateway/);
    restarted = await startCluster({ dataDir: cluster.dataDir, port: cluster.port }, cluster.binaries);
    const after1 = await psql(`host=127.0.0.1 port=${f.port} user=app dbname=postgres`, 'select pg_backend_pid()');
    assert.equal(after1.code, 0, after1.stderr);
    assert.notEqual(after1.stdout.trim(), before1.stdout.trim());
  });
});
