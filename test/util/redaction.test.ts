/**
 * Redaction of every credential a store or broker URL can carry, in a URL and in free text:
 * drivers split the user info at the last `@`, and libpq reads `?password=` / `?sslpassword=`.
 */
import { describe, expect, it } from 'vitest';
import { ConnectionError, redactUrl, redactUrlsIn } from '../../src/util/errors.js';
import { createCliLogger } from '../../src/cli/log.js';

describe('redactUrl', () => {
  it.each([
    ['a password', 'redis://u:secret@host:6379/0', 'redis://u:***@host:6379/0'],
    ['a password holding @ (drivers split at the last @)', 'redis://u:pa@ss@host/0', 'redis://u:***@host/0'],
    ['a password holding several @', 'amqp://guest:a@b@c@rabbit:5672//', 'amqp://guest:***@rabbit:5672//'],
    ['a password holding / ? # (the URL no longer parses, but is still printed)', 'redis://u:p/a?s#s@host/0', 'redis://u:***@host/0'],
    ['a password holding a quote and a space', 'redis://u:pa"s s\'x@host/0', 'redis://u:***@host/0'],
    ['a password holding ;', 'redis://u:pa;ss@host/0', 'redis://u:***@host/0'],
    ['a lone token (Redis reads it as the password)', 'redis://secret@host', 'redis://***@host'],
    ['an empty password', 'redis://:@host', 'redis://:***@host'],
    ['no credentials at all', 'redis://host:6379/0', 'redis://host:6379/0'],
    [
      'libpq ?password= (a lone user token is hidden too: some clients read it as the password)',
      'postgres://app@db:5432/app?password=SECRET',
      'postgres://***@db:5432/app?password=***',
    ],
    [
      'libpq ?sslpassword= among other options',
      'postgres://db/app?sslmode=require&sslpassword=SECRET&schema=s',
      'postgres://db/app?sslmode=require&sslpassword=***&schema=s',
    ],
    ['a secret query value holding @', 'postgres://db/app?password=a@b', 'postgres://db/app?password=***'],
    ['a query user holding @ with a password after it', 'postgres://db/app?user=a@b&password=SECRET', 'postgres://***@b&password=***'],
    ['a percent-encoded parameter name', 'postgres://db/app?pass%77ord=SECRET', 'postgres://db/app?pass%77ord=***'],
    ['?token= and ?auth=', 'redis://h/0?token=T1&auth=T2&x=1', 'redis://h/0?token=***&auth=***&x=1'],
    ['an upper-case scheme', 'REDIS://U:SECRET@H', 'REDIS://U:***@H'],
    ['a scheme without //', 'redis:u:secret@host', 'redis:***@host'],
    ['a Sentinel list, URL by URL', 'sentinel://:a@s1:26379;sentinel://u:b@s2:26379', 'sentinel://:***@s1:26379;sentinel://u:***@s2:26379'],
    ['a Sentinel list whose first password holds ; and @', 'sentinel://:a;b@c@s1;sentinel://:d@s2', 'sentinel://:***@s1;sentinel://:***@s2'],
  ])('%s', (_label, url, expected) => {
    expect(redactUrl(url)).toBe(expected);
    expect(redactUrl(expected)).toBe(expected); // redacting twice changes nothing
  });

  it('never throws, whatever it is given', () => {
    for (const bad of ['', '://', '@@@', 'redis://%zz@h', 'x://\uD800:\uDFFF@h', 42 as unknown as string, undefined as unknown as string]) {
      expect(() => redactUrl(bad)).not.toThrow();
    }
  });
});

describe('redactUrlsIn', () => {
  it('finds URLs in a message, with passwords that hold quotes and spaces', () => {
    const text = `error: store URL "redis://u:pa"ss@h/0" is bad; also 'amqp://g:x y@r//' failed`;
    const out = redactUrlsIn(text);
    expect(out).toBe(`error: store URL "redis://u:***@h/0" is bad; also 'amqp://g:***@r//' failed`);
  });

  it('redacts a URL inside JSON text, whose quotes are escaped', () => {
    const json = JSON.stringify({ msg: 'down', url: 'redis://u:p"w@h/0' });
    expect(redactUrlsIn(json)).not.toContain('p\\"w');
  });

  it('takes linear time: a message echoing a million letters is not a hang', () => {
    const t0 = Date.now();
    expect(redactUrlsIn('a'.repeat(1_000_000))).toHaveLength(1_000_000);
    expect(redactUrlsIn(`x${'a1'.repeat(500_000)}://u:p@h`)).toMatch(/:\/\/u:\*\*\*@h$/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('leaves text without credentials alone, and is line by line', () => {
    expect(redactUrlsIn('see https://example.com/docs?x=1 for more\nnext: u@example.com')).toBe(
      'see https://example.com/docs?x=1 for more\nnext: u@example.com',
    );
  });
});

describe('every message carries the URL redacted', () => {
  it('ConnectionError: message and url', () => {
    const err = new ConnectionError('store', 'postgres://app:pa@ss@db/app?sslpassword=K', new Error('failed for postgres://x:y"z@db/app'));
    expect(err.message).not.toMatch(/pa@ss|ss@db|=K|y"z/);
    expect(err.url).toBe('postgres://app:***@db/app?sslpassword=***');
  });

  it('the CLI logger, as text and as JSON (each field redacted, the JSON still valid)', () => {
    for (const format of ['text', 'json'] as const) {
      const lines: string[] = [];
      const log = createCliLogger(format, (l) => lines.push(l));
      log.warn('cannot reach redis://u:pa"ss@h/0', { url: 'postgres://db/app?password=S3 cret&x=1', nested: { list: ['amqp://g:p@ss@r//'] } });
      expect(lines).toHaveLength(1);
      expect(lines[0]).not.toMatch(/pa"ss|pa\\"ss|S3|cret|p@ss/);
      if (format === 'json')
        expect(JSON.parse(lines[0] ?? '')).toMatchObject({ url: 'postgres://db/app?password=***&x=1', nested: { list: ['amqp://g:***@r//'] } });
    }
  });
});
