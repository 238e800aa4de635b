/**
 * Writing certificates and keys so that a failure never leaves a half-written set behind: every output goes to a
 * temporary file in the target directory (same file system, so rename is atomic) with its final mode already set,
 * and only when all of them are written are they renamed into place. Existing files are refused unless `force`.
 *
 * Key files are created 0600 from the start (not chmod-ed afterwards) because PostgreSQL and libpq refuse keys
 * readable by group or others ("private key file has group or world access").
 */
import { randomBytes } from 'node:crypto';
import { constants, lstat, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PgtlsError } from '../errors.js';

export const ERR_OUTPUT_EXISTS = 'PGTLS_ERR_PKI_OUTPUT_EXISTS';
export const ERR_WRITE = 'PGTLS_ERR_PKI_WRITE';

export interface OutputFile {
  readonly path: string;
  readonly data: string | Uint8Array;
  /** 0o600 for private keys; 0o644 for certificates, CRLs and bundles. */
  readonly mode: number;
}

export const KEY_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Write all files or none. Refuses (before writing anything) when a target exists and `force` is not set. */
export async function writeOutputs(
  files: readonly OutputFile[],
  opts: {
    force?: boolean /** Paths that are expected to exist and be replaced (a CA database). */;
    replace?: readonly string[];
  } = {},
): Promise<void> {
  const seen = new Set<string>();
  for (const f of files) {
    if (seen.has(f.path)) {
      throw new PgtlsError(ERR_WRITE, `${f.path}: the same file was given for two outputs`, {
        details: { file: f.path, hint: 'Give each output its own file name.' },
      });
    }
    seen.add(f.path);
    if (!opts.force && !opts.replace?.includes(f.path) && (await exists(f.path))) {
      throw new PgtlsError(ERR_OUTPUT_EXISTS, `${f.path}: the file already exists; nothing was written`, {
        details: { file: f.path, hint: 'Choose another output name, or pass --force to replace it.' },
      });
    }
  }
  const temps: string[] = [];
  try {
    for (const f of files) {
      const tmp = join(dirname(f.path), `.${basename(f.path)}.${randomBytes(6).toString('hex')}.tmp`);
      temps.push(tmp);
      // O_EXCL: never follow or reuse a file someone planted at the temporary name.
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, f.mode);
      try {
        await fh.writeFile(f.data);
        await fh.chmod(f.mode); // the umask may have narrowed the mode given to open()
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    for (let i = 0; i < files.length; i++) await rename(temps[i]!, files[i]!.path);
  } catch (cause) {
    await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
    const e = cause as NodeJS.ErrnoException;
    // Name the output the user asked for, not our temporary file.
    const failed = e.path === undefined ? -1 : temps.indexOf(e.path);
    const file = files[failed >= 0 ? failed : temps.length - 1]?.path ?? e.path ?? '';
    throw new PgtlsError(ERR_WRITE, `${file}: cannot write (${e.code ?? e.message}); nothing was written`, {
      cause,
      details: { file, hint: 'Check that the directory exists and is writable.' },
    });
  }
}

/** The conventional key file next to a certificate: `server.crt` → `server.key`. */
export function siblingPath(path: string, ext: string): string {
  const base = basename(path);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  return join(dirname(path), `${stem}${ext}`);
}
