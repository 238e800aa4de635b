/** `pgtls reload`: signal a running gateway (SIGHUP) to re-read its configuration, hba and TLS files. */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { PgtlsError } from '../errors.js';
import { type Command, EXIT, parseCommandArgs, str } from './command.js';

const HELP = `Usage: pgtls reload [--config FILE | --data-directory DIR]

Make a running 'pgtls serve' re-read its configuration file, pg_hba.conf, pg_ident.conf, certificate, key, CA and
CRL (like 'pg_ctl reload'). If anything is wrong, the gateway keeps its previous configuration and logs the error.
The gateway is found through data_directory/pgtls.pid.

Options:
  --config FILE          the configuration file the gateway was started with (to find its data_directory)
  --data-directory DIR   the gateway's data directory (default ./pgtls-data)
  -h, --help             show this help`;

export const command: Command = async (argv) => {
  const args = parseCommandArgs(argv, { config: { type: 'string' }, 'data-directory': { type: 'string' } }, HELP);
  if (!args) return EXIT.ok;
  const dir = str(args, 'data-directory') ?? loadConfig({ file: str(args, 'config'), env: process.env }).data_directory;
  const pidFile = join(resolve(dir), 'pgtls.pid');
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch (cause) {
    throw new PgtlsError('PGTLS_ERR_NOT_RUNNING', `no running gateway found: could not read "${pidFile}"`, {
      cause,
      details: { hint: 'Start it with `pgtls serve`, or pass the --data-directory it uses.' },
    });
  }
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
  process.stdout.write(`pgtls: sent SIGHUP to the gateway (pid ${pid}); its log says whether the reload succeeded\n`);
  return EXIT.ok;
};
