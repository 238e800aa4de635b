/**
 * SHOW HBA against PostgreSQL 18's own pg_hba_file_rules: the same file, read by both, gives the same rows — rule
 * numbers, types, arrays, addresses and netmasks as PostgreSQL prints them, options, and error texts for bad lines.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { rulesFromFile } from '../../src/gateway/admin/hba-rules.js';
import { type HbaReference, hbaFileRules, startReference } from '../support/hba-pg.js';

let ref: HbaReference;

before(async () => {
  ref = await startReference();
});

after(async () => {
  await ref?.destroy();
});

const LINES = [
  'local all all trust',
  'hostssl pgtls admin 127.0.0.1/32 cert',
  'hostssl all alice,bob 10.0.0.0/8 scram-sha-256 clientcert=verify-ca',
  'hostssl app "Mixed Case" ::1/128 trust clientcert=verify-full clientname=DN',
  'host all all 192.168.1.0 255.255.255.0 md5',
  'host all all fe80::/10 reject',
  'hostnossl all all all reject',
  'host replication all samehost trust',
  'host all all samenet password',
  'host all all db.example.com scram-sha-256',
  'hostssl all all all cert map=certmap',
  'host all all 10.0.0.0/33 trust',
  'host all all all nosuchmethod',
  'host all',
  'hostssl all all all cert clientcert=verify-ca',
  'host all all 1.2.3.4 255.255.0.0.1 trust',
];

test('SHOW HBA rows equal pg_hba_file_rules for the same file, error rows included', async () => {
  const text = `${LINES.join('\n')}\n`;
  const theirs = (await hbaFileRules(ref, text)).filter((r) => r.file_name.endsWith('pg_hba.conf'));
  const file = join(ref.dir, 'pg_hba.conf');
  writeFileSync(file, text);
  const mine = rulesFromFile(file);
  assert.equal(mine.length, theirs.length);
  let errors = 0;
  for (let i = 0; i < theirs.length; i++) {
    const t = theirs[i]!;
    const m = mine[i]!;
    const line = LINES[t.line_number - 1];
    const { file_name: _a, ...tRest } = t;
    const { file_name: _b, ...mRest } = m;
    assert.deepEqual(mRest, tRest, line);
    if (t.error) errors++;
  }
  assert.ok(errors >= 4, 'the failing lines were compared too');
});

test('a bad clientcert value: PostgreSQL 18 lists it as a rule with no error (its view misses the message); SHOW HBA names the error', async () => {
  const text = 'local all all trust\nhostssl all all all trust clientcert=maybe\n';
  const theirs = (await hbaFileRules(ref, text)).filter((r) => r.file_name.endsWith('pg_hba.conf'));
  // parse_hba_auth_opt() reports this one with ereport() only, without setting err_msg, so the view shows a row of
  // NULLs with a rule number — while loading the file (RELOAD, start) does refuse it with this message.
  assert.deepEqual(
    { rule: theirs[1]?.rule_number, type: theirs[1]?.type, error: theirs[1]?.error },
    { rule: 2, type: null, error: null },
  );
  const file = join(ref.dir, 'pg_hba-bad.conf');
  writeFileSync(file, text);
  const mine = rulesFromFile(file);
  assert.equal(mine[1]?.rule_number, null);
  assert.equal(mine[1]?.error, 'invalid value for clientcert: "maybe"');
});
