/**
 * A real HAProxy (Debian's haproxy package) in front of a test server: TCP frontends on loopback, each relaying to
 * one backend address with `send-proxy` (v1) or `send-proxy-v2` (+ proxy-v2-options), optionally terminating TLS
 * itself (so the v2 SSL/AUTHORITY TLVs are filled). Runs in the foreground (`-db`) as a child of the test process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './postgres.js';

export const HAPROXY = '/usr/sbin/haproxy';

export interface FrontendSpec {
  readonly name: string;
  /** Where HAProxy relays to (loopback). */
  readonly backendPort: number;
  readonly sendProxy: 'v1' | 'v2';
  /** HAProxy's proxy-v2-options list, e.g. ['ssl', 'cert-cn', 'ssl-cipher', 'authority', 'crc32c']. */
  readonly v2Options?: readonly string[];
  /** A PEM holding certificate then key: the frontend terminates TLS with it. */
  readonly tlsPem?: string;
}

export interface RunningHaproxy {
  /** Frontend name → the loopback port HAProxy listens on. */
  readonly ports: Readonly<Record<string, number>>;
  readonly configFile: string;
  /** What HAProxy printed (its warnings and alerts), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export async function startHaproxy(frontends: readonly FrontendSpec[]): Promise<RunningHaproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'pgtls-haproxy-'));
  const ports: Record<string, number> = {};
  const lines = [
    'global',
    '  maxconn 256',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
  ];
  for (const f of frontends) {
    const port = await freePort();
    ports[f.name] = port;
    const ssl = f.tlsPem ? ` ssl crt ${f.tlsPem}` : '';
    const send =
      f.sendProxy === 'v1'
        ? 'send-proxy'
        : `send-proxy-v2${f.v2Options?.length ? ` proxy-v2-options ${f.v2Options.join(',')}` : ''}`;
    lines.push(
      `frontend fe_${f.name}`,
      `  bind 127.0.0.1:${port}${ssl}`,
      `  default_backend be_${f.name}`,
      `backend be_${f.name}`,
      `  server s1 127.0.0.1:${f.backendPort} ${send}`,
    );
  }
  const configFile = join(dir, 'haproxy.cfg');
  writeFileSync(configFile, `${lines.join('\n')}\n`);
  let out = '';
  const child: ChildProcess = spawn(HAPROXY, ['-f', configFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
  });
  // Ready when every frontend accepts a connection: at most 100 × 50 ms.
  for (const port of Object.values(ports)) {
    let ok = false;
    for (let i = 0; i < 100 && !ok && !exited; i++) {
      ok = await canConnect(port);
      if (!ok) await new Promise((r) => setTimeout(r, 50));
    }
    if (!ok) {
      child.kill('SIGKILL');
      await exit;
      throw new Error(`haproxy did not start listening on ${port}:\n${out}`);
    }
  }
  return {
    ports,
    configFile,
    output: () => out,
    stop: async () => {
      if (!exited) child.kill('SIGTERM');
      await exit;
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
