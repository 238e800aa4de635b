/**
 * The configuration layer side by side with a real PostgreSQL 18: the same pg_hba.conf lines, pg_ident.conf lines and
 * postgresql.conf lines go to PostgreSQL and to pgtls's readers, and the results must agree — parse errors (from
 * pg_hba_file_rules / pg_ident_file_mappings / pg_file_settings), which line wins for a connection (PostgreSQL logs
 * the file:line it authenticated with), and certificate user-name maps. Known, deliberate differences are listed
 * and asserted as such.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseConfText } from '../../src/config/conf-file.js';
import { ALIASES, SCHEMA, parseValue } from '../../src/config/schema.js';
import { PgtlsError } from '../../src/errors.js';
import { type HbaLine, expandIncludes, ipBytes, parseHba } from '../../src/hba/hba.js';
import { checkUsermap, readIdentFile } from '../../src/hba/ident.js';
import { matchHba } from '../../src/hba/match.js';
import { tokenizeAuthText } from '../../src/hba/tokenize.js';
import {
  type HbaReference,
  type Verdict,
  adminSql,
  applyRules,
  clientCert,
  connectVerdict,
  fileSettings,
  hbaFileRules,
  identFileMappings,
  startReference,
} from '../support/hba-pg.js';

let ref: HbaReference;
before(async () => {
  ref = await startReference();
});
after(async () => {
  await ref?.destroy();
});

const hbaPath = () => `${ref.cluster.dataDir}/pg_hba.conf`;
const contextRe = / \(line \d+ of configuration file "[^"]*"\)$/;

/** Our reading of line `n` of `text` (as pg_hba.conf in the data directory): the parsed line or the error text. */
function ours(text: string, n: number): HbaLine | string {
  const lines = text.split('\n');
  const only = lines.map((l, i) => (i === n - 1 ? l : '')).join('\n');
  try {
    const parsed = parseHba(expandIncludes(tokenizeAuthText(only, hbaPath()), 0));
    assert.equal(parsed.length, 1, `line ${n} parsed to ${parsed.length} rules`);
    return parsed[0]!;
  } catch (e) {
    if (!(e instanceof PgtlsError)) throw e;
    return e.message.replace(contextRe, '');
  }
}

// Lines whose PostgreSQL verdict the unit tests take from the server log; here we check view and parser agree.
const HBA_LINES = [
  'hostx all all all trust',
  'host',
  'host all',
  'host all all',
  'host all all 10.0.0.0/8',
  'host all all 10.0.0.0/33 trust',
  'host all all 10.0.0.0 trust',
  'host all all 10.0.0.0 255.0.255.0 trust',
  'host all all 10.0.0.0 abc trust',
  'host all all 10.0.0.0 ffff:: trust',
  'host all all 10.1.2.3 255.255.0.0 trust',
  'host all all foo.example/24 trust',
  'host all all 1.2.3.4.5/24 trust',
  'host all all 10.0.0.1,10.0.0.2 trust',
  'host all all all trust,md5',
  'host all all all bogus',
  'host all all all peer',
  'host all all all trust map=x',
  'hostssl all all all cert map=m clientname=DN',
  'hostssl all all all trust clientcert=verify-ca,clientname=DN',
  'hostssl all all all md5 clientcert=verify-full',
  'host all all all trust clientcert=verify-full',
  'host all all all trust clientname=CN',
  'hostssl all all all trust foo',
  'hostssl all all all trust foo=bar',
  'hostssl all all all trust =bar',
  'host all all all radius radiusserver=x',
  'hostssl all all all trust ldapserver=x',
  'host all all all trust include_realm=0',
  'host all all all trust compat_realm=x',
  'host all all all trust pamservice=x',
  'host all all all trust issuer=x',
  'host all all all radius',
  'host all all all oauth',
  'host all all all oauth issuer=x',
  'host all all all radius radiusservers=127.0.0.1',
  'host all all all radius radiusservers=127.0.0.1 radiussecrets=s',
  'hostssl all "unterminated all trust',
  'host all all 1.2.3.4/ trust',
  'host all all ::1/129 trust',
  'host all all 1.2.3.4/-1 trust',
  'host all all 1.2.3.4/8x trust',
  'host,hostssl all all all trust',
  'host all all all cert',
  'hostnossl all all all cert',
  'hostssl all all all cert clientcert=verify-full',
  'host all all "all" trust',
  'host all all "samehost" trust',
  'host all all "10.0.0.0/8" trust',
  'host all all samenet trust',
  'host all all .example.com trust',
  'host "all" all all trust',
  'host al"l" "a""b",c all trust',
  'host a ,b all all trust',
  'host a,,b all all trust',
  'host a#b all all trust',
  'host /^db all all trust',
  'hostnossl all all all trust',
  'host all all ::ffff:10.0.0.0/104 trust',
  'host all all fe80:: ffff:ffff:: trust',
  'include missing.conf',
  'include',
  'include a b',
  'include_dir nodir',
  'host all @missing.txt all trust',
  'host all @users.txt all trust',
  'hostssl all all all trust clientcert=verify-ca clientcert=verify-full',
  'hostssl all all all cert map=',
  'host all all all trust clientcert=verify-full map=x',
  'host all all all trust map=x clientcert=verify-full',
  'local all all trust',
];

test('pg_hba.conf: every line gets the same verdict and the same error text as in PostgreSQL 18', async () => {
  await ref.cluster.install('users.txt', 'alice\nbob, "carol x"\n');
  const text = HBA_LINES.join('\n');
  const rows = await hbaFileRules(ref, `${text}\n`);
  const mine = rows.filter((r) => r.file_name === hbaPath());
  assert.equal(mine.length, HBA_LINES.length);
  for (const row of mine) {
    const line = HBA_LINES[row.line_number - 1]!;
    const got = ours(text, row.line_number);
    if (row.error !== null) {
      assert.equal(got, row.error, `line ${row.line_number}: ${line}`);
      continue;
    }
    assert.ok(typeof got !== 'string', `line ${row.line_number}: PostgreSQL accepts \`${line}\`, pgtls says: ${got}`);
    assert.equal(got.type, row.type, line);
    assert.deepEqual(
      got.databases.map((t) => t.text),
      row.database,
      line,
    );
    assert.deepEqual(
      got.users.map((t) => t.text),
      row.user_name,
      line,
    );
    assert.equal(got.method, row.auth_method, line);
    const a = got.address;
    if (a?.kind === 'cidr') {
      assert.deepEqual(a.addr, ipBytes(row.address!), line);
      assert.deepEqual(a.mask, ipBytes(row.netmask!), line);
    } else if (a?.kind === 'hostname') assert.equal(a.name, row.address, line);
    else if (a) assert.equal(a.kind, row.address, line);
    for (const o of row.options ?? []) {
      const [k, v] = o.split('=') as [string, string];
      if (k === 'clientcert') assert.equal(got.clientcert, v, line);
      if (k === 'map') assert.equal(got.map, v, line);
      if (k === 'clientname') assert.equal(got.clientname, v, line);
    }
  }
});

test('pg_hba.conf: the view words clientcert=verify-ca on a cert line differently from the log; pgtls uses the log', async () => {
  const rows = await hbaFileRules(ref, 'hostssl all all all cert clientcert=verify-ca\n');
  assert.equal(rows[0]?.error, 'clientcert can only be set to "verify-full" when using "cert" authentication');
  assert.equal(
    ours('hostssl all all all cert clientcert=verify-ca', 1),
    'clientcert only accepts "verify-full" when using "cert" authentication',
  );
  // values PostgreSQL rejects with an empty row in the view (the text is only in the log): refused here too
  for (const line of ['hostssl all all all trust clientcert=1', 'hostssl all all all trust clientname=cn']) {
    const [row] = await hbaFileRules(ref, `${line}\n`);
    assert.equal(row?.type, null, line); // the view leaves every column empty for these
    assert.equal(typeof ours(line, 1), 'string', line);
  }
});

test('pg_hba.conf: documented gateway refusals (PostgreSQL accepts these lines)', async () => {
  const lines = ['host all +grp all trust', 'host samerole all all trust', 'host all all all ident'];
  const rows = await hbaFileRules(ref, `${lines.join('\n')}\n`);
  for (const [i, line] of lines.entries()) {
    assert.equal(rows[i]?.error, null, line);
    assert.match(String(ours(lines.join('\n'), i + 1)), /gateway/, line);
  }
});

test("pg_hba.conf: a /regex PostgreSQL cannot compile is refused by both (the reason is each engine's own)", async () => {
  const [row] = await hbaFileRules(ref, 'hostssl /abc( all all trust\n');
  assert.equal(row?.error, 'invalid regular expression "abc(": parentheses () not balanced');
  assert.match(String(ours('hostssl /abc( all all trust', 1)), /^invalid regular expression "abc\(": /);
});

test('pg_hba.conf: continuation lines and includes have the same file:line in both', async () => {
  await ref.cluster.install('inc.conf', '\nhost all all 10.9.9.9/32 trust\n');
  const text = [
    'host all \\',
    'alice 127.0.0.1/32 trust',
    'host all bob 127.0.0.1/32 trust # c \\',
    'host all swallowed 127.0.0.1/32 trust',
    'include_if_exists missing.conf',
    'include inc.conf',
    'host all all 10.0.0.3/32 trust\\ ',
  ].join('\n');
  const rows = await hbaFileRules(ref, `${text}\n`);
  const theirs = rows.map((r) => `${r.file_name.replace(ref.cluster.dataDir, '')}:${r.line_number}:${r.error ?? ''}`);
  let got: string[];
  try {
    got = parseHba(expandIncludes(tokenizeAuthText(text, hbaPath()), 0)).map(
      (l) => `${l.file.replace(ref.cluster.dataDir, '')}:${l.line}:`,
    );
  } catch (e) {
    got = [String(e)];
  }
  // PostgreSQL reports the last line's method "trust\" as invalid; pgtls stops at that error
  assert.deepEqual(theirs, [
    '/pg_hba.conf:1:',
    '/pg_hba.conf:3:',
    '/inc.conf:2:',
    '/pg_hba.conf:7:invalid authentication method "trust\\"',
  ]);
  assert.match(got[0]!, /invalid authentication method "trust\\" \(line 7 of configuration file/);
  const good = text.split('\n').slice(0, 6).join('\n');
  assert.deepEqual(
    parseHba(expandIncludes(tokenizeAuthText(good, hbaPath()), 0)).map(
      (l) => `${l.file.replace(ref.cluster.dataDir, '')}:${l.line}:`,
    ),
    theirs.slice(0, 3),
  );
});

interface Case {
  user: string;
  database: string;
  ssl: boolean;
  replication?: 'none' | 'physical' | 'logical';
  host?: string;
}

/** Our verdict for a connection from 127.0.0.1, in the reference's terms. */
async function ourVerdict(rules: readonly HbaLine[], c: Case): Promise<Verdict> {
  const l = await matchHba(rules, {
    address: c.host ?? '127.0.0.1',
    ssl: c.ssl,
    user: c.user,
    database: c.database,
    replication: c.replication ?? 'none',
  });
  if (!l) return { kind: 'none' };
  if (l.method === 'reject') return { kind: 'reject' };
  return { kind: 'line', file: l.file, line: l.line };
}

const MATCH_RULES = [
  'hostssl db1 alice 127.0.0.1/32 trust',
  'hostnossl db1 alice 127.0.0.1/32 reject',
  'host db2 all 127.0.0.1/32 trust',
  'host "all" bob 127.0.0.1/32 trust',
  'host all bob 10.0.0.0/8 trust',
  'host sameuser all 127.0.0.1/32 trust',
  'host /^app_ /^svc_ 127.0.0.1 255.255.255.0 trust',
  'host "My DB",db3 "Carol",dave samehost trust',
  'host replication all all trust',
  'host all @users.txt samenet trust',
  'host all eve 127.0.0.0 255.0.255.0 trust',
  'host all frank 0.0.0.0/0 reject',
  'host all frank all trust',
  'hostssl zdb al"l" 127.0.0.1/32 trust',
  'host all all ::1/128 trust',
  'hostnossl all ivan 127.0.0.1/32 trust',
  'hostssl all ivan "127.0.0.1/32" trust',
  'include inc-match.conf',
  'host all lee .invalid trust',
  'host all lee localhost trust',
  'host all repl 127.0.0.1/32 trust',
  'host replication repl 127.0.0.1/32 trust',
  'host "replication" repl2 127.0.0.1/32 trust',
  'host replication repl2 127.0.0.1/32 reject',
  // ARE constructs (src/hba/regex.ts)
  'host /^app\\-[[:digit:]]+$ rx 127.0.0.1/32 trust',
  'host all /(?i)^rxadm 127.0.0.1/32 trust',
  'host /^[]a]+$ rx2 127.0.0.1/32 trust',
  'host /\\mdb\\M rx3 127.0.0.1/32 trust',
];

const MATCH_CASES: Case[] = [
  { user: 'alice', database: 'db1', ssl: true },
  { user: 'alice', database: 'db1', ssl: false },
  { user: 'x', database: 'db2', ssl: true },
  { user: 'x', database: 'db2', ssl: false },
  { user: 'bob', database: 'all', ssl: true },
  { user: 'bob', database: 'db1', ssl: true },
  { user: 'bob', database: 'bob', ssl: false },
  { user: 'svc_a', database: 'app_x', ssl: true },
  { user: 'app_x', database: 'svc_a', ssl: true },
  { user: 'Carol', database: 'My DB', ssl: true },
  { user: 'carol', database: 'My DB', ssl: true },
  { user: 'dave', database: 'db3', ssl: false },
  { user: 'zed', database: 'replication', ssl: true },
  { user: 'greg', database: 'x', ssl: true },
  { user: 'h i', database: 'x', ssl: false },
  { user: 'eve', database: 'x', ssl: true },
  { user: 'frank', database: 'x', ssl: true },
  { user: 'zed', database: 'zdb', ssl: true },
  { user: 'zed', database: 'zdb', ssl: false },
  { user: 'ivan', database: 'x', ssl: false },
  { user: 'ivan', database: 'x', ssl: true },
  { user: 'judy', database: 'x', ssl: true },
  { user: 'nobody', database: 'x', ssl: true },
  { user: 'nobody', database: 'x', ssl: false },
  { user: 'lee', database: 'x', ssl: true },
  { user: 'repl', database: 'x', ssl: true, replication: 'physical' },
  { user: 'repl', database: 'x', ssl: true, replication: 'logical' },
  { user: 'repl2', database: 'replication', ssl: true },
  { user: 'repl2', database: 'replication', ssl: true, replication: 'physical' },
  { user: 'rx', database: 'app-12', ssl: true },
  { user: 'rx', database: 'app-x', ssl: true },
  { user: 'RXADMIN', database: 'x', ssl: true },
  { user: 'rx2', database: ']a]', ssl: true },
  { user: 'rx2', database: 'b', ssl: true },
  { user: 'rx3', database: 'my db x', ssl: true },
  { user: 'rx3', database: 'mydbx', ssl: true },
];

test('which line wins: the same for every (user, database, TLS) case as check_hba() in PostgreSQL 18', async () => {
  const extra = { 'users.txt': 'greg\n"h i"\n', 'inc-match.conf': 'hostssl all judy all trust\n' };
  const hba = MATCH_RULES.join('\n');
  await applyRules(ref, { hba, extra });
  const rules = parseHba(expandIncludes(tokenizeAuthText(hba, hbaPath()), 0));
  const seen = new Set<string>();
  for (const c of MATCH_CASES) {
    const theirs = await connectVerdict(ref, c);
    const mine = await ourVerdict(rules, c);
    assert.deepEqual(mine, theirs, JSON.stringify(c));
    seen.add(theirs.kind === 'line' ? String(theirs.line) : theirs.kind);
  }
  // the cases do exercise every outcome
  for (const k of [
    'reject',
    'none',
    '1',
    '3',
    '4',
    '6',
    '7',
    '8',
    '10',
    '11',
    '14',
    '16',
    '17',
    '9', // a physical replication connection matches only the replication keyword, and line 9 comes first
    '20',
    '21',
    '23',
    '25',
    '26',
    '27',
    '28',
  ])
    assert.ok(seen.has(k), k);
});

test('which line wins for IPv6 clients (::1): CIDR, netmask, samehost, samenet, families apart', async () => {
  const hba = [
    'host all v6a 127.0.0.1/32 trust',
    'host all v6a ::/0 trust',
    'host all v6b samehost trust',
    'host all v6c ::1 ffff:ffff:ffff:ffff:: trust',
    'host all v6d 0.0.0.0/0 trust',
    'host all v6e samenet trust',
    'hostnossl all v6f ::1/128 reject',
    'host all v6f ::1/128 trust',
  ].join('\n');
  await applyRules(ref, { hba });
  const rules = parseHba(expandIncludes(tokenizeAuthText(hba, hbaPath()), 0));
  const cases: Case[] = [
    { user: 'v6a', database: 'x', ssl: true, host: '::1' },
    { user: 'v6a', database: 'x', ssl: true },
    { user: 'v6b', database: 'x', ssl: false, host: '::1' },
    { user: 'v6c', database: 'x', ssl: true, host: '::1' },
    { user: 'v6d', database: 'x', ssl: true, host: '::1' },
    { user: 'v6e', database: 'x', ssl: true, host: '::1' },
    { user: 'v6f', database: 'x', ssl: false, host: '::1' },
    { user: 'v6f', database: 'x', ssl: true, host: '::1' },
  ];
  const seen: string[] = [];
  for (const c of cases) {
    const theirs = await connectVerdict(ref, c);
    assert.deepEqual(await ourVerdict(rules, c), theirs, JSON.stringify(c));
    seen.push(theirs.kind === 'line' ? String(theirs.line) : theirs.kind);
  }
  assert.deepEqual(seen, ['2', '1', '3', '4', 'none', '6', 'reject', '8']);
});

test('pg_ident.conf: the same lines are accepted or refused with the same text', async () => {
  await ref.cluster.install('users.txt', 'alice\nbob\n');
  await ref.cluster.install('inc-ident.conf', 'm1 x y\n');
  const lines = [
    'm1 alice bob',
    'm1',
    'm1 alice',
    'm1 alice bob extra',
    'm1 alice,carol bob',
    'm1 /^(.*)@example\\.com$ \\1',
    'm1 /^x$ \\1',
    'm1 "/^x$" all',
    'm1 /^z$ /^adm',
    'm1 "all" "all"',
    'm1 @users.txt bob',
    'include inc-ident.conf',
    'm1,m2 a b',
    'm1 "a""b" c',
  ];
  const rows = await identFileMappings(ref, `${lines.join('\n')}\n`);
  const dir = ref.cluster.dataDir;
  for (const row of rows.filter((r) => r.file_name.endsWith('/pg_ident.conf'))) {
    const only = lines.map((l, i) => (i === row.line_number - 1 ? l : '')).join('\n');
    await ref.cluster.install('probe-ident.conf', `${only}\n`);
    let got: string;
    try {
      const parsed = readIdentFile(`${dir}/probe-ident.conf`);
      got = parsed.map((p) => `${p.map}|${p.system.text}|${p.database.text}`).join(';');
    } catch (e) {
      got = `error: ${(e as Error).message.replace(contextRe, '')}`;
    }
    const expected = row.error ? `error: ${row.error}` : `${row.map_name}|${row.sys_name}|${row.pg_username}`;
    if (lines[row.line_number - 1]?.startsWith('include')) continue; // included from another file name here
    assert.equal(got, expected, lines[row.line_number - 1]);
  }
});

test('certificate maps: cert + map= lets the same (CN, user) pairs in as PostgreSQL 18', async () => {
  const ident = [
    'm /^(.*)@example\\.com$ \\1',
    'm bob robert',
    'm /^svc-.*$ all',
    'm /^ops-(.*)$ /^adm_',
    'm /^nocap$ \\1',
    'm /^nocap$ all',
    'm /^(.*)\\@corp\\.example$ \\1',
  ].join('\n');
  await applyRules(ref, { hba: 'hostssl all all 127.0.0.1/32 cert map=m', ident });
  await ref.cluster.install('probe-ident.conf', `${ident}\n`);
  const lines = readIdentFile(`${ref.cluster.dataDir}/probe-ident.conf`);
  const certs = new Map<string, { cert: string; key: string }>();
  const cases: [string, string][] = [
    ['alice@example.com', 'alice'],
    ['alice@example.com', 'bob'],
    ['alice@example.org', 'alice'],
    ['bob', 'robert'],
    ['bob', 'bob'],
    ['svc-backup', 'anyone'],
    ['ops-x', 'adm_1'],
    ['ops-x', 'user'],
    ['nocap', 'x'],
    ['carol@corp.example', 'carol'],
    ['carol@corpXexample', 'carol'],
  ];
  for (const [cn, user] of cases) {
    if (!certs.has(cn)) certs.set(cn, await clientCert(ref, cn));
    const theirs = await connectVerdict(ref, { user, database: 'postgres', ssl: true, cert: certs.get(cn)! });
    const mine = checkUsermap(lines, 'm', user, cn);
    const pgOk = theirs.kind === 'line';
    assert.equal(
      mine.ok,
      pgOk,
      `${cn} as ${user}: PostgreSQL ${JSON.stringify(theirs)}, pgtls ${JSON.stringify(mine)}`,
    );
    if (!pgOk) {
      assert.equal(theirs.kind, 'failed');
      assert.equal((theirs as { message: string }).message, `certificate authentication failed for user "${user}"`);
    }
  }
});

test('postgresql.conf syntax: what PostgreSQL reads, pgtls reads the same; its syntax errors are ours', async () => {
  const cases = [
    'work_mem = 64kB',
    'work_mem 64kB',
    'search_path = \'"$user", public\'',
    "application_name = 'it''s'",
    "application_name = 'it\\'s'",
    "application_name = 'a\\tb\\101'",
    'ssl_ciphers = HIGH:MEDIUM',
    "application_name = 'abc",
    'port = 5432 extra',
    '= 5',
    'work_mem = 64kB junk # x',
    "ssl_ciphers = 'a' 'b'",
    'ssl_ciphers =',
    'foo bar baz',
    'ssl_min_protocol_version = tlsv1.3 # comment',
    "ssl_max_protocol_version = ''",
    'a.b = 1',
  ];
  for (const line of cases) {
    const rows = await fileSettings(ref, 'probe.conf', `${line}\n`);
    const theirs =
      rows[0]?.error === 'syntax error' ? 'syntax error' : `${rows[0]?.name?.toLowerCase()}=${rows[0]?.setting}`;
    let mine: string;
    try {
      const [e] = parseConfText(`${line}\n`, 'probe.conf');
      mine = `${e?.name}=${e?.value}`;
    } catch (e) {
      mine = /^syntax error in file/.test((e as Error).message) ? 'syntax error' : String(e);
    }
    assert.equal(mine, theirs, line);
  }
});

test('postgresql.conf syntax: pgtls is more lenient than PostgreSQL on unquoted paths, dotted names and 1.5min', async () => {
  for (const line of [
    'ssl_cert_file = /etc/x.crt',
    'ssl_cert_file = ./x.crt',
    'authentication_timeout = 1.5min',
    'a.b.c = 1',
  ]) {
    const rows = await fileSettings(ref, 'probe.conf', `${line}\n`);
    assert.equal(rows[0]?.error, 'syntax error', line);
    assert.equal(parseConfText(`${line}\n`, 'probe.conf').length, 1, line);
  }
  await adminSql(ref, 'select 1');
});

test('the ssl_* keys: same type, default, enum values and range as PostgreSQL 18 (deliberate differences listed)', async () => {
  const rows = JSON.parse(
    await adminSql(
      ref,
      "select json_agg(s) from (select name, boot_val, vartype, unit, min_val, max_val, enumvals from pg_settings where name like 'ssl%' or name = 'authentication_timeout') s",
    ),
  ) as {
    name: string;
    boot_val: string;
    vartype: string;
    unit: string | null;
    min_val: string | null;
    max_val: string | null;
    enumvals: string[] | null;
  }[];
  // pgtls defaults that differ on purpose: TLS on, files generated under data_directory
  const deliberate: Record<string, string> = { ssl: 'on', ssl_cert_file: '', ssl_key_file: '' };
  let compared = 0;
  for (const r of rows) {
    if (!(r.name in SCHEMA)) continue;
    const spec = SCHEMA[r.name as keyof typeof SCHEMA];
    compared++;
    assert.equal(
      spec.default,
      deliberate[r.name] ?? (r.name === 'authentication_timeout' ? '60s' : r.boot_val),
      r.name,
    );
    const kind = spec.kind as {
      type: string;
      values?: readonly string[];
      allowEmpty?: boolean;
      minMs?: number;
      maxMs?: number;
    };
    const type = { string: 'string', path: 'string', bool: 'bool', enum: 'enum', duration: 'integer', int: 'integer' }[
      kind.type
    ];
    assert.equal(type, r.vartype, r.name);
    if (r.enumvals) assert.deepEqual([...(kind.allowEmpty ? [''] : []), ...(kind.values ?? [])], r.enumvals, r.name);
    if (r.name === 'authentication_timeout') {
      assert.equal(r.unit, 's');
      assert.equal(kind.minMs, Number(r.min_val) * 1000);
      assert.equal(kind.maxMs, Number(r.max_val) * 1000);
    }
  }
  assert.ok(compared >= 16, `compared ${compared} keys`);
  assert.ok('ssl_ecdh_curve' in ALIASES);
});

test('values: PostgreSQL and pgtls accept and refuse the same spellings', async () => {
  const cases: [keyof typeof SCHEMA, string][] = [
    ['ssl_prefer_server_ciphers', 'on'],
    ['ssl_prefer_server_ciphers', 'OFF'],
    ['ssl_prefer_server_ciphers', 'tr'],
    ['ssl_prefer_server_ciphers', 'of'],
    ['ssl_prefer_server_ciphers', 'o'],
    ['ssl_prefer_server_ciphers', 'yes'],
    ['ssl_prefer_server_ciphers', '1'],
    ['ssl_prefer_server_ciphers', 'maybe'],
    ['ssl_prefer_server_ciphers', ' on'],
    ['authentication_timeout', ' 30 '],
    ['ssl_min_protocol_version', 'tlsv1.3'],
    ['ssl_min_protocol_version', 'TLSv1.4'],
    ['ssl_min_protocol_version', ''],
    ['ssl_max_protocol_version', ''],
    ['authentication_timeout', '1500ms'],
    ['authentication_timeout', '500ms'],
    ['authentication_timeout', '10 min'],
    ['authentication_timeout', '2.5'],
    ['authentication_timeout', '1h'],
    ['authentication_timeout', '10x'],
    ['authentication_timeout', '-1'],
  ];
  for (const [key, value] of cases) {
    const rows = await fileSettings(ref, 'probe.conf', `${key} = '${value}'\n`);
    const pgOk = rows[0]?.error === null;
    assert.equal(parseValue(key, value).ok, pgOk, `${key} = '${value}': PostgreSQL says ${rows[0]?.error ?? 'ok'}`);
  }
});
