/**
 * Reading a Prometheus text exposition in tests, through the npm parser
 * `parse-prometheus-text-format` (prom-client writes the format; the tests only read values back):
 * families by name, each with its samples as Prometheus names them (`_bucket{le}`, `_sum`,
 * `_count` for histograms).
 */
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

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

function parseValue(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  for (const f of parsePrometheusTextFormat(text)) {
    const samples: Sample[] = [];
    for (const m of f.metrics) {
      const labels = m.labels ?? {};
      if (m.buckets) {
        for (const [le, count] of Object.entries(m.buckets)) samples.push({ name: `${f.name}_bucket`, labels: { ...labels, le }, value: parseValue(count) });
        samples.push({ name: `${f.name}_sum`, labels, value: parseValue(m.sum ?? 'NaN') });
        samples.push({ name: `${f.name}_count`, labels, value: parseValue(m.count ?? 'NaN') });
      } else samples.push({ name: f.name, labels, value: parseValue(m.value ?? 'NaN') });
    }
    families.set(f.name, { name: f.name, help: f.help, type: f.type.toLowerCase() as Family['type'], samples });
  }
  return families;
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
