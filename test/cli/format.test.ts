/**
 * `relative()`, the "(in 3d 4h)" beside a time in CLI output: the largest unit there is and the
 * one right below it, so a time of day never changes which units are shown (it once printed
 * "1553d 34m" at 02:31 and "1553d 1h" an hour later).
 */
import { describe, expect, it } from 'vitest';
import { relative } from '../../src/cli/format.js';

const NOW = new Date('2026-12-02T02:31:00Z');
const later = (s: number) => new Date(NOW.getTime() + s * 1000);

describe('relative', () => {
  it.each<[number, string]>([
    [0, 'in 0s'],
    [59, 'in 59s'],
    [60, 'in 1m 0s'],
    [3600, 'in 1h 0m'],
    [3600 + 59, 'in 1h 0m'],
    [1553 * 86_400 + 34 * 60, 'in 1553d 0h'],
    [1553 * 86_400 + 3600, 'in 1553d 1h'],
    [-90, '1m 30s ago'],
    [-86_400, '1d 0h ago'],
  ])('%d s: %s', (s, text) => {
    expect(relative(later(s), NOW)).toBe(text);
  });

  it('a time a Date cannot hold is out of range', () => {
    expect(relative(new Date(8.64e15 + 1), NOW)).toBe('out of range');
  });
});
