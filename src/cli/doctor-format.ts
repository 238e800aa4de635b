/** Printing helpers shared by `pgtls probe`, `scan` and `doctor`: colours on a TTY only, and a progress line. */
import { isPgtlsError } from '../errors.js';
import { EXIT } from './command.js';

export interface Style {
  readonly ok: (s: string) => string;
  readonly bad: (s: string) => string;
  readonly warn: (s: string) => string;
  readonly dim: (s: string) => string;
  readonly bold: (s: string) => string;
}

const wrap = (on: boolean, open: number, close: number) => (s: string) => (on ? `\x1b[${open}m${s}\x1b[${close}m` : s);

/** Colours when stdout is a terminal and NO_COLOR is unset (https://no-color.org); FORCE_COLOR=1 forces them. */
export function style(stream: NodeJS.WriteStream = process.stdout): Style {
  const on =
    process.env.FORCE_COLOR === '1' || (stream.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb');
  return {
    ok: wrap(on, 32, 39),
    bad: wrap(on, 31, 39),
    warn: wrap(on, 33, 39),
    dim: wrap(on, 2, 22),
    bold: wrap(on, 1, 22),
  };
}

export const MARK = { ok: '✓', bad: '✗', warn: '!', info: '·' } as const;

/** A one-line progress indicator on stderr, only when stderr is a terminal; `done()` erases it. */
export function progress(enabled: boolean): {
  update: (done: number, total: number, step: string) => void;
  done: () => void;
} {
  const on = enabled && process.stderr.isTTY === true;
  let shown = false;
  return {
    update(done, total, step) {
      if (!on) return;
      const width = 24;
      const filled = Math.min(width, Math.round((done / Math.max(total, 1)) * width));
      process.stderr.write(`\r\x1b[2K[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} ${step}`);
      shown = true;
    },
    done() {
      if (on && shown) process.stderr.write('\r\x1b[2K');
    },
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Pad to a column width (for aligned tables). */
export function pad(s: string, width: number): string {
  return s.length >= width ? s : s + ' '.repeat(width - s.length);
}

const USAGE_CODES = new Set(['PGTLS_ERR_USAGE', 'PGTLS_ERR_DOCTOR_TARGET', 'PGTLS_ERR_DOCTOR_POLICY']);

/** Run a command; a usage error (bad option, target or policy) prints like main.ts does but exits 2, as --help says. */
export async function withUsageExit(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (!isPgtlsError(err) || !USAGE_CODES.has(err.code)) throw err;
    process.stderr.write(`pgtls: ${err.message} [${err.code}]\n`);
    if (typeof err.details.hint === 'string') process.stderr.write(`hint: ${err.details.hint}\n`);
    return EXIT.usage;
  }
}
