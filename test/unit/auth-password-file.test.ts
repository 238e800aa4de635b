/**
 * md5 and cleartext verification against each kind of stored secret, the PasswordMessage checks, and the auth_file
 * reader with PgBouncer's userlist.txt rules.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  classifySecret,
  md5Response,
  md5Secret,
  parsePasswordPacket,
  verifyCleartextPassword,
  verifyMd5Response,
} from '../../src/auth/password.js';
import { parseAuthFile, readAuthFile } from '../../src/config/auth-file.js';
import { isPgtlsError } from '../../src/errors.js';
import { buildScramSecret } from '../../src/protocol/scram.js';

const md5 = (s: string | Buffer) => createHash('md5').update(s).digest('hex');

describe('md5 and cleartext', () => {
  test('md5 secret and salted response, computed as PostgreSQL documents them', () => {
    assert.equal(md5Secret('admin', '1234'), `md5${md5('1234admin')}`);
    const salt = Buffer.from([1, 2, 3, 4]);
    const want = `md5${md5(Buffer.concat([Buffer.from(md5('1234admin')), salt]))}`;
    assert.equal(md5Response('admin', '1234', salt), want);
    assert.equal(md5Response('admin', md5Secret('admin', '1234'), salt), want, 'the secret is password-equivalent');
  });
  test('verifyMd5Response against md5, plaintext, SCRAM and no secret', () => {
    const salt = Buffer.from('abcd');
    const good = md5Response('bob', 'pw', salt);
    assert.deepEqual(verifyMd5Response('bob', md5Secret('bob', 'pw'), salt, good), { ok: true });
    assert.deepEqual(verifyMd5Response('bob', 'pw', salt, good), { ok: true });
    assert.deepEqual(verifyMd5Response('bob', md5Secret('bob', 'pw'), salt, md5Response('bob', 'nope', salt)), {
      ok: false,
      logDetail: 'Password does not match for user "bob".',
    });
    assert.deepEqual(verifyMd5Response('bob', md5Secret('bob', 'pw'), Buffer.from('abce'), good), {
      ok: false,
      logDetail: 'Password does not match for user "bob".',
    });
    assert.deepEqual(verifyMd5Response('bob', buildScramSecret('pw'), salt, good), {
      ok: false,
      logDetail: 'User "bob" has a password that cannot be used with MD5 authentication.',
    });
    assert.deepEqual(verifyMd5Response('bob', undefined, salt, good), {
      ok: false,
      logDetail: 'Role "bob" does not exist.',
    });
  });
  test('verifyCleartextPassword against SCRAM (with SASLprep), md5 and plaintext', () => {
    const scram = buildScramSecret('\u2168x');
    assert.deepEqual(verifyCleartextPassword('u', scram, '\u2168x'), { ok: true });
    assert.deepEqual(verifyCleartextPassword('u', scram, 'IXx'), { ok: true }, 'SASLprep maps Ⅸ to IX');
    assert.deepEqual(verifyCleartextPassword('u', scram, 'IXy'), {
      ok: false,
      logDetail: 'Password does not match for user "u".',
    });
    assert.deepEqual(verifyCleartextPassword('u', md5Secret('u', 'pw'), 'pw'), { ok: true });
    assert.equal(verifyCleartextPassword('u', md5Secret('u', 'pw'), 'pW').ok, false);
    assert.deepEqual(verifyCleartextPassword('u', 'plain', 'plain'), { ok: true });
    assert.equal(verifyCleartextPassword('u', 'plain', 'plain2').ok, false);
    // a non-UTF-8 password: SASLprep does not apply, the raw bytes are hashed on both sides
    const raw = Buffer.from([0x70, 0xe9, 0x77]);
    assert.deepEqual(verifyCleartextPassword('u', buildScramSecret(raw), raw), { ok: true });
  });
  test('classifySecret follows get_password_type', () => {
    assert.equal(classifySecret(`md5${'0'.repeat(32)}`).kind, 'md5');
    assert.equal(classifySecret(`md5${'0'.repeat(31)}G`).kind, 'plain');
    assert.equal(classifySecret(`md5${'A'.repeat(32)}`).kind, 'plain', 'upper-case hex is not an md5 secret');
    assert.equal(classifySecret(buildScramSecret('x')).kind, 'scram');
    assert.equal(classifySecret('SCRAM-SHA-256$x').kind, 'plain');
  });
  test('PasswordMessage: NUL-terminated, not empty', () => {
    assert.deepEqual(parsePasswordPacket(Buffer.from('secret\0')), { password: Buffer.from('secret') });
    assert.deepEqual(parsePasswordPacket(Buffer.from('\0')), {
      error: { sqlstate: '28P01', message: 'empty password returned by client' },
    });
    for (const bad of ['secret', 'a\0b\0', '']) {
      assert.deepEqual(parsePasswordPacket(Buffer.from(bad)), {
        error: { sqlstate: '08P01', message: 'invalid password packet size' },
      });
    }
  });
});

describe("auth_file (PgBouncer's userlist.txt)", () => {
  const F = 'userlist.txt';
  const parse = (text: string) => parseAuthFile(text, F);
  const fails = (text: string, message: string) =>
    assert.throws(
      () => parse(text),
      (e: unknown) => isPgtlsError(e, 'PGTLS_ERR_AUTH_FILE') && e.message === message,
    );
  test('entries, comments, blank lines, escapes, extra fields, last one wins', () => {
    const scram = buildScramSecret('x');
    const users = parse(
      [
        '; a comment',
        '',
        '   "alice" "plain pw" extra fields ignored',
        `"bob"\t"${scram}"`,
        '"say ""hi""" "pa""ss"',
        `"md" "md5${'f'.repeat(32)}"`,
        '"alice" "second"',
      ].join('\n'),
    );
    assert.deepEqual([...users.keys()], ['alice', 'bob', 'say "hi"', 'md']);
    assert.deepEqual(users.get('alice'), { user: 'alice', secret: 'second', kind: 'plain', line: 7 });
    assert.equal(users.get('bob')?.kind, 'scram');
    assert.equal(users.get('say "hi"')?.secret, 'pa"ss');
    assert.equal(users.get('md')?.kind, 'md5');
  });
  test('PgBouncer quirks: anything before the password quote is skipped, even a line break; empty password', () => {
    const users = parse('"carol" junk\n "pw"\n"dave" ""\n');
    assert.equal(users.get('carol')?.secret, 'pw');
    assert.equal(users.get('carol')?.line, 1);
    assert.equal(users.get('dave')?.secret, '');
  });
  test('errors name file:line and never the secret', () => {
    fails('"a" "b"\n# comment\n', 'userlist.txt:2: broken auth file: expected a double-quoted user name');
    fails('alice "pw"\n', 'userlist.txt:1: broken auth file: expected a double-quoted user name');
    fails('\n\n"alice\n', 'userlist.txt:3: broken auth file: the user name has no closing double quote');
    fails('"alice"\n', 'userlist.txt:1: broken auth file: expected a double-quoted password');
    fails('"alice" "topsecret\n', 'userlist.txt:1: broken auth file: the password has no closing double quote');
    fails(`"${'u'.repeat(128)}" "p"`, 'userlist.txt:1: username too long in auth file');
    assert.doesNotThrow(() => parse(`"${'u'.repeat(127)}" "p"`));
    fails(`"u" "${'p'.repeat(65531)}"`, 'userlist.txt:1: password too long in auth file');
    fails('"a" "b\0"', 'userlist.txt:1: broken auth file: NUL byte');
  });
  test('readAuthFile: unreadable file and invalid UTF-8', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgtls-authfile-'));
    await assert.rejects(readAuthFile(join(dir, 'missing.txt')), (e: unknown) =>
      isPgtlsError(e, 'PGTLS_ERR_AUTH_FILE_READ'),
    );
    const bad = join(dir, 'bad.txt');
    writeFileSync(bad, Buffer.from([0x22, 0x61, 0x22, 0x20, 0x22, 0xff, 0x22]));
    await assert.rejects(readAuthFile(bad), (e: unknown) => isPgtlsError(e, 'PGTLS_ERR_AUTH_FILE'));
    const good = join(dir, 'good.txt');
    writeFileSync(good, '"a" "b"\n');
    assert.equal((await readAuthFile(good)).get('a')?.secret, 'b');
  });
});
