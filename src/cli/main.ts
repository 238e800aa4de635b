#!/usr/bin/env node
/**
 * `pgtls` entry point: dispatches to one module per command. The CLI is the only layer that prints
 * (conventions: libraries emit events and structured logs).
 */
import { errorMessage, isPgtlsError } from '../errors.js';
import { type Command, EXIT } from './command.js';

/** Each command lives in src/cli/<name>.ts and exports `command`. Loaded lazily so `pgtls cert` never loads TLS. */
const COMMANDS = ['serve', 'reload', 'cert', 'probe', 'scan', 'doctor'] as const;

const USAGE = `pgtls — PostgreSQL TLS, done right

Usage: pgtls <command> [options]

Commands:
  serve     run the TLS-enforcing gateway (embedded PostgreSQL when no upstream is configured)
  reload    make a running gateway re-read its configuration, certificates and hba rules
  cert      certificate recipes: ca, intermediate, server, client, crl, revoke, bundle, convert, inspect, verify, roots
  probe     show what a PostgreSQL server offers over TLS, and which sslmode values would connect
  scan      list the TLS versions, cipher suites and groups a server accepts; check them against a policy
  doctor    connect as libpq would, step by step, and explain the first failure with its fix

Run 'pgtls <command> --help' for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-V') {
    const { readFile } = await import('node:fs/promises');
    const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    process.stdout.write(`pgtls ${pkg.version}\n`);
    return EXIT.ok;
  }
  if (!(COMMANDS as readonly string[]).includes(name)) {
    process.stderr.write(`pgtls: unknown command "${name}"\nRun 'pgtls --help' for the list of commands.\n`);
    return EXIT.usage;
  }
  const mod = (await import(`./${name}.js`)) as { command: Command };
  return mod.command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code = isPgtlsError(err) ? ` [${err.code}]` : '';
    process.stderr.write(`pgtls: ${errorMessage(err)}${code}\n`);
    if (isPgtlsError(err) && typeof err.details.hint === 'string') process.stderr.write(`hint: ${err.details.hint}\n`);
    process.exitCode = EXIT.failure;
  },
);
