import { describe, it, expect } from 'vitest';
import { pyRepr, pyTupleRepr } from '../../src/celery/py-repr.js';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('pyRepr', () => {
  it.each<[string, unknown, string]>([
    ['null', null, 'None'],
    ['undefined', undefined, 'None'],
    ['true', true, 'True'],
    ['false', false, 'False'],
    ['an integer', 42, '42'],
    ['a negative integer', -7, '-7'],
    ['a float', 1.5, '1.5'],
    ['a float needing 17 digits', 0.1 + 0.2, '0.30000000000000004'],
    ['a small float in exponent form', 1e-7, '1e-07'],
    ['a large float in exponent form', 1e21, '1e+21'],
    ['a plain string', 'abc', "'abc'"],
    ['an empty string', '', "''"],
    ['a string with a single quote', "it's", `"it's"`],
    ['a string with a double quote', 'say "hi"', `'say "hi"'`],
    ['a string with both quotes', `it's "x"`, `'it\\'s "x"'`],
    ['a backslash', 'a\\b', "'a\\\\b'"],
    ['new line, carriage return and tab', 'a\nb\rc\td', "'a\\nb\\rc\\td'"],
    ['control characters', '\x00\x01\x1f\x7f', "'\\x00\\x01\\x1f\\x7f'"],
    ['non-ASCII text, kept as is', 'Zoë ✓ 😀', "'Zoë ✓ 😀'"],
    ['an empty list', [], '[]'],
    ['a list', [1, 'a', null], "[1, 'a', None]"],
    ['an empty dict', {}, '{}'],
    ['a dict', { y: 2, name: 'x' }, "{'y': 2, 'name': 'x'}"],
    ['a dict key that needs escaping', { "o'k": true }, `{"o'k": True}`],
    ['nested values', { a: [1, [2, { b: false }]], c: { d: null } }, "{'a': [1, [2, {'b': False}]], 'c': {'d': None}}"],
  ])('writes %s like Python', (_label, value, expected) => {
    expect(pyRepr(value)).toBe(expected);
  });

  it('writes a Date as the string JSON would send', () => {
    expect(pyRepr(new Date('2031-03-04T05:06:07.089Z'))).toBe("'2031-03-04T05:06:07.089Z'");
  });

  it('cuts a long repr to 1024 characters ending in ...', () => {
    const out = pyRepr('x'.repeat(5000));
    expect(out).toHaveLength(1024);
    expect(out.startsWith("'xxxx")).toBe(true);
    expect(out.endsWith('...')).toBe(true);
  });

  it('keeps a repr of exactly 1024 characters whole', () => {
    const value = 'x'.repeat(1022);
    expect(pyRepr(value)).toBe(`'${value}'`);
  });

  it('honours a smaller maximum length', () => {
    expect(pyRepr({ key: 'value' }, 10)).toBe("{'key':...");
  });

  it('never cuts an astral character in half', () => {
    const out = pyRepr('😀'.repeat(2000));
    expect(out.length).toBeLessThanOrEqual(1024);
    expect(out.endsWith('...')).toBe(true);
    expect(out).not.toMatch(LONE_SURROGATE);
  });
});

describe('pyTupleRepr', () => {
  it('writes no arguments as ()', () => {
    expect(pyTupleRepr([])).toBe('()');
  });

  it('writes one argument with a trailing comma', () => {
    expect(pyTupleRepr([1])).toBe('(1,)');
  });

  it('writes several arguments separated by ", "', () => {
    expect(pyTupleRepr([2, 3])).toBe('(2, 3)');
    expect(pyTupleRepr(['a', null, [1, 2], { k: true }])).toBe("('a', None, [1, 2], {'k': True})");
  });

  it('cuts long argument lists to 1024 characters ending in ...', () => {
    const out = pyTupleRepr(Array.from({ length: 1000 }, (_, i) => i));
    expect(out).toHaveLength(1024);
    expect(out.startsWith('(0, 1, 2, ')).toBe(true);
    expect(out.endsWith('...')).toBe(true);
  });

  it('never cuts an astral character in half', () => {
    const out = pyTupleRepr(['😀'.repeat(2000)]);
    expect(out.length).toBeLessThanOrEqual(1024);
    expect(out).not.toMatch(LONE_SURROGATE);
  });
});
