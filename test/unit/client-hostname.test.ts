/**
 * libpq's host-name rules (src/pki/hostname.ts), each with a passing and a failing case whose message is libpq's.
 * Certificates are generated at test time.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, test } from 'node:test';
import { type Issued, createRootCA, createServerCert } from '../../src/pki/generate.js';
import {
  formatIp,
  inet6Pton,
  inetAton,
  keyUsageAllowsTls,
  verifyHostName,
  wildcardMatches,
} from '../../src/pki/hostname.js';

let ca: Issued;
const certs: Record<string, string> = {};

before(async () => {
  ca = await createRootCA({ subject: { CN: 'hostname test CA' } });
  const make = async (name: string, hosts: string[], cn: string) => {
    certs[name] = (await createServerCert(ca, { subject: { CN: cn }, hosts })).certPem;
  };
  await make('cn-only', [], 'db.example.com');
  await make('cn-ip', [], '10.1.2.3');
  await make('dns', ['db.example.com'], 'ignored.example.com');
  await make('dns-two', ['a.example.com', 'b.example.com'], 'x');
  await make('dns-three', ['a.example.com', 'b.example.com', 'c.example.com'], 'x');
  await make('wild', ['*.example.com'], 'x');
  await make('ip', ['10.1.2.3'], 'db.example.com');
  await make('ip6', ['2001:db8::1'], 'x');
  await make('ip-and-dns-ip', ['10.1.2.3', 'db.example.com'], 'x');
  await make('dns-for-ip-host', ['10.9.9.9'], '10.9.9.9');
  await make('dns-named-ip', ['db.example.com'], '10.1.2.3');
  await make('nul', ['db.example.com\u0000.evil.test'], 'db.example.com');
});

const ok = (name: string, host: string) => {
  const r = verifyHostName(certs[name]!, host);
  assert.equal(r.ok, true, `${name} / ${host}: ${r.ok ? '' : r.message}`);
};
const no = (name: string, host: string, message: string) => {
  const r = verifyHostName(certs[name]!, host);
  assert.equal(r.ok, false, `${name} / ${host} should fail`);
  if (!r.ok) assert.equal(r.message, message);
};

test('CN is used only when there is no SAN of the host type', () => {
  ok('cn-only', 'db.example.com');
  ok('cn-only', 'DB.Example.COM');
  no(
    'cn-only',
    'other.example.com',
    'server certificate for "db.example.com" does not match host name "other.example.com"',
  );
  no(
    'dns',
    'ignored.example.com',
    'server certificate for "db.example.com" does not match host name "ignored.example.com"',
  );
  ok('dns', 'db.example.com');
  // an IP host with only DNS SANs still falls back to the CN (libpq's documented exception)
  ok('dns-named-ip', '10.1.2.3');
  // an IP SAN does not disable the CN for a DNS host
  ok('ip', 'db.example.com');
  no(
    'ip',
    'other.example.com',
    'server certificate for "10.1.2.3" (and 1 other name) does not match host name "other.example.com"',
  );
});

test('DNS SANs: the count of other names, plural and singular, as libpq prints it', () => {
  no(
    'dns-two',
    'c.example.com',
    'server certificate for "a.example.com" (and 1 other name) does not match host name "c.example.com"',
  );
  no(
    'dns-three',
    'd.example.com',
    'server certificate for "a.example.com" (and 2 other names) does not match host name "d.example.com"',
  );
  ok('dns-three', 'c.example.com');
});

test('wildcards: only a whole leftmost "*." label, one label deep', () => {
  ok('wild', 'db.example.com');
  ok('wild', 'DB.EXAMPLE.COM');
  no('wild', 'a.b.example.com', 'server certificate for "*.example.com" does not match host name "a.b.example.com"');
  no('wild', 'example.com', 'server certificate for "*.example.com" does not match host name "example.com"');
  assert.equal(wildcardMatches('*.example.com', 'x.example.com'), true);
  assert.equal(wildcardMatches('db*.example.com', 'db1.example.com'), false);
  assert.equal(wildcardMatches('*', 'anything'), false);
  assert.equal(wildcardMatches('*.com', 'a.b.com'), false);
});

test('IP SANs are compared as addresses, in inet_aton and inet_pton forms', () => {
  ok('ip', '10.1.2.3');
  ok('ip', '10.1.515'); // inet_aton: last part fills two bytes
  ok('ip', '012.1.2.3'); // octal 012 = 10
  ok('ip', '0xa.1.2.3');
  no('ip', '10.1.2.4', 'server certificate for "10.1.2.3" does not match host name "10.1.2.4"');
  ok('ip6', '2001:db8::1');
  ok('ip6', '2001:0DB8:0:0:0:0:0:1');
  no('ip6', '2001:db8::2', 'server certificate for "2001:db8::1" does not match host name "2001:db8::2"');
  // an IP SAN present: no CN fallback for an IP host
  no(
    'ip-and-dns-ip',
    '10.9.9.9',
    'server certificate for "10.1.2.3" (and 1 other name) does not match host name "10.9.9.9"',
  );
  // the IP SAN matches, the CN would have too
  ok('dns-for-ip-host', '10.9.9.9');
});

test('no host and no names: libpq texts', () => {
  const r = verifyHostName(certs.dns!, '');
  assert.deepEqual(r, { ok: false, message: 'host name must be specified for a verified SSL connection', names: [] });
  // the certificate input may be DER or a Node X509Certificate
  const x = new X509Certificate(certs.dns!);
  assert.equal(verifyHostName(x, 'db.example.com').ok, true);
  assert.equal(verifyHostName(x.raw, 'db.example.com').ok, true);
});

test('a name with an embedded NUL is an error, never a match (CVE-2009-4034)', () => {
  no('nul', 'db.example.com', "SSL certificate's name contains embedded null");
  no('nul', 'other.example.com', "SSL certificate's name contains embedded null");
});

test('address parsing and printing helpers', () => {
  assert.deepEqual([...inetAton('127.1')!], [127, 0, 0, 1]);
  assert.deepEqual([...inetAton('2130706433')!], [127, 0, 0, 1]);
  assert.equal(inetAton('256.1.1.1'), undefined);
  assert.equal(inetAton('db.example.com'), undefined);
  assert.equal(inet6Pton('::ffff:10.1.2.3')?.toString('hex'), '00000000000000000000ffff0a010203');
  assert.equal(inet6Pton('1:2:3:4:5:6:7:8:9'), undefined);
  assert.equal(inet6Pton('fe80::1%eth0'), undefined);
  assert.equal(formatIp(inet6Pton('2001:db8:0:0:1:0:0:1')!), '2001:db8::1:0:0:1');
  assert.equal(formatIp(Buffer.from([10, 1, 2, 3])), '10.1.2.3');
});

test('keyUsage: a CA certificate without digitalSignature is not usable as a TLS server leaf', () => {
  assert.equal(keyUsageAllowsTls(ca.certPem), false);
  assert.equal(keyUsageAllowsTls(certs.dns!), true);
});
