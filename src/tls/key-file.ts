/**
 * PostgreSQL's rules for the server key file (check_ssl_key_file_permissions() in be-secure-common.c): owned by the
 * user the server runs as with no group/world access, or owned by root with at most group read.
 */
import { statSync } from 'node:fs';
import { PgtlsError } from '../errors.js';

export const ERR_KEY_FILE = 'PGTLS_ERR_TLS_KEY_FILE';

export function checkServerKeyFile(path: string, uid = process.getuid?.() ?? 0): void {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (cause) {
    // %m as PostgreSQL prints it ("No such file or directory"), not Node's "ENOENT: …, stat '…'".
    const code = (cause as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'No such file or directory'
        : code === 'EACCES'
          ? 'Permission denied'
          : code === 'ENOTDIR'
            ? 'Not a directory'
            : (cause as Error).message;
    throw new PgtlsError(ERR_KEY_FILE, `could not access private key file "${path}": ${reason}`, {
      cause,
      details: { file: path },
    });
  }
  if (!st.isFile()) {
    throw new PgtlsError(ERR_KEY_FILE, `private key file "${path}" is not a regular file`, { details: { file: path } });
  }
  if (st.uid !== uid && st.uid !== 0) {
    throw new PgtlsError(ERR_KEY_FILE, `private key file "${path}" must be owned by the database user or root`, {
      details: { file: path, hint: `chown the file to the user pgtls runs as (uid ${uid}) or to root.` },
    });
  }
  const mode = Number(st.mode) & 0o777;
  const tooOpen = st.uid === uid ? (mode & 0o077) !== 0 : (mode & 0o037) !== 0;
  if (tooOpen) {
    throw new PgtlsError(ERR_KEY_FILE, `private key file "${path}" has group or world access`, {
      details: {
        file: path,
        detail:
          'File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.',
        hint: `chmod 600 ${path}`,
      },
    });
  }
}
