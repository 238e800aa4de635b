/**
 * Issue 11: native_data_plane = auto is the default. With the addon built, `pgtls serve` runs its clients on the
 * native data plane and says nothing about it; with the addon missing (PGTLS_NATIVE_ADDON pointing at a file that
 * is not there) it logs exactly one warning saying why and serves the same sessions on Node's tls; `on` refuses to
 * start instead, and names the reason and the way out.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type Peer, openSession } from '../support/hostile.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import { type ServeChild, adminClient, startServeChild } from '../support/serve-child.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
const MISSING = { PGTLS_NATIVE_ADDON: '/nonexistent/pgtls_native.node' };
const FALLBACK = "native_data_plane = auto: using Node's tls (the native addon was not built (npm run build:native))";

before(async () => {
  // this file is about the default: whatever transport the suite was asked to run on does not apply here
  Reflect.deleteProperty(process.env, 'PGTLS_TEST_NATIVE_DATA_PLANE'); // assigning undefined would set "undefined"
  fx = await makeFixtures();
  cluster = await startTestCluster({
    hba: ['local all all trust', 'host all dflt_user 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256'],
  });
  const admin = await adminClient(cluster);
  await admin.query('create role dflt_user login');
  await admin.end();
});
after(async () => {
  await cluster?.destroy();
});

interface LogLine {
  level?: string;
  msg?: string;
  outcome?: string;
  group?: string;
  tls_version?: string;
}

/** Start a child with `conf`, log in twice over TLS, stop it; its log lines. */
async function twoSessions(conf: Record<string, string>, env?: Record<string, string>): Promise<LogLine[]> {
  const hba = writeFixture(fx, 'default-hba.conf', 'hostssl all all all trust\n');
  const gw: ServeChild = await startServeChild(fx, cluster, { hba_file: hba, ...conf }, env ? { env } : {});
  const held: Peer[] = [];
  try {
    for (let i = 0; i < 2; i++) assert.equal(await openSession(gw.port, held, 'dflt_user'), undefined);
  } finally {
    for (const p of held) p.sock.destroy();
    await gw.stop();
  }
  return gw
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

const relayed = (lines: LogLine[]) => lines.filter((l) => l.msg === 'connection' && l.outcome === 'relayed');
const warnings = (lines: LogLine[]) => lines.filter((l) => l.level === 'warn').map((l) => l.msg);

test('by default, with the addon built: the native data plane, and no warning about it', async () => {
  const lines = await twoSessions({});
  const sessions = relayed(lines);
  assert.equal(sessions.length, 2);
  // only the native transport reports the key-exchange group
  for (const s of sessions) assert.equal(typeof s.group, 'string', JSON.stringify(s));
  assert.deepEqual(
    warnings(lines).filter((w) => w?.includes('native_data_plane')),
    [],
  );
});

test('by default, with the addon missing: one warning, and the same sessions on Node tls', async () => {
  const lines = await twoSessions({}, MISSING);
  assert.deepEqual(
    warnings(lines).filter((w) => w?.includes('native_data_plane')),
    [FALLBACK],
  );
  const sessions = relayed(lines);
  assert.equal(sessions.length, 2);
  for (const s of sessions) {
    assert.equal(s.group, undefined, JSON.stringify(s));
    assert.match(s.tls_version ?? '', /^TLSv1\.[23]$/);
  }
});

test('native_data_plane = on with the addon missing: the gateway refuses to start and says why', async () => {
  const err = await startServeChild(fx, cluster, { native_data_plane: 'on' }, { env: MISSING }).then(
    async (gw) => {
      await gw.stop();
      return 'started';
    },
    (e: Error) => e.message,
  );
  assert.match(
    err,
    /native_data_plane = on, but the native data plane is unavailable: the native addon was not built \(npm run build:native\)/,
  );
});

test('native_data_plane = off: Node tls, no warning, even with the addon built', async () => {
  const lines = await twoSessions({ native_data_plane: 'off' });
  assert.equal(relayed(lines).length, 2);
  for (const s of relayed(lines)) assert.equal(s.group, undefined);
  assert.deepEqual(
    warnings(lines).filter((w) => w?.includes('native_data_plane')),
    [],
  );
});
