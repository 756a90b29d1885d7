/**
 * The registry writes the Prometheus text exposition format 0.0.4: read back with a strict parser.
 */
import { describe, expect, it } from 'vitest';
import { MetricsRegistry, escapeLabelValue, formatValue } from '../../src/metrics/prometheus.js';
import { bucketsOf, parseExposition, valueOf } from './exposition.js';

describe('MetricsRegistry exposition', () => {
  it('writes HELP and TYPE, counters from 0, and the values set', () => {
    const r = new MetricsRegistry();
    const c = r.counter('x_events_total', 'Events seen.');
    const g = r.gauge('x_level', 'A level.');
    const text0 = r.render();
    expect(text0).toContain('# HELP x_events_total Events seen.\n# TYPE x_events_total counter\nx_events_total 0\n');
    c.inc();
    c.inc(4);
    g.set(-2.5);
    const m = parseExposition(r.render());
    expect(m.get('x_events_total')?.type).toBe('counter');
    expect(m.get('x_level')?.type).toBe('gauge');
    expect(valueOf(m, 'x_events_total')).toBe(5);
    expect(valueOf(m, 'x_level')).toBe(-2.5);
  });

  it('a gauge that is unset has no sample until set again', () => {
    const r = new MetricsRegistry();
    const g = r.gauge('x_level', 'A level.');
    g.set(3);
    g.unset();
    const m = parseExposition(r.render());
    expect(m.get('x_level')?.samples).toEqual([]);
    g.set(7);
    expect(valueOf(parseExposition(r.render()), 'x_level')).toBe(7);
  });

  it('histogram buckets are cumulative, end in +Inf, and _sum/_count add up', () => {
    const r = new MetricsRegistry();
    const h = r.histogram('x_seconds', 'Durations.', [1, 0.1, 10]); // unsorted on purpose
    for (const v of [0.05, 0.1, 0.5, 2, 20, 30]) h.observe(v);
    const m = parseExposition(r.render()); // the parser itself rejects non-cumulative buckets
    expect(bucketsOf(m, 'x_seconds')).toEqual([
      [0.1, 2], // 0.05 and 0.1 (le is inclusive)
      [1, 3],
      [10, 4],
      [Infinity, 6],
    ]);
    expect(valueOf(m, 'x_seconds_count')).toBe(6);
    expect(valueOf(m, 'x_seconds_sum')).toBeCloseTo(52.65, 10);
  });

  it('an empty histogram exposes zero buckets, sum and count', () => {
    const r = new MetricsRegistry();
    r.histogram('x_seconds', 'Durations.', [0.5]);
    expect(r.render()).toBe(
      '# HELP x_seconds Durations.\n# TYPE x_seconds histogram\nx_seconds_bucket{le="0.5"} 0\nx_seconds_bucket{le="+Inf"} 0\nx_seconds_sum 0\nx_seconds_count 0\n',
    );
  });

  it('escapes label values (backslash, quote, line feed) and HELP text, and they read back intact', () => {
    const r = new MetricsRegistry();
    const c = r.counter('x_errors_total', 'Errors\nby "kind" \\ path.', ['kind']);
    const nasty = 'a\\b"c\nd';
    c.inc(2, { kind: nasty });
    c.inc(1, { kind: 'plain' });
    const text = r.render();
    expect(text).toContain('x_errors_total{kind="a\\\\b\\"c\\nd"} 2\n');
    expect(text).toContain('# HELP x_errors_total Errors\\nby "kind" \\\\ path.\n');
    const m = parseExposition(text);
    expect(m.get('x_errors_total')?.help).toBe('Errors\nby "kind" \\ path.');
    expect(valueOf(m, 'x_errors_total', { kind: nasty })).toBe(2);
    expect(valueOf(m, 'x_errors_total', { kind: 'plain' })).toBe(1);
  });

  it('labelled histograms keep one cumulative series per label set', () => {
    const r = new MetricsRegistry();
    const h = r.histogram('x_seconds', 'Durations.', [1], ['op']);
    h.observe(0.5, { op: 'a' });
    h.observe(5, { op: 'a' });
    h.observe(5, { op: 'b' });
    const m = parseExposition(r.render());
    expect(valueOf(m, 'x_seconds_bucket', { op: 'a', le: '1' })).toBe(1);
    expect(valueOf(m, 'x_seconds_bucket', { op: 'a', le: '+Inf' })).toBe(2);
    expect(valueOf(m, 'x_seconds_bucket', { op: 'b', le: '1' })).toBe(0);
    expect(valueOf(m, 'x_seconds_count', { op: 'b' })).toBe(1);
  });

  it('formats special values as Prometheus does', () => {
    expect(formatValue(Infinity)).toBe('+Inf');
    expect(formatValue(-Infinity)).toBe('-Inf');
    expect(formatValue(NaN)).toBe('NaN');
    expect(formatValue(0.25)).toBe('0.25');
    expect(escapeLabelValue('x')).toBe('x');
  });

  it('rejects what the format forbids: counters without _total, negative increments, bad names, wrong labels, duplicates', () => {
    const r = new MetricsRegistry();
    expect(() => r.counter('x_events', 'no suffix')).toThrow(/_total/);
    const c = r.counter('x_a_total', 'a', ['kind']);
    expect(() => c.inc(-1, { kind: 'k' })).toThrow(/only goes up/);
    expect(() => c.inc(1, {})).toThrow(/labels/);
    expect(() => c.inc(1, { kind: 'k', other: 'o' })).toThrow(/labels/);
    expect(() => r.gauge('1bad', 'x')).toThrow(/metric name/);
    expect(() => r.histogram('x_h', 'x', [1], ['le'])).toThrow(/label name/);
    expect(() => r.histogram('x_h2', 'x', [])).toThrow(/buckets/);
    expect(() => r.counter('x_a_total', 'again')).toThrow(/twice/);
  });
});

describe('the test parser is strict (so the assertions above mean something)', () => {
  it('rejects non-cumulative buckets, a missing +Inf, and samples without TYPE', () => {
    const head = '# HELP h x\n# TYPE h histogram\n';
    expect(() => parseExposition(`${head}h_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n`)).toThrow(/cumulative/);
    expect(() => parseExposition(`${head}h_bucket{le="1"} 1\nh_sum 1\nh_count 1\n`)).toThrow(/\+Inf/);
    expect(() => parseExposition('x 1\n')).toThrow(/no HELP/);
    expect(() => parseExposition('# HELP c x\n# TYPE c counter\nc 1\n')).toThrow(/_total/);
  });
});
