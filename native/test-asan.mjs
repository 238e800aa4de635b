#!/usr/bin/env node
// CI step for the native data plane's memory safety (npm run test:native:asan; needs `npm run build` first, and
// clang): builds the AddressSanitizer + UBSan addon (build-asan.mjs), runs the gateway tests that feed the addon the
// most varied input on it — failed handshakes of every kind, client certificates and CRLs, direct TLS and pipelined
// bytes, abrupt ends mid-handshake and mid-splice, hostile connections next to a live session — then a bounded
// libFuzzer run (fuzz/run.mjs). Fails on a failing test, on any sanitizer report, or on a fuzzer crash.
//
//   node native/test-asan.mjs [--fuzz-seconds 60] [test-file-substring …]
//
// Each test file runs as its own `node <file>` (node:test runs it in-process, so the sanitized addon is loaded by
// the process that has the runtime preloaded); asan-child-env.mjs keeps the preload away from psql/openssl/postgres.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const { values: opt, positionals } = parseArgs({
  options: { 'fuzz-seconds': { type: 'string', default: '60' } },
  allowPositionals: true,
});

/** In-process gateways only: a `pgtls serve` child would not load the sanitized addon. */
const FILES = [
  'native-transport', // every handshake failure OpenSSL reports, ALPN, TLS versions, ciphers, 8 MB each way
  'native-lifecycle', // destroy mid-handshake, backend terminated, client vanishing mid-splice
  'gateway-client-cert', // client certificates: unknown CA, revoked (CRL file and dir), expired
  'gateway-protocol', // SSLRequest and direct TLS, bytes pipelined behind the handshake, cancel, negotiation
  'gateway-robustness', // 120 hostile connections next to a live session
  'gateway-pool-native', // the transaction relay: boundaries, handbacks mid-transaction, a bad length
  'gateway-pool-drivers', // pooled transactions of pg, postgres.js and psycopg on the native relay
  'gateway-pool-session-native', // session pooling on the native relay: Terminate, discards, a handback, cancel
  'native-upstream-tls', // TLS to the backend natively: verify failures, EOF, client certificate, TLS<->TLS relay
];
const selected = positionals.length ? positionals : FILES;

const dist = join(root, 'dist', 'test', 'integration');
if (!existsSync(dist)) {
  console.error('test-asan: dist/ is missing; run `npm run build` first');
  process.exit(2);
}

const started = Date.now();
const build = spawnSync(process.execPath, [join(here, 'build-asan.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
if (build.status !== 0) {
  console.error('test-asan: the ASan build failed');
  process.exit(build.status ?? 1);
}
const addon = `${build.stdout}`.trim().split('\n').pop();
const runtime = spawnSync('clang', ['-print-file-name=libclang_rt.asan-x86_64.so']).stdout?.toString().trim();
if (!runtime || !existsSync(runtime)) {
  console.error('test-asan: clang has no shared ASan runtime (libclang_rt.asan-x86_64.so)');
  process.exit(2);
}

// Reports of either sanitizer; UBSan prints "runtime error:" and (with halt_on_error) exits non-zero as well.
const REPORT = /ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer|ERROR: LeakSanitizer/;
const env = {
  ...process.env,
  PGTLS_NATIVE_ADDON: addon,
  PGTLS_TEST_NATIVE_DATA_PLANE: 'on',
  LD_PRELOAD: runtime,
  // Node does not free its heap at exit, so leak checking would only report Node; use-after-free, double free and
  // overflows in the addon are what this run is for.
  ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1:abort_on_error=0:print_summary=1',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
};
let failed = 0;
for (const name of selected) {
  const file = join(dist, `${name}.test.js`);
  if (!existsSync(file)) {
    console.error(`test-asan: ${file} does not exist`);
    failed++;
    continue;
  }
  const t0 = Date.now();
  const r = spawnSync(
    process.execPath,
    ['--enable-source-maps', '--import', join(here, 'asan-child-env.mjs'), '--test-reporter=dot', file],
    { env, cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 300_000 },
  );
  const out = `${r.stdout}\n${r.stderr}`;
  const report = REPORT.exec(out);
  const ok = r.status === 0 && !report;
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`${ok ? 'ok' : 'FAILED'} ${name} (${secs} s)${report ? `: sanitizer report "${report[0]}"` : ''}`);
  if (!ok) {
    failed++;
    // the sanitizer's report (or the failing test) is what the CI log needs; keep its tail
    console.log(out.split('\n').slice(-120).join('\n'));
  }
}

const seconds = Number(opt['fuzz-seconds']);
// fuzz_conn (the client-facing side) and fuzz_upstream (TLS to the backend, the TLS<->TLS relay), N seconds each
for (const harness of seconds > 0 ? ['fuzz_conn', 'fuzz_upstream'] : []) {
  const t0 = Date.now();
  const script = harness === 'fuzz_conn' ? 'run.mjs' : 'run-upstream.mjs';
  const f = spawnSync(process.execPath, [join(here, 'fuzz', script), String(seconds)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: (seconds + 120) * 1000,
  });
  const out = `${f.stdout}\n${f.stderr}`;
  const execs = /stat::number_of_executed_units:\s*(\d+)/.exec(out)?.[1];
  const ok = f.status === 0;
  console.log(
    `${ok ? 'ok' : 'FAILED'} libFuzzer ${harness}, ${seconds} s (${((Date.now() - t0) / 1000).toFixed(1)} s with the build)${execs ? `: ${execs} inputs` : ''}`,
  );
  if (!ok) {
    failed++;
    console.log(out.split('\n').slice(-120).join('\n'));
  }
}
console.log(
  `test-asan: ${failed === 0 ? 'clean' : `${failed} failed`} in ${((Date.now() - started) / 1000).toFixed(0)} s`,
);
process.exit(failed === 0 ? 0 : 1);
