/**
 * The StartupMessage's `options` parameter, for a pooler that must turn it into settings: PostgreSQL splits it like
 * a command line (postinit.c pg_split_opts: words separated by whitespace, a backslash takes the next character
 * literally) and reads postgres switches from it. Of those, only the ones that set a GUC — `-c name=value`
 * (also `-cname=value`) and `--name=value` — can be applied to a pooled server with SET; anything else (`-d 5`, `-B`)
 * is refused with PgBouncer's text, as PgBouncer (≥ 1.20) refuses it.
 */

export const UNSUPPORTED_OPTIONS =
  "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed";

/** Words of `options` as pg_split_opts makes them. */
export function splitOptions(options: string): string[] {
  const words: string[] = [];
  let i = 0;
  const n = options.length;
  const space = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
  while (i < n) {
    while (i < n && space(options[i]!)) i++;
    if (i >= n) break;
    let w = '';
    while (i < n && !space(options[i]!)) {
      if (options[i] === '\\' && i + 1 < n) i++;
      w += options[i];
      i++;
    }
    words.push(w);
  }
  return words;
}

/** The GUC settings `options` carries, in order; an error text when it carries anything else. */
export function settingsFromOptions(options: string): { settings: [string, string][] } | { error: string } {
  const words = splitOptions(options);
  const settings: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    let setting: string | undefined;
    if (w === '-c') setting = words[++i];
    else if (w.startsWith('-c')) setting = w.slice(2);
    else if (w.startsWith('--')) setting = w.slice(2);
    const eq = setting?.indexOf('=') ?? -1;
    if (setting === undefined || eq <= 0) return { error: UNSUPPORTED_OPTIONS };
    // PostgreSQL's ParseLongOption: '-' in the name means '_' (--search-path=x is search_path).
    settings.push([setting.slice(0, eq).replace(/-/g, '_'), setting.slice(eq + 1)]);
  }
  return { settings };
}
