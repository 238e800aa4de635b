/**
 * src/hba/ident.ts: pg_ident.conf parsing (parse_ident_line()) and check_usermap()/check_ident_usermap() as
 * PostgreSQL 18 does them for cert authentication (case-sensitive). Parse results were compared with PostgreSQL 18's
 * pg_ident_file_mappings view; test/integration/hba-postgres.test.ts replays maps with client certificates.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PgtlsError } from '../../src/errors.js';
import { type IdentLine, checkUsermap, readIdentFile } from '../../src/hba/ident.js';
import { ERR_HBA } from '../../src/hba/tokenize.js';

function identFile(text: string, extra: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-ident-'));
  for (const [name, content] of Object.entries(extra)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  const file = join(dir, 'pg_ident.conf');
  writeFileSync(file, text);
  return file;
}

function lines(text: string, extra: Record<string, string> = {}): IdentLine[] {
  return readIdentFile(identFile(text, extra));
}

function refused(text: string, message: string, line: number): void {
  const file = identFile(text);
  assert.throws(
    () => readIdentFile(file),
    (e: unknown) => {
      assert.ok(e instanceof PgtlsError, String(e));
      assert.equal(e.code, ERR_HBA);
      assert.equal(e.message, `${message} (line ${line} of configuration file "${file}")`);
      assert.equal(e.details.line, line);
      return true;
    },
  );
}

test('MAPNAME SYSTEM-USER PG-USER lines with comments, quotes, file and line', () => {
  const l = lines('# map  system  pg\n\nm1 alice bob # c\nm1 "Carol X" "all"\n');
  assert.deepEqual(
    l.map((x) => [x.line, x.map, x.system.text, x.database.text, x.database.quoted]),
    [
      [3, 'm1', 'alice', 'bob', false],
      [4, 'm1', 'Carol X', 'all', true],
    ],
  );
});

test('parse errors as PostgreSQL: missing entry, multiple values, bad regex; extra fields are ignored', () => {
  refused('m1 a b\nm1\n', 'missing entry at end of line', 2);
  refused('m1 alice\n', 'missing entry at end of line', 1);
  refused('m1 alice,carol bob\n', 'multiple values in ident field', 1);
  refused('m1,m2 a b\n', 'multiple values in ident field', 1);
  refused('m1 a b,c\n', 'multiple values in ident field', 1);
  refused(
    'm1 /^(.*@example\\.com$ \\1\n',
    'invalid regular expression "^(.*@example\\.com$": Invalid regular expression: /^(.*@example\\.com$/u: Unterminated group',
    1,
  );
  assert.equal(lines('m1 alice bob extra\n')[0]?.database.text, 'bob');
  // PostgreSQL 16+ compiles a /regex database user at load too
  refused(
    'm1 alice /a(\n',
    'invalid regular expression "a(": Invalid regular expression: /a(/u: Unterminated group',
    1,
  );
});

test('@file in a field must expand to one value; include lines (PostgreSQL 16+) work as in pg_hba.conf', () => {
  const file = identFile('m1 @users.txt bob\n', { 'users.txt': 'alice\nbob\n' });
  assert.throws(() => readIdentFile(file), /multiple values in ident field/);
  const l = lines('include inc/i.conf\nm1 a b\n', { 'inc/i.conf': 'm1 x y\n' });
  assert.deepEqual(
    l.map((x) => `${x.system.text}:${x.line}`),
    ['x:1', 'a:2'],
  );
});

test('refusal at the gateway: +group needs the backend', () => {
  refused(
    'm1 /^w$ +grp\n',
    `"+grp" needs the backend's role membership, which pgtls cannot evaluate at the gateway`,
    1,
  );
  assert.equal(lines('m1 /^w$ "+grp"\n')[0]?.database.text, '+grp');
});

test('no map: the names must be equal, case-sensitively', () => {
  assert.deepEqual(checkUsermap([], undefined, 'alice', 'alice'), { ok: true });
  assert.deepEqual(checkUsermap([], '', 'alice', 'Alice'), {
    ok: false,
    reason: 'provided user name (alice) and authenticated user name (Alice) do not match',
  });
});

test('plain entries: map name, system user and pg user must all match exactly', () => {
  const l = lines('m1 alice bob\nm2 carol carol_db\n');
  assert.equal(checkUsermap(l, 'm1', 'bob', 'alice').ok, true);
  assert.equal(checkUsermap(l, 'm1', 'alice', 'alice').ok, false, 'a map replaces the identity rule');
  assert.equal(checkUsermap(l, 'M1', 'bob', 'alice').ok, false, 'map names are case-sensitive');
  assert.equal(checkUsermap(l, 'm1', 'Bob', 'alice').ok, false);
  assert.deepEqual(checkUsermap(l, 'm2', 'bob', 'alice'), {
    ok: false,
    reason: 'no match in usermap "m2" for user "bob" authenticated as "alice"',
  });
  const hit = checkUsermap(l, 'm2', 'carol_db', 'carol');
  assert.equal(hit.ok && hit.line?.line, 2);
});

test('regular expressions: \\1 takes the first capture; unanchored search; quoted /x is a plain name', () => {
  const l = lines('m /^(.*)@example\\.com$ \\1\nm /^cn=(\\w+)-admin$ adm_\\1_x\nm /ops ops\nm "/lit" lit\n');
  assert.equal(checkUsermap(l, 'm', 'alice', 'alice@example.com').ok, true);
  assert.equal(checkUsermap(l, 'm', 'alice', 'alice@example.org').ok, false);
  assert.equal(checkUsermap(l, 'm', 'adm_bob_x', 'cn=bob-admin').ok, true);
  assert.equal(checkUsermap(l, 'm', 'ops', 'devops-team').ok, true, 'regexec() searches, it does not anchor');
  assert.equal(checkUsermap(l, 'm', 'lit', '/lit').ok, true);
  assert.equal(checkUsermap(l, 'm', 'lit', 'xlitx').ok, false);
});

test('\\1 without a capture fails the mapping with PostgreSQL message (and stops the search)', () => {
  const l = lines('m /^x$ \\1\nm /^x$ all\n');
  assert.deepEqual(checkUsermap(l, 'm', 'x', 'x'), {
    ok: false,
    reason: 'regular expression "^x$" has no subexpressions as requested by backreference in "\\1"',
  });
});

test('\\1 is replaced once, literally (no $& patterns from the capture)', () => {
  const l = lines('m /^(.*)$ \\1_\\1\n');
  assert.equal(checkUsermap(l, 'm', 'a$&b_\\1', 'a$&b').ok, true);
});

test('PostgreSQL 16+: pg user all, or a /regex (no \\1 substitution in it)', () => {
  const l = lines('m /^svc- all\nm /^(ops)-.*$ /^(a)\\1$\nm "all" "all"\n');
  assert.equal(checkUsermap(l, 'm', 'anything', 'svc-backup').ok, true);
  assert.equal(checkUsermap(l, 'm', 'aa', 'ops-a').ok, true, 'the regex is taken as written, \\1 unreplaced');
  assert.equal(checkUsermap(l, 'm', 'aops', 'ops-a').ok, false);
  assert.equal(checkUsermap(l, 'm', 'all', 'all').ok, true, 'quoted "all" is a plain name');
  assert.equal(checkUsermap(l, 'm', 'bob', 'all').ok, false);
});
