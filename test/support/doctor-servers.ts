/**
 * Fixtures for the probe / scan / doctor tests: a generated PKI (root → intermediate → server, client certificates),
 * real PostgreSQL 18 servers configured to fail in one way each, and the compiled CLI run as a child process.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Issued,
  type KeyType,
  createClientCert,
  createIntermediateCA,
  createRootCA,
  createServerCert,
} from '../../src/pki/generate.js';
import { type RunResult, cleanEnv, run } from './clients.js';
import { type TestCluster, startTestCluster } from './postgres.js';

export const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;

export interface Pki {
  readonly root: Issued;
  readonly inter: Issued;
  /** Server certificate for localhost and 127.0.0.1, issued by the intermediate. */
  readonly server: Issued;
  /** Directory holding root.crt, inter.crt, server.crt (leaf only) and friends for clients. */
  readonly dir: string;
  file(name: string, content: string, mode?: number): string;
}

export async function makePki(opts: { keyType?: KeyType; hosts?: readonly string[] } = {}): Promise<Pki> {
  const keyType = opts.keyType ?? 'ec-p256';
  const root = await createRootCA({ subject: { CN: 'pgtls Test Root CA', O: 'pgtls tests' }, keyType });
  const inter = await createIntermediateCA(root, {
    subject: { CN: 'pgtls Test Intermediate CA', O: 'pgtls tests' },
    keyType,
  });
  const server = await createServerCert(inter, {
    subject: { CN: 'localhost' },
    hosts: opts.hosts ?? ['localhost', '127.0.0.1'],
    keyType,
  });
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-doctor-pki-'));
  const file = (name: string, content: string, mode = 0o644) => {
    const p = join(dir, name);
    writeFileSync(p, content, { mode });
    return p;
  };
  file('root.crt', root.certPem);
  file('inter.crt', inter.certPem);
  file('server-leaf.crt', server.certPem);
  return { root, inter, server, dir, file };
}

export const pem = (...parts: string[]) => `${parts.map((p) => p.trim()).join('\n')}\n`;

export interface ServerOptions {
  /** Certificates in ssl_cert_file, in order (default: server, intermediate). */
  readonly chain?: readonly string[];
  readonly key?: string;
  readonly settings?: Readonly<Record<string, string>>;
  readonly hba?: readonly string[];
  readonly files?: Readonly<Record<string, string>>;
}

/** A PostgreSQL 18 server with TLS on, configured by `opts`. */
export async function startServer(pki: Pki, opts: ServerOptions = {}): Promise<TestCluster> {
  const chain = opts.chain ?? [pki.server.certPem, pki.inter.certPem];
  return startTestCluster({
    files: { 'server.crt': pem(...chain), 'server.key': opts.key ?? pki.server.keyPem, ...(opts.files ?? {}) },
    settings: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key', ...(opts.settings ?? {}) },
    ...(opts.hba ? { hba: opts.hba } : {}),
  });
}

/** Client certificates for `user`, issued by the root (so a server with ssl_ca_file = root.crt trusts them). */
export async function clientCert(pki: Pki, cn: string, issuer?: Issued): Promise<{ cert: string; key: string }> {
  const c = await createClientCert(issuer ?? pki.root, { subject: { CN: cn } });
  const cert = pki.file(`client-${cn}-${Math.random().toString(36).slice(2, 8)}.crt`, c.certPem);
  const key = pki.file(`${cert.slice(pki.dir.length + 1, -4)}.key`, c.keyPem, 0o600);
  await chmod(key, 0o600);
  return { cert, key };
}

/** A private HOME (no ~/.postgresql, no ~/.pgpass) and no PG* variables, plus `extra`. */
export function doctorEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const home = mkdtempSync(join(tmpdir(), 'pgtls-doctor-home-'));
  return cleanEnv({ HOME: home, ...extra });
}

/** Run `node dist/src/cli/main.js ARGS` (the compiled binary). */
export function pgtls(args: readonly string[], env: NodeJS.ProcessEnv = doctorEnv()): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], { env, timeoutMs: 120_000 });
}

/** Run the CLI with --json and parse stdout. */
export async function pgtlsJson<T>(
  args: readonly string[],
  env?: NodeJS.ProcessEnv,
): Promise<{ code: number | null; json: T; stderr: string }> {
  const r = await pgtls([...args, '--json'], env);
  let json: T;
  try {
    json = JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, json, stderr: r.stderr };
}
