/**
 * SHOW HBA: the rows of PostgreSQL's pg_hba_file_rules view (src/backend/utils/adt/hbafuncs.c) for the gateway's
 * hba file. Like the view, it reads the file as it is on disk now (not the rules in force), so an operator can check
 * an edit before RELOAD; a line that does not parse is a row with only file_name, line_number and error.
 */
import { type HbaLine, expandIncludes, parseHba } from '../../hba/hba.js';
import { readAuthFile, tokenizeAuthText } from '../../hba/tokenize.js';

export interface HbaRuleRow {
  readonly rule_number: number | null;
  readonly file_name: string;
  readonly line_number: number;
  readonly type: string | null;
  readonly database: readonly string[] | null;
  readonly user_name: readonly string[] | null;
  readonly address: string | null;
  readonly netmask: string | null;
  readonly auth_method: string | null;
  readonly options: readonly string[] | null;
  readonly error: string | null;
}

/**
 * hbaError() appends PostgreSQL's log context; the view's error column has the message alone. One message is worded
 * differently in the view than in the log (parse_hba_auth_opt() sets err_msg with other words): use the view's.
 */
const bare = (message: string) =>
  message
    .replace(/ \(line \d+ of configuration file ".*"\)$/s, '')
    .replace(
      'clientcert only accepts "verify-full" when using "cert" authentication',
      'clientcert can only be set to "verify-full" when using "cert" authentication',
    );

/** Rows for the lines in force (the built-in default when there is no hba file). */
export function rulesFromLines(lines: readonly HbaLine[]): HbaRuleRow[] {
  return lines.map((l, i) => ruleRow(l, i + 1));
}

/** Rows for the file on disk, as pg_hba_file_rules reads it; a file that cannot be read is one error row. */
export function rulesFromFile(file: string): HbaRuleRow[] {
  let tokenLines: ReturnType<typeof tokenizeAuthText>;
  try {
    tokenLines = expandIncludes(tokenizeAuthText(readAuthFile(file, 'configuration'), file), 0);
  } catch (e) {
    return [errorRow(file, 0, bare((e as Error).message))];
  }
  const rows: HbaRuleRow[] = [];
  let rule = 0;
  for (const tl of tokenLines) {
    try {
      const [l] = parseHba([tl]);
      if (l) rows.push(ruleRow(l, ++rule));
    } catch (e) {
      rows.push(errorRow(tl.file, tl.line, bare((e as Error).message)));
    }
  }
  return rows;
}

function errorRow(file: string, line: number, error: string): HbaRuleRow {
  return {
    rule_number: null,
    file_name: file,
    line_number: line,
    type: null,
    database: null,
    user_name: null,
    address: null,
    netmask: null,
    auth_method: null,
    options: null,
    error,
  };
}

function bytesToText(bytes: readonly number[]): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // RFC 5952: the longest run (≥ 2) of zero groups becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** get_hba_options(): the options the view lists, in its order (clientname is not among them, checked against 18). */
function options(l: HbaLine): string[] | null {
  const out: string[] = [];
  if (l.options.include_realm !== undefined) out.push(`include_realm=${l.options.include_realm}`);
  if (l.map !== undefined) out.push(`map=${l.map}`);
  if (l.clientcert !== 'off') out.push(`clientcert=${l.clientcert}`);
  for (const [k, v] of Object.entries(l.options)) {
    if (['include_realm', 'map', 'clientcert', 'clientname'].includes(k)) continue;
    // Secrets stay out of the console, as they stay out of logs.
    if (k === 'ldapbindpasswd' || k === 'radiussecrets') continue;
    out.push(`${k}=${v}`);
  }
  return out.length > 0 ? out : null;
}

function ruleRow(l: HbaLine, rule: number): HbaRuleRow {
  let address: string | null = null;
  let netmask: string | null = null;
  const a = l.address;
  if (a?.kind === 'cidr') {
    address = bytesToText(a.addr);
    netmask = bytesToText(a.mask);
  } else if (a?.kind === 'hostname') address = a.name;
  else if (a) address = a.kind;
  return {
    rule_number: rule,
    file_name: l.file,
    line_number: l.line,
    type: l.type,
    database: l.databases.map((t) => t.text),
    user_name: l.users.map((t) => t.text),
    address,
    netmask,
    auth_method: l.method,
    options: options(l),
    error: null,
  };
}
