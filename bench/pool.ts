/**
 * Pooling benchmark, in one run: direct PostgreSQL (ssl = on) vs PgBouncer (Debian's /usr/sbin/pgbouncer) vs the
 * pgtls gateway (`pgtls serve` with `pool_mode`), same mode and pool size, same certificate, TLS on the client side
 * for all three (`--plain` for plaintext), same hop to PostgreSQL (loopback TCP, or `--hop unix`):
 *
 *   session      pgbench -S -C -c 4 -j 1             (a new connection per transaction; pool_size 20)
 *   simple       pgbench -S -c 100 -j 2 -M simple    (transaction pooling, pool_size 4)
 *   prepared     pgbench -S -c 100 -j 2 -M prepared  (transaction pooling, pool_size 4)
 *
 * Everyone trusts loopback (PostgreSQL's pg_hba, PgBouncer's auth_type, the gateway's hba), so no target pays for
 * password authentication and the comparison is the proxies' own work. Prints TPS, ratios and the proxies' CPU per
 * transaction (µs, from /proc).
 *
 *   npm run build && node dist/bench/pool.js [--seconds 15] [--warmup 0] [--only session|simple|prepared] [--plain]
 *                                            [--hop tcp|unix] [--native on|off] [--callgrind [--callgrind-tx N]]
 *                                            [--cpu-prof DIR] [--node-arg ARG] [--target direct|pgbouncer|pgtls] [--write docs/benchmarks.md]
 *                                            [--rounds N] [--set name=value]
 *
 * With --rounds N the three targets run N times each, in a rotating order (drift of the machine's load hits all
 * alike); the row shows median TPS, the median of the per-round ratios, and every round's pgtls / PgBouncer.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureCluster, postgresRunAs, startCluster } from '../src/gateway/embedded-postgres.js';
import { createRootCA, createServerCert } from '../src/pki/generate.js';
import { callgrindPerTx, cpuOf, freePort, waitPort } from './support.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    /** Measured runs per target, interleaved (one run of 10–15 s swings ±10 % on a shared 2-core machine). */
    rounds: { type: 'string', default: '1' },
    /**
     * Seconds of the same load on each target before its measured run, not counted: a gateway just started runs its
     * per-connection JavaScript in the interpreter until V8 has optimized it (a -C run of 15 s is ~5,000
     * connections, much of it warm-up), while PgBouncer and PostgreSQL have nothing to warm up.
     */
    warmup: { type: 'string', default: '0' },
    only: { type: 'string' },
    plain: { type: 'boolean', default: false },
    hop: { type: 'string', default: 'tcp' },
    /** Write a V8 CPU profile of the gateway to this directory (node --cpu-prof). */
    'cpu-prof': { type: 'string' },
    /** More options for the gateway's node (e.g. --perf-basic-prof for `perf record`). */
    'node-arg': { type: 'string', multiple: true },
    /** More gateway settings, `name=value` (e.g. --set server_reset_query= to see what the reset costs). */
    set: { type: 'string', multiple: true },
    /** Which targets to run (e.g. --target pgtls while profiling); default all three. */
    target: { type: 'string', multiple: true },
    /** The gateway's native_data_plane (off | on | auto; default auto, the gateway's own default). */
    native: { type: 'string', default: 'auto' },
    /** Also count the gateway's instructions per transaction under callgrind (load-independent; slow). */
    callgrind: { type: 'boolean', default: false },
    /**
     * With --callgrind: measure over N transactions per client (warm-up N, then N/4 and N) instead of 20/20/60
     * seconds, so that a loaded machine (fewer transactions per second under valgrind) does not leave more JIT
     * warm-up in the difference. The session scenario's -C makes each transaction a connection.
     */
    'callgrind-tx': { type: 'string' },
    /** Keep the work directory (callgrind dumps, configs) and print where it is. */
    'keep-work': { type: 'boolean', default: false },
    write: { type: 'string' },
  },
});

interface Run {
  readonly tps: number;
  readonly transactions: number;
  readonly error?: string;
}

/** pgbench for `seconds` — or, with `perClient`, for that many transactions per client (-t) whatever they take. */
function pgbench(port: number, args: string[], seconds: number, perClient?: number): Run {
  const length = perClient === undefined ? ['-T', String(seconds)] : ['-t', String(perClient)];
  const r = spawnSync(
    'pgbench',
    ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-S', ...length, ...args, 'postgres'],
    {
      encoding: 'utf8',
      env: { ...process.env, PGSSLMODE: opt.plain ? 'disable' : 'require' },
      timeout: (perClient === undefined ? seconds + 60 : 1800) * 1000,
    },
  );
  const out = `${r.stdout}\n${r.stderr}`;
  const m =
    /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(out) ??
    /tps = ([\d.]+)/.exec(out);
  const n = /number of transactions actually processed: (\d+)/.exec(out);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  if (r.status !== 0 || !m || !n || (failed && Number(failed[1]) > 0)) {
    const err = out
      .split('\n')
      .find((l) => /error|FATAL|ERROR|aborted/i.test(l))
      ?.trim();
    return { tps: 0, transactions: 0, error: err ?? `pgbench exit ${r.status}` };
  }
  return { tps: Number(m[1]), transactions: Number(n[1]) };
}

interface Scenario {
  readonly name: string;
  readonly mode: 'session' | 'transaction';
  readonly size: number;
  readonly args: string[];
  /** The load under callgrind: fewer clients (Node runs ~50 × slower there), still more clients than servers. */
  readonly cgArgs: string[];
}

const SCENARIOS: Scenario[] = [
  { name: 'session', mode: 'session', size: 20, args: ['-C', '-c', '4', '-j', '1'], cgArgs: ['-C', '-c', '2'] },
  {
    name: 'simple',
    mode: 'transaction',
    size: 4,
    args: ['-c', '100', '-j', '2', '-M', 'simple'],
    cgArgs: ['-c', '12', '-M', 'simple'],
  },
  {
    name: 'prepared',
    mode: 'transaction',
    size: 4,
    args: ['-c', '100', '-j', '2', '-M', 'prepared'],
    cgArgs: ['-c', '12', '-M', 'prepared'],
  },
];

const cpuSince = (pid: number, from: { user: number; sys: number }) => {
  const now = cpuOf(pid);
  return { user: now.user - from.user, sys: now.sys - from.sys };
};

async function main(): Promise<void> {
  const seconds = Number(opt.seconds);
  const rounds = Math.max(1, Number(opt.rounds) || 1);
  const work = mkdtempSync(join(tmpdir(), 'pgtls-pool-bench-'));
  execFileSync('chmod', ['755', work]);
  const runAs = await postgresRunAs();
  const own = (p: string) => {
    execFileSync('chmod', ['600', p]);
    if (runAs.uid !== undefined) chownSync(p, runAs.uid, runAs.gid!);
  };
  const children: ChildProcess[] = [];
  let stopPg: (() => Promise<void>) | undefined;
  const lines: string[] = [];
  const say = (l: string) => {
    process.stdout.write(`${l}\n`);
    lines.push(l);
  };
  try {
    process.stderr.write('bench: certificates, PostgreSQL …\n');
    const root = await createRootCA({ subject: { CN: 'pool bench root' } });
    const leaf = await createServerCert(root, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
    const dataDir = join(work, 'pg');
    await ensureCluster({ dataDir, password: 'bench', authHost: 'trust' });
    // One certificate for all three; each process gets its own copy owned by the user it runs as.
    for (const dir of [work, dataDir]) {
      writeFileSync(join(dir, 'server.crt'), leaf.certPem);
      writeFileSync(join(dir, 'server.key'), leaf.keyPem);
      own(join(dir, 'server.crt'));
      own(join(dir, 'server.key'));
    }
    // Written, not copied: Node 24's cpSync keeps the source's owner (postgres) when root copies, and the gateway
    // (root) then refuses the key as PostgreSQL would.
    writeFileSync(join(work, 'gateway.key'), leaf.keyPem, { mode: 0o600 });
    const pgPort = await freePort();
    const pg = await startCluster({
      dataDir,
      port: pgPort,
      settings: {
        max_connections: '200',
        shared_buffers: '128MB',
        ...(opt.plain ? {} : { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' }),
      },
    });
    stopPg = () => pg.stop();
    execFileSync(
      'pgbench',
      ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', 'postgres'],
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PGSSLMODE: 'disable' } },
    );
    const hopHost = opt.hop === 'unix' ? pg.socketDir : '127.0.0.1';
    const bouncerVersion = execFileSync('/usr/sbin/pgbouncer', ['--version'], { encoding: 'utf8' }).split('\n')[0]!;
    say(
      `pool benchmark — ${new Date().toISOString().slice(0, 16)}Z, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${bouncerVersion}, PostgreSQL ${pg.binaries.version}, ${seconds} s per run${Number(opt.warmup) > 0 ? ` after ${opt.warmup} s of warm-up` : ''}, ${opt.plain ? 'plaintext' : 'TLS (sslmode=require, one ECDSA certificate)'} to the client, proxies → PostgreSQL over ${opt.hop === 'unix' ? 'its Unix socket' : 'loopback TCP'}`,
    );
    say('');
    say(
      `| scenario | direct TPS | PgBouncer TPS | pgtls TPS | pgtls / PgBouncer | pgtls / direct | CPU µs/tx PgBouncer (user + sys) | CPU µs/tx pgtls (user + sys) |${rounds > 1 ? ' pgtls / PgBouncer by round |' : ''}`,
    );
    say(`|---|---|---|---|---|---|---|---|${rounds > 1 ? '---|' : ''}`);
    writeFileSync(join(work, 'userlist.txt'), '"postgres" ""\n');
    own(join(work, 'userlist.txt'));
    const gatewayConf = (sc: Scenario, port: number, dataName: string): string => {
      const conf = join(work, `pgtls-${dataName}.conf`);
      writeFileSync(
        conf,
        [
          "listen_addresses = '127.0.0.1'",
          `port = ${port}`,
          `ssl = ${opt.plain ? 'off' : 'on'}`,
          `require_secure_transport = ${opt.plain ? 'off' : 'on'}`,
          "ssl_cert_file = 'server.crt'",
          "ssl_key_file = 'gateway.key'",
          "hba_file = 'hba.conf'",
          `upstream = 'postgres://${encodeURIComponent(hopHost)}:${pgPort}'`,
          "upstream_sslmode = 'disable'",
          `pool_mode = ${sc.mode}`,
          `default_pool_size = ${sc.size}`,
          'max_client_conn = 500',
          'log_connections = off',
          `native_data_plane = ${opt.native}`,
          `data_directory = '${join(work, dataName)}'`,
          ...(opt.set ?? []).map((kv) => {
            const i = kv.indexOf('=');
            if (i <= 0) throw new Error(`--set ${kv}: expected name=value`);
            return `${kv.slice(0, i)} = '${kv.slice(i + 1).replaceAll("'", "''")}'`;
          }),
        ].join('\n'),
      );
      return conf;
    };
    writeFileSync(join(work, 'hba.conf'), `${opt.plain ? 'host' : 'hostssl'} all all 127.0.0.1/32 trust\n`);
    const cg: string[] = [];
    for (const sc of SCENARIOS) {
      if (opt.only && opt.only !== sc.name) continue;
      process.stderr.write(`bench: ${sc.name} …\n`);
      const bPort = await freePort();
      const ini = join(work, `pgbouncer-${sc.name}.ini`);
      writeFileSync(
        ini,
        [
          '[databases]',
          `postgres = host=${hopHost} port=${pgPort} dbname=postgres`,
          '[pgbouncer]',
          'listen_addr = 127.0.0.1',
          `listen_port = ${bPort}`,
          'auth_type = trust',
          `auth_file = ${join(work, 'userlist.txt')}`,
          `pool_mode = ${sc.mode}`,
          `default_pool_size = ${sc.size}`,
          'max_client_conn = 500',
          // Only PgBouncer ≥ 1.21 knows it; 1.18 warns about an unknown key and goes on.
          ...(bouncerVersion.match(/1\.(2\d|[3-9]\d)/) ? ['max_prepared_statements = 200'] : []),
          ...(opt.plain
            ? []
            : [
                'client_tls_sslmode = require',
                `client_tls_cert_file = ${join(work, 'server.crt')}`,
                `client_tls_key_file = ${join(work, 'server.key')}`,
              ]),
          'server_tls_sslmode = disable',
          'unix_socket_dir =',
          'logfile =',
          'log_connections = 0',
          'log_disconnections = 0',
        ].join('\n'),
      );
      own(ini);
      const bouncer = spawn('/usr/sbin/pgbouncer', [ini], { ...runAs, stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(bouncer);
      const gPort = await freePort();
      const conf = gatewayConf(sc, gPort, `gw-${sc.name}`);
      const gw = spawn(
        process.execPath,
        [
          ...(opt['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', opt['cpu-prof']] : []),
          ...(opt['node-arg'] ?? []),
          new URL('../src/cli/main.js', import.meta.url).pathname,
          'serve',
          '--config',
          conf,
        ],
        // With extra node options (tracing) the gateway's stdout is shown.
        { stdio: ['ignore', opt['node-arg'] ? 'inherit' : 'ignore', 'inherit'] },
      );
      children.push(gw);
      await waitPort(bPort);
      await waitPort(gPort);
      const want = (t: string) => !opt.target || opt.target.includes(t);
      const skipped: Run = { tps: 0, transactions: 0, error: 'not run' };
      const warmup = Number(opt.warmup);
      if (warmup > 0) {
        process.stderr.write(`bench: ${warmup} s of warm-up per target …\n`);
        if (want('direct')) pgbench(pgPort, sc.args, warmup);
        if (want('pgbouncer')) pgbench(bPort, sc.args, warmup);
        if (want('pgtls')) pgbench(gPort, sc.args, warmup);
      }
      const show = (r: Run) => (r.error ? `failed: ${r.error}` : r.tps.toFixed(0));
      const targets = [
        { name: 'direct', port: pgPort, pid: undefined },
        { name: 'pgbouncer', port: bPort, pid: bouncer.pid },
        { name: 'pgtls', port: gPort, pid: gw.pid },
      ] as const;
      const runs: Record<(typeof targets)[number]['name'], Run[]> = { direct: [], pgbouncer: [], pgtls: [] };
      const cpu = { direct: { user: 0, sys: 0 }, pgbouncer: { user: 0, sys: 0 }, pgtls: { user: 0, sys: 0 } };
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < targets.length; i++) {
          // Round r starts with target r mod 3: direct, PgBouncer, pgtls in the first round as always.
          const t = targets[(i + round) % targets.length]!;
          if (!want(t.name)) {
            runs[t.name].push(skipped);
            continue;
          }
          if (t.name === 'pgtls' && round === 0) process.stderr.write(`bench: pgtls pid ${gw.pid}\n`);
          const c0 = t.pid === undefined ? undefined : cpuOf(t.pid);
          const run = pgbench(t.port, sc.args, seconds);
          runs[t.name].push(run);
          if (t.pid !== undefined && c0) {
            const d = cpuSince(t.pid, c0);
            cpu[t.name].user += d.user;
            cpu[t.name].sys += d.sys;
          }
          if (rounds > 1) process.stderr.write(`bench: round ${round + 1}/${rounds} ${t.name} ${show(run)} tps\n`);
        }
      }
      bouncer.kill('SIGTERM');
      gw.kill('SIGINT');
      await new Promise((r) => gw.once('exit', r));
      const median = (xs: number[]) => {
        const v = [...xs].sort((a, b) => a - b);
        return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
      };
      /** The target's runs as one: the median TPS, all transactions (for CPU per transaction); failed if any failed. */
      const merged = (rs: Run[]): Run => {
        const bad = rs.find((r) => r.error);
        if (bad) return bad;
        return { tps: median(rs.map((r) => r.tps)), transactions: rs.reduce((n, r) => n + r.transactions, 0) };
      };
      const direct = merged(runs.direct);
      const bouncerRun = merged(runs.pgbouncer);
      const gwRun = merged(runs.pgtls);
      /** The median of the per-round ratios: each round's targets ran minutes apart at most. */
      const ratio = (a: Run[], b: Run[]) =>
        a.some((r) => r.error) || b.some((r) => r.error)
          ? 'n/a'
          : median(a.map((r, i) => r.tps / b[i]!.tps)).toFixed(2);
      const per = (c: { user: number; sys: number }, r: Run) =>
        r.transactions > 0 ? `${(c.user / r.transactions).toFixed(1)} + ${(c.sys / r.transactions).toFixed(1)}` : 'n/a';
      const byRound =
        rounds > 1
          ? ` ${runs.pgtls.map((r, i) => (r.error || runs.pgbouncer[i]!.error ? 'n/a' : (r.tps / runs.pgbouncer[i]!.tps).toFixed(2))).join(', ')} |`
          : '';
      say(
        `| ${sc.mode} \`pgbench -S ${sc.args.join(' ')}\`, pool ${sc.size} | ${show(direct)} | ${show(bouncerRun)} | ${show(gwRun)} | ${ratio(runs.pgtls, runs.pgbouncer)} | ${ratio(runs.pgtls, runs.direct)} | ${per(cpu.pgbouncer, bouncerRun)} | ${per(cpu.pgtls, gwRun)} |${byRound}`,
      );
      if (opt.callgrind) {
        process.stderr.write(`bench: ${sc.name} under callgrind (minutes) …\n`);
        const cgTx = opt['callgrind-tx'] === undefined ? undefined : Number(opt['callgrind-tx']);
        const cgPort = await freePort();
        const cgDir = join(work, `callgrind-${sc.name}`);
        mkdirSync(cgDir);
        const cgConf = gatewayConf(sc, cgPort, `gw-cg-${sc.name}`);
        const r = await callgrindPerTx(
          [process.execPath, new URL('../src/cli/main.js', import.meta.url).pathname, 'serve', '--config', cgConf],
          cgPort,
          cgDir,
          (n) => ({ tx: pgbench(cgPort, sc.cgArgs, n, cgTx === undefined ? undefined : n).transactions }),
          cgTx === undefined
            ? { warmup: 20, short: 20, long: 60 }
            : { warmup: cgTx, short: Math.max(1, Math.round(cgTx / 4)), long: cgTx },
        );
        const k = (x: number) => `${Math.round(x / 100) / 10}k`;
        cg.push(
          `| ${sc.mode} \`pgbench -S ${sc.cgArgs.join(' ')}\`, pool ${sc.size} | ${Math.round(r.perTx)} | ${k(r.foregroundPerTx)} | ${k(r.handshakePerTx)} | ${k(r.foregroundPerTx - r.handshakePerTx)} |`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    if (cg.length > 0) {
      say('');
      // The event loop's own work (V8's background compiler and GC threads left out), and of that the TLS
      // handshake in OpenSSL and the rest (Node, V8, the phases, the relay): steadier than the whole.
      say(
        '| under callgrind | gateway instructions per transaction | without background threads | TLS handshake | the rest |',
      );
      say('|---|---|---|---|---|');
      for (const l of cg) say(l);
    }
    if (opt.write) appendFileSync(opt.write, `\n${lines.join('\n')}\n`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await stopPg?.().catch(() => undefined);
    if (opt['keep-work']) process.stderr.write(`bench: work directory kept: ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
