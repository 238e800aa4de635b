/** What the benchmark scripts share: free ports, waiting for a listener, per-process CPU from /proc, the median. */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { openSync, readFileSync, readdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

export function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

/** Resolves once something accepts connections on 127.0.0.1:port; throws after `tries` attempts. */
export async function waitPort(port: number, tries = 100, delayMs = 100): Promise<void> {
  for (let i = 0; i < tries; i++) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, delayMs));
  }
  throw new Error(`nothing listens on port ${port}`);
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function statOf(pid: string): { ppid: number; user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(f[1]), user: (Number(f[11]) * 1e6) / CLK_TCK, sys: (Number(f[12]) * 1e6) / CLK_TCK };
}

/**
 * CPU a process and its live children (the gateway's workers) have used so far, in µs: user and system time from
 * /proc/PID/stat (fields 14 and 15), children found by their parent pid (field 4).
 */
export function cpuOf(pid: number): { user: number; sys: number } {
  const total = statOf(String(pid));
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const c = statOf(p);
      if (c.ppid === pid) {
        total.user += c.user;
        total.sys += c.sys;
      }
    } catch {
      // a process that ended while we looked
    }
  }
  return { user: total.user, sys: total.sys };
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * pgbouncer.ini for the comparison: session pooling, client TLS with the given files (the same chain pgtls serves),
 * trust to PostgreSQL on `pgHost` (its socket directory, or 127.0.0.1) — the same mode and hop as the gateway's.
 */
export function pgbouncerIni(o: {
  pgHost: string;
  pgPort: number;
  port: number;
  authFile: string;
  certFile: string;
  keyFile: string;
  /** server_tls_sslmode (TLS to PostgreSQL); default disable. */
  serverTlsSslmode?: string;
}): string {
  return [
    '[databases]',
    `postgres = host=${o.pgHost} port=${o.pgPort} dbname=postgres`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${o.port}`,
    'auth_type = trust',
    `auth_file = ${o.authFile}`,
    'pool_mode = session',
    'max_client_conn = 200',
    'default_pool_size = 50',
    'client_tls_sslmode = require',
    `client_tls_cert_file = ${o.certFile}`,
    `client_tls_key_file = ${o.keyFile}`,
    `server_tls_sslmode = ${o.serverTlsSslmode ?? 'disable'}`,
    'unix_socket_dir =',
    'logfile =',
    'log_connections = 0',
    'log_disconnections = 0',
  ].join('\n');
}

/** Total Ir of the newest callgrind dump of pid in dir. */
export function callgrindTotal(dir: string, pid: number): number {
  const text = readFileSync(newestDump(dir, pid), 'utf8');
  const m = /^(?:summary|totals): (\d+)/m.exec(text);
  if (!m) throw new Error('no totals in the callgrind dump');
  return Number(m[1]);
}

/** The newest callgrind dump of pid in dir. */
function newestDump(dir: string, pid: number): string {
  const files = readdirSync(dir)
    .filter((f) => f.startsWith(`callgrind.out.${pid}.`))
    .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
  return join(dir, files[files.length - 1]!);
}

/**
 * Where a dump's instructions went, from callgrind_annotate's inclusive counts: V8's background threads (the
 * optimizing compiler, concurrent GC: `PlatformWorkerThread`), whose share of a few hundred connections swings with
 * when V8 decides to compile, and the native TLS handshake (`pgtls_handshake_step`, OpenSSL's work).
 */
export function callgrindSplit(file: string): { total: number; background: number; handshake: number } {
  const r = spawnSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  let total = 0;
  let background = 0;
  let handshake = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$/.exec(line);
    if (!m) continue;
    const n = Number(m[1]!.replaceAll(',', ''));
    const name = m[2]!;
    if (name.includes('PROGRAM TOTALS')) total = Math.max(total, n);
    else if (name.includes('PlatformWorkerThread')) background = Math.max(background, n);
    else if (/(^|:)pgtls_handshake_step\b/.test(name)) handshake = Math.max(handshake, n);
  }
  return { total, background, handshake };
}

export interface CallgrindPerTx {
  /** All of the process's instructions per transaction (the load-independent headline figure). */
  readonly perTx: number;
  /** Without V8's background threads: the event loop's own work, steadier over a few hundred transactions. */
  readonly foregroundPerTx: number;
  /** Of that, the native TLS handshake (0 when no transaction made one). */
  readonly handshakePerTx: number;
}

/**
 * Instructions per transaction of a server process (`command`, listening on `port`) under callgrind: counting is
 * switched on after start-up, a warm-up run (JIT, caches) is discarded, and the difference between a short and a
 * long run of `load(seconds)` divided by the difference in transactions removes what does not scale with them.
 * Instruction counts do not depend on the machine's load, unlike time.
 */
export async function callgrindPerTx(
  command: string[],
  port: number,
  dir: string,
  load: (seconds: number) => { tx: number },
  seconds: { warmup: number; short: number; long: number } = { warmup: 2, short: 5, long: 15 },
): Promise<CallgrindPerTx> {
  const vg = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      '--smc-check=all-non-file',
      `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`,
      ...command,
    ],
    { stdio: ['ignore', 'ignore', openSync(join(dir, 'valgrind.log'), 'a')], cwd: dir },
  );
  try {
    await waitPort(port, 1500, 200); // Node under valgrind takes minutes to start on a loaded machine
    const ctl = (...a: string[]) =>
      spawnSync('callgrind_control', [...a, String(vg.pid)], { stdio: 'ignore', timeout: 120_000 });
    ctl('-i', 'on');
    const measure = (secs: number) => {
      ctl('-z');
      const r = load(secs);
      ctl('-d');
      return { tx: r.tx, ir: callgrindTotal(dir, vg.pid!), split: callgrindSplit(newestDump(dir, vg.pid!)) };
    };
    measure(seconds.warmup);
    const short = measure(seconds.short);
    const long = measure(seconds.long);
    // JIT compilation and GC land in one run or the other: with few transactions they swamp the difference.
    process.stderr.write(
      `callgrind: ${short.tx} tx / ${short.ir} Ir, ${long.tx} tx / ${long.ir} Ir (a difference of ${long.tx - short.tx} tx; under ~2,000 the result is noise)\n`,
    );
    const n = long.tx - short.tx;
    const fg = (x: typeof long) => x.split.total - x.split.background;
    return {
      perTx: (long.ir - short.ir) / n,
      foregroundPerTx: (fg(long) - fg(short)) / n,
      handshakePerTx: (long.split.handshake - short.split.handshake) / n,
    };
  } finally {
    if (vg.exitCode === null && vg.signalCode === null) {
      const exited = new Promise((r) => vg.once('exit', r));
      vg.kill('SIGTERM');
      await exited;
    }
  }
}
