/**
 * src/hba/hba.ts: parse_hba_line() rules and messages. The expected texts are PostgreSQL 18's (read from its log and
 * pg_hba_file_rules with the same lines, see test/integration/hba-postgres.test.ts), followed by the context
 * `(line N of configuration file "F")`.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PgtlsError } from '../../src/errors.js';
import { type HbaLine, parseHba, readHbaFile } from '../../src/hba/hba.js';
import { ERR_HBA, tokenizeAuthText } from '../../src/hba/tokenize.js';

const F = '/etc/pgtls/pg_hba.conf';

function parse(text: string): HbaLine[] {
  return parseHba(tokenizeAuthText(text, F));
}

/** Parse `line` as line 2 (after a good line) and expect PostgreSQL's message for it. */
function refused(line: string, message: string, hint?: string): void {
  assert.throws(
    () => parse(`hostssl all all all trust\n${line}\n`),
    (e: unknown) => {
      assert.ok(e instanceof PgtlsError, String(e));
      assert.equal(e.code, ERR_HBA);
      assert.equal(e.message, `${message} (line 2 of configuration file "${F}")`, line);
      assert.equal(e.details.line, 2);
      assert.equal(e.details.file, F);
      if (hint !== undefined) assert.equal(e.details.hint, hint, line);
      return true;
    },
    line,
  );
}

test('a full line: type, lists, address, method, options, file and line', () => {
  const [l] = parse('hostssl db1,"My DB" alice,/^adm 10.0.0.0/8 cert map=m clientname=DN # c');
  assert.ok(l);
  assert.equal(l.type, 'hostssl');
  assert.deepEqual(
    l.databases.map((t) => [t.text, t.quoted]),
    [
      ['db1', false],
      ['My DB', true],
    ],
  );
  assert.deepEqual(
    l.users.map((t) => t.text),
    ['alice', '/^adm'],
  );
  assert.equal(l.address?.kind, 'cidr');
  assert.equal(l.method, 'cert');
  assert.equal(l.clientcert, 'verify-full', 'cert implies clientcert=verify-full');
  assert.equal(l.clientname, 'DN');
  assert.equal(l.map, 'm');
  assert.equal(l.line, 1);
  assert.equal(l.file, F);
});

test('connection types', () => {
  for (const t of ['local', 'host', 'hostssl', 'hostnossl', 'hostgssenc', 'hostnogssenc']) {
    const line = t === 'local' ? 'local all all trust' : `${t} all all all trust`;
    assert.equal(parse(line)[0]?.type, t);
  }
  refused('hostx all all all trust', 'invalid connection type "hostx"');
  refused(
    'host,hostssl all all all trust',
    'multiple values specified for connection type',
    'Specify exactly one connection type per line.',
  );
});

test('missing fields', () => {
  refused('host', 'end-of-line before database specification');
  refused('host all', 'end-of-line before role specification');
  refused('host all all', 'end-of-line before IP address specification');
  refused('host all all 10.0.0.0/8', 'end-of-line before authentication method');
  refused('local all all', 'end-of-line before authentication method');
  // an unterminated quote swallows the rest of the line
  refused('hostssl all "unterminated all trust', 'end-of-line before IP address specification');
  refused('host a#b all all trust', 'end-of-line before role specification');
});

test('addresses: all/samehost/samenet (quoted too), CIDR v4/v6, host bits set, host names', () => {
  const addr = (a: string) => parse(`host all all ${a} trust`)[0]?.address;
  assert.deepEqual(addr('all'), { kind: 'all' });
  assert.deepEqual(addr('"all"'), { kind: 'all' }, 'PostgreSQL compares address keywords without regard to quotes');
  assert.deepEqual(addr('samehost'), { kind: 'samehost' });
  assert.deepEqual(addr('"samenet"'), { kind: 'samenet' });
  assert.equal((addr('10.1.2.3/8') as { text: string }).text, '10.1.2.3/8');
  assert.equal((addr('"10.0.0.0/8"') as { text: string }).text, '10.0.0.0/8');
  assert.equal((addr('::1/128') as { text: string }).text, '::1/128');
  assert.equal((addr('fe80::/10') as { text: string }).text, 'fe80::/10');
  assert.equal((addr('0.0.0.0/0') as { text: string }).text, '0.0.0.0/0');
  assert.deepEqual(addr('.Example.COM'), { kind: 'hostname', name: '.example.com' });
  assert.deepEqual(addr('db.example.com'), { kind: 'hostname', name: 'db.example.com' });
});

test('address errors', () => {
  refused('host all all 10.0.0.0/33 trust', 'invalid CIDR mask in address "10.0.0.0/33"');
  refused('host all all ::1/129 trust', 'invalid CIDR mask in address "::1/129"');
  refused('host all all 1.2.3.4/ trust', 'invalid CIDR mask in address "1.2.3.4/"');
  refused('host all all 1.2.3.4/-1 trust', 'invalid CIDR mask in address "1.2.3.4/-1"');
  refused('host all all 1.2.3.4/8x trust', 'invalid CIDR mask in address "1.2.3.4/8x"');
  refused('host all all foo.example/24 trust', 'specifying both host name and CIDR mask is invalid: "foo.example/24"');
  refused('host all all 1.2.3.4.5/24 trust', 'specifying both host name and CIDR mask is invalid: "1.2.3.4.5/24"');
  refused(
    'host all all 10.0.0.1,10.0.0.2 trust',
    'multiple values specified for host address',
    'Specify one address range per line.',
  );
});

test('IP address + separate netmask, as PostgreSQL: any mask of the same family, contiguous or not', () => {
  const addr = (a: string) => (parse(`host all all ${a} trust`)[0]?.address as { text: string }).text;
  assert.equal(addr('10.1.2.3 255.255.0.0'), '10.1.2.3/16');
  assert.equal(addr('10.0.0.0 0.0.0.0'), '10.0.0.0/0');
  assert.equal(addr('10.0.0.0 255.0.255.0'), '10.0.0.0/255.0.255.0');
  assert.equal(addr('fe80:: ffff:ffff::'), 'fe80::/32');
  refused(
    'host all all 10.0.0.0',
    'end-of-line before netmask specification',
    'Specify an address range in CIDR notation, or provide a separate netmask.',
  );
  // the method is read as the netmask when it is missing
  refused('host all all 10.0.0.0 trust', 'invalid IP mask "trust": Name or service not known');
  refused('host all all 10.0.0.0 abc trust', 'invalid IP mask "abc": Name or service not known');
  refused('host all all 10.0.0.0 ffff:: trust', 'IP address and mask do not match');
  refused('host all all 10.0.0.0 255.0.0.0,255.255.0.0 trust', 'multiple values specified for netmask');
});

test('methods', () => {
  for (const m of ['trust', 'reject', 'md5', 'password', 'scram-sha-256', 'cert']) {
    assert.equal(parse(`hostssl all all all ${m}`)[0]?.method, m);
  }
  assert.equal(parse('local all all peer')[0]?.method, 'peer');
  refused('host all all all bogus', 'invalid authentication method "bogus"');
  refused('host a ,b all all trust', 'invalid authentication method "all"');
  refused(
    'host all all all trust,md5',
    'multiple values specified for authentication type',
    'Specify exactly one authentication type per line.',
  );
  refused('host all all all peer', 'peer authentication is only supported on local sockets');
  refused('host all all all cert', 'cert authentication is only supported on hostssl connections');
  refused('hostnossl all all all cert', 'cert authentication is only supported on hostssl connections');
});

test('options: name=value format, known names, comma lists', () => {
  const [l] = parse('hostssl all all all trust clientcert=verify-ca,clientname=DN');
  assert.equal(l?.clientcert, 'verify-ca');
  assert.equal(l?.clientname, 'DN');
  refused('hostssl all all all trust foo', 'authentication option not in name=value format: foo');
  refused('hostssl all all all trust foo=bar', 'unrecognized authentication option name: "foo"');
  refused('hostssl all all all trust =bar', 'unrecognized authentication option name: ""');
  refused('hostssl all all all trust extra=1 ', 'unrecognized authentication option name: "extra"');
  // only the plural RADIUS option names exist
  refused('host all all all radius radiusserver=x', 'unrecognized authentication option name: "radiusserver"');
});

test('options are valid only for some methods (PostgreSQL 18 lists)', () => {
  assert.equal(parse('hostssl all all all cert map=m')[0]?.map, 'm');
  assert.equal(parse('hostssl all all all cert map=')[0]?.map, '');
  assert.equal(parse('hostssl all all all cert map=a map=b')[0]?.map, 'b', 'the last one wins');
  const only = 'is only valid for authentication methods';
  refused(
    'hostssl all all all trust map=x',
    `authentication option "map" ${only} ident, peer, gssapi, sspi, cert, and oauth`,
  );
  refused(
    'host all all all scram-sha-256 map=x',
    `authentication option "map" ${only} ident, peer, gssapi, sspi, cert, and oauth`,
  );
  refused('host all all all trust include_realm=0', `authentication option "include_realm" ${only} gssapi and sspi`);
  refused('host all all all trust krb_realm=x', `authentication option "krb_realm" ${only} gssapi and sspi`);
  refused('host all all all trust compat_realm=x', `authentication option "compat_realm" ${only} sspi`);
  refused('host all all all trust pamservice=x', `authentication option "pamservice" ${only} pam`);
  refused('host all all all trust ldapserver=x', `authentication option "ldapserver" ${only} ldap`);
  refused('host all all all trust radiusservers=x', `authentication option "radiusservers" ${only} radius`);
  refused('host all all all trust issuer=x', `authentication option "issuer" ${only} oauth`);
});

test('mandatory arguments of radius and oauth', () => {
  assert.equal(parse('host all all all radius radiusservers=127.0.0.1 radiussecrets=s')[0]?.method, 'radius');
  refused('host all all all radius', 'authentication method "radius" requires argument "radiusservers" to be set');
  refused(
    'host all all all radius radiusservers=x',
    'authentication method "radius" requires argument "radiussecrets" to be set',
  );
  refused('host all all all oauth', 'authentication method "oauth" requires argument "scope" to be set');
  refused('host all all all oauth issuer=x', 'authentication method "oauth" requires argument "scope" to be set');
  refused('host all all all oauth scope=x', 'authentication method "oauth" requires argument "issuer" to be set');
});

test('clientcert and clientname', () => {
  assert.equal(parse('hostssl all all all trust')[0]?.clientcert, 'off');
  assert.equal(parse('hostssl all all all md5 clientcert=verify-full')[0]?.clientcert, 'verify-full');
  assert.equal(parse('hostssl all all all cert clientcert=verify-full')[0]?.clientcert, 'verify-full');
  assert.equal(parse('hostssl all all all trust clientname=CN')[0]?.clientname, 'CN');
  assert.equal(
    parse('hostssl all all all trust clientcert=verify-ca clientcert=verify-full')[0]?.clientcert,
    'verify-full',
  );
  refused('host all all all trust clientcert=verify-full', 'clientcert can only be configured for "hostssl" rows');
  refused('hostnossl all all all md5 clientcert=verify-ca', 'clientcert can only be configured for "hostssl" rows');
  refused('host all all all trust clientname=CN', 'clientname can only be configured for "hostssl" rows');
  refused(
    'hostssl all all all cert clientcert=verify-ca',
    'clientcert only accepts "verify-full" when using "cert" authentication',
  );
  refused('hostssl all all all trust clientcert=1', 'invalid value for clientcert: "1"');
  refused('hostssl all all all trust clientcert=no-verify', 'invalid value for clientcert: "no-verify"');
  refused('hostssl all all all trust clientcert=', 'invalid value for clientcert: ""');
  refused('hostssl all all all trust clientname=cn', 'invalid value for clientname: "cn"');
  // each option is checked where it stands: the first bad one is reported, a later good one does not hide it
  refused('hostssl all all all trust clientcert=1 clientcert=verify-full', 'invalid value for clientcert: "1"');
  refused(
    'host all all all trust clientcert=verify-full map=x',
    'clientcert can only be configured for "hostssl" rows',
  );
});

test('database and user lists: keywords, quoted names, regular expressions checked at load', () => {
  const [l] = parse('host "sameuser",replication,sameuser +grp all trust'.replace('+grp', '"+grp"'));
  assert.deepEqual(
    l?.databases.map((t) => [t.text, t.quoted]),
    [
      ['sameuser', true],
      ['replication', false],
      ['sameuser', false],
    ],
  );
  assert.equal(parse('host all all all trust')[0]?.users[0]?.text, 'all');
  refused(
    'hostssl /abc( all all trust',
    'invalid regular expression "abc(": Invalid regular expression: /abc(/u: Unterminated group',
  );
  refused(
    'hostssl all /[z-a] all trust',
    'invalid regular expression "[z-a]": Invalid regular expression: /[z-a]/u: Range out of order in character class',
  );
  // a quoted "/abc(" is a plain name
  assert.equal(parse('hostssl "/abc(" all all trust')[0]?.databases[0]?.text, '/abc(');
});

test('gateway refusals: role membership and identd cannot be evaluated at the gateway', () => {
  const hint = "List the roles explicitly (or in an @file), or keep this rule in the backend's own pg_hba.conf.";
  refused(
    'host all +grp all trust',
    `"+grp" needs the backend's role membership, which pgtls cannot evaluate at the gateway`,
    hint,
  );
  refused(
    'host samerole all all trust',
    `"samerole" needs the backend's role membership, which pgtls cannot evaluate at the gateway`,
    hint,
  );
  refused(
    'host samegroup all all trust',
    `"samegroup" needs the backend's role membership, which pgtls cannot evaluate at the gateway`,
    hint,
  );
  refused(
    'host all all all ident',
    'ident authentication asks an identd on the client host, which the gateway cannot do for the backend',
    'Use cert or a password method.',
  );
  // a quoted "+grp" is a role name; +x in the database column is a database name
  assert.equal(parse('host +db "+grp" all trust')[0]?.users[0]?.text, '+grp');
  assert.equal(parse('local all all ident')[0]?.method, 'ident');
});

test('include, include_if_exists, include_dir (PostgreSQL 16+): relative to the including file, own file:line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-hba-'));
  mkdirSync(join(dir, 'inc'));
  mkdirSync(join(dir, 'hba.d'));
  writeFileSync(join(dir, 'inc', 'a.conf'), '\nhost all all 10.9.9.9/32 trust\n');
  writeFileSync(join(dir, 'hba.d', '20.conf'), 'host all all 10.0.0.20/32 trust\n');
  writeFileSync(join(dir, 'hba.d', '10.conf'), 'host all all 10.0.0.10/32 trust\n');
  writeFileSync(join(dir, 'hba.d', 'skip.txt'), 'garbage\n');
  const main = join(dir, 'pg_hba.conf');
  writeFileSync(
    main,
    'hostssl all all all trust\ninclude inc/a.conf\ninclude_if_exists nope.conf\ninclude_dir hba.d\nhost all all all reject\n',
  );
  const lines = readHbaFile(main);
  assert.deepEqual(
    lines.map((l) => `${l.file.slice(dir.length)}:${l.line}`),
    ['/pg_hba.conf:1', '/inc/a.conf:2', '/hba.d/10.conf:1', '/hba.d/20.conf:1', '/pg_hba.conf:5'],
  );
  const bad = (text: string, message: string) => {
    writeFileSync(main, text);
    assert.throws(
      () => readHbaFile(main),
      (e: unknown) => e instanceof PgtlsError && e.message === `${message} (line 2 of configuration file "${main}")`,
      text,
    );
  };
  bad(
    'hostssl all all all trust\ninclude missing.conf\n',
    `could not open file "${join(dir, 'missing.conf')}": No such file or directory`,
  );
  bad('hostssl all all all trust\ninclude_dir nodir\n', `could not open directory "${join(dir, 'nodir')}"`);
  bad('hostssl all all all trust\ninclude\n', 'invalid connection type "include"');
  bad('hostssl all all all trust\ninclude a b\n', 'invalid connection type "include"');
  writeFileSync(join(dir, 'self.conf'), 'include self.conf\n');
  assert.throws(
    () => readHbaFile(join(dir, 'self.conf')),
    (e: unknown) =>
      e instanceof PgtlsError &&
      e.message ===
        `could not open file "${join(dir, 'self.conf')}": maximum nesting depth exceeded (line 1 of configuration file "${join(dir, 'self.conf')}")`,
  );
  // an error inside an included file names that file and line
  writeFileSync(join(dir, 'inc', 'a.conf'), 'host all all all bogus\n');
  writeFileSync(main, 'include inc/a.conf\n');
  assert.throws(
    () => readHbaFile(main),
    (e: unknown) =>
      e instanceof PgtlsError &&
      e.message ===
        `invalid authentication method "bogus" (line 1 of configuration file "${join(dir, 'inc', 'a.conf')}")`,
  );
});

test('a missing hba_file', () => {
  assert.throws(
    () => readHbaFile('/nonexistent/pg_hba.conf'),
    (e: unknown) =>
      e instanceof PgtlsError &&
      e.code === ERR_HBA &&
      e.message === 'could not open configuration file "/nonexistent/pg_hba.conf": No such file or directory',
  );
});
