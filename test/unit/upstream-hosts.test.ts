/**
 * src/gateway/upstream.ts: libpq's several-host URL for `upstream`, libpq's option checks for the hop, and
 * target_session_attrs' verdicts (src/gateway/upstream-walk.ts reportedFrom + the client's targetRejection).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { targetRejection } from '../../src/client/login-rules.js';
import { reportedFrom } from '../../src/gateway/upstream-walk.js';
import {
  type UpstreamTarget,
  checkTarget,
  parseUpstreamUrl,
  planFor,
  upstreamSummary,
} from '../../src/gateway/upstream.js';

const base: Omit<UpstreamTarget, 'host' | 'port'> = { sslmode: 'require', sslrootcert: '', sslcert: '', sslkey: '' };

test('one host, several hosts, IPv6 in brackets, a Unix-socket directory, default ports', () => {
  assert.deepEqual(parseUpstreamUrl('postgres://db:6543'), {
    host: 'db',
    port: 6543,
    hosts: [{ host: 'db', port: 6543 }],
  });
  assert.deepEqual(parseUpstreamUrl('postgresql://h1:5432,h2:5433,[::1]:5434/').hosts, [
    { host: 'h1', port: 5432 },
    { host: 'h2', port: 5433 },
    { host: '::1', port: 5434 },
  ]);
  assert.deepEqual(parseUpstreamUrl('postgres://a,b:6000/').hosts, [
    { host: 'a', port: 5432 },
    { host: 'b', port: 6000 },
  ]);
  assert.deepEqual(parseUpstreamUrl('postgres://%2Fvar%2Frun%2Fpostgresql:5432').hosts, [
    { host: '/var/run/postgresql', port: 5432 },
  ]);
  assert.deepEqual(parseUpstreamUrl('postgres://').hosts, [{ host: 'localhost', port: 5432 }]);
});

test("bad URLs are refused with libpq's reason", () => {
  assert.throws(() => parseUpstreamUrl('mysql://a'), {
    code: 'PGTLS_ERR_UPSTREAM',
    message: 'invalid upstream "mysql://a"',
  });
  assert.throws(() => parseUpstreamUrl('postgres://a:0'), {
    message: 'invalid upstream "postgres://a:0": invalid port number: "0"',
  });
  assert.throws(() => parseUpstreamUrl('postgres://a:x1'), {
    message: 'invalid upstream "postgres://a:x1": invalid port number: "x1"',
  });
  assert.throws(
    () => parseUpstreamUrl('postgres://[::1'),
    /invalid upstream "postgres:\/\/\[::1": end of string reached/,
  );
});

test('only hosts and ports are read from the URL; anything else is refused, a password never shown', () => {
  assert.throws(() => parseUpstreamUrl('postgres://h:5432/?sslmode=require'), {
    code: 'PGTLS_ERR_UPSTREAM',
    message: 'invalid upstream "postgres://h:5432/?sslmode=require": "sslmode" cannot be set in upstream',
  });
  assert.throws(() => parseUpstreamUrl('postgres://h/sales'), {
    message: 'invalid upstream "postgres://h/sales": "dbname" cannot be set in upstream',
  });
  assert.throws(() => parseUpstreamUrl('postgres://app:s3cret@h:5432'), {
    message: 'invalid upstream "postgres://app:********@h:5432": "user", "password" cannot be set in upstream',
  });
  assert.throws(
    () => parseUpstreamUrl('postgres://app:s3cret@[::1'),
    (e: Error) => !e.message.includes('s3cret'),
  );
});

test("libpq's option rules for the hop: direct TLS needs an sslmode without a plaintext fallback", () => {
  const t = (sslmode: UpstreamTarget['sslmode']): UpstreamTarget => ({
    ...base,
    host: 'db',
    port: 5432,
    sslmode,
    sslnegotiation: 'direct',
  });
  for (const mode of ['disable', 'allow', 'prefer'] as const) {
    assert.equal(
      checkTarget(t(mode)),
      `weak sslmode "${mode}" may not be used with sslnegotiation=direct (use "require", "verify-ca", or "verify-full")`,
    );
  }
  for (const mode of ['require', 'verify-ca', 'verify-full'] as const) assert.equal(checkTarget(t(mode)), undefined);
  assert.deepEqual(planFor(t('require')).methods, ['direct']);
  assert.deepEqual(planFor({ ...t('prefer'), sslnegotiation: 'postgres' }).methods, ['ssl', 'plain']);
  // connect_timeout below 2 counts as 2, as in libpq.
  assert.equal(planFor({ ...t('require'), connectTimeout: 1 }).connectTimeoutSeconds, 2);
  assert.equal(planFor({ ...t('require'), connectTimeout: 0 }).connectTimeoutSeconds, 0);
});

test('target_session_attrs verdicts from what the server reported', () => {
  const primary = reportedFrom([
    ['in_hot_standby', 'off'],
    ['default_transaction_read_only', 'off'],
    ['TimeZone', 'UTC'],
  ]);
  const standby = reportedFrom([
    ['in_hot_standby', 'on'],
    ['default_transaction_read_only', 'off'],
  ]);
  const readOnlyPrimary = reportedFrom([
    ['in_hot_standby', 'off'],
    ['default_transaction_read_only', 'on'],
  ]);
  assert.deepEqual(primary, { in_hot_standby: 'off', default_transaction_read_only: 'off' });
  const verdicts = (r: ReturnType<typeof reportedFrom>) =>
    ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'].map((m) => targetRejection(m, r));
  assert.deepEqual(verdicts(primary), [
    undefined,
    undefined,
    'session is not read-only',
    undefined,
    'server is not in hot standby mode',
    'server is not in hot standby mode',
  ]);
  assert.deepEqual(verdicts(standby), [
    undefined,
    'session is read-only',
    undefined,
    'server is in hot standby mode',
    undefined,
    undefined,
  ]);
  assert.deepEqual(verdicts(readOnlyPrimary), [
    undefined,
    'session is read-only',
    undefined,
    undefined,
    'server is not in hot standby mode',
    'server is not in hot standby mode',
  ]);
});

test('the summary serve --check prints', () => {
  assert.equal(
    upstreamSummary({ ...base, ...parseUpstreamUrl('postgres://a:1,[::1]:2'), targetSessionAttrs: 'read-write' }),
    'a:1, [::1]:2 (upstream_sslmode=require, upstream_target_session_attrs=read-write)',
  );
});
