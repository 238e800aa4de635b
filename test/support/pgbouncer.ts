/**
 * PgBouncer (Debian's /usr/sbin/pgbouncer) between the gateway and a test cluster, for tests and benches that need
 * thousands of concurrent sessions behind the gateway without thousands of PostgreSQL backends: transaction pooling
 * onto a few server connections, as production setups put it. Runs as the `postgres` user when we are root
 * (PgBouncer refuses root), with RLIMIT_NOFILE raised for its clients.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './postgres.js';

export interface PgBouncer {
  readonly port: number;
  readonly log: () => string;
  stop(): Promise<void>;
}

export function havePgBouncer(): boolean {
  return spawnSync('/usr/sbin/pgbouncer', ['--version']).status === 0;
}

export async function startPgBouncer(opts: {
  backendPort: number;
  /** The backend role every pooled server connection uses (trust in the backend's hba). */
  user: string;
  maxClients: number;
  poolSize?: number;
}): Promise<PgBouncer> {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-bouncer-'));
  chmodSync(dir, 0o777);
  const port = await freePort();
  const ini = join(dir, 'pgbouncer.ini');
  writeFileSync(
    ini,
    [
      '[databases]',
      `postgres = host=127.0.0.1 port=${opts.backendPort} dbname=postgres user=${opts.user}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = any',
      'pool_mode = transaction',
      `max_client_conn = ${opts.maxClients}`,
      `default_pool_size = ${opts.poolSize ?? 10}`,
      'ignore_startup_parameters = extra_float_digits,application_name',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  chmodSync(ini, 0o644);
  const nofile = opts.maxClients + 1000;
  const asRoot = process.getuid?.() === 0;
  const child: ChildProcess = spawn(
    'prlimit',
    [`--nofile=${nofile}:${nofile}`, '/usr/sbin/pgbouncer', ...(asRoot ? ['-u', 'postgres'] : []), ini],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Ready when it accepts TCP connections (bounded).
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (child.exitCode !== null) throw new Error(`pgbouncer exited: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    log: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
