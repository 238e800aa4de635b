#!/usr/bin/env node
// AddressSanitizer build of the addon into native/build-asan/ (clang; npm run build:native:asan). Run a test with it:
//   PGTLS_NATIVE_ADDON=$PWD/native/build-asan/pgtls_native.node \
//   LD_PRELOAD=$(clang -print-file-name=libclang_rt.asan-x86_64.so) ASAN_OPTIONS=detect_leaks=0 \
//   node --import ./native/asan-child-env.mjs dist/test/integration/native-transport.test.js
// Node itself is not instrumented, so the runtime is preloaded; leak checking is off because Node does not free its
// heap at exit (our own frees are covered by the use-after-free and double-free checks). asan-child-env.mjs keeps
// the preload away from child processes (psql, openssl, postgres).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const include = resolve(dirname(process.execPath), '..', 'include', 'node');
const out = join(here, 'build-asan');
mkdirSync(out, { recursive: true });
const sources = readdirSync(join(here, 'src'))
  .filter((f) => f.endsWith('.c'))
  .map((f) => join(here, 'src', f));
const args = [
  '-shared',
  '-fPIC',
  '-g',
  '-O1',
  '-fno-omit-frame-pointer',
  '-fsanitize=address,undefined',
  '-shared-libasan',
  '-std=gnu11',
  '-Wall',
  '-Wextra',
  '-Wno-unused-parameter',
  '-DNAPI_VERSION=8',
  // the idle sweep every 20 ms instead of every second: sessions give their buffers back and take them again often
  '-DPGTLS_SWEEP_MS=20',
  `-I${include}`,
  ...sources,
  '-o',
  join(out, 'pgtls_native.node'),
];
const r = spawnSync('clang', args, { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
console.log(join(out, 'pgtls_native.node'));
