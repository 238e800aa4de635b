import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { psql } from '../support/clients.js';
import { SUPERUSER_PASSWORD, type TestCluster, startTestCluster } from '../support/postgres.js';

let pg: TestCluster;
before(async () => {
  pg = await startTestCluster();
});
after(async () => {
  await pg?.destroy();
});

test('embedded PostgreSQL 18 accepts a password login over TCP', async () => {
  const r = await psql(`host=127.0.0.1 port=${pg.port} user=postgres sslmode=disable`, 'show server_version', {
    env: { PGPASSWORD: SUPERUSER_PASSWORD },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^18\./);
});

test('embedded PostgreSQL refuses a wrong password with 28P01', async () => {
  const r = await psql(`host=127.0.0.1 port=${pg.port} user=postgres sslmode=disable`, 'select 1', {
    env: { PGPASSWORD: 'wrong' },
  });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /FATAL: {2}password authentication failed for user "postgres"/);
});
