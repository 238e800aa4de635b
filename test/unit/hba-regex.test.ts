/**
 * src/hba/regex.ts: PostgreSQL ARE constructs in pg_hba.conf / pg_ident.conf `/regex` tokens, translated for
 * JavaScript. The same expressions are matched by PostgreSQL 18 in test/integration/hba-postgres.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pgRegExp } from '../../src/hba/regex.js';

const m = (re: string, s: string) => pgRegExp(re).test(s);

test('plain expressions behave as in JavaScript: unanchored search, classes, groups', () => {
  assert.equal(m('^app_', 'app_1'), true);
  assert.equal(m('app', 'my_app_1'), true);
  assert.equal(m('^\\d+$', '123'), true);
  assert.equal(m('^(a|b)c$', 'bc'), true);
  assert.equal(m('^(a|b)c$', 'cc'), false);
  assert.equal(m('^.$', 'é'), true, 'one code point, as PostgreSQL matches multibyte names');
});

test('a backslash before a non-alphanumeric character is that character (JS u-mode refuses \\@ \\- \\_)', () => {
  assert.equal(m('^(.*)\\@example\\.com$', 'alice@example.com'), true);
  assert.equal(m('^(.*)\\@example\\.com$', 'alice@exampleXcom'), false);
  assert.equal(m('^svc\\-\\_x$', 'svc-_x'), true);
  assert.equal(m('^a\\/b$', 'a/b'), true);
  assert.equal(m('[a\\-z]', '-'), true);
  assert.equal(m('[a\\-z]', 'b'), false);
});

test('POSIX classes in brackets', () => {
  assert.equal(m('^app-[[:digit:]]+$', 'app-12'), true);
  assert.equal(m('^app-[[:digit:]]+$', 'app-x'), false);
  assert.equal(m('^[[:alpha:]_]+$', 'ab_C'), true);
  assert.equal(m('^[[:alnum:]]+$', 'a1'), true);
  assert.equal(m('^[[:upper:]][[:lower:]]+$', 'Alice'), true);
  assert.equal(m('^[^[:space:]]+$', 'a b'), false);
  assert.equal(m('^[[:xdigit:]]+$', 'c0ffee'), true);
  assert.equal(m('^[[:punct:]]$', '@'), true);
  assert.throws(() => pgRegExp('[[:bogus:]]'), /invalid character class "bogus"/);
});

test('a ] first in a bracket expression is a literal', () => {
  assert.equal(m('^[]a]+$', ']a]'), true);
  assert.equal(m('^[^]a]+$', 'bc'), true);
  assert.equal(m('^[^]a]+$', 'b]'), false);
});

test('ARE escapes: \\y \\Y \\m \\M word boundaries, \\b is a backspace', () => {
  assert.equal(m('^a\\y', 'a b'), true);
  assert.equal(m('^a\\y', 'ab'), false);
  assert.equal(m('a\\Yb', 'ab'), true);
  assert.equal(m('\\mdb', 'x db'), true);
  assert.equal(m('\\mdb', 'xdb'), false);
  assert.equal(m('db\\M', 'db x'), true);
  assert.equal(m('db\\M', 'dbx'), false);
  assert.equal(m('a\\bb', 'a\bb'), true);
  assert.equal(m('a\\bb', 'a b'), false);
});

test('a leading (?i) makes the match case-insensitive; other embedded options are refused', () => {
  assert.equal(m('(?i)^adm', 'Admin'), true);
  assert.equal(m('^adm', 'Admin'), false);
  assert.equal(m('(?c)^adm', 'adm'), true);
  assert.throws(() => pgRegExp('(?x)a b'), /embedded option "x" is not supported by pgtls/);
});

test('broken expressions still throw', () => {
  assert.throws(() => pgRegExp('abc('), /Unterminated group/);
  assert.throws(() => pgRegExp('[z-a]'), /Range out of order/);
});
