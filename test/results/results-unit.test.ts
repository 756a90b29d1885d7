/**
 * Pure parts of results and revoking: the docs/protocol.md §6.3 key/prefix rule, the record → outcome mapping,
 * the revoke broadcast and its kombu Redis channel/envelope, and config validation.
 */
import { describe, expect, it } from 'vitest';
import { AsyncResult, Celery, ErrorCode, ResultTimeoutError, TaskFailedError, TaskRevokedError, ValidationError } from '../../src/index.js';
import { fanoutChannel } from '../../src/exports/brokers.js';
import { resultKey, resultKeyPrefix, revokeBroadcast, revokedMeta } from '../../src/exports/protocol.js';
import { toFanoutEnvelope } from '../../src/brokers/redis/redis-broker.js';
import { outcomeOf, parseTaskMeta } from '../../src/results/redis-backend.js';

describe('result keys (docs/protocol.md §6.3)', () => {
  it('has no prefix by default', () => {
    expect(resultKeyPrefix(undefined)).toBe('');
    expect(resultKeyPrefix('')).toBe('');
    expect(resultKey('abc')).toBe('celery-task-meta-abc');
  });

  it('appends "_" to a global_keyprefix unless it ends in one of :_-.', () => {
    expect(resultKey('abc', 'pfx')).toBe('pfx_celery-task-meta-abc');
    for (const end of [':', '_', '-', '.']) expect(resultKey('abc', `pfx${end}`)).toBe(`pfx${end}celery-task-meta-abc`);
    expect(resultKeyPrefix('a/b')).toBe('a/b_');
  });
});

describe('record → outcome', () => {
  it('SUCCESS gives the stored result', () => {
    expect(outcomeOf('t1', { status: 'SUCCESS', result: { x: [1, 2] }, traceback: null, task_id: 't1' })).toEqual({ value: { x: [1, 2] } });
  });

  it('FAILURE gives a TaskFailedError with the Python exception type, message, module and traceback', () => {
    const out = outcomeOf('t2', {
      status: 'FAILURE',
      result: { exc_type: 'ValueError', exc_message: ['bad input'], exc_module: 'builtins' },
      traceback: 'Traceback (most recent call last):\n  ...\nValueError: bad input\n',
      task_id: 't2',
    });
    expect('error' in out).toBe(true);
    const err = (out as { error: Error }).error as TaskFailedError;
    expect(err).toBeInstanceOf(TaskFailedError);
    expect(err.code).toBe(ErrorCode.TASK_FAILED);
    expect(err.excType).toBe('ValueError');
    expect(err.excMessage).toBe('bad input');
    expect(err.excModule).toBe('builtins');
    expect(err.traceback).toContain('ValueError: bad input');
    expect(err.message).toBe('task "t2" failed: ValueError: bad input');
    expect(err.message).not.toContain('\n');
  });

  it('FAILURE with several exception args joins them; a message stays one line', () => {
    const out = outcomeOf('t3', { status: 'FAILURE', result: { exc_type: 'KeyError', exc_message: ['a\nb', 3] }, traceback: null, task_id: 't3' });
    const err = (out as { error: TaskFailedError }).error;
    expect(err.excMessage).toBe('a\nb, 3');
    expect(err.message).toBe('task "t3" failed: KeyError: a');
  });

  it('REVOKED gives a TaskRevokedError with the reason', () => {
    const out = outcomeOf('t4', revokedMeta('t4', new Date('2030-01-02T03:04:05.678Z')));
    const err = (out as { error: TaskRevokedError }).error;
    expect(err).toBeInstanceOf(TaskRevokedError);
    expect(err.code).toBe(ErrorCode.TASK_REVOKED);
    expect(err.reason).toBe('revoked');
  });

  it('the REVOKED record has the shape a worker writes', () => {
    expect(revokedMeta('t5', new Date('2030-01-02T03:04:05.678Z'))).toEqual({
      status: 'REVOKED',
      result: { exc_type: 'TaskRevokedError', exc_message: ['revoked'], exc_module: 'celery.exceptions' },
      traceback: null,
      children: [],
      date_done: '2030-01-02T03:04:05.678000+00:00',
      task_id: 't5',
    });
  });

  it('a record that is not JSON is a CORRUPT_ENTRY error naming the key', () => {
    expect(() => parseTaskMeta('\x80\x04pickle', 'celery-task-meta-x')).toThrow(/celery-task-meta-x.*result_serializer json/);
    expect(() => parseTaskMeta('{"no":"status"}', 'k')).toThrow(expect.objectContaining({ code: ErrorCode.CORRUPT_ENTRY }));
  });

  it('the timeout error is one line naming the id and the wait', () => {
    const err = new ResultTimeoutError('t6', 1500, 'SCHEDULED');
    expect(err.code).toBe(ErrorCode.TIMEOUT);
    expect(err.message).toMatch(/^task "t6" was not done after waiting 1500 ms \(state SCHEDULED\)/);
    expect(err.message).not.toContain('\n');
  });
});

describe("Celery's revoke broadcast", () => {
  it('is a pidbox "revoke" command for every worker on <control_exchange>.pidbox', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const m = revokeBroadcast('abc-123', { now });
    expect(m.exchange).toBe('celery.pidbox');
    expect(m.routingKey).toBe('');
    expect(m.body).toEqual({
      method: 'revoke',
      arguments: { task_id: 'abc-123', terminate: false, signal: 'SIGTERM' },
      destination: null,
      pattern: null,
      matcher: null,
    });
    expect(m.headers.expires).toBe(now.getTime() / 1000 + 1);
    expect(typeof m.headers.clock).toBe('number');
    expect(revokeBroadcast('x', { controlExchange: 'myapp' }).exchange).toBe('myapp.pidbox');
  });

  it('advances its Lamport clock on every message', () => {
    const a = revokeBroadcast('a').headers.clock as number;
    const b = revokeBroadcast('b').headers.clock as number;
    expect(b).toBeGreaterThan(a);
  });

  it("goes on kombu's fanout channel: /{db}.<exchange> by default, honouring the transport options", () => {
    expect(fanoutChannel('celery.pidbox', '', { db: 0 })).toBe('/0.celery.pidbox');
    expect(fanoutChannel('celery.pidbox', '', { db: 5, keyPrefix: 'pfx:' })).toBe('pfx:/5.celery.pidbox');
    expect(fanoutChannel('celery.pidbox', '', { db: 5, fanoutPrefix: false })).toBe('celery.pidbox');
    expect(fanoutChannel('celery.pidbox', '', { db: 5, fanoutPrefix: 'x{db}:' })).toBe('x5:celery.pidbox');
    // a routing key is appended only with fanout_patterns (a broadcast has none)
    expect(fanoutChannel('ev', 'task.sent', { db: 1 })).toBe('/1.ev/task.sent');
    expect(fanoutChannel('ev', 'task.sent', { db: 1, fanoutPatterns: false })).toBe('/1.ev');
  });

  it('is PUBLISHed in the envelope kombu uses: base64 JSON body, transient, a fresh delivery tag', () => {
    const m = revokeBroadcast('abc');
    const a = JSON.parse(toFanoutEnvelope(m)) as Record<string, any>;
    const b = JSON.parse(toFanoutEnvelope(m)) as Record<string, any>;
    expect(a['content-type']).toBe('application/json');
    expect(a['content-encoding']).toBe('utf-8');
    expect(a.headers).toEqual(m.headers);
    expect(JSON.parse(Buffer.from(a.body as string, 'base64').toString('utf8'))).toEqual(m.body);
    expect(a.properties).toMatchObject({
      delivery_mode: 1,
      priority: 0,
      body_encoding: 'base64',
      delivery_info: { exchange: 'celery.pidbox', routing_key: '' },
    });
    expect(a.properties.delivery_tag).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.properties.delivery_tag).not.toBe(a.properties.delivery_tag);
  });
});

describe('configuration', () => {
  it('accepts redis:// and rediss:// result backends without connecting', async () => {
    const app = new Celery({ resultBackend: 'redis://127.0.0.1:1/2', longtermSchedulerBackend: 'sqlite://:memory:' });
    expect(app.resultBackend?.key('i')).toBe('celery-task-meta-i');
    expect(new Celery({ resultBackend: 'rediss://h:6380/0' }).resultBackend).toBeDefined();
    expect(new Celery().resultBackend).toBeUndefined();
    await app.close();
  });

  it.each(['amqp://guest@localhost//', 'rpc://', 'db+postgresql://u:secret@h/db', 'sentinel://h:26379', 'redis'])(
    'rejects the result backend %s with a one-line ValidationError',
    (url) => {
      let err: unknown;
      try {
        new Celery({ resultBackend: url });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ValidationError);
      const message = (err as Error).message;
      expect(message).not.toContain('\n');
      expect(message).toMatch(/redis:\/\//);
      expect(message).not.toContain('secret');
    },
  );

  it('uses the result transport global_keyprefix with the "_" rule, and validates it', () => {
    const app = new Celery({ resultBackend: 'redis://h/1', resultBackendTransportOptions: { global_keyprefix: 'tenant' } });
    expect(app.resultBackend?.key('i')).toBe('tenant_celery-task-meta-i');
    expect(() => new Celery({ resultBackend: 'redis://h/1', resultBackendTransportOptions: { global_keyprefix: 7 as unknown as string } })).toThrow(
      ValidationError,
    );
    expect(() => new Celery({ resultBackend: 'redis://h/1', resultExpires: 0 })).toThrow(/resultExpires/);
  });

  it('validates fanout_prefix / fanout_patterns and controlExchange', () => {
    expect(() => new Celery({ brokerTransportOptions: { fanout_prefix: 3 } })).toThrow(/fanout_prefix/);
    expect(() => new Celery({ brokerTransportOptions: { fanout_patterns: 'yes' } })).toThrow(/fanout_patterns/);
    expect(() => new Celery({ controlExchange: '' })).toThrow(/controlExchange/);
    expect(new Celery({ brokerTransportOptions: { fanout_prefix: false, fanout_patterns: true } }).config.controlExchange).toBe('celery');
  });

  it('reading a result without a result backend says how to configure one', async () => {
    const app = new Celery({ longtermSchedulerBackend: 'sqlite://:memory:' });
    const result = new AsyncResult(app, 'some-id', { published: true });
    await expect(result.get()).rejects.toThrow(/no result backend is configured.*resultBackend/);
    await expect(result.state()).rejects.toBeInstanceOf(ValidationError);
    await app.close();
  });

  it('get() validates its options', async () => {
    const app = new Celery({ resultBackend: 'redis://127.0.0.1:1/0' });
    const result = app.asyncResult('x');
    await expect(result.get({ timeoutMs: -1 })).rejects.toThrow(/timeoutMs/);
    await expect(result.get({ intervalMs: 0 })).rejects.toThrow(/intervalMs/);
    await app.close();
  });
});
