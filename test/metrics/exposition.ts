/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: it checks what it
 * reads (HELP/TYPE before samples, counters end in _total, histogram buckets cumulative and
 * ending in +Inf equal to _count) and throws on anything malformed.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/;

export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a line feed');
  const families = new Map<string, Family>();
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      const [, name = '', help = ''] = /^# HELP (\S+) (.*)$/.exec(line) ?? [];
      if (families.has(name)) throw new Error(`HELP for ${name} twice`);
      families.set(name, { name, help: unescapeHelp(help), type: 'untyped', samples: [] });
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [, name = '', type = ''] = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line) ?? [];
      const f = families.get(name);
      if (!f) throw new Error(`TYPE before HELP for ${JSON.stringify(line)}`);
      f.type = type as Family['type'];
      continue;
    }
    if (line.startsWith('#') || line === '') throw new Error(`unexpected line ${JSON.stringify(line)}`);
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`malformed sample ${JSON.stringify(line)}`);
    const [, name = '', , labelText, valueText = ''] = m;
    const family = familyOf(families, name);
    if (!family) throw new Error(`sample ${name} has no HELP/TYPE before it`);
    family.samples.push({ name, labels: labelText === undefined ? {} : parseLabels(labelText), value: parseValue(valueText) });
  }
  for (const f of families.values()) check(f);
  return families;
}

function familyOf(families: Map<string, Family>, sample: string): Family | undefined {
  const direct = families.get(sample);
  if (direct && direct.type !== 'histogram') return direct;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (sample.endsWith(suffix)) {
      const f = families.get(sample.slice(0, -suffix.length));
      if (f?.type === 'histogram') return f;
    }
  }
  return undefined;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(text.slice(i));
    if (!m?.[1]) throw new Error(`malformed labels ${JSON.stringify(text)}`);
    i += m[0].length;
    let value = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Error(`unterminated label value in ${JSON.stringify(text)}`);
      if (c === '"') break;
      if (c === '\n') throw new Error('raw line feed in a label value');
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'n') value += '\n';
        else if (e === '\\' || e === '"') value += e;
        else throw new Error(`bad escape \\${e ?? ''} in ${JSON.stringify(text)}`);
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    if (m[1] in labels) throw new Error(`label ${m[1]} twice`);
    labels[m[1]] = value;
    i++; // closing quote
    if (text[i] === ',') i++;
    else if (i !== text.length) throw new Error(`expected , in labels ${JSON.stringify(text)}`);
  }
  return labels;
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const n = Number(text);
  if (text.trim() === '' || Number.isNaN(n)) throw new Error(`bad value ${JSON.stringify(text)}`);
  return n;
}

function unescapeHelp(text: string): string {
  return text.replace(/\\(n|\\)/g, (_m, c: string) => (c === 'n' ? '\n' : '\\'));
}

function check(f: Family): void {
  if (f.type === 'counter') {
    if (!f.name.endsWith('_total')) throw new Error(`counter ${f.name} must end in _total`);
    for (const s of f.samples) if (!(s.value >= 0)) throw new Error(`counter ${f.name} is negative`);
  }
  if (f.type !== 'histogram') return;
  const series = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const { le: _le, ...rest } = s.labels;
    const key = JSON.stringify(rest);
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  for (const samples of series.values()) {
    const buckets = samples.filter((s) => s.name === `${f.name}_bucket`);
    const count = samples.find((s) => s.name === `${f.name}_count`);
    const sum = samples.find((s) => s.name === `${f.name}_sum`);
    if (!count || !sum || buckets.length === 0) throw new Error(`histogram ${f.name} lacks _bucket, _sum or _count`);
    let lastLe = -Infinity;
    let lastCount = 0;
    for (const b of buckets) {
      const le = parseValue(b.labels.le ?? '');
      if (!(le > lastLe)) throw new Error(`histogram ${f.name}: buckets not in increasing le order`);
      if (b.value < lastCount) throw new Error(`histogram ${f.name}: buckets not cumulative at le=${b.labels.le}`);
      lastLe = le;
      lastCount = b.value;
    }
    if (lastLe !== Infinity) throw new Error(`histogram ${f.name}: no +Inf bucket`);
    if (lastCount !== count.value) throw new Error(`histogram ${f.name}: +Inf bucket ${lastCount} != _count ${count.value}`);
  }
}

/** The value of one sample (by full sample name and labels), or undefined. */
export function valueOf(families: Map<string, Family>, sample: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== sample) continue;
      const keys = Object.keys(labels);
      if (keys.length === Object.keys(s.labels).length && keys.every((k) => s.labels[k] === labels[k])) return s.value;
    }
  }
  return undefined;
}

/** A histogram's buckets as [le, cumulative count] pairs. */
export function bucketsOf(families: Map<string, Family>, name: string): [number, number][] {
  const f = families.get(name);
  if (!f) throw new Error(`no metric ${name}`);
  return f.samples.filter((s) => s.name === `${name}_bucket`).map((s) => [parseValue(s.labels.le ?? ''), s.value]);
}
