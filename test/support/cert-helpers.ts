/**
 * Helpers for the certificate tests: a private temp directory, the compiled `pgtls cert` CLI run as a child process,
 * and `openssl verify` with its error line parsed, so each verification rule can be compared with OpenSSL's answer.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunResult, cleanEnv, run } from './clients.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;

/** A fresh directory readable by other users (PostgreSQL runs as `postgres` and may need to read CRL dirs). */
export async function tempDir(prefix = 'pgtls-cert-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

/** `node dist/src/cli/main.js cert …` in `cwd`. */
export function pgtlsCert(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'cert', ...args], {
      cwd,
      env: cleanEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface OpensslVerdict {
  readonly ok: boolean;
  /** OpenSSL's numeric error and depth, and its text, from "error N at D depth lookup: TEXT". */
  readonly error?: number;
  readonly depth?: number;
  readonly reason?: string;
  readonly output: string;
}

/** `openssl verify ARGS FILE`, parsed. */
export async function opensslVerify(args: readonly string[], cwd: string): Promise<OpensslVerdict> {
  const r = await run('sh', ['-c', `cd '${cwd}' && openssl verify ${args.map((a) => `'${a}'`).join(' ')}`]);
  const output = r.stdout + r.stderr;
  const m = /error (\d+) at (\d+) depth lookup: (.*)/.exec(output);
  if (r.code === 0) return { ok: true, output };
  return m
    ? { ok: false, error: Number(m[1]), depth: Number(m[2]), reason: m[3]!.trim(), output }
    : { ok: false, output };
}

/** `openssl x509|crl -hash -noout -in FILE`. */
export async function opensslHash(kind: 'x509' | 'crl', file: string): Promise<string> {
  const r = await run('openssl', [kind, '-hash', '-noout', '-in', file]);
  if (r.code !== 0) throw new Error(`openssl ${kind} -hash failed: ${r.stderr}`);
  return r.stdout.trim();
}

export async function put(dir: string, name: string, data: string | Uint8Array): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, data);
  return p;
}

/** PEM of several certificates, each ending in a newline (the generator's PEM has none). */
export function pems(...items: { toString(format: 'pem'): string }[]): string {
  return items.map((c) => `${c.toString('pem').trim()}\n`).join('');
}
