/**
 * `pgtls reload`: make a running gateway re-read its configuration (SIGHUP), wait for the outcome of that reload and
 * report it — exit 0 when the new configuration is in force, non-zero when the previous one stayed (as a script
 * needs to know).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { PgtlsError } from '../errors.js';
import { type Command, EXIT, flag, parseCommandArgs, str } from './command.js';

/** Written by `pgtls serve` in its data directory after every reload. */
export const RELOAD_STATUS_FILE = 'pgtls.reload';

export interface ReloadStatus {
  /** Counts reloads since the gateway started. */
  readonly seq: number;
  readonly pid: number;
  readonly ok: boolean;
  readonly time: string;
  readonly warnings?: readonly string[];
  readonly error?: string;
}

const HELP = `Usage: pgtls reload [--config FILE | --data-directory DIR] [--timeout SECONDS] [--json]

Make a running 'pgtls serve' re-read its configuration file, pg_hba.conf, pg_ident.conf, certificate, key, CA and
CRL (like 'pg_ctl reload'), wait for it and say how it went. If anything is wrong, the gateway keeps its previous
configuration: the error is printed and the exit status is 1.
The gateway is found through its data directory (pgtls.pid), the data_directory of the config file it was started
with (by default 'pgtls-data' beside that file), or ./pgtls-data.

Options:
  --config FILE          the configuration file the gateway was started with (to find its data_directory)
  --data-directory DIR   the gateway's data directory
  --timeout SECONDS      how long to wait for the outcome (default 15)
  --json                 print the outcome as JSON
  -h, --help             show this help

Exit status: 0 reloaded; 1 the reload failed (previous configuration in force), no outcome in time, or no
gateway found; 2 usage error.`;

function readStatus(path: string): ReloadStatus | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ReloadStatus;
  } catch {
    return undefined;
  }
}

export const command: Command = async (argv) => {
  const args = parseCommandArgs(
    argv,
    {
      config: { type: 'string' },
      'data-directory': { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
    },
    HELP,
  );
  if (!args) return EXIT.ok;
  const dir = str(args, 'data-directory') ?? loadConfig({ file: str(args, 'config'), env: process.env }).data_directory;
  const timeoutS = Number(str(args, 'timeout') ?? '15');
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    throw new PgtlsError('PGTLS_ERR_USAGE', `invalid --timeout "${str(args, 'timeout')}"`, {
      details: { hint: 'Give a number of seconds, e.g. --timeout 30.' },
    });
  }
  const pidFile = join(resolve(dir), 'pgtls.pid');
  const statusFile = join(resolve(dir), RELOAD_STATUS_FILE);
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch (cause) {
    throw new PgtlsError('PGTLS_ERR_NOT_RUNNING', `no running gateway found: could not read "${pidFile}"`, {
      cause,
      details: {
        hint: 'Start it with `pgtls serve`, or pass the --config it was started with (or its --data-directory).',
      },
    });
  }
  const before = readStatus(statusFile);
  try {
    process.kill(pid, 'SIGHUP');
  } catch (cause) {
    throw new PgtlsError(
      'PGTLS_ERR_NOT_RUNNING',
      `could not signal the gateway (pid ${pid}): ${(cause as Error).message}`,
      {
        cause,
        details: { hint: `Remove the stale "${pidFile}" and start the gateway again.` },
      },
    );
  }
  const until = Date.now() + timeoutS * 1000;
  let after = readStatus(statusFile);
  const isNew = (s: ReloadStatus | undefined) =>
    s !== undefined && s.pid === pid && (before === undefined || before.pid !== pid || s.seq > before.seq);
  while (!isNew(after) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    after = readStatus(statusFile);
  }
  const json = flag(args, 'json');
  if (!isNew(after) || after === undefined) {
    const text = `sent SIGHUP to the gateway (pid ${pid}) but saw no outcome within ${timeoutS} s; its log says whether the reload succeeded`;
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, pid, error: text })}\n`);
    else process.stderr.write(`pgtls: ${text}\n`);
    return EXIT.failure;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(after)}\n`);
  } else if (after.ok) {
    process.stdout.write(`pgtls: the gateway (pid ${pid}) reloaded its configuration\n`);
    for (const w of after.warnings ?? []) process.stdout.write(`warning: ${w}\n`);
  } else {
    process.stderr.write(
      `pgtls: reload failed; the previous configuration stays in force (pid ${pid})\n${after.error ?? ''}\n`,
    );
  }
  return after.ok ? EXIT.ok : EXIT.failure;
};
