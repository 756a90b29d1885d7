import { describe, it, expect } from 'vitest';
import {
  DEFAULT_LAYOUT,
  DEFAULT_SEP,
  bindingKey,
  bindingMember,
  parseBindingMember,
  queueListKey,
  type KombuRedisLayout,
} from '../../src/celery/kombu-redis.js';
import { matchBindings } from '../../src/brokers/redis/redis-broker.js';

describe('queueListKey', () => {
  it('uses kombu defaults: steps 0/3/6/9 and the two raw bytes 0x06 0x16 as separator', () => {
    expect(DEFAULT_SEP).toBe('\u0006\u0016');
    expect(DEFAULT_LAYOUT).toEqual({ keyPrefix: '', sep: '\x06\x16', prioritySteps: [0, 3, 6, 9] });
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((p) => queueListKey('celery', p))).toEqual([
      'celery',
      'celery',
      'celery',
      'celery\x06\x163',
      'celery\x06\x163',
      'celery\x06\x163',
      'celery\x06\x166',
      'celery\x06\x166',
      'celery\x06\x166',
      'celery\x06\x169',
    ]);
  });

  it('clamps priorities outside 0..9 and treats a missing or fractional priority as 0', () => {
    expect(queueListKey('q', 255)).toBe('q\x06\x169');
    expect(queueListKey('q', -4)).toBe('q');
    expect(queueListKey('q', undefined)).toBe('q');
    expect(queueListKey('q', 7.5)).toBe('q');
  });

  it('honours custom priority steps and separator', () => {
    const layout: KombuRedisLayout = { keyPrefix: '', sep: ':', prioritySteps: [0, 5] };
    expect(queueListKey('q', 0, layout)).toBe('q');
    expect(queueListKey('q', 4, layout)).toBe('q');
    expect(queueListKey('q', 5, layout)).toBe('q:5');
    expect(queueListKey('q', 9, layout)).toBe('q:5');
  });

  it('puts the global key prefix in front with no separator', () => {
    const layout: KombuRedisLayout = { ...DEFAULT_LAYOUT, keyPrefix: 'pfx:' };
    expect(queueListKey('celery', 0, layout)).toBe('pfx:celery');
    expect(queueListKey('celery', 9, layout)).toBe('pfx:celery\x06\x169');
  });
});

describe('binding set keys and members', () => {
  it('names the binding set _kombu.binding.<exchange>, prefixed like every key', () => {
    expect(bindingKey('celery')).toBe('_kombu.binding.celery');
    expect(bindingKey('celery', { ...DEFAULT_LAYOUT, keyPrefix: 'pfx:' })).toBe('pfx:_kombu.binding.celery');
  });

  it('writes a member as routing key, pattern and queue joined by the separator', () => {
    expect(bindingMember('celery', '', 'celery')).toBe('celery\x06\x16\x06\x16celery');
    expect(bindingMember('hi', '', 'hi', '|')).toBe('hi||hi');
  });

  it('reads back what it writes', () => {
    expect(parseBindingMember(bindingMember('billing.*', '^billing\\.[^.]+$', 'billing-q'))).toEqual({
      routingKey: 'billing.*',
      pattern: '^billing\\.[^.]+$',
      queue: 'billing-q',
    });
    expect(parseBindingMember('rk||q', '|')).toEqual({ routingKey: 'rk', pattern: '', queue: 'q' });
  });

  it('rejects a member that does not have exactly three parts', () => {
    expect(parseBindingMember('celery')).toBeUndefined();
    expect(parseBindingMember('a\x06\x16b')).toBeUndefined();
    expect(parseBindingMember('a\x06\x16b\x06\x16c\x06\x16d')).toBeUndefined();
    expect(parseBindingMember('celery\x06\x16\x06\x16celery', '|')).toBeUndefined();
  });
});

describe('matchBindings', () => {
  const member = (routingKey: string, queue: string): string => bindingMember(routingKey, '', queue);

  it('routes a direct binding only on an exact routing key', () => {
    const members = [member('billing.reminders', 'reminders'), member('billing', 'billing')];
    expect(matchBindings(members, 'billing.reminders', DEFAULT_SEP)).toEqual(['reminders']);
    expect(matchBindings(members, 'billing', DEFAULT_SEP)).toEqual(['billing']);
    expect(matchBindings(members, 'billing.reminder', DEFAULT_SEP)).toEqual([]);
    expect(matchBindings(members, 'BILLING', DEFAULT_SEP)).toEqual([]);
  });

  it('treats regex characters in a direct key literally', () => {
    const members = [member('a.b', 'dots'), member('a+b', 'plus')];
    expect(matchBindings(members, 'axb', DEFAULT_SEP)).toEqual([]);
    expect(matchBindings(members, 'aab', DEFAULT_SEP)).toEqual([]);
    expect(matchBindings(members, 'a+b', DEFAULT_SEP)).toEqual(['plus']);
  });

  it('returns every matching queue once, in binding order', () => {
    const members = [member('rk', 'q1'), member('rk', 'q2'), member('rk', 'q1'), member('other', 'q3')];
    expect(matchBindings(members, 'rk', DEFAULT_SEP)).toEqual(['q1', 'q2']);
  });

  it('skips malformed members', () => {
    expect(matchBindings(['garbage', member('rk', 'q')], 'rk', DEFAULT_SEP)).toEqual(['q']);
  });

  it('uses the given separator', () => {
    expect(matchBindings(['rk||q'], 'rk', '|')).toEqual(['q']);
    expect(matchBindings(['rk||q'], 'rk', DEFAULT_SEP)).toEqual([]);
  });

  it.each<[string, string, boolean]>([
    ['billing.#', 'billing', true],
    ['billing.#', 'billing.a', true],
    ['billing.#', 'billing.a.b', true],
    ['billing.#', 'billingx', false],
    ['billing.#', 'other.billing', false],
    ['*.reminders', 'billing.reminders', true],
    ['*.reminders', 'a.b.reminders', false],
    ['*.reminders', 'reminders', false],
    ['*.reminders', '.reminders', false],
    ['billing.*', 'billing.a', true],
    ['billing.*', 'billing', false],
    ['billing.*', 'billing.a.b', false],
    ['#.reminders', 'reminders', true],
    ['#.reminders', 'a.b.reminders', true],
    ['#.reminders', 'xreminders', false],
    ['a.#.z', 'a.z', true],
    ['a.#.z', 'a.b.c.z', true],
    ['a.#.z', 'a.b.c', false],
    ['a.*.z', 'a.b.z', true],
    ['a.*.z', 'a.z', false],
    ['#', 'anything.at.all', true],
    ['#', 'x', true],
    ['*', 'x', true],
    ['*', 'x.y', false],
  ])('topic binding %s matches %s: %s', (pattern, routingKey, expected) => {
    const queues = matchBindings([member(pattern, 'q')], routingKey, DEFAULT_SEP);
    expect(queues).toEqual(expected ? ['q'] : []);
  });

  it('mixes direct and topic bindings of one exchange', () => {
    const members = [member('billing.reminders', 'exact'), member('billing.#', 'all-billing'), member('*.reminders', 'all-reminders')];
    expect(matchBindings(members, 'billing.reminders', DEFAULT_SEP)).toEqual(['exact', 'all-billing', 'all-reminders']);
    expect(matchBindings(members, 'billing.invoices', DEFAULT_SEP)).toEqual(['all-billing']);
    expect(matchBindings(members, 'crm.reminders', DEFAULT_SEP)).toEqual(['all-reminders']);
    expect(matchBindings(members, 'crm.notes', DEFAULT_SEP)).toEqual([]);
  });
});
