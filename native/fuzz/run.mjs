#!/usr/bin/env node
// Build the libFuzzer harness (fuzz_conn.c) with ASan+UBSan and run it for N seconds (default 60) on a corpus in
// native/fuzz/build/corpus. Prints libFuzzer's final stats line (executions). Exit code is libFuzzer's: non-zero
// means a crash, with the reproducer written to native/fuzz/build/.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'build');
mkdirSync(join(out, 'corpus'), { recursive: true });
const bin = join(out, 'fuzz_conn');
const cc = spawnSync(
  'clang',
  [
    '-g',
    '-O1',
    '-fsanitize=fuzzer,address,undefined',
    '-std=gnu11',
    join(here, 'fuzz_conn.c'),
    join(here, '..', 'src', 'engine.c'),
    join(here, '..', 'src', 'txrelay.c'),
    join(here, '..', 'src', 'context.c'),
    '-lssl',
    '-lcrypto',
    '-o',
    bin,
  ],
  { stdio: 'inherit' },
);
if (cc.status !== 0) process.exit(cc.status ?? 1);
// Seeds: real ClientHellos (TLS 1.3, 1.2 and with SNI/ALPN) captured from openssl s_client, for modes 0 and 3.
const capture = (args) =>
  new Promise((resolve) => {
    const srv = createServer((s) => {
      s.once('data', (d) => {
        resolve(d);
        s.destroy();
        srv.close();
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { stdio: 'ignore' }).on('error', () =>
        resolve(Buffer.alloc(0)),
      );
    });
  });
const seeds = [
  ['-tls1_3', '-alpn', 'postgresql', '-servername', 'localhost'],
  ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'],
];
for (const [i, args] of seeds.entries()) {
  const hello = await capture(args);
  for (const mode of [0, 3])
    writeFileSync(join(out, 'corpus', `hello-${i}-${mode}`), Buffer.concat([Buffer.from([mode]), hello]));
}
// modes 1 and 2: an application-data record header, an alert, and a bare close_notify
for (const [name, hex] of [
  ['record', '011703030010'],
  ['alert', '011503030002022f'],
  ['splice', '0217030300050000000000'],
]) {
  writeFileSync(join(out, 'corpus', `seed-${name}`), Buffer.from(hex, 'hex'));
}
const seconds = process.argv[2] ?? '60';
const r = spawnSync(
  bin,
  [
    `-max_total_time=${seconds}`,
    '-max_len=8192',
    `-artifact_prefix=${out}/`,
    '-print_final_stats=1',
    join(out, 'corpus'),
  ],
  { stdio: 'inherit', env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1' } },
);
process.exit(r.status ?? 1);
