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
  for (const mode of [0, 4])
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
// mode 3 (the transaction relay): client messages | server answers, padded to equal halves; untracked and tracked
const msg = (type, body) => {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};
const z = (s) => Buffer.from(`${s}\0`, 'latin1');
const txClient = Buffer.concat([
  msg('Q', z('SELECT 1')),
  msg('P', Buffer.concat([z(''), z('SELECT $1'), Buffer.from([0, 0])])),
  msg('B', Buffer.concat([z(''), z('s1'), Buffer.alloc(6)])),
  msg('D', z('Ss1')),
  msg('B', Buffer.concat([z(''), z('a_long_client_statement_name'), Buffer.alloc(6)])),
  msg('B', Buffer.concat([z(''), z('gone'), Buffer.alloc(6)])),
  msg('E', Buffer.concat([z(''), Buffer.alloc(4)])),
  msg('S', Buffer.alloc(0)),
  msg('X', Buffer.alloc(0)),
]);
const txServer = Buffer.concat([
  msg('T', Buffer.alloc(2)),
  msg('D', Buffer.from([0, 1, 0, 0, 0, 1, 0x31])),
  msg('C', z('SELECT 1')),
  msg('Z', Buffer.from('T')),
  msg('1', Buffer.alloc(0)),
  msg('S', Buffer.concat([z('TimeZone'), z('UTC')])),
  msg('C', z('DISCARD ALL')),
  msg('E', z('SERROR')),
  msg('Z', Buffer.from('I')),
]);
const half = Math.max(txClient.length, txServer.length);
const pad = (b) => Buffer.concat([b, Buffer.alloc(half - b.length)]);
for (const first of [3, 11])
  writeFileSync(join(out, 'corpus', `tx-${first}`), Buffer.concat([Buffer.from([first]), pad(txClient), pad(txServer)]));
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
