#!/usr/bin/env node
// Builds the optional native data plane (native/) at install time. It must never fail the install: without the
// addon pgtls uses Node's TLS transport (src/tls/native.ts reports why), so any failure is one line and exit 0.
import { spawnSync } from 'node:child_process';

if (process.env.PGTLS_SKIP_NATIVE === '1') process.exit(0);
const npm = process.env.npm_execpath;
const r = npm
  ? spawnSync(process.execPath, [npm, 'run', '--silent', 'build:native'], { stdio: ['ignore', 'pipe', 'pipe'] })
  : spawnSync('npm', ['run', '--silent', 'build:native'], { stdio: ['ignore', 'pipe', 'pipe'] });
if (r.status !== 0) {
  // node-gyp's own "gyp ERR!" lines, or the first line that says error, name the cause best
  const lines = `${r.stderr ?? ''}`
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const why = (r.error?.message ?? lines.find((l) => /error/i.test(l)) ?? lines.pop() ?? `exit ${r.status}`).slice(
    0,
    200,
  );
  console.log(`pgtls: native data plane not built (${why}); Node's TLS transport will be used`);
}
process.exit(0);
