/**
 * The `/regex` tokens of pg_hba.conf and pg_ident.conf are PostgreSQL ARE ("advanced regular expressions", see
 * https://www.postgresql.org/docs/current/functions-matching.html#POSIX-SYNTAX-DETAILS). JavaScript's syntax differs
 * in ways a DBA's existing lines hit, so translate those before handing the source to RegExp (with the `u` flag, for
 * whole code points as PostgreSQL matches multibyte names):
 *   - `\` before a character that is not a letter or digit is that character (`\@`, `\-`, `\_`); JS's `u` mode
 *     refuses such escapes;
 *   - POSIX classes inside brackets, `[[:digit:]]`, `[[:alpha:]_]`;
 *   - `]` first in a bracket expression is a literal (`[]a]`, `[^]a]`), where JS would read an empty class;
 *   - word-boundary escapes `\y` `\Y` `\m` `\M`, and `\b` which in ARE is a backspace;
 *   - a leading embedded-options group `(?i)` (case-insensitive); other options are refused.
 * Everything else (`\d \w \s`, groups, alternation, quantifiers, anchors) means the same in both.
 */

const POSIX_CLASSES: Readonly<Record<string, string>> = {
  alpha: 'a-zA-Z',
  digit: '0-9',
  alnum: 'a-zA-Z0-9',
  upper: 'A-Z',
  lower: 'a-z',
  space: ' \\t\\n\\r\\f\\v',
  blank: ' \\t',
  punct: '!-\\/:-@\\[-`{-~',
  xdigit: '0-9A-Fa-f',
  word: 'a-zA-Z0-9_',
  cntrl: '\\x00-\\x1f\\x7f',
  print: ' -~',
  graph: '!-~',
};

/** Characters JS accepts after `\` in `u` mode (outside brackets; inside, `-` too). */
const JS_SYNTAX = new Set('^$\\.*+?()[]{}|/');

/** Compile an ARE source (the token without its leading `/`) to the equivalent JavaScript RegExp. */
export function pgRegExp(source: string): RegExp {
  let flags = 'u';
  let at = 0;
  const opts = /^\(\?([a-zA-Z]+)\)/.exec(source);
  if (opts) {
    for (const o of opts[1]!) {
      if (o === 'i') flags = 'iu';
      else if (o !== 'c') throw new SyntaxError(`embedded option "${o}" is not supported by pgtls`);
    }
    at = opts[0].length;
  }
  let out = '';
  let inBracket = false;
  let bracketStart = false; // just after `[` or `[^`: a `]` here is a literal
  while (at < source.length) {
    const c = source[at]!;
    if (c === '\\' && at + 1 < source.length) {
      const n = source[at + 1]!;
      at += 2;
      bracketStart = false;
      if (/[A-Za-z0-9]/.test(n)) {
        if (!inBracket && (n === 'y' || n === 'Y' || n === 'm' || n === 'M')) {
          out += { y: '\\b', Y: '\\B', m: '\\b(?=\\w)', M: '\\b(?<=\\w)' }[n];
        } else if (n === 'b') out += '\\x08';
        else out += `\\${n}`;
      } else if (JS_SYNTAX.has(n) || (inBracket && n === '-')) out += `\\${n}`;
      else out += `\\u{${n.codePointAt(0)!.toString(16)}}`;
      continue;
    }
    if (inBracket) {
      if (c === ']' && bracketStart) {
        out += '\\]';
        at++;
        bracketStart = false;
        continue;
      }
      if (c === '^' && out.endsWith('[') && bracketStart) {
        out += '^';
        at++;
        continue;
      }
      bracketStart = false;
      const cls = /^\[:([a-z]+):\]/.exec(source.slice(at));
      if (cls) {
        const chars = POSIX_CLASSES[cls[1]!];
        if (chars === undefined) throw new SyntaxError(`invalid character class "${cls[1]}"`);
        out += chars;
        at += cls[0].length;
        continue;
      }
      if (c === ']') inBracket = false;
      out += c;
      at++;
      continue;
    }
    if (c === '[') {
      inBracket = true;
      bracketStart = true;
    }
    out += c;
    at++;
  }
  return new RegExp(out, flags);
}
