/**
 * Issue 12, workers: the admin console and the metrics listener show the whole gateway, whichever worker answers.
 * A real `pgtls serve` with workers = 2 in front of a real PostgreSQL; sessions from node-postgres, the console from
 * psql. Which worker holds a session is checked from outside the gateway too: `ss -tnp` names the process that owns
 * each accepted socket, and that pid must be the worker SHOW WORKERS names for the session's `worker` column.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { cleanEnv, run } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort, startTestCluster } from '../support/postgres.js';
import { parseExposition } from '../support/prom-parse.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
const N = 6;
let fx: GatewayFixtures;
let cluster: TestCluster;
let child: ChildProcess;
let port = 0;
let metricsPort = 0;
let out = '';
let consoleRuns = 0;
const sessions: { client: pg.Client; localPort: number; alive: boolean }[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const logLines = () =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  metricsPort = await freePort();
  const conf = writeFixture(
    fx,
    'workers-aggregate.conf',
    [
      "listen_addresses = '127.0.0.1'",
      'port = 0',
      `ssl_cert_file = '${fx.server.cert}'`,
      `ssl_key_file = '${fx.server.key}'`,
      `upstream = 'postgres://127.0.0.1:${cluster.port}'`,
      'upstream_sslmode = disable',
      "admin_users = 'admin'",
      "stats_users = 'watcher'",
      "metrics_listen_addresses = '127.0.0.1'",
      `metrics_port = ${metricsPort}`,
      'workers = 2',
      '',
    ].join('\n'),
  );
  child = spawn(process.execPath, [MAIN, 'serve', '--config', conf], { env: cleanEnv() });
  child.stdout!.on('data', (d) => {
    out += d;
  });
  const until = Date.now() + 30_000;
  while (!/"msg":"ready"/.test(out) && Date.now() < until) await sleep(50);
  const ready = logLines().find((l) => l.msg === 'ready');
  assert.equal(ready?.workers, 2, out);
  port = Number(/:(\d+)$/.exec((ready?.listen as string[])[0]!)![1]);
  for (let i = 0; i < N; i++) {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      password: SUPERUSER_PASSWORD,
      database: 'postgres',
      application_name: `session-${i}`,
      ssl: { rejectUnauthorized: false },
    });
    await client.connect();
    client.on('error', () => undefined);
    const stream = (client as unknown as { connection: { stream: { localPort: number } } }).connection.stream;
    const s = { client, localPort: stream.localPort, alive: true };
    client.on('end', () => {
      s.alive = false;
    });
    sessions.push(s);
  }
});

after(async () => {
  for (const s of sessions) await s.client.end().catch(() => undefined);
  child?.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await cluster?.destroy();
});

interface ConsoleResult {
  readonly code: number | null;
  readonly rows: string[][][];
  readonly stderr: string;
  readonly ms: number;
}

/** One psql session on the console running each SQL in turn (-c …), rows per command; the session's app name is `app`. */
async function consoleRun(sqls: readonly string[], user = 'admin', app = `console-${++consoleRuns}`) {
  const conninfo = `host=127.0.0.1 port=${port} dbname=pgtls user=${user} sslmode=require application_name=${app} connect_timeout=3`;
  const args = ['-X', '-A', '-t', '-F', '|', '-R', '\x1e', '-v', 'VERBOSITY=verbose'];
  // Each result ends with a marker line so the outputs of several commands can be told apart.
  for (const s of sqls) args.push('-c', s, '-c', '\\echo @@END@@');
  args.push(conninfo);
  const t0 = Date.now();
  const r = await run('psql', args, { env: cleanEnv(), timeoutMs: 15_000 });
  const ms = Date.now() - t0;
  const rows = r.stdout
    .split('@@END@@')
    .slice(0, sqls.length)
    .map((chunk) =>
      chunk
        .split(/[\x1e\n]/)
        .filter((l) => l !== '')
        .map((l) => l.split('|')),
    );
  return { code: r.code, rows, stderr: r.stderr, ms, app } as ConsoleResult & { app: string };
}

/** Retry a console run that landed on a stopped worker (connect_timeout) up to `tries` times. */
async function consoleUntilAnswered(sqls: readonly string[], tries = 6) {
  let last: Awaited<ReturnType<typeof consoleRun>> | undefined;
  for (let i = 0; i < tries; i++) {
    last = await consoleRun(sqls);
    if (last.code === 0) return last;
  }
  assert.fail(`the console never answered: ${last?.stderr}`);
}

const CLIENT_COLS = 25; // SHOW CLIENTS's 24 columns + worker
const col = { id: 0, user: 1, database: 2, port: 5, app: 7, backendPid: 21, worker: 24 } as const;

async function httpGet(path: string, timeoutMs = 3000): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: metricsPort, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => {
      req.destroy();
      resolve(undefined);
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

async function metrics(tries = 6) {
  for (let i = 0; i < tries; i++) {
    const r = await httpGet('/metrics');
    if (r?.status === 200) return parseExposition(r.body);
  }
  assert.fail('/metrics never answered');
}

const sum = (fams: ReturnType<typeof parseExposition>, name: string, filter: Record<string, string> = {}) =>
  (fams.get(name)?.samples ?? [])
    .filter((s) => s.name === name && Object.entries(filter).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);

/** The pid that owns the gateway's accepted socket whose peer is 127.0.0.1:<peerPort>, read by ss(8). */
function socketOwners(): Map<number, number> {
  const text = execFileSync('ss', ['-Htnp', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  const owners = new Map<number, number>();
  for (const line of text.split('\n')) {
    // Local address (the gateway's port), then the peer: the client's port.
    const m = /127\.0\.0\.1:\d+\s+127\.0\.0\.1:(\d+)\s.*pid=(\d+)/.exec(line);
    if (m) owners.set(Number(m[1]), Number(m[2]));
  }
  return owners;
}

async function workersTable(): Promise<Map<number, { pid: number | undefined; state: string; restarts: number }>> {
  const r = await consoleUntilAnswered(['SHOW WORKERS']);
  return new Map(
    r.rows[0]!.map((row) => [
      Number(row[0]),
      { pid: row[1] ? Number(row[1]) : undefined, state: row[2]!, restarts: Number(row[4]) },
    ]),
  );
}

/** ssl_min_protocol_version and where it comes from, as each worker's SHOW CONFIG says. */
const minVersionOn = async () => {
  const seen = new Map<string, string>();
  for (let i = 0; i < 6 && seen.size < 2; i++) {
    const r = await consoleRun(['SHOW CONFIG', 'SHOW CLIENTS']);
    assert.equal(r.code, 0, r.stderr);
    const me = r.rows[1]!.find((row) => row[col.app] === r.app)!;
    const cfg = r.rows[0]!.find((row) => row[0] === 'ssl_min_protocol_version')!;
    seen.set(me[col.worker]!, `${cfg[1]} ${cfg[4]?.startsWith('SET at') ? 'SET' : cfg[4]}`);
  }
  return seen;
};

test('SHOW CLIENTS lists all N sessions whichever worker answers, each on the worker ss says owns its socket', async () => {
  const answeredBy = new Set<string>();
  let workerOf = new Map<number, number>();
  for (let i = 0; i < 6; i++) {
    const r = await consoleRun(['SHOW CLIENTS']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.rows[0]!;
    for (const row of rows) assert.equal(row.length, CLIENT_COLS, row.join('|'));
    const mine = rows.find((row) => row[col.app] === r.app);
    assert.ok(mine, `the console session itself is listed: ${JSON.stringify(rows)}`);
    answeredBy.add(mine[col.worker]!);
    const ours = rows.filter((row) => row[col.user] === 'postgres' && row[col.database] === 'postgres');
    assert.deepEqual(
      ours.map((row) => Number(row[col.port])).sort(),
      sessions.map((s) => s.localPort).sort(),
      `all ${N} sessions listed by the console on worker ${mine[col.worker]}`,
    );
    workerOf = new Map(ours.map((row) => [Number(row[col.port]), Number(row[col.worker])]));
  }
  assert.deepEqual([...answeredBy].sort(), ['1', '2'], 'consoles landed on both workers and each listed everything');
  assert.deepEqual([...new Set(workerOf.values())].sort(), [1, 2], 'the sessions are spread over both workers');

  const workers = await workersTable();
  assert.equal(workers.get(1)?.state, 'up');
  assert.equal(workers.get(2)?.state, 'up');
  const owners = socketOwners();
  for (const s of sessions) {
    const w = workerOf.get(s.localPort)!;
    assert.equal(owners.get(s.localPort), workers.get(w)?.pid, `session from port ${s.localPort}: worker ${w}'s pid`);
  }
  assert.notEqual(workers.get(1)?.pid, workers.get(2)?.pid);
  assert.notEqual(workers.get(1)?.pid, child.pid, 'workers are not the primary');
});

test('/metrics: every series labelled worker="N"; the per-worker values and their sums equal the totals', async () => {
  const clients = (await consoleRun(['SHOW CLIENTS'])).rows[0]!.filter((row) => row[col.user] === 'postgres');
  const perWorker = (w: string) => clients.filter((row) => row[col.worker] === w).length;
  for (let i = 0; i < 3; i++) {
    const m = await metrics();
    assert.equal(sum(m, 'pgtls_active_sessions', { worker: '1' }), perWorker('1'));
    assert.equal(sum(m, 'pgtls_active_sessions', { worker: '2' }), perWorker('2'));
    assert.equal(sum(m, 'pgtls_active_sessions'), N);
    assert.equal(sum(m, 'pgtls_workers', { state: 'up' }), 2);
    assert.equal(sum(m, 'pgtls_workers', { state: 'missing' }), 0);
    for (const s of m.get('process_resident_memory_bytes')?.samples ?? [])
      assert.match(s.labels.worker ?? '', /^[12]$/);
  }
  // Two sessions end: the connection counters, summed over the workers, equal the log lines the workers wrote.
  for (const s of sessions.slice(0, 2)) {
    await s.client.end();
    s.alive = false;
  }
  await sleep(500);
  const logged = logLines().filter((l) => l.msg === 'connection');
  const m = await metrics();
  assert.equal(sum(m, 'pgtls_connections_total'), logged.length);
  assert.equal(
    sum(m, 'pgtls_connections_total', { outcome: 'relayed' }),
    logged.filter((l) => l.outcome === 'relayed').length,
  );
  assert.equal(sum(m, 'pgtls_active_sessions'), N - 2);
  // SHOW STATS sums the same counters (its own session is still open, so not yet counted).
  const loggedBefore = logLines().filter((l) => l.msg === 'connection').length;
  const stats = new Map((await consoleRun(['SHOW STATS'])).rows[0]!.map((r) => [r[0]!, Number(r[1])]));
  assert.equal(stats.get('connections_total'), loggedBefore);
  assert.equal(stats.get('active_sessions'), N - 2);
  assert.equal(stats.get('workers_up'), 2);
  assert.equal(stats.get('workers_missing'), 0);
  // The status page shows the summed counters too.
  const page = await httpGet('/');
  assert.equal(page?.status, 200);
  assert.match(page!.body, /<span id="workers">2 of 2 workers answered<\/span>/);
  assert.match(page!.body, new RegExp(`<div class="v">${N - 2}</div><div class="k">active sessions`));
});

test('KILL_CLIENT reaches the worker that owns the session; an unknown id and a stats user are refused', async () => {
  const live = sessions.filter((s) => s.alive);
  const rows = (await consoleRun(['SHOW CLIENTS'])).rows[0]!.filter((row) => row[col.user] === 'postgres');
  // One session of each worker: whichever worker the console lands on, one of the two kills crosses workers.
  const victims = ['1', '2'].map((w) => rows.find((row) => row[col.worker] === w)!);
  for (const v of victims) {
    const r = await consoleRun([`KILL_CLIENT ${v[col.id]}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '', 'KILL_CLIENT answered without error');
    const s = live.find((x) => x.localPort === Number(v[col.port]))!;
    await assert.rejects(s.client.query('SELECT 1'));
    s.alive = false;
  }
  const unknown = await consoleRun(['KILL_CLIENT 999999']);
  assert.match(unknown.stderr, /ERROR: {2}42704: client not found/);
  const watcher = await consoleRun([`KILL_CLIENT ${rows[0]![col.id]}`], 'watcher');
  assert.match(watcher.stderr, /ERROR: {2}42501: admin access needed/);
  // The survivors still work.
  for (const s of sessions.filter((x) => x.alive))
    assert.equal((await s.client.query('SELECT 1 AS one')).rows[0].one, 1);
});

test('SET reaches every worker and RELOAD from the console resets every worker', async () => {
  const set = await consoleRun(["SET ssl_min_protocol_version = 'TLSv1.3'"]);
  assert.equal(set.stderr, '');
  assert.deepEqual(Object.fromEntries(await minVersionOn()), { 1: 'TLSv1.3 SET', 2: 'TLSv1.3 SET' });
  // Both workers now refuse TLS 1.2 (the connections alternate between them).
  for (let i = 0; i < 4; i++) {
    const c = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      password: SUPERUSER_PASSWORD,
      ssl: { rejectUnauthorized: false, maxVersion: 'TLSv1.2' },
    });
    await assert.rejects(c.connect(), /protocol version|unsupported protocol/i);
  }
  const reload = await consoleRun(['RELOAD']);
  assert.equal(reload.stderr, '');
  assert.deepEqual(Object.fromEntries(await minVersionOn()), { 1: 'TLSv1.2 default', 2: 'TLSv1.2 default' });
});

test('a worker that does not answer (SIGSTOP) is reported missing within the bound; the console still answers', async () => {
  const before = await workersTable();
  const stopped = before.get(1)!.pid!;
  process.kill(stopped, 'SIGSTOP');
  try {
    const r = await consoleUntilAnswered(['SHOW CLIENTS', 'SHOW WORKERS']);
    assert.match(r.stderr, /NOTICE: {2}00000: worker 1 did not answer within 1 s/);
    // Connecting (TLS) plus at most the 1 s wait, twice: well under the 15 s the run allows.
    assert.ok(r.ms < 6000, `answered in ${r.ms} ms`);
    const workersCol = new Set(r.rows[0]!.map((row) => row[col.worker]));
    assert.deepEqual([...workersCol], ['2'], "only the answering worker's rows");
    const states = Object.fromEntries(r.rows[1]!.map((row) => [row[0], row[2]]));
    assert.deepEqual(states, { 1: 'missing', 2: 'up' });
    const m = await metrics();
    assert.equal(sum(m, 'pgtls_workers', { state: 'missing' }), 1);
    assert.equal(sum(m, 'pgtls_workers', { state: 'up' }), 1);
    assert.equal(
      (m.get('pgtls_active_sessions')?.samples ?? []).filter((s) => s.labels.worker === '1').length,
      0,
      'no series from the stopped worker',
    );
    let page: Awaited<ReturnType<typeof httpGet>>;
    for (let i = 0; i < 6 && page?.status !== 200; i++) page = await httpGet('/');
    assert.match(page!.body, /<span id="workers">1 of 2 workers answered<\/span>/);
    assert.match(page!.body, /id="workers-missing">worker 1 did not answer \(missing from the counts\)/);
  } finally {
    process.kill(stopped, 'SIGCONT');
  }
  await sleep(300);
  const after = await workersTable();
  assert.equal(after.get(1)?.state, 'up');
  assert.equal(after.get(1)?.pid, stopped, 'a stopped worker is not replaced, only reported');
});

test('a worker killed with SIGKILL is replaced: SHOW WORKERS and the metrics count the restart', async () => {
  const before = await workersTable();
  const victim = before.get(2)!.pid!;
  const onVictim = sessions.filter((s) => s.alive && socketOwners().get(s.localPort) === victim);
  process.kill(victim, 'SIGKILL');
  // The console answers at once (the living worker takes every new connection meanwhile).
  const r = await consoleUntilAnswered(['SHOW WORKERS']);
  assert.ok(r.ms < 6000, `answered in ${r.ms} ms`);
  let w = await workersTable();
  for (let i = 0; i < 100 && !(w.get(2)?.state === 'up' && w.get(2)?.pid !== victim); i++) {
    await sleep(200);
    w = await workersTable();
  }
  assert.equal(w.get(2)?.state, 'up');
  assert.notEqual(w.get(2)?.pid, victim);
  assert.equal(w.get(2)?.restarts, 1);
  assert.equal(w.get(1)?.restarts, 0);
  for (const s of onVictim) await assert.rejects(s.client.query('SELECT 1'), 'its sessions died with it');
  const m = await metrics();
  assert.equal(sum(m, 'pgtls_worker_restarts'), 1);
  assert.equal(sum(m, 'pgtls_workers', { state: 'up' }), 2);
  const stats = new Map((await consoleRun(['SHOW STATS'])).rows[0]!.map((row) => [row[0]!, Number(row[1])]));
  assert.equal(stats.get('worker_restarts'), 1);
});

test("a replacement worker gets the console's SETs still in force, and none after a RELOAD dropped them", async () => {
  const replace = async (slot: number) => {
    const old = (await workersTable()).get(slot)!;
    process.kill(old.pid!, 'SIGKILL');
    let w = await workersTable();
    for (let i = 0; i < 100 && !(w.get(slot)?.state === 'up' && w.get(slot)?.restarts === old.restarts + 1); i++) {
      await sleep(200);
      w = await workersTable();
    }
    assert.equal(w.get(slot)?.restarts, old.restarts + 1);
  };
  const set = await consoleRun(["SET ssl_min_protocol_version = 'TLSv1.3'"]);
  assert.equal(set.stderr, '');
  await replace(1);
  assert.deepEqual(Object.fromEntries(await minVersionOn()), { 1: 'TLSv1.3 SET', 2: 'TLSv1.3 SET' });
  const reload = await consoleRun(['RELOAD']);
  assert.equal(reload.stderr, '');
  await replace(1);
  assert.deepEqual(Object.fromEntries(await minVersionOn()), { 1: 'TLSv1.2 default', 2: 'TLSv1.2 default' });
});
