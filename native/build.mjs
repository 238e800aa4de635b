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
  const why = r.error
    ? r.error.message
    : `${
        String(r.stderr ?? '')
          .trim()
          .split('\n')
          .pop() ?? ''
      }`.slice(0, 200);
  console.log(`pgtls: native data plane not built (${why}); Node's TLS transport will be used`);
}
process.exit(0);
