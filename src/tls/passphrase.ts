/**
 * ssl_passphrase_command as PostgreSQL runs it (run_ssl_passphrase_command() in be-secure-common.c): through the
 * shell, %p replaced by the prompt, %% by %, the first line of standard output (without its newline) is the
 * passphrase. A non-zero exit is an error. The passphrase is never logged.
 */
import { execFileSync } from 'node:child_process';
import { PgtlsError } from '../errors.js';

export const ERR_PASSPHRASE = 'PGTLS_ERR_TLS_PASSPHRASE';

export function runPassphraseCommand(command: string, prompt: string): string {
  const expanded = command.replace(/%([%p])/g, (_, c: string) => (c === '%' ? '%' : prompt));
  let out: Buffer;
  try {
    out = execFileSync('/bin/sh', ['-c', expanded], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 60_000 });
  } catch (cause) {
    throw new PgtlsError(ERR_PASSPHRASE, `command "${command}" failed`, { cause, details: { command } });
  }
  const text = out.toString('utf8');
  const nl = text.indexOf('\n');
  return nl >= 0 ? text.slice(0, nl) : text;
}
