/** Shared pieces of the CLI commands: exit codes and argument parsing with --help handling. */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { PgtlsError } from '../errors.js';

export type Command = (argv: string[]) => Promise<number>;

/** Exit codes: 0 success, 1 the operation failed (e.g. doctor found a problem), 2 usage error. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export const ERR_USAGE = 'PGTLS_ERR_USAGE';

export interface ParsedArgs {
  readonly values: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;
  readonly positionals: readonly string[];
}

/**
 * node:util parseArgs with our conventions: an unknown option is a usage error naming the option; `--help`/`-h`
 * prints `help` and returns undefined (the caller exits 0).
 */
export function parseCommandArgs(
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  help: string,
): ParsedArgs | undefined {
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }) as ParsedArgs;
  } catch (cause) {
    throw new PgtlsError(ERR_USAGE, (cause as Error).message, {
      cause,
      details: { hint: 'Run the command with --help to see its options.' },
    });
  }
  if (parsed.values.help === true) {
    process.stdout.write(`${help.trimEnd()}\n`);
    return undefined;
  }
  return parsed;
}

/** A string option's value (the last one when repeated), or undefined. */
export function str(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  if (Array.isArray(v)) return v.length ? String(v[v.length - 1]) : undefined;
  return typeof v === 'string' ? v : undefined;
}

/** All values of a repeatable string option. */
export function strs(args: ParsedArgs, name: string): string[] {
  const v = args.values[name];
  if (Array.isArray(v)) return v.map(String);
  return typeof v === 'string' ? [v] : [];
}

export function flag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

/** `--timeout SECONDS` as milliseconds: a positive number, or `fallback` (undefined: not given). */
export function timeoutMs(args: ParsedArgs, fallbackSeconds?: number): number | undefined {
  const t = str(args, 'timeout');
  if (t === undefined) return fallbackSeconds === undefined ? undefined : fallbackSeconds * 1000;
  const seconds = Number(t);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new PgtlsError(ERR_USAGE, '--timeout must be a positive number');
  return seconds * 1000;
}

/** The single HOST[:PORT] positional of probe/scan. */
export function oneTarget(args: ParsedArgs, commandName: string): string {
  const [spec, ...extra] = args.positionals;
  if (spec === undefined || extra.length > 0) {
    throw new PgtlsError(ERR_USAGE, 'expected exactly one HOST[:PORT]', {
      details: { hint: `pgtls ${commandName} --help` },
    });
  }
  return spec;
}
