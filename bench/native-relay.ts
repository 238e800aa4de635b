/**
 * The native data plane (issue 11) against the alternatives, in one run: `pgbench -S` over client TLS to
 *   direct      PostgreSQL 18 with ssl = on;
 *   native      bench/native-relay-server.ts on the native transport (handshake and splice in native/);
 *   node seam   the same relay code on Node's tls (JavaScript pipes);
 *   bare relay  bench/bare-relay.ts, the floor of a Node.js TLS relay;
 *   pgbouncer   PgBouncer (session pooling, client TLS), when installed.
 * Every proxy reaches PostgreSQL the same way (--hop unix|tcp). Targets alternate per round so drift affects all;
 * medians and ratios are printed, with each relay's CPU per transaction from /proc/PID/stat (user and sys).
 * --callgrind adds instructions per transaction for one client under valgrind (the three Node relays): the Ir
 * difference between a 5 s and a 15 s pgbench run divided by the difference in transactions, so connection set-up
 * and Node's start cancel out.
 *
 *   npm run build && node dist/bench/native-relay.js [--seconds 15] [--rounds 3] [--hop unix|tcp] [--callgrind | --callgrind-only]
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureCluster, postgresRunAs, startCluster } from '../src/gateway/embedded-postgres.js';
import { createIntermediateCA, createRootCA, createServerCert } from '../src/pki/generate.js';
import { callgrindPerTx, cpuOf, freePort, median, pgbouncerIni, waitPort } from './support.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    hop: { type: 'string', default: 'unix' },
    callgrind: { type: 'boolean', default: false },
    /** Only the callgrind measurement (instruction counts do not depend on the machine's load). */
    'callgrind-only': { type: 'boolean', default: false },
  },
});
const seconds = Number(opt.seconds);

function runPgbench(port: number, secs: number, clients = opt.clients!, threads = opt.threads!) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-S', '-n', '-c', clients, '-j', threads];
  const out = execFileSync('pgbench', [...args, '-T', String(secs), 'postgres'], {
    env: { ...process.env, PGSSLMODE: 'require' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(out) ?? /tps = ([\d.]+)/.exec(out);
  const n = /number of transactions actually processed: (\d+)/.exec(out);
  if (!m || !n) throw new Error(`no tps in pgbench output:\n${out}`);
  return { tps: Number(m[1]), tx: Number(n[1]) };
}

async function instructionsPerTx(command: string[], port: number, dir: string): Promise<number> {
  return (await callgrindPerTx(command, port, dir, (secs) => runPgbench(port, secs, '1', '1'))).perTx;
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'pgtls-nbench-'));
  execFileSync('chmod', ['755', work]);
  const runAs = await postgresRunAs();
  const children: ChildProcess[] = [];
  let stopPg: (() => Promise<void>) | undefined;
  try {
    const root = await createRootCA({ subject: { CN: 'bench root' } });
    const inter = await createIntermediateCA(root, { subject: { CN: 'bench intermediate' } });
    const leaf = await createServerCert(inter, { subject: { CN: 'localhost' }, hosts: ['localhost', '127.0.0.1'] });
    const crt = join(work, 'server.crt');
    const key = join(work, 'server.key');
    writeFileSync(crt, leaf.certPem + inter.certPem, { mode: 0o644 });
    writeFileSync(key, leaf.keyPem, { mode: 0o600 });
    const own = (p: string) => {
      execFileSync('chmod', ['600', p]);
      if (runAs.uid !== undefined) chownSync(p, runAs.uid, runAs.gid!);
    };

    process.stderr.write('bench: PostgreSQL …\n');
    const dataDir = join(work, 'pg');
    await ensureCluster({ dataDir, password: 'bench', authHost: 'trust' });
    cpSync(crt, join(dataDir, 'server.crt'));
    cpSync(key, join(dataDir, 'server.key'));
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
      {
        stdio: 'ignore',
      },
    );
    const upstream = opt.hop === 'unix' ? join(pg.socketDir, `.s.PGSQL.${pgPort}`) : `127.0.0.1:${pgPort}`;

    const relay = async (script: string, extra: string[]) => {
      const port = await freePort();
      const args = [new URL(script, import.meta.url).pathname, String(port), crt, key, upstream, ...extra];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(child);
      await waitPort(port, 100, 200);
      return { port, pid: child.pid!, args };
    };
    process.stderr.write('bench: relays …\n');
    const nat = await relay('./native-relay-server.js', ['native']);
    const seam = await relay('./native-relay-server.js', ['node']);
    const bare = await relay('./bare-relay.js', []);

    const targets: Record<string, { port: number; pid?: number }> = {
      direct: { port: pgPort },
      native: nat,
      'node seam': seam,
      'bare relay': bare,
    };
    let bouncerVersion = '';
    if (existsSync('/usr/sbin/pgbouncer')) {
      const bPort = await freePort();
      writeFileSync(join(work, 'userlist.txt'), '"postgres" ""\n');
      writeFileSync(join(work, 'bouncer.key'), leaf.keyPem);
      writeFileSync(join(work, 'bouncer.crt'), leaf.certPem + inter.certPem);
      writeFileSync(
        join(work, 'pgbouncer.ini'),
        pgbouncerIni({
          pgHost: opt.hop === 'unix' ? pg.socketDir : '127.0.0.1',
          pgPort,
          port: bPort,
          authFile: join(work, 'userlist.txt'),
          certFile: join(work, 'bouncer.crt'),
          keyFile: join(work, 'bouncer.key'),
        }),
      );
      for (const f of ['pgbouncer.ini', 'userlist.txt', 'bouncer.key', 'bouncer.crt']) own(join(work, f));
      const b = spawn('/usr/sbin/pgbouncer', [join(work, 'pgbouncer.ini')], {
        ...runAs,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      children.push(b);
      await waitPort(bPort, 100, 200);
      targets.pgbouncer = { port: bPort, pid: b.pid! };
      bouncerVersion = execFileSync('/usr/sbin/pgbouncer', ['--version'], { encoding: 'utf8' }).split('\n')[0]!;
    }

    const names = Object.keys(targets);
    const tps: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    const cpu: Record<string, { user: number; sys: number; tx: number }> = Object.fromEntries(
      names.map((n) => [n, { user: 0, sys: 0, tx: 0 }]),
    );
    const rounds = opt['callgrind-only'] ? 0 : Number(opt.rounds);
    if (rounds) for (const n of names) runPgbench(targets[n]!.port, 2); // warm-up
    for (let r = 0; r < rounds; r++) {
      for (const n of names) {
        const t = targets[n]!;
        const before = t.pid ? cpuOf(t.pid) : undefined;
        const run = runPgbench(t.port, seconds);
        if (t.pid && before) {
          const after = cpuOf(t.pid);
          cpu[n]!.user += after.user - before.user;
          cpu[n]!.sys += after.sys - before.sys;
          cpu[n]!.tx += run.tx;
        }
        tps[n]!.push(run.tps);
        process.stderr.write(`bench: round ${r + 1} ${n.padEnd(10)} ${run.tps.toFixed(0)} tps\n`);
      }
    }
    const med = Object.fromEntries(names.map((n) => [n, median(tps[n]!)])) as Record<string, number>;
    const hop = opt.hop === 'unix' ? 'Unix socket' : 'loopback TCP';
    const lines =
      rounds === 0
        ? []
        : [
            `| pgbench -S -c ${opt.clients} -j ${opt.threads} -T ${seconds}, client TLS, proxies → PostgreSQL over ${hop} | median tps | × direct | runs | relay user µs/tx | relay sys µs/tx |`,
            '|---|---|---|---|---|---|',
            ...names.map((n) => {
              const c = cpu[n]!;
              const cu = c.tx ? (c.user / c.tx).toFixed(1) : '–';
              const cs = c.tx ? (c.sys / c.tx).toFixed(1) : '–';
              return `| ${n} | ${med[n]!.toFixed(0)} | ${(med[n]! / med.direct!).toFixed(2)} | ${tps[n]!.map((x) => x.toFixed(0)).join(', ')} | ${cu} | ${cs} |`;
            }),
            '',
            `native / node seam = **${(med.native! / med['node seam']!).toFixed(2)}**, native / bare Node relay = **${(med.native! / med['bare relay']!).toFixed(2)}**` +
              (med.pgbouncer ? `, native / PgBouncer = **${(med.native! / med.pgbouncer).toFixed(2)}**` : ''),
          ];
    if (opt.callgrind || opt['callgrind-only']) {
      process.stderr.write('bench: callgrind (one client) …\n');
      const cg = join(work, 'callgrind');
      mkdirSync(cg, { mode: 0o777 });
      chmodSync(cg, 0o777); // PgBouncer runs as the postgres user and writes its profile here too
      const nodeRelay = async (args: string[]) => {
        const port = await freePort();
        const a = [...args];
        a[1] = String(port);
        return instructionsPerTx([process.execPath, ...a], port, cg);
      };
      const ir: Record<string, number> = {};
      const note = (k: string) =>
        process.stderr.write(`bench: callgrind ${k}: ${Math.round(ir[k]!)} instructions/tx\n`);
      ir.native = await nodeRelay(nat.args);
      note('native');
      // PgBouncer is not measured here: it refuses to run as root, and callgrind_control (vgdb) cannot reach a
      // process of another user on this machine kind. Issue 11 has its figure from a hand run (≈ 20.5k).
      ir['bare relay'] = await nodeRelay(bare.args);
      note('bare relay');
      ir['node seam'] = await nodeRelay(seam.args);
      note('node seam');
      lines.push(
        '',
        '| one client under callgrind | instructions per transaction (relay process) |',
        '|---|---|',
        ...Object.entries(ir).map(([k, v]) => `| ${k} | ${Math.round(v)} |`),
      );
    }
    const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version} (OpenSSL ${process.versions.openssl}), PostgreSQL ${pg.binaries.version}${bouncerVersion ? `, ${bouncerVersion}` : ''}`;
    process.stdout.write(
      `\n### ${new Date().toISOString().slice(0, 16)}Z — native data plane\n\nMachine: ${machine}\n\n${lines.join('\n')}\n`,
    );
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
