/**
 * Redis URLs as Celery writes them (redis, rediss with certificate options, Sentinel lists),
 * kombu transport options, and redaction of multi-URL strings.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValidationError, redactUrl } from '../../src/util/errors.js';
import { ioredisTarget } from '../../src/redis/connection.js';
import { layoutFromTransportOptions, queueListKey } from '../../src/celery/kombu-redis.js';

describe('ioredisTarget', () => {
  it('reads host, port, user, password and database from a redis:// URL', () => {
    expect(ioredisTarget('redis://app:p%40ss@cache.local:6380/3', 'store')).toEqual({
      username: 'app',
      password: 'p@ss',
      db: 3,
      host: 'cache.local',
      port: 6380,
    });
    expect(ioredisTarget('redis://localhost', 'store')).toMatchObject({ host: 'localhost', port: 6379, db: 0 });
  });

  it('turns rediss:// certificate options into TLS options, reading the files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cls-tls-'));
    for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(dir, f), `-----${f}-----`);
    const t = ioredisTarget(
      `rediss://h:6390/0?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=${dir}/ca.pem&ssl_certfile=${dir}/cert.pem&ssl_keyfile=${dir}/key.pem`,
      'broker',
    );
    expect(t.tls).toMatchObject({ servername: 'h', rejectUnauthorized: true });
    expect(String(t.tls?.ca)).toBe('-----ca.pem-----');
    expect(String(t.tls?.cert)).toBe('-----cert.pem-----');
    expect(String(t.tls?.key)).toBe('-----key.pem-----');
    expect(ioredisTarget('rediss://h?ssl_cert_reqs=none', 'broker').tls).toMatchObject({ rejectUnauthorized: false });
    expect(ioredisTarget('rediss://h', 'broker').tls).toMatchObject({ rejectUnauthorized: true });
  });

  it('refuses bad certificate options with one clear message each', () => {
    expect(() => ioredisTarget('rediss://h?ssl_cert_reqs=maybe', 'broker')).toThrow(/ssl_cert_reqs="maybe"; use none, optional or required/);
    expect(() => ioredisTarget('rediss://h?ssl_ca_certs=/nope/ca.pem', 'broker')).toThrow(/ssl_ca_certs=\/nope\/ca\.pem, which cannot be read/);
    expect(() => ioredisTarget('redis://h/x', 'store')).toThrow(ValidationError);
  });

  it('reads a Sentinel list as Celery writes it, and needs the master name', () => {
    expect(ioredisTarget('sentinel://:pw@s1:26379/2;sentinel://s2:26380/2', 'broker', 'mymaster')).toEqual({
      password: 'pw',
      db: 2,
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
      ],
      name: 'mymaster',
    });
    expect(() => ioredisTarget('sentinel://s1:26379', 'broker')).toThrow(/give the master name/);
  });
});

describe('layoutFromTransportOptions', () => {
  it('maps global_keyprefix, sep and priority_steps onto the kombu layout', () => {
    const layout = layoutFromTransportOptions({ global_keyprefix: 'p:', sep: '::', priority_steps: [0, 5, 9], visibility_timeout: 3600 });
    expect(queueListKey('q', 7, layout)).toBe('p:q::5');
    expect(queueListKey('q', 2, layout)).toBe('p:q');
    expect(queueListKey('q', 9, layout)).toBe('p:q::9');
  });

  it('refuses options a worker could not share', () => {
    expect(() => layoutFromTransportOptions({ priority_steps: [3, 0] })).toThrow(/ascending integers from 0 to 9/);
    expect(() => layoutFromTransportOptions({ priority_steps: [0, 12] })).toThrow(/ascending integers/);
    expect(() => layoutFromTransportOptions({ sep: '' })).toThrow(/sep must be a non-empty string/);
    expect(() => layoutFromTransportOptions({ global_keyprefix: 5 })).toThrow(/global_keyprefix must be a string/);
  });
});

describe('redactUrl', () => {
  it('redacts every URL of a Sentinel list', () => {
    expect(redactUrl('sentinel://:a@s1:26379;sentinel://u:b@s2:26379')).toBe('sentinel://:***@s1:26379;sentinel://u:***@s2:26379');
  });
});
