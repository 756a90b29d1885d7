/**
 * The job query (src/admin/query.ts): what goes to the store and what is matched here, the JSON
 * path matches on arguments, and every malformed query refused with one line naming the problem.
 */
import { describe, expect, it } from 'vitest';
import { compileQuery, parseArgsMatch } from '../../src/admin/query.js';
import { ValidationError } from '../../src/util/errors.js';

const job = { args: ['invoice', 7, { deep: [1, 2] }], kwargs: { tenant_id: 42, user: { email: 'a@b.c' }, 'odd key': null, flag: true } };

function matches(...paths: string[]): boolean {
  const q = compileQuery({ argsMatch: paths }, 'celery');
  return q.match?.(job) ?? true;
}

describe('job query', () => {
  it('sends the indexed filters to the store; the default queue also means "names no queue"', () => {
    const q = compileQuery(
      { from: new Date(1000_000), to: new Date(2000_000), task: 't', queue: 'celery', tags: ['a', 'a'], anyTags: ['b'], keyPrefix: 'k', idPrefix: 'i' },
      'celery',
    );
    expect(q).toEqual({
      filter: { from: 1000, to: 2000, task: 't', queues: ['celery', null], tags: { all: ['a'], any: ['b'] }, keyPrefix: 'k', idPrefix: 'i' },
      scans: false,
    });
    expect(compileQuery({ queue: 'mail' }, 'celery').filter).toEqual({ queues: ['mail'] });
    expect(compileQuery({}, 'celery')).toEqual({ filter: {}, scans: false });
  });

  it('args matches: paths into args and kwargs, JSON values, bare text as a string, deep equality', () => {
    expect(compileQuery({ argsContains: 'invoice' }, 'celery').scans).toBe(true);
    expect(matches('kwargs.tenant_id=42')).toBe(true);
    expect(matches('kwargs.tenant_id=43')).toBe(false);
    expect(matches('kwargs.tenant_id="42"')).toBe(false); // a string is not the number
    expect(matches('$.kwargs.tenant_id==42')).toBe(true);
    expect(matches('args[0]=invoice', 'args[1]=7')).toBe(true);
    expect(matches('args[0]="invoice"')).toBe(true);
    expect(matches('args[2].deep=[1,2]')).toBe(true);
    expect(matches('args[2].deep[1]=2')).toBe(true);
    expect(matches('args[9]=1')).toBe(false);
    expect(matches('kwargs.user.email=a@b.c')).toBe(true);
    expect(matches('kwargs["odd key"]=null')).toBe(true);
    expect(matches('kwargs.missing=null')).toBe(false); // a path that leads nowhere matches nothing
    expect(matches('kwargs.flag=true')).toBe(true);
    expect(matches('kwargs.tenant_id=42', 'kwargs.flag=false')).toBe(false);
    expect(matches('kwargs.toString=1')).toBe(false); // own keys only
    const contains = compileQuery({ argsContains: '"a@b.c"' }, 'celery');
    expect(contains.match?.(job)).toBe(true);
    expect(contains.match?.({ args: [], kwargs: {} })).toBe(false);
  });

  it('refuses a malformed JSON path with one line naming it', () => {
    for (const bad of [
      'tenant_id=42',
      'kwargs.tenant_id',
      'kwargs.=1',
      'kwargs..a=1',
      'args[x]=1',
      'args[-1]=1',
      'kwargs["a=1',
      'kwargs.a=',
      'kwargsx=1',
      'kwargs a=1',
    ]) {
      const problems: string[] = [];
      expect(parseArgsMatch(bad, problems)).toEqual([]);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^the args match .* is malformed: .*; write e\.g\. kwargs\.tenant_id=42/);
      expect(() => compileQuery({ argsMatch: [bad] }, 'celery')).toThrow(ValidationError);
    }
  });

  it('refuses unknown filters, inverted ranges, empty strings and bad dates; an empty query only where a filter is needed', () => {
    const bad: [unknown, RegExp][] = [
      [{ tenant: 1 }, /unknown filter "tenant"/],
      [{ from: new Date(2000), to: new Date(1000) }, /the range is inverted/],
      [{ from: new Date(Number.NaN) }, /from must be a valid Date/],
      [{ task: '' }, /task must be a non-empty string/],
      [{ argsContains: '' }, /argsContains must be a non-empty string/],
      [{ argsMatch: 'kwargs.a=1' }, /argsMatch must be a list/],
      [{ tags: ['x\u0000'] }, /control character/],
    ];
    for (const [q, message] of bad) expect(() => compileQuery(q as never, 'celery')).toThrow(message);
    expect(() => compileQuery({}, 'celery', true)).toThrow(/the query has no filter/);
    expect(() => compileQuery({ tags: [] }, 'celery', true)).toThrow(/the query has no filter/);
  });
});
