/**
 * The metrics listener: /metrics scraped over HTTP and HTTPS with basic auth and parsed strictly; the status page
 * rendered in headless Chromium (Debian's, driven by playwright-core), its content asserted and a screenshot saved.
 * The data behind it is real: console sessions over TLS (a TLS 1.2 and a TLS 1.3 client with psql), a refused one,
 * generated certificate files.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { type MetricsListener, readMetricsAuthFile, startMetricsListener } from '../../src/gateway/http/listener.js';
import { cleanEnv, run } from '../support/clients.js';
import { type GatewayFixtures, makeFixtures, writeFixture } from '../support/gateway-fixtures.js';
import { type ConsoleServer, FileView, startConsoleServer } from '../support/operator-console.js';
import { parseExposition, sampleValue } from '../support/prom-parse.js';

let fx: GatewayFixtures;
let srv: ConsoleServer;
let plain: MetricsListener;
let secure: MetricsListener;
const AUTH = 'prometheus:scrape-secret-123';

before(async () => {
  fx = await makeFixtures();
  const hba = writeFixture(fx, 'pg_hba.conf', 'hostssl pgtls admin all trust\n');
  const configFile = writeFixture(
    fx,
    'pgtls.conf',
    [
      `ssl_cert_file = '${fx.server.cert}'`,
      `ssl_key_file = '${fx.server.key}'`,
      `ssl_ca_file = '${fx.clientCa}'`,
      `ssl_crl_file = '${fx.clientCrl}'`,
      `hba_file = '${hba}'`,
      "report_min_protocol_version = 'TLSv1.3'",
      "admin_users = 'admin'",
      '',
    ].join('\n'),
  );
  const view = new FileView(configFile);
  srv = await startConsoleServer(view, { cert: readFileSync(fx.server.cert), key: readFileSync(fx.server.key) });
  plain = await startMetricsListener({ listenAddresses: 'localhost', port: 0, metrics: view.metrics, view });
  const authFile = writeFixture(fx, 'metrics-auth', `# scrapers\n${AUTH}\n`, 0o600);
  secure = await startMetricsListener({
    listenAddresses: '127.0.0.1',
    port: 0,
    metrics: view.metrics,
    view,
    tls: { cert: readFileSync(fx.server.cert), key: readFileSync(fx.server.key) },
    users: readMetricsAuthFile(authFile),
  });
  // Real traffic: a TLS 1.3 and a TLS 1.2 session (the report-only policy lists the latter), and a refused user.
  const ci = (extra: string) =>
    `host=localhost port=${srv.port} dbname=pgtls user=admin sslmode=verify-full sslrootcert=${fx.root} ${extra}`;
  for (const extra of ['application_name=modern', 'ssl_max_protocol_version=TLSv1.2 application_name=legacy-billing']) {
    const r = await run('psql', ['-X', '-c', 'SHOW VERSION', ci(extra)], { env: cleanEnv() });
    assert.equal(r.code, 0, r.stderr);
  }
  const refused = await run('psql', ['-X', '-c', 'SHOW VERSION', ci('user=nobody')], { env: cleanEnv() });
  assert.equal(refused.code, 2);
  // The console server records a connection when its socket closes; give the last one a moment.
  for (let i = 0; i < 50 && view.stats().connections_total < 3; i++) await new Promise((r) => setTimeout(r, 20));
});

after(async () => {
  await plain?.close();
  await secure?.close();
  await srv?.close();
});

test('/metrics on localhost: strict exposition with the sessions that really happened', async () => {
  assert.ok(
    plain.addresses.every((a) => a === '127.0.0.1' || a === '::1'),
    `binds localhost only: ${plain.addresses}`,
  );
  const res = await fetch(`http://127.0.0.1:${plain.port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const f = parseExposition(await res.text());
  assert.equal(
    sampleValue(f, 'pgtls_connections_total', {
      negotiation: 'sslrequest',
      tls_version: 'TLSv1.3',
      cipher: 'TLS_AES_256_GCM_SHA384',
      outcome: 'relayed',
    }),
    1,
  );
  assert.equal(sampleValue(f, 'pgtls_refusals_total', { reason: 'hba' }), 1);
  assert.ok((sampleValue(f, 'pgtls_tls_handshake_duration_seconds_count', { outcome: 'ok' }) ?? 0) >= 3);
  const notAfter = sampleValue(f, 'pgtls_certificate_not_after_seconds', { file: fx.clientCa, kind: 'ca' });
  assert.ok(notAfter && notAfter > Date.now() / 1000);
  const missing = await fetch(`http://127.0.0.1:${plain.port}/nope`);
  assert.equal(missing.status, 404);
  const post = await fetch(`http://127.0.0.1:${plain.port}/metrics`, { method: 'POST' });
  assert.equal(post.status, 405);
});

function httpsGet(
  path: string,
  auth?: string,
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: secure.port,
        path,
        ca: readFileSync(fx.root),
        headers: auth ? { authorization: `Basic ${Buffer.from(auth).toString('base64')}` } : {},
      },
      (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('/metrics over TLS with basic auth: the right password scrapes, a wrong one or none gets 401', async () => {
  const ok = await httpsGet('/metrics', AUTH);
  assert.equal(ok.status, 200);
  parseExposition(ok.body);
  for (const bad of [undefined, 'prometheus:wrong', 'other:scrape-secret-123', 'prometheus']) {
    const r = await httpsGet('/metrics', bad);
    assert.equal(r.status, 401, String(bad));
    assert.equal(r.headers['www-authenticate'], 'Basic realm="pgtls", charset="UTF-8"');
    assert.ok(!r.body.includes('pgtls_'), 'nothing leaks before authentication');
  }
});

test('the status page in headless Chromium: certificates with days left, counts, the would-be-refused client', async (t) => {
  if (!existsSync('/usr/bin/chromium')) {
    t.skip('/usr/bin/chromium is not installed (apt-get install chromium): the status page is not rendered');
    return;
  }
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    const res = await page.goto(`http://127.0.0.1:${plain.port}/`);
    assert.equal(res?.status(), 200);
    assert.equal(await page.title(), 'pgtls gateway status');
    assert.deepEqual(requests, [`http://127.0.0.1:${plain.port}/`], 'no external asset is fetched');
    const certRows = await page.locator('#certs tbody tr').allInnerTexts();
    const leaf = certRows.find((r) => r.includes(fx.server.cert) && r.includes('CN=localhost'));
    assert.ok(leaf, certRows.join('\n'));
    const days = await page.locator('#certs tbody tr').first().locator('.days').innerText();
    assert.match(days, /^\d+$/);
    assert.ok(certRows.some((r) => r.includes(fx.clientCrl) && r.includes('CRL by')));
    const versions = await page.locator('#by-version tbody tr').allInnerTexts();
    assert.ok(
      versions.some((r) => /TLSv1\.3\s+2/.test(r)),
      versions.join('|'),
    );
    assert.ok(
      versions.some((r) => /TLSv1\.2\s+1/.test(r)),
      versions.join('|'),
    );
    const outcomes = await page.locator('#by-outcome tbody tr').allInnerTexts();
    assert.ok(
      outcomes.some((r) => /relayed\s+2/.test(r)) && outcomes.some((r) => /refused\s+1/.test(r)),
      outcomes.join('|'),
    );
    const refusals = await page.locator('#refusals tbody tr').allInnerTexts();
    assert.deepEqual(
      refusals.map((r) => r.replace(/\s+/g, ' ').trim()),
      ['hba 1'],
    );
    const tiles = await page.locator('.tile').allInnerTexts();
    assert.ok(
      tiles.some((x) => /^1\s+would be refused$/.test(x.trim())),
      tiles.join('|'),
    );
    const would = await page.locator('#would-refuse tbody tr').allInnerTexts();
    assert.equal(would.length, 1, would.join('\n'));
    assert.match(would[0]!, /legacy-billing/);
    assert.match(would[0]!, /TLSv1\.2 is below report_min_protocol_version TLSv1\.3/);
    const html = await page.content();
    assert.ok(!html.includes('PRIVATE KEY') && !html.includes(fx.server.key), 'no key material or key path');
    const shot = join(fx.dir, 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(statSync(shot).size > 10_000);
    console.log(`status page screenshot: ${shot}`);
  } finally {
    await browser.close();
  }
});
