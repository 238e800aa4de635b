/** Pieces shared by the `pgtls cert …` subcommands: option values, subjects, passphrases, output printing. */
import { PgtlsError } from '../errors.js';
import { KEY_TYPES, type KeyType } from '../pki/generate.js';
import { resolvePassphrase } from '../pki/keys.js';
import { ERR_USAGE, type ParsedArgs, str } from './command.js';

export function usage(message: string, hint = 'Run the command with --help to see its options.'): PgtlsError {
  return new PgtlsError(ERR_USAGE, message, { details: { hint } });
}

export function required(args: ParsedArgs, name: string, what: string): string {
  const v = str(args, name);
  if (v === undefined || v === '') throw usage(`--${name} is required (${what})`);
  return v;
}

export function keyTypeOf(args: ParsedArgs): KeyType {
  const v = str(args, 'key-type') ?? 'ec-p256';
  if (!(KEY_TYPES as readonly string[]).includes(v)) {
    throw usage(`--key-type ${v} is not supported`, `Use one of: ${KEY_TYPES.join(', ')}.`);
  }
  return v as KeyType;
}

export function intOption(args: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const v = str(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw usage(`--${name} must be an integer from ${min} to ${max}, not "${v}"`);
  return n;
}

export function dateOption(args: ParsedArgs, name: string): Date | undefined {
  const v = str(args, name);
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw usage(`--${name} must be a date such as 2030-01-31T00:00:00Z, not "${v}"`);
  return d;
}

/**
 * A subject from `--subject` (OpenSSL's `-subj "/C=US/O=Example/CN=name"` form, or `C=US, O=Example, CN=name`),
 * else `--cn`, else `fallbackCn`. Attributes are encoded in the order written, as OpenSSL does.
 */
export function subjectOf(args: ParsedArgs, fallbackCn: string): Record<string, string> {
  const subject = str(args, 'subject');
  const cn = str(args, 'cn');
  if (subject !== undefined && cn !== undefined) throw usage('give either --subject or --cn, not both');
  if (subject === undefined) return { CN: cn ?? fallbackCn };
  const parts = subject.startsWith('/')
    ? subject.slice(1).split(/(?<!\\)\//)
    : subject.split(/(?<!\\),/).map((p) => p.trim());
  const out: Record<string, string> = {};
  for (const part of parts) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw usage(`--subject: "${part}" is not ATTRIBUTE=value`, 'Write it as /C=US/O=Example/CN=name.');
    const key = part.slice(0, eq).trim();
    if (key in out) throw usage(`--subject: ${key} appears twice`, 'Give each attribute once.');
    out[key] = part
      .slice(eq + 1)
      .trim()
      .replace(/\\([/,])/g, '$1');
  }
  if (Object.keys(out).length === 0) throw usage('--subject is empty');
  return out;
}

export async function passphraseOption(args: ParsedArgs, name: 'passin' | 'passout'): Promise<string | undefined> {
  const spec = str(args, name);
  return spec === undefined ? undefined : resolvePassphrase(spec);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function print(lines: string | readonly string[]): void {
  const text = typeof lines === 'string' ? lines : lines.join('\n');
  process.stdout.write(`${text.replace(/\n+$/, '')}\n`);
}

/** PEM text ending in exactly one newline, so files concatenate into valid bundles (`cat a.crt b.crt`). */
export function pemText(...pems: string[]): string {
  return pems.map((p) => `${p.trim()}\n`).join('');
}

/** Options every issuing command shares. */
export const OUTPUT_OPTIONS = {
  out: { type: 'string' },
  'key-out': { type: 'string' },
  passout: { type: 'string' },
  force: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** Options of every command that creates a certificate: its subject, key and validity. */
export const SUBJECT_OPTIONS = {
  cn: { type: 'string' },
  subject: { type: 'string' },
  'key-type': { type: 'string' },
  days: { type: 'string' },
  'not-before': { type: 'string' },
} as const;

export const SIGNER_OPTIONS = {
  ca: { type: 'string' },
  'ca-key': { type: 'string' },
  passin: { type: 'string' },
} as const;
