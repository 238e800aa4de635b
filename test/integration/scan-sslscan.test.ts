/**
 * `pgtls scan` against real PostgreSQL servers with four TLS policies, compared with Debian's sslscan
 * (`--starttls-psql --xml=-`) on the same server: same versions, same suites per version, same preferred suite, and
 * every group sslscan reports is reported by pgtls too. Policy checks pass and fail with the offending items listed.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run } from '../support/clients.js';
import { type Pki, makePki, pgtls, pgtlsJson, startServer } from '../support/doctor-servers.js';
import type { TestCluster } from '../support/postgres.js';

interface ScanJson {
  sslRequest: string;
  versions: Record<string, boolean>;
  suites: { version: string; name: string; id: string; preferred: boolean }[];
  groups: { version: string; name: string }[];
  policy?: {
    pass: boolean;
    offendingVersions: string[];
    offendingSuites: { version: string; name: string }[];
    missingSuites: string[];
  };
}

interface SslscanResult {
  versions: Set<string>;
  suites: Map<string, string[]>;
  preferred: Map<string, string>;
  groups: Map<string, Set<string>>;
}

const VERSION_OF: Record<string, string> = { '1.0': 'TLSv1', '1.1': 'TLSv1.1', '1.2': 'TLSv1.2', '1.3': 'TLSv1.3' };
/** sslscan names groups as OpenSSL's long names; pgtls as the names ssl_groups accepts. */
const GROUP_OF: Record<string, string> = {
  x25519: 'X25519',
  x448: 'X448',
  'secp256r1 (NIST P-256)': 'prime256v1',
  'secp384r1 (NIST P-384)': 'secp384r1',
  'secp521r1 (NIST P-521)': 'secp521r1',
  ffdhe2048: 'ffdhe2048',
  ffdhe3072: 'ffdhe3072',
  ffdhe4096: 'ffdhe4096',
  ffdhe6144: 'ffdhe6144',
  ffdhe8192: 'ffdhe8192',
};

async function sslscan(port: number): Promise<SslscanResult> {
  const r = await run('sslscan', ['--starttls-psql', '--no-colour', '--xml=-', `127.0.0.1:${port}`], {
    timeoutMs: 120_000,
  });
  assert.equal(r.code, 0, r.stderr);
  const versions = new Set<string>();
  for (const m of r.stdout.matchAll(/<protocol type="tls" version="([\d.]+)" enabled="1"/g))
    versions.add(VERSION_OF[m[1]!]!);
  const suites = new Map<string, string[]>();
  const preferred = new Map<string, string>();
  for (const m of r.stdout.matchAll(/<cipher status="(\w+)" sslversion="([^"]+)"[^>]* cipher="([^"]+)"/g)) {
    const v = m[2] === 'TLSv1.0' ? 'TLSv1' : m[2]!;
    suites.set(v, [...(suites.get(v) ?? []), m[3]!]);
    if (m[1] === 'preferred') preferred.set(v, m[3]!);
  }
  const groups = new Map<string, Set<string>>();
  for (const m of r.stdout.matchAll(/<group sslversion="([^"]+)"[^>]* name="([^"]+)"/g)) {
    const v = m[1] === 'TLSv1.0' ? 'TLSv1' : m[1]!;
    const g = groups.get(v) ?? new Set<string>();
    g.add(GROUP_OF[m[2]!] ?? m[2]!);
    groups.set(v, g);
  }
  return { versions, suites, preferred, groups };
}

/** Assert pgtls and sslscan agree on one server. */
function assertAgree(ours: ScanJson, theirs: SslscanResult): void {
  const ourVersions = Object.entries(ours.versions)
    .filter(([, on]) => on)
    .map(([v]) => v)
    .sort();
  assert.deepEqual(ourVersions, [...theirs.versions].sort(), 'accepted versions differ from sslscan');
  for (const v of ourVersions) {
    const mine = ours.suites.filter((s) => s.version === v).map((s) => s.name);
    assert.deepEqual([...mine].sort(), [...(theirs.suites.get(v) ?? [])].sort(), `${v} suites differ from sslscan`);
    assert.equal(
      ours.suites.find((s) => s.version === v && s.preferred)?.name,
      theirs.preferred.get(v),
      `${v} preferred suite`,
    );
    const ourGroups = new Set(ours.groups.filter((g) => g.version === v).map((g) => g.name));
    for (const g of theirs.groups.get(v) ?? [])
      assert.ok(ourGroups.has(g), `${v}: sslscan reports group ${g}, pgtls does not`);
  }
}

describe('scan agrees with sslscan --starttls-psql', () => {
  let ec: Pki;
  let rsa: Pki;
  const servers: TestCluster[] = [];
  before(async () => {
    ec = await makePki();
    rsa = await makePki({ keyType: 'rsa-2048' });
  });
  after(async () => {
    for (const s of servers) await s.destroy();
  });

  test('TLS 1.3-only server: modern passes, intermediate passes, azure-single-server passes (nothing below 1.3)', async () => {
    const pg = await startServer(ec, { settings: { ssl_min_protocol_version: 'TLSv1.3' } });
    servers.push(pg);
    const { code, json } = await pgtlsJson<ScanJson>(['scan', `127.0.0.1:${pg.port}`, '--policy', 'modern']);
    assert.equal(code, 0);
    assert.deepEqual(json.versions, { TLSv1: false, 'TLSv1.1': false, 'TLSv1.2': false, 'TLSv1.3': true });
    assert.equal(json.policy?.pass, true);
    assertAgree(json, await sslscan(pg.port));
  });

  test('Azure single-server policy: RSA key, the four ECDHE-RSA suites, TLS 1.2 only', async () => {
    const pg = await startServer(rsa, {
      settings: {
        ssl_ciphers:
          'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256',
        ssl_max_protocol_version: 'TLSv1.2',
      },
    });
    servers.push(pg);
    const pass = await pgtlsJson<ScanJson>(['scan', `127.0.0.1:${pg.port}`, '--policy', 'azure-single-server']);
    assert.equal(pass.code, 0);
    assert.equal(pass.json.policy?.pass, true);
    assert.deepEqual(pass.json.policy?.missingSuites, []);
    assert.deepEqual(pass.json.suites.map((s) => s.name).sort(), [
      'ECDHE-RSA-AES128-GCM-SHA256',
      'ECDHE-RSA-AES128-SHA256',
      'ECDHE-RSA-AES256-GCM-SHA384',
      'ECDHE-RSA-AES256-SHA384',
    ]);
    assertAgree(pass.json, await sslscan(pg.port));

    // The same server fails `modern` (TLS 1.2 accepted) and `intermediate` (two CBC suites).
    const modern = await pgtlsJson<ScanJson>(['scan', `127.0.0.1:${pg.port}`, '--policy', 'modern']);
    assert.equal(modern.code, 1);
    assert.deepEqual(modern.json.policy?.offendingVersions, ['TLSv1.2']);
    const inter = await pgtls(['scan', `127.0.0.1:${pg.port}`, '--policy', 'intermediate']);
    assert.equal(inter.code, 1);
    assert.match(inter.stdout, /Policy intermediate .*FAIL/);
    assert.match(
      inter.stdout,
      /✗ TLSv1\.2 ECDHE-RSA-AES256-SHA384 \(TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384\) is accepted/,
    );
    assert.match(inter.stdout, /✗ TLSv1\.2 ECDHE-RSA-AES128-SHA256/);
    assert.doesNotMatch(inter.stdout, /✗ TLSv1\.2 ECDHE-RSA-AES128-GCM-SHA256/);
  });

  test('PostgreSQL defaults: TLS 1.2 + 1.3; azure-flexible passes, azure-single-server fails on the extra suites', async () => {
    const pg = await startServer(ec);
    servers.push(pg);
    const flex = await pgtlsJson<ScanJson>(['scan', `127.0.0.1:${pg.port}`, '--policy', 'azure-flexible']);
    assert.equal(flex.code, 0, JSON.stringify(flex.json.policy));
    assertAgree(flex.json, await sslscan(pg.port));
    const single = await pgtlsJson<ScanJson>(['scan', `127.0.0.1:${pg.port}`, '--policy', 'azure-single-server']);
    assert.equal(single.code, 1);
    assert.ok(single.json.policy!.offendingSuites.some((s) => s.name === 'ECDHE-ECDSA-AES256-GCM-SHA384'));
    assert.ok(single.json.policy!.missingSuites.includes('ECDHE-RSA-AES128-GCM-SHA256'));
  });

  test('legacy server (TLS 1.0 allowed, security level 0): TLS 1.0/1.1 found like sslscan; custom --min TLSv1.2 fails', async () => {
    const pg = await startServer(rsa, {
      settings: { ssl_min_protocol_version: 'TLSv1', ssl_ciphers: 'HIGH:MEDIUM:+3DES:!aNULL:@SECLEVEL=0' },
    });
    servers.push(pg);
    const r = await pgtlsJson<ScanJson>(['scan', `127.0.0.1:${pg.port}`, '--min', 'TLSv1.2', '--ciphers', 'AEAD']);
    assert.equal(r.code, 1);
    assert.equal(r.json.versions.TLSv1, true);
    assert.equal(r.json.versions['TLSv1.1'], true);
    assert.deepEqual(r.json.policy?.offendingVersions, ['TLSv1', 'TLSv1.1']);
    assert.ok(r.json.policy!.offendingSuites.some((s) => s.name === 'ECDHE-RSA-AES128-SHA256'));
    assertAgree(r.json, await sslscan(pg.port));
  });
});

/** testssl.sh (Debian package testssl.sh) is a second, independent scanner; the test runs when it is installed. */
const hasTestssl = existsSync('/usr/bin/testssl');

describe('scan agrees with testssl.sh --starttls postgres', { skip: !hasTestssl && 'testssl.sh not installed' }, () => {
  test('everything OpenSSL 1.1 offers (ALL at security level 0, TLS 1.0+): same (version, suite) pairs', async () => {
    const rsa = await makePki({ keyType: 'rsa-2048' });
    const pg = await startServer(rsa, {
      settings: { ssl_min_protocol_version: 'TLSv1', ssl_ciphers: 'ALL:@SECLEVEL=0' },
    });
    try {
      const { json } = await pgtlsJson<ScanJson>(['scan', `127.0.0.1:${pg.port}`]);
      const out = join(mkdtempSync(join(tmpdir(), 'pgtls-testssl-')), 'r.json');
      await run(
        'testssl',
        ['--starttls', 'postgres', '--quiet', '--color', '0', '-E', '--jsonfile', out, `127.0.0.1:${pg.port}`],
        {
          timeoutMs: 170_000,
        },
      );
      const V: Record<string, string> = { tls1: 'TLSv1', tls1_1: 'TLSv1.1', tls1_2: 'TLSv1.2', tls1_3: 'TLSv1.3' };
      const theirs = new Set<string>();
      for (const e of JSON.parse(readFileSync(out, 'utf8')) as { id: string }[]) {
        const m = /^cipher-(tls1(?:_\d)?)_x([0-9a-f]+)$/.exec(e.id);
        if (m) theirs.add(`${V[m[1]!]} 0x${m[2]!.padStart(4, '0')}`);
      }
      const mine = new Set(json.suites.map((x) => `${x.version} ${x.id.toLowerCase()}`));
      assert.ok(theirs.size > 50, `testssl found only ${theirs.size} suites`);
      assert.deepEqual([...mine].sort(), [...theirs].sort());
    } finally {
      await pg.destroy();
    }
  });
});

describe('scan edge cases', () => {
  test('a server with ssl = off: the scan says so and exits 1', async () => {
    const { startTestCluster } = await import('../support/postgres.js');
    const pg = await startTestCluster();
    try {
      const r = await pgtls(['scan', `127.0.0.1:${pg.port}`]);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /answered SSLRequest with 'N'/);
    } finally {
      await pg.destroy();
    }
  });

  test('usage errors: unknown policy, policy with --min, no target', async () => {
    const a = await pgtls(['scan', '127.0.0.1:1', '--policy', 'nope']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /unknown policy "nope" \[PGTLS_ERR_DOCTOR_POLICY\]/);
    const b = await pgtls(['scan', '127.0.0.1:1', '--policy', 'modern', '--min', 'TLSv1.2']);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /cannot be combined/);
    const c = await pgtls(['scan']);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /expected exactly one HOST\[:PORT\]/);
    const h = await pgtls(['scan', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: pgtls scan HOST\[:PORT\]/);
  });
});
