/**
 * libpq connection strings and URIs: values, quoting, escapes, percent-decoding and every parse error with libpq's
 * exact text (each also checked against psql 18 in the integration matrix).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConnectionString, uriDecode } from '../../src/client/conninfo.js';
import { ClientError } from '../../src/client/errors.js';

const parsed = (s: string) => Object.fromEntries(parseConnectionString(s));
const fails = (s: string, message: string) =>
  assert.throws(
    () => parseConnectionString(s),
    (e: unknown) => e instanceof ClientError && e.message === message && e.libpqMessage === `${message}\n`,
  );

test('key=value: whitespace, quoting, backslash escapes, later keys win', () => {
  assert.deepEqual(parsed("host = db  port=5433 options='-c search_path=a\\'b' password=p\\ w"), {
    host: 'db',
    port: '5433',
    options: "-c search_path=a'b",
    password: 'p w',
  });
  assert.deepEqual(parsed("sslmode=require sslmode=verify-full dbname=''"), { sslmode: 'verify-full', dbname: '' });
  assert.deepEqual(parsed('requiressl=1'), { sslmode: 'require' });
  assert.deepEqual(parsed('sslmode=verify-full requiressl=0'), { sslmode: 'prefer' });
  assert.deepEqual(parsed(''), {});
});

test('key=value errors carry libpq text', () => {
  fails('host', 'missing "=" after "host" in connection info string');
  fails('host = a x y', 'missing "=" after "x" in connection info string');
  fails("sslmode='verify-ca", 'unterminated quoted string in connection info string');
  fails('foo=bar', 'invalid connection option "foo"');
  fails('ssl=true', 'invalid connection option "ssl"');
});

test('URIs: credentials, several hosts, IPv6, ports, dbname, query parameters, percent-decoding', () => {
  assert.deepEqual(
    parsed(
      'postgresql://u%40x:p%3Aw@[::1]:5433,db.example.com,10.0.0.1:6000/my%20db?sslmode=verify-full&application_name=a%26b',
    ),
    {
      user: 'u@x',
      password: 'p:w',
      host: '::1,db.example.com,10.0.0.1',
      port: '5433,,6000',
      dbname: 'my db',
      sslmode: 'verify-full',
      application_name: 'a&b',
    },
  );
  assert.deepEqual(parsed('postgres://'), {});
  assert.deepEqual(parsed('postgresql:///db?host=%2Fvar%2Frun'), { dbname: 'db', host: '/var/run' });
  assert.deepEqual(parsed('postgresql://%2Ftmp/db'), { host: '/tmp', dbname: 'db' });
  assert.deepEqual(parsed('postgresql://h/?ssl=true'), { host: 'h', sslmode: 'require' });
  assert.deepEqual(parsed('postgresql://h/?requiressl=1'), { host: 'h', sslmode: 'require' });
  assert.deepEqual(parsed('postgresql://h:1/d?port=2'), { host: 'h', port: '2', dbname: 'd' });
  assert.deepEqual(parsed('postgresql://u@/d'), { user: 'u', dbname: 'd' });
});

test('URI errors carry libpq text', () => {
  fails('postgresql://h/?ssl=false', 'invalid URI query parameter: "ssl"');
  fails('postgresql://h/?foo=bar', 'invalid URI query parameter: "foo"');
  fails(
    'postgresql://[::1:1/',
    'end of string reached when looking for matching "]" in IPv6 host address in URI: "postgresql://[::1:1/"',
  );
  fails('postgresql://[]:1/', 'IPv6 host address may not be empty in URI: "postgresql://[]:1/"');
  fails(
    'postgresql://[::1]x/',
    'unexpected character "x" at position 19 in URI (expected ":" or "/"): "postgresql://[::1]x/"',
  );
  fails('postgresql://h/?x=%zz', 'invalid percent-encoded token: "%zz"');
  fails('postgresql://h/?sslmode=%00', 'forbidden value %00 in percent-encoded value: "%00"');
  fails('postgresql://h/?sslmode', 'missing key/value separator "=" in URI query parameter: "sslmode"');
  fails('postgresql://h/?a=b=c', 'extra key/value separator "=" in URI query parameter: "a"');
  fails('postgresql://h/?&sslmode=require', 'missing key/value separator "=" in URI query parameter: ""');
  assert.deepEqual(parsed('postgresql://h/?sslmode=require&'), { host: 'h', sslmode: 'require' });
});

test('percent-decoding produces UTF-8 and rejects truncated tokens', () => {
  assert.equal(uriDecode('%C3%A9t%c3%a9'), 'été');
  assert.throws(() => uriDecode('abc%4'), /invalid percent-encoded token: "abc%4"/);
});
