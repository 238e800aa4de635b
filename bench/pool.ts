/**
 * Pooling benchmark, in one run: direct PostgreSQL vs PgBouncer (Debian's /usr/sbin/pgbouncer, started here with a
 * generated ini) vs the pgtls pool behind its plaintext test front end (test/support/pool-front.ts, in a process of
 * its own), same mode and pool size, same loopback TCP hop to PostgreSQL, plaintext on the client side for all three
 * (the TLS front comes when the pool is wired into the gateway):
 *
 *   session      pgbench -S -C -c 4 -T S            (a new connection per transaction; pool_size 20)
 *   transaction  pgbench -S -c 100 -j 2 -T S -M simple | -M prepared   (pool_size 4)
 *
 * PostgreSQL trusts loopback here, so no target pays for password authentication. Prints TPS, ratios, and the
 * proxies' CPU per transaction (µs, from /proc).
 *
 *   npm run build && node dist/bench/pool.js [--seconds 15] [--only session|simple|prepared] [--write docs/benchmarks.md]
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { appendFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureCluster, postgresRunAs, startCluster } from '../src/gateway/embedded-postgres.js';
import { cpuOf, freePort, waitPort } from './support.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    only: { type: 'string' },
    write: { type: 'string' },
    // Internal: run the pool front end in this process (spawned by the benchmark itself).
    'serve-front': { type: 'string' },
  },
});

async function serveFront(spec: string): Promise<void> {
  const { startPoolFront } = await import('../test/support/pool-front.js');
  const s = JSON.parse(spec) as { pgPort: number; port: number; mode: 'session' | 'transaction'; size: number };
  const f = await startPoolFront({
    upstream: { host: '127.0.0.1', port: s.pgPort, sslmode: 'disable', sslrootcert: '', sslcert: '', sslkey: '' },
    settings: { pool_mode: s.mode, default_pool_size: s.size },
    passwords: {},
  });
  // A normal exit on a signal, so that `node --cpu-prof` writes its profile.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(0));
  process.stdout.write(`${f.port}\n`);
}

function cpuSince(pid: number, from: { user: number; sys: number }): { user: number; sys: number } {
  const now = cpuOf(pid);
  return { user: now.user - from.user, sys: now.sys - from.sys };
}

interface Run {
  readonly tps: number;
  readonly transactions: number;
  readonly error?: string;
}

function pgbench(port: number, args: string[], seconds: number): Run {
  const r = spawnSync(
    'pgbench',
    ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-n', '-S', '-T', String(seconds), ...args, 'postgres'],
    { encoding: 'utf8', env: { ...process.env, PGSSLMODE: 'disable' }, timeout: (seconds + 60) * 1000 },
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
}

const SCENARIOS: Scenario[] = [
  { name: 'session', mode: 'session', size: 20, args: ['-C', '-c', '4', '-j', '1'] },
  { name: 'simple', mode: 'transaction', size: 4, args: ['-c', '100', '-j', '2', '-M', 'simple'] },
  { name: 'prepared', mode: 'transaction', size: 4, args: ['-c', '100', '-j', '2', '-M', 'prepared'] },
];

async function main(): Promise<void> {
  const seconds = Number(opt.seconds);
  const work = mkdtempSync(join(tmpdir(), 'pgtls-pool-bench-'));
  execFileSync('chmod', ['755', work]);
  const runAs = await postgresRunAs();
  const own = (p: string) => {
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
    process.stderr.write('bench: PostgreSQL …\n');
    const dataDir = join(work, 'pg');
    await ensureCluster({ dataDir, password: 'bench', authHost: 'trust' });
    const pgPort = await freePort();
    const pg = await startCluster({
      dataDir,
      port: pgPort,
      settings: { max_connections: '200', shared_buffers: '128MB' },
    });
    stopPg = () => pg.stop();
    execFileSync(
      'pgbench',
      ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', 'postgres'],
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PGSSLMODE: 'disable' } },
    );
    const bouncerVersion = execFileSync('/usr/sbin/pgbouncer', ['--version'], { encoding: 'utf8' }).split('\n')[0]!;
    say(
      `pool benchmark — ${new Date().toISOString().slice(0, 16)}Z, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${bouncerVersion}, PostgreSQL ${pg.binaries.version}, ${seconds} s per run, plaintext, proxies → PostgreSQL over loopback TCP`,
    );
    say('');
    say(
      '| scenario | direct TPS | PgBouncer TPS | pgtls pool TPS | pool / PgBouncer | pool / direct | CPU µs/tx PgBouncer (user + sys) | CPU µs/tx pool (user + sys) |',
    );
    say('|---|---|---|---|---|---|---|---|');
    for (const sc of SCENARIOS) {
      if (opt.only && opt.only !== sc.name) continue;
      process.stderr.write(`bench: ${sc.name} …\n`);
      // PgBouncer in the same mode and pool size.
      const bPort = await freePort();
      const ini = join(work, `pgbouncer-${sc.name}.ini`);
      writeFileSync(join(work, 'userlist.txt'), '"postgres" ""\n');
      writeFileSync(
        ini,
        [
          '[databases]',
          `postgres = host=127.0.0.1 port=${pgPort} dbname=postgres`,
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
          'unix_socket_dir =',
          'logfile =',
          'log_connections = 0',
          'log_disconnections = 0',
        ].join('\n'),
      );
      own(ini);
      own(join(work, 'userlist.txt'));
      const bouncer = spawn('/usr/sbin/pgbouncer', [ini], { ...runAs, stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(bouncer);
      const fPort = await freePort();
      const front = spawn(
        process.execPath,
        [
          new URL(import.meta.url).pathname,
          '--serve-front',
          JSON.stringify({ pgPort, port: fPort, mode: sc.mode, size: sc.size }),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(front);
      const frontPort = await new Promise<number>((res, rej) => {
        front.stdout!.once('data', (d: Buffer) => res(Number(d.toString().trim())));
        front.once('exit', () => rej(new Error('pool front exited')));
      });
      await waitPort(bPort);
      const direct = pgbench(pgPort, sc.args, seconds);
      const b0 = cpuOf(bouncer.pid!);
      const bouncerRun = pgbench(bPort, sc.args, seconds);
      const bCpu = cpuSince(bouncer.pid!, b0);
      const f0 = cpuOf(front.pid!);
      const poolRun = pgbench(frontPort, sc.args, seconds);
      const fCpu = cpuSince(front.pid!, f0);
      bouncer.kill('SIGTERM');
      front.kill('SIGTERM');
      const show = (r: Run) => (r.error ? `failed: ${r.error}` : r.tps.toFixed(0));
      const ratio = (a: Run, b: Run) => (a.error || b.error ? 'n/a' : (a.tps / b.tps).toFixed(2));
      const per = (cpu: { user: number; sys: number }, r: Run) =>
        r.transactions > 0
          ? `${(cpu.user / r.transactions).toFixed(1)} + ${(cpu.sys / r.transactions).toFixed(1)}`
          : 'n/a';
      say(
        `| ${sc.mode} \`pgbench -S ${sc.args.join(' ')}\`, pool ${sc.size} | ${show(direct)} | ${show(bouncerRun)} | ${show(poolRun)} | ${ratio(poolRun, bouncerRun)} | ${ratio(poolRun, direct)} | ${per(bCpu, bouncerRun)} | ${per(fCpu, poolRun)} |`,
      );
      await new Promise((r) => setTimeout(r, 500));
    }
    if (opt.write) appendFileSync(opt.write, `\n## Pooling (bench/pool.ts)\n\n${lines.join('\n')}\n`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await stopPg?.().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

if (opt['serve-front']) void serveFront(opt['serve-front']);
else
  main().catch((e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  });
