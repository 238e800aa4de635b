/**
 * A strict parser of the Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): every line is a HELP, a TYPE or a sample; names and
 * label names match the spec's regexes; label values use only the three escapes; each sample belongs to the family
 * declared by the TYPE before it; histograms have ascending buckets ending in +Inf equal to _count. Throws on any
 * deviation, with the line.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}
export interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(v: string, line: string): number {
  // Prometheus reads values with Go's strconv.ParseFloat: NaN and Inf in any letter case (prom-client writes "Nan").
  if (/^\+?inf(inity)?$/i.test(v)) return Number.POSITIVE_INFINITY;
  if (/^-inf(inity)?$/i.test(v)) return Number.NEGATIVE_INFINITY;
  if (/^nan$/i.test(v)) return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`bad value in: ${line}`);
  return Number(v);
}

function parseLabels(s: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  for (let guard = 0; i < s.length && guard < 10_000; guard++) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name) || name.startsWith('__')) throw new Error(`bad label name ${name} in: ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`);
    let j = eq + 2;
    let value = '';
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const n = s[++j];
        if (n === 'n') value += '\n';
        else if (n === '\\' || n === '"') value += n;
        else throw new Error(`bad escape in: ${line}`);
      } else if (s[j] === '\n') throw new Error(`raw newline in: ${line}`);
      else value += s[j];
    }
    if (s[j] !== '"') throw new Error(`unterminated label value in: ${line}`);
    if (name in labels) throw new Error(`duplicate label ${name} in: ${line}`);
    labels[name] = value;
    i = j + 1;
    if (s[i] === ',') i++;
    else if (i !== s.length) throw new Error(`junk after label in: ${line}`);
  }
  return labels;
}

export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  let current: Family | undefined;
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      if (!NAME.test(m[1]!)) throw new Error(`bad name: ${line}`);
      if (families.has(m[1]!)) throw new Error(`family declared twice: ${line}`);
      current = { name: m[1]!, type: 'untyped', help: m[2]!, samples: [] };
      families.set(current.name, current);
      continue;
    }
    m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      if (!current || current.name !== m[1]) throw new Error(`TYPE without HELP: ${line}`);
      (current as { type: string }).type = m[2]!;
      continue;
    }
    if (line.startsWith('#')) throw new Error(`unknown comment: ${line}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const name = m[1]!;
    if (!current) throw new Error(`sample before any family: ${line}`);
    const suffixes =
      current.type === 'histogram'
        ? ['_bucket', '_sum', '_count']
        : current.type === 'summary'
          ? ['', '_sum', '_count']
          : [''];
    if (!suffixes.some((s) => name === current!.name + s))
      throw new Error(`sample ${name} outside family ${current.name}`);
    current.samples.push({ name, labels: parseLabels(m[2] ?? '', line), value: parseValue(m[3]!, line) });
  }
  for (const f of families.values()) {
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new Error(`counter ${f.name} lacks _total`);
    if (f.type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const s of f.samples.filter((x) => x.name.endsWith('_bucket'))) {
      const { le, ...rest } = s.labels;
      if (le === undefined) throw new Error(`bucket without le in ${f.name}`);
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      let prev = Number.NEGATIVE_INFINITY;
      let prevCount = 0;
      for (const b of buckets) {
        const le = parseValue(b.labels.le!, b.labels.le!);
        if (!(le > prev) || b.value < prevCount) throw new Error(`buckets not ascending in ${f.name}`);
        prev = le;
        prevCount = b.value;
      }
      if (prev !== Number.POSITIVE_INFINITY) throw new Error(`no +Inf bucket in ${f.name}`);
      const count = f.samples.find((s) => s.name === `${f.name}_count` && JSON.stringify(s.labels) === key);
      if (!count || count.value !== prevCount) throw new Error(`_count differs from +Inf bucket in ${f.name}`);
    }
  }
  return families;
}

/** The value of one sample, by name and labels (exact), or undefined. */
export function sampleValue(
  f: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const fam of f.values()) {
    for (const s of fam.samples) {
      if (
        s.name === name &&
        JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(Object.entries(labels).sort())
      ) {
        return s.value;
      }
    }
  }
  return undefined;
}
