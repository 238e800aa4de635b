/**
 * doctor when a host name has several addresses and the first refuses: Debian's /etc/hosts has
 * `::1 localhost ip6-localhost`, so `localhost` resolves to ::1 first, while PostgreSQL listens on 127.0.0.1 only.
 * libpq tries each address in turn (fe-connect.c: a failed connect() sets try_next_addr), appends one
 * "connection to server at … failed: …" line per attempt, and psql prints them all; the cause is the last attempt's.
 *
 * This machine's /etc/hosts maps localhost to 127.0.0.1 only, so doctor and psql run in a private mount namespace
 * (unshare -m) where a Debian-style hosts file is bind-mounted over /etc/hosts — for those two processes only.
 * The same order through libpq's other list (host=localhost,localhost hostaddr=::1,127.0.0.1) needs no namespace.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { embeddedBinaries } from '../../src/gateway/embedded-postgres.js';
import { createRootCA, createServerCert } from '../../src/pki/generate.js';
import { type RunResult, cleanEnv, run } from '../support/clients.js';
import type { DoctorJson } from '../support/doctor-run.js';
import { CLI, type Pki, doctorEnv, makePki, startServer } from '../support/doctor-servers.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort } from '../support/postgres.js';

/** Debian's default /etc/hosts; getaddrinfo sorts ::1 before 127.0.0.1 (RFC 6724), as on a stock Debian system. */
const DEBIAN_HOSTS = '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n';

interface Report extends DoctorJson {
  explained?: { host: string; address?: string; port: string; libpqMessage: string };
}

describe('doctor: several addresses, the first refused (localhost → ::1, then 127.0.0.1)', () => {
  let pki: Pki;
  let pg: TestCluster;
  let mismatch: TestCluster;
  let hostsFile: string;
  let wrongRoot: string;

  /** Run `cmd args` with /etc/hosts replaced by `hostsFile` in a private mount namespace (or as is, when null). */
  const inHosts = (file: string | null, cmd: string, args: readonly string[], env: NodeJS.ProcessEnv) =>
    file === null
      ? run(cmd, args, { env, timeoutMs: 120_000 })
      : run(
          'unshare',
          [
            '-m',
            '--propagation',
            'private',
            'sh',
            '-c',
            'mount --bind "$0" /etc/hosts && exec "$@"',
            file,
            cmd,
            ...args,
          ],
          { env, timeoutMs: 120_000 },
        );

  /** doctor --json and psql (libpq 18) on the same connection string, with the same hosts file and environment. */
  async function both(
    file: string | null,
    conninfo: string,
    extra: Record<string, string> = {},
  ): Promise<{ doctor: Report; psql: RunResult; code: number | null }> {
    const env = doctorEnv(extra);
    const d = await inHosts(file, process.execPath, [CLI, 'doctor', conninfo, '--json'], env);
    const doctor = JSON.parse(d.stdout) as Report;
    const psqlEnv = cleanEnv({ ...extra, HOME: env.HOME!, LD_LIBRARY_PATH: embeddedBinaries().lib });
    const p = await inHosts(file, 'psql', ['-X', '-w', '-A', '-t', '-c', 'select 1', conninfo], psqlEnv);
    return { doctor, psql: p, code: d.code };
  }

  /** psql prints libpq's whole message (one line per attempt) after "psql: error: ". */
  function assertSameMessage(r: { doctor: Report; psql: RunResult }): void {
    assert.notEqual(r.psql.code, 0, 'psql connected');
    assert.equal(r.psql.stderr.trimEnd(), `psql: error: ${r.doctor.libpqMessage ?? ''}`.trimEnd());
  }

  before(async () => {
    pki = await makePki();
    hostsFile = pki.file('hosts', DEBIAN_HOSTS);
    wrongRoot = pki.file('wrong-root.crt', (await createRootCA({ subject: { CN: 'Some Other Root' } })).certPem);
    pg = await startServer(pki); // listen_addresses = 127.0.0.1 only
    const other = await createServerCert(pki.inter, { subject: { CN: 'db.example.com' }, hosts: ['db.example.com'] });
    mismatch = await startServer(pki, { chain: [other.certPem, pki.inter.certPem], key: other.keyPem });
  });
  after(async () => {
    await pg?.destroy();
    await mismatch?.destroy();
  });

  test('the namespace really resolves localhost to ::1 first, then 127.0.0.1', async () => {
    const r = await inHosts(hostsFile, 'getent', ['ahosts', 'localhost'], cleanEnv());
    const order = [
      ...new Set(
        r.stdout
          .split('\n')
          .map((l) => l.split(/\s+/)[0])
          .filter(Boolean),
      ),
    ];
    assert.deepEqual(order, ['::1', '127.0.0.1']);
  });

  // `at`: how libpq names the server in its prefix (with hostaddr it shows the address only).
  const lists: {
    name: string;
    file: () => string | null;
    conn: (port: number) => string;
    at: (a: string) => string;
  }[] = [
    {
      name: 'host=localhost (::1 first)',
      file: () => hostsFile,
      conn: (port) => `host=localhost port=${port}`,
      at: (a) => `"localhost" (${a})`,
    },
    {
      name: 'host=localhost,localhost hostaddr=::1,127.0.0.1',
      file: () => null,
      conn: (port) => `host=localhost,localhost hostaddr=::1,127.0.0.1 port=${port}`,
      at: (a) => `"${a}"`,
    },
  ];

  for (const l of lists) {
    test(`${l.name}: wrong sslrootcert → the certificate problem on 127.0.0.1, not "nothing accepts at ::1"`, async () => {
      const r = await both(
        l.file(),
        `${l.conn(pg.port)} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${wrongRoot}`,
        { PGPASSWORD: SUPERUSER_PASSWORD },
      );
      assert.equal(r.code, 1);
      assertSameMessage(r);
      const lines = (r.doctor.libpqMessage ?? '').split('\n');
      assert.equal(lines[0], `connection to server at ${l.at('::1')}, port ${pg.port} failed: Connection refused`);
      assert.equal(
        lines.at(-1),
        `connection to server at ${l.at('127.0.0.1')}, port ${pg.port} failed: SSL error: certificate verify failed`,
      );
      assert.equal(r.doctor.diagnosis?.code, 'root-not-trusted', JSON.stringify(r.doctor.diagnosis));
      assert.equal(r.doctor.diagnosis?.stage, 'chain');
      assert.match(
        r.doctor.diagnosis!.cause,
        /does not contain the root CA the server's chain leads to \("CN=pgtls Test Root CA/,
      );
      // The attempt explained is libpq's last one, on 127.0.0.1, with libpq's words for it.
      assert.equal(r.doctor.explained?.address, '127.0.0.1');
      assert.equal(r.doctor.explained?.libpqMessage, lines.at(-1));
      assert.ok(r.psql.stderr.includes(r.doctor.explained!.libpqMessage));
      // …and the refused ::1 is reported as what it is: evidence, not the cause.
      assert.ok(
        r.doctor.diagnosis?.evidence?.some((e) => e === `libpq tried ::1 port ${pg.port} first: Connection refused`),
        JSON.stringify(r.doctor.diagnosis?.evidence),
      );
      const tcp = r.doctor.steps.find((s) => s.stage === 'tcp')!;
      assert.equal(tcp.summary, `connected to 127.0.0.1:${pg.port}`);
    });

    test(`${l.name}: no password → password-missing on 127.0.0.1`, async () => {
      const r = await both(
        l.file(),
        `${l.conn(pg.port)} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${pki.dir}/root.crt`,
      );
      assertSameMessage(r);
      assert.equal(r.doctor.diagnosis?.code, 'password-missing', JSON.stringify(r.doctor.diagnosis));
      assert.equal(r.doctor.diagnosis?.stage, 'authentication');
      assert.equal(r.doctor.explained?.address, '127.0.0.1');
      assert.equal(
        r.doctor.explained?.libpqMessage,
        `connection to server at ${l.at('127.0.0.1')}, port ${pg.port} failed: fe_sendauth: no password supplied`,
      );
    });

    test(`${l.name}: certificate for another name → hostname-mismatch on 127.0.0.1`, async () => {
      const r = await both(
        l.file(),
        `${l.conn(mismatch.port)} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${pki.dir}/root.crt`,
        { PGPASSWORD: SUPERUSER_PASSWORD },
      );
      assertSameMessage(r);
      assert.equal(r.doctor.diagnosis?.code, 'hostname-mismatch', JSON.stringify(r.doctor.diagnosis));
      assert.match(r.doctor.diagnosis!.cause, /the server's certificate is for "db\.example\.com", not "localhost"/);
      assert.equal(r.doctor.explained?.address, '127.0.0.1');
    });

    test(`${l.name}: control — nothing listens on either address → tcp-refused naming both`, async () => {
      const port = await freePort();
      const r = await both(
        l.file(),
        `${l.conn(port)} user=postgres sslmode=verify-full sslrootcert=${pki.dir}/root.crt`,
      );
      assertSameMessage(r);
      assert.equal(r.doctor.diagnosis?.code, 'tcp-refused', JSON.stringify(r.doctor.diagnosis));
      assert.equal(r.doctor.diagnosis?.cause, `nothing accepts connections at [::1]:${port} or 127.0.0.1:${port}`);
    });
  }

  test('a good connection still works and is verified through the same order', async () => {
    const r = await both(
      hostsFile,
      `host=localhost port=${pg.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${pki.dir}/root.crt`,
      { PGPASSWORD: SUPERUSER_PASSWORD },
    );
    assert.equal(r.code, 0);
    assert.equal(r.psql.code, 0);
    assert.equal(r.doctor.verified, true);
  });
});
