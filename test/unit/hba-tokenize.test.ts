/**
 * src/hba/tokenize.ts: next_token()/next_field_expand()/tokenize_auth_file() of hba.c. Each expectation was checked
 * against PostgreSQL 18's pg_hba_file_rules view (see test/integration/hba-postgres.test.ts for the live comparison).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PgtlsError } from '../../src/errors.js';
import { ERR_HBA, tokenizeAuthText } from '../../src/hba/tokenize.js';

const F = '/etc/pgtls/pg_hba.conf';

/** Fields as strings: a list joins with ",", a quoted token is shown in double quotes. */
function fields(text: string, file = F): string[][] {
  return tokenizeAuthText(text, file).map((l) =>
    l.fields.map((f) => f.map((t) => (t.quoted ? `"${t.text}"` : t.text)).join(',')),
  );
}

test('fields split on blanks, lists on commas; blank lines and comments vanish; line numbers kept', () => {
  const lines = tokenizeAuthText('# c\n\nhost  db1,db2\tall all trust # tail\n  \nlocal all all peer\n', F);
  assert.deepEqual(
    lines.map((l) => [l.line, l.fields.map((f) => f.map((t) => t.text))]),
    [
      [3, [['host'], ['db1', 'db2'], ['all'], ['all'], ['trust']]],
      [5, [['local'], ['all'], ['all'], ['peer']]],
    ],
  );
  assert.equal(lines[0]?.file, F);
});

test('a comma followed by blanks continues the list; a blank before a comma starts a new field', () => {
  assert.deepEqual(fields('host a, b all'), [['host', 'a,b', 'all']]);
  assert.deepEqual(fields('host a,,b all'), [['host', 'a,b', 'all']]);
  // PostgreSQL: `host a ,b all all trust` reads address "all" and method "all" (invalid authentication method "all")
  assert.deepEqual(fields('host a ,b all all trust'), [['host', 'a', 'b', 'all', 'all', 'trust']]);
  assert.deepEqual(fields('host a, # comment'), [['host', 'a']]);
});

test('quotes: blanks and commas inside, "" is a literal quote, quoted only when the quote comes first', () => {
  assert.deepEqual(fields('host "my db","x,y" "a""b" al"l" ""'), [['host', '"my db","x,y"', '"a"b"', 'all', '""']]);
  assert.deepEqual(fields('host "a#b" c'), [['host', '"a#b"', 'c']]);
});

test('an unterminated quote runs to the end of the line without an error, as in PostgreSQL', () => {
  assert.deepEqual(fields('hostssl all "unterminated all trust'), [['hostssl', 'all', '"unterminated all trust"']]);
});

test('# starts a comment even inside a token', () => {
  assert.deepEqual(fields('host a#b all all trust'), [['host', 'a']]);
});

test('backslash continuation: only as the very last character, even in a comment; joined without a separator', () => {
  const lines = tokenizeAuthText(
    'host all \\\nall 10.0.0.2/32 trust\nhost all all all trust # comment \\\nswallowed\n',
    F,
  );
  assert.deepEqual(
    lines.map((l) => [l.line, l.fields.map((f) => f[0]?.text).join(' ')]),
    [
      [1, 'host all all 10.0.0.2/32 trust'],
      [3, 'host all all all trust'],
    ],
  );
  assert.deepEqual(fields('host al\\\nl x'), [['host', 'all', 'x']]);
  // a blank after the backslash: no continuation, the backslash is part of the token
  assert.deepEqual(fields('host all all 10.0.0.3/32 trust\\ \nhost b'), [
    ['host', 'all', 'all', '10.0.0.3/32', 'trust\\'],
    ['host', 'b'],
  ]);
});

test('@file inserts every token of the file (relative to the including file); quoted "@x" does not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-tok-'));
  const file = join(dir, 'pg_hba.conf');
  writeFileSync(join(dir, 'users.txt'), 'alice\nbob, "carol x" # c\n@more.txt\n');
  writeFileSync(join(dir, 'more.txt'), 'dave\n');
  assert.deepEqual(fields('host all @users.txt,erin all trust', file), [
    ['host', 'all', 'alice,bob,"carol x",dave,erin', 'all', 'trust'],
  ]);
  assert.deepEqual(fields('host all "@users.txt" all trust', file), [['host', 'all', '"@users.txt"', 'all', 'trust']]);
  assert.deepEqual(fields('host all @ all trust', file), [['host', 'all', '@', 'all', 'trust']]);
});

test('a missing @file is refused with PostgreSQL 16+ wording and the line of the reference', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-tok-'));
  const file = join(dir, 'pg_hba.conf');
  assert.throws(
    () => tokenizeAuthText('local all all trust\nhost all @missing.txt all trust\n', file),
    (e: unknown) =>
      e instanceof PgtlsError &&
      e.code === ERR_HBA &&
      e.message ===
        `could not open file "${join(dir, 'missing.txt')}": No such file or directory (line 2 of configuration file "${file}")` &&
      e.details.line === 2,
  );
});

test('@file recursion deeper than 10 levels is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-tok-'));
  writeFileSync(join(dir, 'self.txt'), '@self.txt\n');
  assert.throws(
    () => tokenizeAuthText('host all @self.txt all trust', join(dir, 'pg_hba.conf')),
    (e: unknown) => e instanceof PgtlsError && /maximum nesting depth exceeded/.test(e.message),
  );
});
