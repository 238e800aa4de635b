/**
 * Connection-string parsing against libpq 18 itself: for many tricky strings (quoting, escapes, URIs, percent
 * encoding, several hosts, legacy spellings), psql and pgtls/client must end the same way — the same parse or
 * option error, or the same connection failure to a closed port (which proves the values were understood alike).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pgtlsOutcome, psqlOutcome } from '../support/client-fixtures.js';

const P = 'host=127.0.0.1 port=1 user=u';
const STRINGS = [
  `${P}`,
  `${P} dbname='my db'`,
  `${P} dbname='it\\'s'`,
  `${P} dbname=a\\ b`,
  `${P} dbname='unterminated`,
  `${P} dbname=`,
  `${P} dbname =  x`,
  `${P} =x`,
  `${P} x`,
  `${P} sslmode=REQUIRE`,
  `${P} sslmode=Require`,
  `${P} sslmode=verify_full`,
  `${P} sslmode=''`,
  `${P} sslnegotiation=DIRECT sslmode=require`,
  `${P} sslnegotiation=direct sslmode=allow`,
  `${P} sslcertmode=Require`,
  `${P} ssl_min_protocol_version=tlsv1.3`,
  `${P} ssl_min_protocol_version=TLSv1.1 ssl_max_protocol_version=TLSv1`,
  `${P} ssl_max_protocol_version=`,
  `${P} channel_binding=require sslmode=disable`,
  `${P} target_session_attrs=read-write`,
  `${P} target_session_attrs=readwrite`,
  `${P} load_balance_hosts=random`,
  `${P} require_auth=!password,!md5`,
  `${P} require_auth=scram-sha-256,md5`,
  `${P} require_auth=`,
  `${P} connect_timeout=x`,
  `${P} connect_timeout=' 5 '`,
  `${P} keepalives=0`,
  `${P} requiressl=1 sslmode=disable`,
  `${P} sslrootcert=system sslmode=verify-ca`,
  `${P} sslrootcert=system sslmode=verify-full`,
  `${P} gssencmode=prefer`,
  `${P} gssencmode=bogus`,
  'host=127.0.0.1,127.0.0.1 port=1,2 user=u',
  'host=127.0.0.1,127.0.0.1 port=1 user=u',
  // (an empty host element means libpq's compiled-in socket directory: /tmp in the embedded libpq 18 build,
  // /var/run/postgresql in Debian's — a build constant, not compared here)
  'host=127.0.0.1 port=1,1 user=u',
  'hostaddr=127.0.0.1 port=1 user=u',
  'hostaddr=127.0.0.1,127.0.0.1 host=a port=1 user=u',
  'hostaddr=localhost port=1 user=u',
  'hostaddr=::1 port=1 user=u',
  'host=127.0.0.1 port=0 user=u',
  'host=127.0.0.1 port=-1 user=u',
  'host=127.0.0.1 port=" 1" user=u',
  'host=127.0.0.1 port=1x user=u',
  'postgresql://u@127.0.0.1:1',
  'postgresql://u@127.0.0.1:1/',
  'postgresql://u@127.0.0.1:1/db?',
  'postgresql://u@127.0.0.1:1/db?&',
  'postgresql://u@127.0.0.1:1/db?sslmode=require&sslmode=disable',
  'postgresql://u@127.0.0.1:1/db?ssl=true',
  'postgresql://u@127.0.0.1:1/db?ssl=TRUE',
  'postgresql://u@127.0.0.1:1/db?requiressl=1',
  'postgresql://u:p%40ss@127.0.0.1:1/d%62',
  'postgresql://u@127.0.0.1:1/db?options=-c%20search_path%3Dx',
  'postgresql://u@127.0.0.1:1/db?sslmode=%72equire',
  'postgresql://u@127.0.0.1:1/db?sslmode=%7',
  'postgresql://u@127.0.0.1:1/db?%73slmode=require',
  'postgresql://u@127.0.0.1:1/db?=x',
  'postgresql://u@127.0.0.1:1/db?a',
  'postgresql://u@127.0.0.1:1/db?sslmode=require=x',
  'postgresql://u@[127.0.0.1]:1/db',
  'postgresql://u@[127.0.0.1:1/db',
  'postgresql://u@[::1]z:1/db',
  'postgresql://u@127.0.0.1:1,127.0.0.1:2/db',
  'postgresql://u@127.0.0.1:1,[::1]:2/db',
  'postgresql://u@:1/db?host=127.0.0.1',
  'postgresql://u@127.0.0.1:1/db?host=127.0.0.1&port=2',
  'postgresql://u@127.0.0.1:x/db',
  'postgresql://u@127.0.0.1:1/db?port=99999',
  'postgres://u@127.0.0.1:1/db?target_session_attrs=primary&sslmode=prefer',
  'postgresql://u@127.0.0.1:1/db?application_name=%E2%9C%93',
  'postgresql://u@127.0.0.1:1/db?bogus=1',
  'postgresql://u@127.0.0.1:1/db?dbname=other',
];

test('parsing and option checks: same end as libpq 18 for tricky connection strings', async () => {
  const problems: string[] = [];
  for (const s of STRINGS) {
    const libpq = await psqlOutcome(s);
    const ours = await pgtlsOutcome(s);
    if (JSON.stringify(libpq) !== JSON.stringify(ours)) {
      problems.push(`${s}\n  libpq: ${JSON.stringify(libpq)}\n  pgtls: ${JSON.stringify(ours)}`);
    }
  }
  assert.deepEqual(problems, [], `${problems.length} of ${STRINGS.length} differ`);
});
