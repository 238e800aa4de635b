import { expandIncludes } from './hba.js';
/**
 * pg_ident.conf: MAPNAME SYSTEM-USERNAME DATABASE-USERNAME, as check_usermap()/check_ident_usermap() in hba.c.
 * A system user starting with '/' is a regular expression; \1 in the database user is replaced by its first
 * capture group. Since PostgreSQL 16 the database user may be `all` or a '/'-regular expression too.
 */
import { pgRegExp } from './regex.js';
import { type Token, hbaError, readAuthFile, tokenizeAuthText } from './tokenize.js';

export interface IdentLine {
  readonly file: string;
  readonly line: number;
  readonly map: string;
  readonly system: Token;
  readonly systemRegex?: RegExp;
  readonly database: Token;
}

export function readIdentFile(file: string): IdentLine[] {
  // PostgreSQL 16+ accepts include / include_if_exists / include_dir lines in pg_ident.conf too.
  return expandIncludes(tokenizeAuthText(readAuthFile(file, 'usermap'), file), 0).map((l) => {
    // parse_ident_line(): each of the three fields must be there and hold one value; fields after the third are
    // ignored, as PostgreSQL ignores them.
    for (let i = 0; i < 3; i++) {
      const f = l.fields[i];
      if (!f) throw hbaError('missing entry at end of line', l.file, l.line);
      if (f.length !== 1) throw hbaError('multiple values in ident field', l.file, l.line);
    }
    const [map, system, database] = l.fields.map((f) => f[0]!) as [Token, Token, Token];
    let systemRegex: RegExp | undefined;
    if (!system.quoted && system.text.startsWith('/')) {
      try {
        systemRegex = pgRegExp(system.text.slice(1));
      } catch (e) {
        throw hbaError(`invalid regular expression "${system.text.slice(1)}": ${(e as Error).message}`, l.file, l.line);
      }
    }
    // PostgreSQL 16+ compiles a /regex database user when it loads the file as well.
    if (!database.quoted && database.text.startsWith('/')) {
      try {
        pgRegExp(database.text.slice(1));
      } catch (e) {
        throw hbaError(
          `invalid regular expression "${database.text.slice(1)}": ${(e as Error).message}`,
          l.file,
          l.line,
        );
      }
    }
    if (!database.quoted && database.text.startsWith('+')) {
      throw hbaError(
        `"${database.text}" needs the backend's role membership, which pgtls cannot evaluate at the gateway`,
        l.file,
        l.line,
      );
    }
    return Object.freeze({
      file: l.file,
      line: l.line,
      map: map.text,
      system,
      ...(systemRegex ? { systemRegex } : {}),
      database,
    });
  });
}

/**
 * Is `systemUser` (the certificate's CN or DN) allowed to log in as `pgUser` under map `mapName`?
 * Without a map the two names must be equal (case-sensitive), as check_usermap() requires.
 */
export function checkUsermap(
  lines: readonly IdentLine[],
  mapName: string | undefined,
  pgUser: string,
  systemUser: string,
): { ok: true; line?: IdentLine } | { ok: false; reason: string } {
  if (mapName === undefined || mapName === '') {
    return systemUser === pgUser
      ? { ok: true }
      : {
          ok: false,
          reason: `provided user name (${pgUser}) and authenticated user name (${systemUser}) do not match`,
        };
  }
  for (const l of lines) {
    if (l.map !== mapName) continue;
    let expected = l.database.text;
    const special = !l.database.quoted && (expected.startsWith('/') || expected.startsWith('+'));
    if (l.systemRegex) {
      const m = l.systemRegex.exec(systemUser);
      if (!m) continue;
      // check_ident_usermap(): the first \1 is replaced by the first capture unless the database user is itself a
      // regular expression or a group; a missing capture is an error that ends the search (authentication fails).
      if (!special && expected.includes('\\1')) {
        if (m[1] === undefined) {
          return {
            ok: false,
            reason: `regular expression "${l.system.text.slice(1)}" has no subexpressions as requested by backreference in "${l.database.text}"`,
          };
        }
        const capture = m[1];
        expected = expected.replace('\\1', () => capture); // a function: no $& patterns in the capture
      }
    } else if (l.system.text !== systemUser) continue;
    if (!l.database.quoted && expected === 'all') return { ok: true, line: l };
    if (!l.database.quoted && expected.startsWith('/')) {
      try {
        if (pgRegExp(expected.slice(1)).test(pgUser)) return { ok: true, line: l };
      } catch {
        /* an invalid expression matches nothing, as in PostgreSQL */
      }
      continue;
    }
    if (expected === pgUser) return { ok: true, line: l };
  }
  return {
    ok: false,
    reason: `no match in usermap "${mapName}" for user "${pgUser}" authenticated as "${systemUser}"`,
  };
}
