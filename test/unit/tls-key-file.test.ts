/**
 * src/tls/key-file.ts: check_ssl_key_file_permissions() of be-secure-common.c. Messages checked against PostgreSQL 18
 * (the same key files given to a running server as ssl_key_file, see the log after a reload).
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PgtlsError } from '../../src/errors.js';
import { ERR_KEY_FILE, checkServerKeyFile } from '../../src/tls/key-file.js';

const dir = mkdtempSync(join(tmpdir(), 'pgtls-keyfile-'));
const me = process.getuid?.() ?? 0;
const isRoot = me === 0;

function keyFile(name: string, mode: number, uid = me): string {
  const p = join(dir, name);
  writeFileSync(p, 'not really a key\n');
  chmodSync(p, mode);
  if (uid !== me) chownSync(p, uid, process.getgid?.() ?? 0);
  return p;
}

function refused(path: string, message: string, uid = me): PgtlsError {
  let err: PgtlsError | undefined;
  assert.throws(
    () => checkServerKeyFile(path, uid),
    (e: unknown) => {
      assert.ok(e instanceof PgtlsError, String(e));
      assert.equal(e.code, ERR_KEY_FILE);
      assert.equal(e.message, message);
      assert.equal(e.details.file, path);
      err = e;
      return true;
    },
  );
  return err!;
}

test('owned by the server user: 0600 or less passes, any group/world bit is refused with PostgreSQL detail', () => {
  checkServerKeyFile(keyFile('a.key', 0o600));
  checkServerKeyFile(keyFile('b.key', 0o400));
  for (const mode of [0o640, 0o604, 0o644, 0o610]) {
    const p = keyFile(`open-${mode.toString(8)}.key`, mode);
    const e = refused(p, `private key file "${p}" has group or world access`);
    assert.equal(
      e.details.detail,
      'File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.',
    );
  }
});

test(
  'owned by root while running as another user: 0640 passes, group write or any world bit is refused',
  { skip: !isRoot && 'needs root to chown' },
  () => {
    const server = 12345; // a server uid that is not root
    checkServerKeyFile(keyFile('root-640.key', 0o640, 0), server);
    checkServerKeyFile(keyFile('root-600.key', 0o600, 0), server);
    for (const mode of [0o660, 0o644, 0o650]) {
      const p = keyFile(`root-${mode.toString(8)}.key`, mode, 0);
      refused(p, `private key file "${p}" has group or world access`, server);
    }
  },
);

test(
  'running as root, a root-owned key must be 0600 like any own key (PostgreSQL checks the owner rule first)',
  { skip: !isRoot && 'needs root' },
  () => {
    const p = keyFile('own-root-640.key', 0o640, 0);
    refused(p, `private key file "${p}" has group or world access`, 0);
  },
);

test('owned by someone else: refused', { skip: !isRoot && 'needs root to chown' }, () => {
  const p = keyFile('nobody.key', 0o600, 65534);
  const e = refused(p, `private key file "${p}" must be owned by the database user or root`, 12345);
  assert.match(String(e.details.hint), /uid 12345/);
});

test('missing file and not a regular file', () => {
  const missing = join(dir, 'missing.key');
  refused(missing, `could not access private key file "${missing}": No such file or directory`);
  const d = join(dir, 'dir.key');
  mkdirSync(d);
  refused(d, `private key file "${d}" is not a regular file`);
});
