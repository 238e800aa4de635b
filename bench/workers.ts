/**
 * Does the gateway scale with `workers` where the gateway, not PostgreSQL, is the bottleneck? In one run:
 * a fast fake backend (bench/fake-backend.c: protocol v3 just far enough for pgbench, one thread, epoll, a fixed
 * one-row answer to every query) stands in for PostgreSQL, so the backend costs a few µs per transaction; pgbench
 * (TLS, sslmode=require, a `pgbench -S`-like script, persistent connections) drives the gateway with workers = 1 and
 * workers = 2. Every party is pinned with taskset, and the script reads each one's CPU time (/proc) and each core's
 * busy time (/proc/stat), so the report says who was the bottleneck, not only the tps.
 *
 * The machine this was written on has 2 cores, so the layouts are:
 *   isolated  gateway on core 1 only; pgbench + fake backend on core 0 only.
 *             With workers = 1 the gateway's one core is the bottleneck (core 1 ~100 % busy, core 0 not):
 *             the gateway's throughput per core. workers = 2 on the same single core is the control: the cost of
 *             the cluster itself, no extra CPU to use.
 *   shared    gateway, pgbench and fake backend all on cores 0–1: workers = 2 may use the second core, but only
 *             what pgbench's TLS and the backend leave of it.
 * With more cores, give the gateway N cores and the load the others, and compare workers = 1 and N in the isolated
 * layout (--gateway-cpus, --load-cpus).
 *
 *   npm run build && node dist/bench/workers.js [--seconds 10] [--rounds 3] [--clients 16] [--protocol simple]
 *                                               [--gateway-cpus 1] [--load-cpus 0] [--write docs/benchmarks.md]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createIntermediateCA, createRootCA, createServerCert } from '../src/pki/generate.js';
import { cpuOf, freePort, median, waitPort } from './support.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '16' },
    /** pgbench -M: simple, extended or prepared. */
    protocol: { type: 'string', default: 'simple' },
    /** The isolated layout's cores: the gateway's, and pgbench's + the fake backend's. */
    'gateway-cpus': { type: 'string', default: '1' },
    'load-cpus': { type: 'string', default: '0' },
    write: { type: 'string' },
  },
});
const seconds = Number(opt.seconds);
const rounds = Number(opt.rounds);
const allCpus = cpus()
  .map((_, i) => i)
  .join(',');

interface Layout {
  readonly name: string;
  readonly workers: number;
  readonly gatewayCpus: string;
  readonly loadCpus: string;
}

const LAYOUTS: readonly Layout[] = [
  { name: 'isolated, workers = 1', workers: 1, gatewayCpus: opt['gateway-cpus']!, loadCpus: opt['load-cpus']! },
  { name: 'isolated, workers = 2', workers: 2, gatewayCpus: opt['gateway-cpus']!, loadCpus: opt['load-cpus']! },
  { name: 'shared, workers = 1', workers: 1, gatewayCpus: allCpus, loadCpus: allCpus },
  { name: 'shared, workers = 2', workers: 2, gatewayCpus: allCpus, loadCpus: allCpus },
];

/** Busy and total jiffies per core, from /proc/stat. */
function coreTimes(): { busy: number; total: number }[] {
  return readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((l) => /^cpu\d+ /.test(l))
    .map((l) => {
      const f = l.split(/\s+/).slice(1).map(Number);
      const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
      const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
      return { busy: total - idle, total };
    });
}

/** CPU used so far by the children this process has waited for (pgbench runs), in µs: cutime + cstime. */
function waitedChildrenCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return ((Number(f[13]) + Number(f[14])) * 1e6) / tck;
}

interface Sample {
  readonly tps: number;
  readonly tx: number;
  readonly gatewayUs: number;
  readonly pgbenchUs: number;
  readonly backendUs: number;
  readonly coreBusy: number[];
}

function pgbench(port: number, script: string, loadCpus: string): { tps: number; tx: number } {
  const threads = loadCpus.split(',').length;
  const out = execFileSync(
    'taskset',
    [
      '-c',
      loadCpus,
      'pgbench',
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'bench',
      '-n',
      '-M',
      opt.protocol!,
      '-f',
      script,
      '-c',
      opt.clients!,
      '-j',
      String(threads),
      '-T',
      String(seconds),
      'postgres',
    ],
    { env: { ...process.env, PGSSLMODE: 'require' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(out) ?? /tps = ([\d.]+)/.exec(out);
  const n = /number of transactions actually processed: (\d+)/.exec(out);
  if (!m || !n) throw new Error(`no tps in pgbench output:\n${out}`);
  return { tps: Number(m[1]), tx: Number(n[1]) };
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'pgtls-bench-workers-'));
  const children: ChildProcess[] = [];
  try {
    process.stderr.write('bench: fake backend (cc -O2) …\n');
    const fakeBin = join(work, 'fake-backend');
    execFileSync('cc', ['-O2', '-o', fakeBin, new URL('../../bench/fake-backend.c', import.meta.url).pathname]);
    const root = await createRootCA({ subject: { CN: 'bench root' } });
    const inter = await createIntermediateCA(root, { subject: { CN: 'bench intermediate' } });
    const leaf = await createServerCert(inter, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
    writeFileSync(join(work, 'server.crt'), leaf.certPem + inter.certPem);
    writeFileSync(join(work, 'server.key'), leaf.keyPem, { mode: 0o600 });
    const script = join(work, 'select.sql');
    // pgbench -S's statement; the fake backend answers it (and anything) with one row.
    writeFileSync(script, '\\set aid random(1, 100000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n');

    // One fake backend per load placement, pinned with the load.
    const backends = new Map<string, { port: number; pid: number }>();
    for (const cpusOf of new Set(LAYOUTS.map((l) => l.loadCpus))) {
      const port = await freePort();
      const p = spawn('taskset', ['-c', cpusOf, fakeBin, String(port)], { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(p);
      await waitPort(port);
      backends.set(cpusOf, { port, pid: p.pid! });
    }

    const gateways: { layout: Layout; port: number; pid: number }[] = [];
    for (const [i, layout] of LAYOUTS.entries()) {
      const port = await freePort();
      const conf = join(work, `gw-${i}.conf`);
      writeFileSync(
        conf,
        [
          "listen_addresses = '127.0.0.1'",
          `port = ${port}`,
          `ssl_cert_file = '${join(work, 'server.crt')}'`,
          `ssl_key_file = '${join(work, 'server.key')}'`,
          `upstream = 'postgres://127.0.0.1:${backends.get(layout.loadCpus)!.port}'`,
          'upstream_sslmode = disable',
          // One log line per connection is cheap, but nothing here needs it.
          'log_connections = off',
          `workers = ${layout.workers}`,
          `data_directory = '${join(work, `gw-${i}`)}'`,
          '',
        ].join('\n'),
      );
      process.stderr.write(`bench: gateway ${layout.name} on cpus ${layout.gatewayCpus} …\n`);
      // taskset execs node: the pid is the gateway's (the primary; with workers, their parent).
      const gw = spawn(
        'taskset',
        [
          '-c',
          layout.gatewayCpus,
          process.execPath,
          new URL('../src/cli/main.js', import.meta.url).pathname,
          'serve',
          '--config',
          conf,
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      children.push(gw);
      await waitPort(port);
      gateways.push({ layout, port, pid: gw.pid! });
    }
    // Let the workers finish starting (all listen before the primary reports ready; the port answers earlier).
    await new Promise((r) => setTimeout(r, 1000));

    const samples = new Map<string, Sample[]>(LAYOUTS.map((l) => [l.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const g of gateways) {
        const backend = backends.get(g.layout.loadCpus)!;
        const gw0 = cpuOf(g.pid);
        const be0 = cpuOf(backend.pid);
        const pb0 = waitedChildrenCpu();
        const cores0 = coreTimes();
        const run = pgbench(g.port, script, g.layout.loadCpus);
        const cores1 = coreTimes();
        const gw1 = cpuOf(g.pid);
        const be1 = cpuOf(backend.pid);
        const pb1 = waitedChildrenCpu();
        const s: Sample = {
          tps: run.tps,
          tx: run.tx,
          gatewayUs: (gw1.user + gw1.sys - gw0.user - gw0.sys) / run.tx,
          backendUs: (be1.user + be1.sys - be0.user - be0.sys) / run.tx,
          pgbenchUs: (pb1 - pb0) / run.tx,
          coreBusy: cores1.map((c, i) => (c.busy - cores0[i]!.busy) / Math.max(1, c.total - cores0[i]!.total)),
        };
        samples.get(g.layout.name)!.push(s);
        process.stderr.write(
          `bench: round ${r + 1}/${rounds} ${g.layout.name.padEnd(22)} ${s.tps.toFixed(0)} tps, gateway ${s.gatewayUs.toFixed(1)} µs/tx, cores ${s.coreBusy.map((b) => `${(b * 100).toFixed(0)}%`).join(' ')}\n`,
        );
      }
    }

    const med = (name: string, f: (s: Sample) => number) => median(samples.get(name)!.map(f));
    const tps = (name: string) => med(name, (s) => s.tps);
    const rows = LAYOUTS.map((l) => {
      const busy = samples.get(l.name)![0]!.coreBusy.map((_, i) => med(l.name, (s) => s.coreBusy[i]!));
      const t = tps(l.name);
      const gwCores = (t * med(l.name, (s) => s.gatewayUs)) / 1e6;
      const loadCores = (t * med(l.name, (s) => s.pgbenchUs + s.backendUs)) / 1e6;
      // What the cores were busy with beyond these three: other processes on the machine.
      const others = busy.reduce((a, b) => a + b, 0) - gwCores - loadCores;
      return `| ${l.name} | ${l.gatewayCpus} | ${l.loadCpus} | ${t.toFixed(0)} | ${med(l.name, (s) => s.gatewayUs).toFixed(1)} | ${med(l.name, (s) => s.pgbenchUs).toFixed(1)} | ${med(l.name, (s) => s.backendUs).toFixed(1)} | ${gwCores.toFixed(2)} | ${loadCores.toFixed(2)} | ${Math.max(0, others).toFixed(2)} | ${busy.map((b) => `${(b * 100).toFixed(0)} %`).join(' / ')} |`;
    });
    const ratio = (a: string, b: string) => (tps(a) / tps(b)).toFixed(2);
    const othersOf = (l: Layout) => {
      const t = tps(l.name);
      const used = (t * med(l.name, (s) => s.gatewayUs + s.pgbenchUs + s.backendUs)) / 1e6;
      const busy = samples.get(l.name)![0]!.coreBusy.map((_, i) => med(l.name, (s) => s.coreBusy[i]!));
      return Math.max(0, busy.reduce((a, b) => a + b, 0) - used);
    };
    const others = LAYOUTS.reduce((a, l) => a + othersOf(l), 0) / LAYOUTS.length;
    const gw1 = med(LAYOUTS[0]!.name, (s) => s.gatewayUs);
    const gw2 = med(LAYOUTS[1]!.name, (s) => s.gatewayUs);
    const date = new Date().toISOString().slice(0, 10);
    const nodeVersion = process.version;
    const pgbenchVersion = execFileSync('pgbench', ['--version'], { encoding: 'utf8' }).trim();
    const report = [
      `### Workers — bench/workers.ts, ${date}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${nodeVersion}`,
      '',
      `\`node dist/bench/workers.js --seconds ${seconds} --rounds ${rounds} --clients ${opt.clients} --protocol ${opt.protocol}\`: ${pgbenchVersion}, TLS (sslmode=require) to the`,
      "gateway, a `pgbench -S`-like script, persistent connections; the gateway's upstream is bench/fake-backend.c (plaintext",
      'on loopback, a fixed one-row answer), so PostgreSQL is out of the picture. Medians of the rounds; CPU per transaction',
      'from /proc (gateway: primary + workers; pgbench: its own user + sys; backend: the fake), core busy from /proc/stat;',
      '"cores used" = tps × CPU per transaction; "other processes" = what the cores were busy with beyond these three.',
      '',
      '| layout | gateway on cpus | pgbench + backend on cpus | tps | gateway µs/tx | pgbench µs/tx | backend µs/tx | cores used by gateway | by pgbench + backend | by other processes | core busy (0 / 1 …) |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      `- isolated: workers = 2 / workers = 1, gateway on the same core(s): **${ratio(LAYOUTS[1]!.name, LAYOUTS[0]!.name)}**. On an otherwise idle machine`,
      "  this is the cost of the cluster itself (there is no core to gain); when other processes share the gateway's core,",
      '  two workers also win a larger share of it from them (the scheduler shares a core per process): above 1 means that.',
      `- shared: workers = 2 / workers = 1 on all ${cpus().length} cores: **${ratio(LAYOUTS[3]!.name, LAYOUTS[2]!.name)}**.`,
      `- gateway CPU per transaction: ${gw1.toFixed(1)} µs with workers = 1, ${gw2.toFixed(1)} µs with workers = 2 (same core); so one core`,
      `  carries ${(1e6 / gw1).toFixed(0)} tx/s with one worker and ${(1e6 / gw2).toFixed(0)} tx/s per core with two — the capacity to expect per`,
      '  core given to the gateway, when pgbench and the backend run elsewhere (a projection from CPU time, not a measurement).',
      ...(others > 0.1
        ? [
            `- **The machine was not quiet**: other processes used ${others.toFixed(2)} cores on average during the runs; every tps here`,
            '  is lower than an idle machine gives and the ratios are distorted by how the scheduler shared the cores.',
          ]
        : []),
      '',
    ].join('\n');
    process.stdout.write(`\n${report}\n`);
    if (opt.write) {
      const prev = readFileSync(opt.write, 'utf8');
      const [head, ...rest] = prev.split('\n### ');
      writeFileSync(opt.write, `${head!.trimEnd()}\n\n${report}${rest.length ? `\n### ${rest.join('\n### ')}` : ''}`);
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
