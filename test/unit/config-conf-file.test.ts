/**
 * src/config/conf-file.ts: postgresql.conf syntax (guc-file.l). Expected values and messages were checked against
 * PostgreSQL 18 (pg_file_settings and the server log after a reload); test/integration/hba-postgres.test.ts repeats
 * the syntax cases side by side with a running server.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ERR_CONFIG_FILE, ERR_CONFIG_SYNTAX, parseConfText, readConfFile } from '../../src/config/conf-file.js';
import { PgtlsError } from '../../src/errors.js';

const F = '/etc/pgtls/pgtls.conf';

function fails(fn: () => unknown, code: string, message: string, details?: Record<string, unknown>): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PgtlsError, String(e));
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    for (const [k, v] of Object.entries(details ?? {})) assert.equal(e.details[k], v, k);
    return true;
  });
}

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'pgtls-conf-'));
}

test('name = value, name value, comments and blank lines; every entry has file and line', () => {
  const text = ['# a comment', '', 'port = 6432', '  ssl off   # trailing comment', 'ssl_ciphers=HIGH:MEDIUM'].join(
    '\n',
  );
  assert.deepEqual(parseConfText(text, F), [
    { name: 'port', value: '6432', file: F, line: 3 },
    { name: 'ssl', value: 'off', file: F, line: 4 },
    { name: 'ssl_ciphers', value: 'HIGH:MEDIUM', file: F, line: 5 },
  ]);
});

test('CRLF line endings count lines like LF', () => {
  assert.deepEqual(parseConfText('port = 1\r\n\r\nssl = on\r\n', F), [
    { name: 'port', value: '1', file: F, line: 1 },
    { name: 'ssl', value: 'on', file: F, line: 3 },
  ]);
});

test('parameter names are case-insensitive (stored lower-case)', () => {
  assert.equal(parseConfText('SSL_Ciphers = HIGH', F)[0]?.name, 'ssl_ciphers');
  assert.equal(parseConfText('SSL_Ciphers = HIGH', F)[0]?.written, 'SSL_Ciphers', 'kept as written for messages');
  assert.equal(parseConfText('ssl_ciphers = HIGH', F)[0]?.written, undefined);
});

test("quoted values: '' and \\' are quotes, \\b \\f \\n \\r \\t and octal escapes, other escaped characters stand for themselves", () => {
  const v = (s: string) => parseConfText(`x = ${s}`, F)[0]?.value;
  assert.equal(v("'it''s'"), "it's");
  assert.equal(v("'it\\'s'"), "it's");
  assert.equal(v("'a\\tb\\101'"), 'a\tbA');
  assert.equal(v("'\\b\\f\\n\\r'"), '\b\f\n\r');
  assert.equal(v("'\\q\\\\'"), 'q\\');
  assert.equal(v('\'"$user", public\''), '"$user", public');
  assert.equal(v("'# not a comment'"), '# not a comment');
  assert.equal(v("''"), '');
  assert.equal(v("'10 min'"), '10 min');
});

test('unquoted values: identifiers, numbers with units, colon lists', () => {
  const v = (s: string) => parseConfText(`x = ${s}`, F)[0]?.value;
  assert.equal(v('64kB'), '64kB');
  assert.equal(v('TLSv1.2'), 'TLSv1.2');
  assert.equal(v('HIGH:MEDIUM:+3DES:!aNULL'.replace('!', '')), 'HIGH:MEDIUM:+3DES:aNULL');
});

test('syntax errors name the token as PostgreSQL does, with file and line', () => {
  const cases: [string, string][] = [
    ['port = 5432 extra', 'syntax error in file "F" line 1, near token "extra"'],
    ['= 5', 'syntax error in file "F" line 1, near token "="'],
    ['work_mem = 64kB junk # x', 'syntax error in file "F" line 1, near token "junk"'],
    ["ssl_ciphers = 'a' 'b'", 'syntax error in file "F" line 1, near token "\'b\'"'],
    ['ssl_ciphers =', 'syntax error in file "F" line 1, near end of line'],
    ['foo bar baz', 'syntax error in file "F" line 1, near token "baz"'],
    // guc-file.l has no rule for an unterminated string: the lexer stops at the quote
    ["application_name = 'abc", 'syntax error in file "F" line 1, near token "\'"'],
  ];
  for (const [line, msg] of cases) {
    fails(
      () => parseConfText(`# first\n${line}\n`, 'F'),
      ERR_CONFIG_SYNTAX,
      `${msg.replace('line 1', 'line 2')} (F:2)`,
      {
        file: 'F',
        line: 2,
      },
    );
  }
});

test('a good file next to the same file with one bad line', () => {
  assert.equal(parseConfText("ssl_ciphers = 'HIGH'\n", F).length, 1);
  fails(
    () => parseConfText("ssl_ciphers = 'HIGH\n", F),
    ERR_CONFIG_SYNTAX,
    `syntax error in file "${F}" line 1, near token "'" (${F}:1)`,
  );
});

test('include, include_if_exists and include_dir are relative to the including file; entries keep their own file:line', () => {
  const d = dir();
  mkdirSync(join(d, 'conf.d'));
  mkdirSync(join(d, 'sub'));
  writeFileSync(
    join(d, 'main.conf'),
    "port = 1\ninclude 'sub/a.conf'\ninclude_if_exists = 'nope.conf'\ninclude_dir conf.d\nssl = on\n",
  );
  writeFileSync(join(d, 'sub', 'a.conf'), "\nssl_ciphers = 'A'\ninclude 'b.conf'\n");
  writeFileSync(join(d, 'sub', 'b.conf'), 'ssl_groups = X25519\n');
  writeFileSync(join(d, 'conf.d', '20-b.conf'), 'upstream_sslmode = require\n');
  writeFileSync(join(d, 'conf.d', '10-a.conf'), 'error_style = azure\n');
  writeFileSync(join(d, 'conf.d', '.hidden.conf'), 'bogus = 1\n');
  writeFileSync(join(d, 'conf.d', 'ignored.txt'), 'bogus = 1\n');
  const got = readConfFile(join(d, 'main.conf')).map((e) => `${e.name}=${e.value}@${e.file.slice(d.length)}:${e.line}`);
  assert.deepEqual(got, [
    'port=1@/main.conf:1',
    'ssl_ciphers=A@/sub/a.conf:2',
    'ssl_groups=X25519@/sub/b.conf:1',
    'error_style=azure@/conf.d/10-a.conf:1',
    'upstream_sslmode=require@/conf.d/20-b.conf:1',
    'ssl=on@/main.conf:5',
  ]);
});

test('a missing config file or include is refused with %m as PostgreSQL prints it', () => {
  const d = dir();
  fails(
    () => readConfFile(join(d, 'none.conf')),
    ERR_CONFIG_FILE,
    `could not open configuration file "${join(d, 'none.conf')}": No such file or directory`,
  );
  writeFileSync(join(d, 'main.conf'), "port = 1\ninclude 'nofile.conf'\n");
  fails(
    () => readConfFile(join(d, 'main.conf')),
    ERR_CONFIG_FILE,
    `could not open configuration file "${join(d, 'nofile.conf')}": No such file or directory`,
  );
  writeFileSync(join(d, 'main.conf'), "port = 1\ninclude_dir 'nodir'\n");
  fails(
    () => readConfFile(join(d, 'main.conf')),
    ERR_CONFIG_SYNTAX,
    `could not open configuration directory "${join(d, 'nodir')}": No such file or directory (${join(d, 'main.conf')}:2)`,
  );
});

test('include nesting deeper than 10 levels is refused', () => {
  const d = dir();
  writeFileSync(join(d, 'loop.conf'), "include 'loop.conf'\n");
  fails(
    () => readConfFile(join(d, 'loop.conf')),
    ERR_CONFIG_FILE,
    `could not open configuration file "${join(d, 'loop.conf')}": maximum nesting depth exceeded`,
  );
  writeFileSync(join(d, 'once.conf'), "include 'leaf.conf'\n");
  writeFileSync(join(d, 'leaf.conf'), 'port = 2\n');
  assert.equal(readConfFile(join(d, 'once.conf'))[0]?.value, '2');
});
