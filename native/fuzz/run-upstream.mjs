#!/usr/bin/env node
// Build the libFuzzer harness for TLS to the backend (fuzz_upstream.c: the connecting side's handshake input, the
// TLS<->TLS relay) with ASan+UBSan and run it for N seconds (default 60) on a corpus in native/fuzz/build/corpus-upstream,
// seeded with real server flights (the harness writes them) and record-shaped inputs for the relay modes. Exit code
// is libFuzzer's: non-zero means a crash, with the reproducer written to native/fuzz/build/.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'build');
const corpus = join(out, 'corpus-upstream');
mkdirSync(corpus, { recursive: true });
const bin = join(out, 'fuzz_upstream');
const src = (f) => join(here, '..', 'src', f);
const cc = spawnSync(
  'clang',
  [
    '-g',
    '-O1',
    '-fsanitize=fuzzer,address,undefined',
    '-std=gnu11',
    join(here, 'fuzz_upstream.c'),
    src('engine.c'),
    src('txrelay.c'),
    src('context.c'),
    src('upstream.c'),
    '-lssl',
    '-lcrypto',
    '-lpthread',
    '-o',
    bin,
  ],
  { stdio: 'inherit' },
);
if (cc.status !== 0) process.exit(cc.status ?? 1);
// modes 1 and 2: an application-data record header, an alert, close_notify, on either side
for (const [name, hex] of [
  ['record', '0117030300100000000000000000000000000000000017030300100000'],
  ['alert', '01150303000202281503030002022f'],
  ['empty-1', '01'],
  ['empty-2', '02'],
  ['prefixes', '02' + '51'.repeat(40) + '150303000201005a'.repeat(5)],
]) {
  writeFileSync(join(corpus, `seed-${name}`), Buffer.from(hex, 'hex'));
}
const seconds = process.argv[2] ?? '60';
const r = spawnSync(
  bin,
  [`-max_total_time=${seconds}`, '-max_len=8192', `-artifact_prefix=${out}/`, '-print_final_stats=1', corpus],
  { stdio: 'inherit', env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1', PGTLS_FUZZ_SEED_DIR: corpus } },
);
process.exit(r.status ?? 1);
