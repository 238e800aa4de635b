/**
 * `pgtls serve` as a child process, for tests and benches that measure the gateway from outside: its open file
 * descriptors (/proc/<pid>/fd), its resident memory (/proc/<pid>/status), whether it crashed, and what it wrote.
 * Also the backend-side count of client sessions (pg_stat_activity), the other half of "nothing leaks".
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import pg from 'pg';
import { cleanEnv } from './clients.js';
import { type GatewayFixtures, writeFixture } from './gateway-fixtures.js';
import { SUPERUSER_PASSWORD, type TestCluster } from './postgres.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;

export interface ServeChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly configFile: string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name) when the child ends. */
  readonly exited: Promise<number | string | null>;
  /** Whether the child is still running. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

let n = 0;

export interface ServeChildOptions {
  /** Raise RLIMIT_NOFILE of the child to this (soft and hard) with prlimit(1). */
  readonly nofile?: number;
  /** Extra node flags, e.g. --expose-gc. */
  readonly nodeArgs?: readonly string[];
  /** Upstream URL (default: the cluster's port on 127.0.0.1). */
  readonly upstream?: string;
  /** Extra environment for the child (the rest is cleanEnv(), which drops every PG* variable). */
  readonly env?: Record<string, string>;
}

/** Start `pgtls serve` with a generated config file (conf entries appended); resolves once it logged "ready". */
export async function startServeChild(
  fx: GatewayFixtures,
  cluster: TestCluster | undefined,
  conf: Record<string, string> = {},
  opts: ServeChildOptions = {},
): Promise<ServeChild> {
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    port: '0',
    ssl_cert_file: fx.server.cert,
    ssl_key_file: fx.server.key,
    upstream: opts.upstream ?? `postgres://127.0.0.1:${cluster?.port}`,
    upstream_sslmode: 'disable',
    data_directory: `${fx.dir}/child-data-${n}`,
    // As startTestGateway: PGTLS_TEST_NATIVE_DATA_PLANE=off|on runs the child on that transport (default: auto).
    ...(process.env.PGTLS_TEST_NATIVE_DATA_PLANE
      ? { native_data_plane: process.env.PGTLS_TEST_NATIVE_DATA_PLANE }
      : {}),
    ...conf,
  };
  const text = Object.entries(settings)
    .map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'`)
    .join('\n');
  const configFile = writeFixture(fx, `child-${n++}.conf`, `${text}\n`);
  const nodeArgv = [...(opts.nodeArgs ?? []), MAIN, 'serve', '--config', configFile];
  const [cmd, args] =
    opts.nofile !== undefined
      ? ['prlimit', [`--nofile=${opts.nofile}:${opts.nofile}`, process.execPath, ...nodeArgv]]
      : [process.execPath, nodeArgv];
  const child = spawn(cmd, args as string[], { env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  // Keep only the tail of a long log: the fuzzer makes the child write one line per connection.
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  let running = true;
  const exited = new Promise<number | string | null>((resolve) =>
    child.on('exit', (code, signal) => {
      running = false;
      resolve(code ?? signal);
    }),
  );
  const ready = await new Promise<{ port: number; pid: number } | undefined>((resolve) => {
    const t = setTimeout(() => resolve(undefined), 30_000);
    const check = () => {
      const m = /"msg":"ready","listen":\["127\.0\.0\.1:(\d+)"\].*?"pid":(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        child.stdout!.off('data', check);
        resolve({ port: Number(m[1]), pid: Number(m[2]) });
      }
    };
    child.stdout!.on('data', check);
    void exited.then(() => resolve(undefined));
  });
  if (!ready) {
    child.kill('SIGKILL');
    throw new Error(`pgtls serve did not start:\n${err}\n${out}`);
  }
  return {
    child,
    pid: ready.pid,
    port: ready.port,
    configFile,
    stdout: () => out,
    stderr: () => err,
    exited,
    alive: () => running,
    stop: async (graceMs = 5000) => {
      if (!running) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Open file descriptors of a process (sockets, files, pipes, epoll, …). */
export function fdCount(pid: number = process.pid): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The kinds of a process's open descriptors ("socket" → 12, "pipe" → 4, …), for a failure message. */
export function fdKinds(pid: number = process.pid): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = 'gone';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).split(':')[0] ?? '?';
    } catch {}
    kinds[target] = (kinds[target] ?? 0) + 1;
  }
  return kinds;
}

/** Resident set size of a process in KiB (VmRSS). */
export function rssKiB(pid: number = process.pid): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

/** A superuser connection straight to the cluster (not through the gateway), for pg_stat_activity and setup. */
export async function adminClient(cluster: TestCluster): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: cluster.port,
    user: 'postgres',
    password: SUPERUSER_PASSWORD,
    database: 'postgres',
  });
  await c.connect();
  return c;
}

/** Client backends of the cluster other than the asking one: sessions and logins still in progress. */
export async function backendSessions(admin: pg.Client): Promise<number> {
  const r = await admin.query(
    "select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()",
  );
  return r.rows[0].n as number;
}

/**
 * Poll `probe` until it returns `want` or `timeoutMs` passes; returns the last value seen. Leaks show up as a value
 * that never comes back, so the wait is bounded and the caller asserts on the result.
 */
export async function settle<T>(probe: () => T | Promise<T>, want: T, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await probe();
  while (v !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    v = await probe();
  }
  return v;
}
