import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PgtlsError } from '../../src/errors.js';
import {
  type PostgresBinaries,
  embeddedBinaries,
  ensureCluster,
  removeCreated,
  runnableBinaries,
  startCluster,
} from '../../src/gateway/embedded-postgres.js';
import { psql } from '../support/clients.js';
import { SUPERUSER_PASSWORD, type TestCluster, freePort, startTestCluster } from '../support/postgres.js';

const asRoot = process.getuid?.() === 0;

let pg: TestCluster;
before(async () => {
  pg = await startTestCluster();
});
after(async () => {
  await pg?.destroy();
});

test('embedded PostgreSQL 18 accepts a password login over TCP', async () => {
  const r = await psql(`host=127.0.0.1 port=${pg.port} user=postgres sslmode=disable`, 'show server_version', {
    env: { PGPASSWORD: SUPERUSER_PASSWORD },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^18\./);
});

test('embedded PostgreSQL refuses a wrong password with 28P01', async () => {
  const r = await psql(`host=127.0.0.1 port=${pg.port} user=postgres sslmode=disable`, 'select 1', {
    env: { PGPASSWORD: 'wrong' },
  });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /FATAL: {2}password authentication failed for user "postgres"/);
});

/**
 * Issue 8 item 1: as root, the cluster runs as the `postgres` OS user, which cannot run programs installed below a
 * directory it cannot search (a checkout under /root, a 0700 `mktemp -d`). `installed` is a real copy of the
 * package's PostgreSQL tree in such a directory — not links back to the reachable original.
 */
describe(
  'PostgreSQL programs the postgres OS user cannot reach (issue 8 item 1)',
  { skip: !asRoot && 'needs root' },
  () => {
    let work: string;
    let installed: PostgresBinaries;
    let into: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'pgtls-unreachable-')); // mode 0700, as mktemp -d
      const src = dirname(embeddedBinaries().bin);
      for (const part of ['bin', 'lib', 'share']) {
        await cp(join(src, part), join(work, 'native', part), { recursive: true, verbatimSymlinks: true });
      }
      installed = { bin: join(work, 'native/bin'), lib: join(work, 'native/lib'), version: embeddedBinaries().version };
      into = await mkdtemp(join(tmpdir(), 'pgtls-system-'));
      await chmod(into, 0o755);
    });
    after(async () => {
      await rm(work, { recursive: true, force: true });
      await rm(into, { recursive: true, force: true });
    });

    test('without a reachable copy, initdb cannot start (EACCES) and no directory is left behind', async () => {
      const dataDir = join(into, 'relocated', 'postgres');
      await assert.rejects(
        ensureCluster({ dataDir, password: 'pw' }, installed),
        (e: PgtlsError) =>
          e.code === 'PGTLS_ERR_EMBEDDED_POSTGRES' &&
          /^initdb failed: Error: spawn \S+\/native\/bin\/initdb EACCES$/.test(e.message),
      );
      assert.equal(existsSync(join(into, 'relocated')), false);
    });

    test('runnableBinaries copies bin, lib and share where that user can run them, then reuses the copy', async () => {
      const said: string[] = [];
      // two starts at once: both copy, one rename wins, the other discards its copy
      const [a, b] = await Promise.all([
        runnableBinaries(installed, (m) => said.push(m), into),
        runnableBinaries(installed, (m) => said.push(m), into),
      ]);
      assert.deepEqual(a, b);
      assert.match(a.bin, new RegExp(`^${into}/pg-${installed.version}-[0-9a-f]{16}/bin$`));
      assert.match(said[0]!, /the postgres OS user cannot reach \S+\/native; copying the PostgreSQL programs to /);
      assert.deepEqual(
        readdirSync(into).filter((n) => n.startsWith('.')),
        [],
        'no temporary copy is left behind',
      );
      // the libraries resolve through the copy's own relative links
      assert.equal(readlinkSync(join(a.lib, 'libpq.so.5')), 'libpq.so.5.18');
      const dataDir = join(into, 'cluster');
      assert.equal(await ensureCluster({ dataDir, password: 'pw' }, a), true);
      const c = await startCluster({ dataDir, port: await freePort() }, a);
      try {
        const r = await psql(`host=127.0.0.1 port=${c.port} user=postgres sslmode=disable`, 'select 1', {
          env: { PGPASSWORD: 'pw' },
        });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim(), '1');
      } finally {
        await c.stop();
      }
      const again: string[] = [];
      const ino = statSync(a.bin).ino;
      assert.deepEqual(await runnableBinaries(installed, (m) => again.push(m), into), a);
      assert.equal(statSync(a.bin).ino, ino, 'the complete copy is reused, not made again');
      assert.match(again[0]!, /using the copy of the PostgreSQL programs in /);
    });

    test('a copy without its completion marker is not trusted but replaced', async () => {
      const a = await runnableBinaries(installed, () => undefined, into);
      const root = dirname(a.bin);
      await rm(join(root, '.pgtls-complete'));
      await rm(join(root, 'lib'), { recursive: true });
      const b = await runnableBinaries(installed, () => undefined, into);
      assert.deepEqual(b, a);
      assert.ok(existsSync(join(b.lib, 'libpq.so.5.18')));
    });

    test('binaries that are no PostgreSQL tree: a coded error, and nothing left in the target directory', async () => {
      const empty = await mkdtemp(join(work, 'empty-'));
      const fresh = join(into, 'fresh');
      await assert.rejects(
        runnableBinaries(
          { bin: join(empty, 'bin'), lib: join(empty, 'lib'), version: '18.4.0' },
          () => undefined,
          fresh,
        ),
        (e: PgtlsError) =>
          e.code === 'PGTLS_ERR_EMBEDDED_POSTGRES' &&
          e.message.startsWith(`cannot read the PostgreSQL binaries in ${empty}: ENOENT`),
      );
      assert.equal(existsSync(fresh), false);
    });
  },
);

test('undoing a failed start removes what it made, but never a shared parent that holds something else', async () => {
  const top = await mkdtemp(join(tmpdir(), 'pgtls-undo-'));
  // as a first start makes /var/lib/pgtls/<id>/postgres, while another start keeps its copy in /var/lib/pgtls
  await mkdir(join(top, 'pgtls', 'id1', 'postgres'), { recursive: true });
  await mkdir(join(top, 'pgtls', 'pg-copy'), { recursive: true });
  await removeCreated(join(top, 'pgtls', 'id1'), join(top, 'pgtls'));
  assert.deepEqual(readdirSync(join(top, 'pgtls')), ['pg-copy']);
  // alone, the parents it created go too, up to the first one
  await rm(join(top, 'pgtls', 'pg-copy'), { recursive: true });
  await mkdir(join(top, 'pgtls', 'id2', 'postgres'), { recursive: true });
  await removeCreated(join(top, 'pgtls', 'id2'), join(top, 'pgtls'));
  assert.deepEqual(readdirSync(top), []);
  await rm(top, { recursive: true });
});
