/**
 * Issue 12, watch_files: a certificate replaced by an atomic rename (as cert-manager and Kubernetes secret mounts
 * do) is picked up without a signal; a broken replacement leaves the previous one in force (all-or-nothing).
 */
import assert from 'node:assert/strict';
import { copyFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type GatewayFixtures, makeFixtures } from '../support/gateway-fixtures.js';
import { type TestGateway, startTestGateway } from '../support/gateway.js';
import { type TestCluster, startTestCluster } from '../support/postgres.js';
import { negotiatedTls } from '../support/raw.js';

let fx: GatewayFixtures;
let cluster: TestCluster;
let gw: TestGateway;
let certFile: string;
let keyFile: string;
const reloads: { ok: boolean; trigger?: string; files?: string[] }[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function servedCn(): Promise<string> {
  const t = await negotiatedTls(gw.port);
  const cn = t
    .getPeerX509Certificate()
    ?.subject.split('\n')
    .find((l) => l.startsWith('CN='));
  t.destroy();
  return cn ?? '';
}
async function until(cond: () => boolean | Promise<boolean>, ms = 8000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(100);
  }
  return cond();
}

before(async () => {
  fx = await makeFixtures();
  cluster = await startTestCluster();
  certFile = join(fx.dir, 'watched.crt');
  keyFile = join(fx.dir, 'watched.key');
  copyFileSync(fx.server.cert, certFile);
  copyFileSync(fx.server.key, keyFile);
  gw = await startTestGateway(fx, cluster, { ssl_cert_file: certFile, ssl_key_file: keyFile, watch_files: 'on' });
  gw.gw.on('reload', (e: { ok: boolean; trigger?: string; files?: string[] }) => reloads.push(e));
});
after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

/** Replace a file the way cert-manager does: write beside it, then rename over it. */
function atomicReplace(target: string, content: Buffer | string): void {
  const tmp = `${target}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, target);
}

test('a key and certificate replaced by rename are served without a signal', async () => {
  assert.equal(await servedCn(), 'CN=localhost');
  const { readFileSync } = await import('node:fs');
  // Key first, then certificate (a moment apart): the debounce waits for the pair.
  atomicReplace(keyFile, readFileSync(fx.wrongHost.key));
  atomicReplace(certFile, readFileSync(fx.wrongHost.cert));
  assert.ok(await until(async () => (await servedCn()) === 'CN=db.example.com'), JSON.stringify(reloads));
  const r = reloads.at(-1);
  assert.equal(r?.ok, true);
  assert.equal(r?.trigger, 'file change');
});

test('a broken replacement keeps the previous certificate in force, and the failure is reported', async () => {
  const before = reloads.length;
  atomicReplace(certFile, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n');
  assert.ok(await until(() => reloads.length > before));
  assert.equal(reloads.at(-1)?.ok, false);
  assert.equal(await servedCn(), 'CN=db.example.com');
});

test('touching an unrelated file in the directory does not reload', async () => {
  const before = reloads.length;
  writeFileSync(join(fx.dir, 'unrelated.txt'), 'x');
  await sleep(1200);
  assert.equal(reloads.length, before);
});
