/**
 * src/hba/match.ts: check_hba() — first match wins; connection type against TLS; address; database and user lists.
 * The same rule sets are replayed against PostgreSQL 18 in test/integration/hba-postgres.test.ts.
 */
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { test } from 'node:test';
import { dottedQuad, parseHba } from '../../src/hba/hba.js';
import { type ConnectionFacts, matchHba, matchHbaNow, normalizeAddress } from '../../src/hba/match.js';
import { tokenizeAuthText } from '../../src/hba/tokenize.js';

const F = '/etc/pgtls/pg_hba.conf';

/** The winning line number for a connection, or 0 for PostgreSQL's implicit reject (no pg_hba.conf entry). */
type Facts = Partial<Omit<ConnectionFacts, 'address'>> & { address?: string | undefined };

async function winner(rules: string, f: Facts): Promise<number> {
  const lines = parseHba(tokenizeAuthText(rules, F));
  const { address = '127.0.0.1', ...rest } = 'address' in f && f.address === undefined ? { ...f, address: '' } : f;
  const facts: ConnectionFacts = {
    ...(address === '' ? {} : { address }),
    ssl: true,
    user: 'alice',
    database: 'db1',
    replication: 'none',
    ...rest,
  };
  const line = (await matchHba(lines, facts))?.line ?? 0;
  // The connection path's variant (no promise unless DNS is needed) must pick the same line in every case.
  const now = matchHbaNow(lines, facts);
  assert.equal((now instanceof Promise ? await now : now)?.line ?? 0, line, 'matchHbaNow agrees with matchHba');
  return line;
}

test('dottedQuad() accepts exactly what isIP() calls IPv4, with the same bytes', () => {
  const fixed = [
    '0.0.0.0',
    '255.255.255.255',
    '127.0.0.1',
    '10.1.2.3',
    '1.2.3',
    '1.2.3.4.5',
    '01.2.3.4',
    '1.2.3.04',
    '00.0.0.0',
    '256.1.1.1',
    '1.1.1.256',
    '1.1.1.1000',
    '1..1.1',
    '.1.1.1',
    '1.1.1.',
    '',
    '::1',
    '::ffff:1.2.3.4',
    '1.2.3.4 ',
    ' 1.2.3.4',
    '1.2.3.a',
    '199.249.250.251',
    '249.250.251.252',
    '300.0.0.0',
    '1.2.3.-4',
    '١.٢.٣.٤',
  ];
  // Bounded random strings over the characters that matter, plus random valid and near-valid addresses.
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const random: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const parts = Array.from({ length: 3 + rnd(3) }, () => String(rnd(4) === 0 ? rnd(1000) : rnd(256)));
    const s = parts.join('.');
    random.push(rnd(5) === 0 ? s.replace(/\d/, (d) => `0${d}`) : s);
    random.push(Array.from({ length: rnd(12) }, () => '0129.5:'[rnd(7)]).join(''));
  }
  for (const s of [...fixed, ...random]) {
    const got = dottedQuad(s);
    assert.equal(got !== undefined, isIP(s) === 4, JSON.stringify(s));
    if (got) assert.deepEqual(got, s.split('.').map(Number), s);
  }
});

test('matchHbaNow answers without a promise until a line with a host name needs DNS', async () => {
  const facts: ConnectionFacts = {
    address: '127.0.0.1',
    ssl: true,
    user: 'alice',
    database: 'db1',
    replication: 'none',
  };
  const now = (rules: string) => matchHbaNow(parseHba(tokenizeAuthText(rules, F)), facts);
  const direct = now('host all bob all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all localhost reject\n');
  assert.ok(!(direct instanceof Promise));
  assert.equal(direct?.line, 2);
  assert.equal(now('host all bob 10.0.0.0/8 trust\n'), undefined);
  // A host name before the match: the rest goes through DNS, in order (localhost resolves to 127.0.0.1 here).
  const viaDns = now('host all bob all trust\nhost all all localhost reject\nhost all all all trust\n');
  assert.ok(viaDns instanceof Promise);
  assert.equal((await viaDns)?.line, 2);
});

test('first matching line wins; no line means the implicit reject', async () => {
  const rules = 'host db1 alice all reject\nhost all all all trust\n';
  assert.equal(await winner(rules, {}), 1);
  assert.equal(await winner(rules, { user: 'bob' }), 2);
  assert.equal(await winner('host db2 all all trust\n', {}), 0);
  assert.equal(await winner('', {}), 0);
});

test('hostssl matches only TLS, hostnossl only plaintext, host both; hostgssenc never, hostnogssenc always', async () => {
  const rules = 'hostssl all all all trust\nhostnossl all all all trust\n';
  assert.equal(await winner(rules, { ssl: true }), 1);
  assert.equal(await winner(rules, { ssl: false }), 2);
  assert.equal(await winner('host all all all trust', { ssl: true }), 1);
  assert.equal(await winner('host all all all trust', { ssl: false }), 1);
  assert.equal(await winner('hostgssenc all all all trust', { ssl: false }), 0);
  assert.equal(await winner('hostnogssenc all all all trust', { ssl: true }), 1);
  assert.equal(await winner('hostnogssenc all all all trust', { ssl: false }), 1);
});

test('local lines match only Unix-socket connections, host lines only TCP', async () => {
  const rules = 'local all all trust\nhost all all all trust\n';
  assert.equal(await winner(rules, { address: undefined }), 1);
  assert.equal(await winner(rules, {}), 2);
  assert.equal(await winner('host all all all trust', { address: undefined }), 0);
});

test('CIDR v4 and v6, host bits set, separate netmask incl. a non-contiguous one, /0, families apart', async () => {
  const at = (a: string, address: string) => winner(`host all all ${a} trust`, { address });
  assert.equal(await at('127.0.0.1/32', '127.0.0.1'), 1);
  assert.equal(await at('127.0.0.2/32', '127.0.0.1'), 0);
  assert.equal(await at('10.1.2.3/8', '10.200.0.1'), 1);
  assert.equal(await at('10.1.2.3/8', '11.0.0.1'), 0);
  assert.equal(await at('10.1.0.0 255.255.0.0', '10.1.9.9'), 1);
  assert.equal(await at('10.1.0.0 255.255.0.0', '10.2.0.1'), 0);
  assert.equal(await at('10.0.0.7 255.0.255.0', '10.9.0.1'), 1);
  assert.equal(await at('10.0.0.7 255.0.255.0', '10.9.1.1'), 0);
  assert.equal(await at('0.0.0.0/0', '192.0.2.9'), 1);
  assert.equal(await at('0.0.0.0/0', '::1'), 0, 'an IPv4 rule never matches an IPv6 client');
  assert.equal(await at('::/0', '127.0.0.1'), 0, 'an IPv6 rule never matches an IPv4 client');
  assert.equal(await at('::1/128', '::1'), 1);
  assert.equal(await at('fd00::/8', 'fd00::2'), 1);
  assert.equal(await at('fd00::/8', 'fe80::1'), 0);
  assert.equal(await at('2001:db8::/32', '2001:db8:ffff::1'), 1);
  assert.equal(await at('2001:db8::/33', '2001:db8:8000::1'), 0);
  assert.equal(await at('::ffff:10.0.0.0/104', '::ffff:10.1.1.1'), 1);
  assert.equal(await at('all', 'fe80::1'), 1);
});

test('the gateway unwraps IPv4-mapped IPv6 client addresses', () => {
  assert.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(normalizeAddress('::FFFF:10.0.0.1'), '10.0.0.1');
  assert.equal(normalizeAddress('::1'), '::1');
  assert.equal(normalizeAddress('10.1.2.3'), '10.1.2.3');
});

test('samehost: an address of this machine; samenet: a subnet of one of its interfaces', async () => {
  const local = Object.values(networkInterfaces())
    .flat()
    .filter((i) => i && i.family === 'IPv4')
    .map((i) => i!.address);
  assert.ok(local.includes('127.0.0.1'));
  assert.equal(await winner('host all all samehost trust', { address: '127.0.0.1' }), 1);
  assert.equal(await winner('host all all samehost trust', { address: '127.0.0.2' }), 0);
  assert.equal(await winner('host all all samenet trust', { address: '127.0.0.2' }), 1, '127.0.0.0/8 is lo');
  assert.equal(await winner('host all all samenet trust', { address: '198.51.100.1' }), 0);
});

test('host names: reverse lookup must equal the name (or end with .suffix) and resolve back', async () => {
  assert.equal(await winner('host all all localhost trust', { address: '127.0.0.1' }), 1);
  assert.equal(await winner('host all all db.invalid trust', { address: '127.0.0.1' }), 0);
  assert.equal(await winner('host all all .invalid trust', { address: '127.0.0.1' }), 0);
});

test('databases: all, sameuser, names, quoted keywords, regex, replication', async () => {
  const db = (d: string, f: Facts) => winner(`host ${d} all all trust`, f);
  assert.equal(await db('all', { database: 'x' }), 1);
  assert.equal(await db('"all"', { database: 'x' }), 0, 'a quoted "all" is a database named all');
  assert.equal(await db('"all"', { database: 'all' }), 1);
  assert.equal(await db('al"l"', { database: 'x' }), 1, 'quoted only when the quote comes first');
  assert.equal(await db('sameuser', { database: 'alice', user: 'alice' }), 1);
  assert.equal(await db('sameuser', { database: 'db1', user: 'alice' }), 0);
  assert.equal(await db('"sameuser"', { database: 'sameuser', user: 'alice' }), 1);
  assert.equal(await db('db1,db2', { database: 'db2' }), 1);
  assert.equal(await db('DB1', { database: 'db1' }), 0, 'names are case-sensitive');
  assert.equal(await db('"My DB"', { database: 'My DB' }), 1);
  assert.equal(await db('/^app_', { database: 'app_x' }), 1);
  assert.equal(await db('/^app_', { database: 'xapp_' }), 0);
  assert.equal(await db('/app', { database: 'myapp1' }), 1, 'unanchored like regexec()');
  assert.equal(await db('"/^app_"', { database: 'app_x' }), 0, 'a quoted /x is a plain name');
  // replication: never matches a normal connection; a physical walsender matches only the keyword
  assert.equal(await db('replication', { database: 'replication' }), 0);
  assert.equal(await db('"replication"', { database: 'replication' }), 1);
  assert.equal(await db('replication', { replication: 'physical', database: 'x' }), 1);
  assert.equal(await db('all', { replication: 'physical', database: 'x' }), 0);
  assert.equal(
    await db('all', { replication: 'logical', database: 'x' }),
    1,
    'logical replication is a database connection',
  );
});

test('users: all, names, quoted, regex, @file lists', async () => {
  const user = (u: string, name: string) => winner(`host all ${u} all trust`, { user: name });
  assert.equal(await user('all', 'anyone'), 1);
  assert.equal(await user('"all"', 'anyone'), 0);
  assert.equal(await user('alice,bob', 'bob'), 1);
  assert.equal(await user('alice', 'Alice'), 0);
  assert.equal(await user('"Alice"', 'Alice'), 1);
  assert.equal(await user('/^adm_', 'adm_x'), 1);
  assert.equal(await user('/^adm_', 'user'), 0);
  assert.equal(await user('sameuser', 'sameuser'), 1, 'sameuser is a keyword only for databases');
});

test('every field must match on the same line', async () => {
  const rules = [
    'hostssl db1 bob all trust',
    'hostnossl db1 alice all trust',
    'hostssl db2 alice all trust',
    'hostssl db1 alice 10.0.0.0/8 trust',
    'hostssl db1 alice 127.0.0.0/8 reject',
  ].join('\n');
  assert.equal(await winner(rules, {}), 5);
});
