/**
 * The root export is the API applications call; the rest is behind subpath exports, reachable
 * through package.json `exports` from the built package (in a fresh Node process, by name).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as root from '../../src/index.js';

const ROOT_RUNTIME = [
  'AsyncResult',
  'CELERY_DEFAULTS',
  'Celery',
  'Chain',
  'Chord',
  'ConnectionError',
  'CorruptEntryError',
  'DEFAULT_STORE_URL',
  'DriverMissingError',
  'DuplicateJobError',
  'ErrorCode',
  'Group',
  'JobKeyTakenError',
  'LockedError',
  'NotScheduledError',
  'READY_STATES',
  'ResultTimeoutError',
  'SCHEDULED',
  'Scheduler',
  'SchedulerError',
  'SchemaVersionError',
  'Task',
  'TaskFailedError',
  'TaskRevokedError',
  'UnroutableError',
  'UnsupportedEntryError',
  'UnsupportedPickleError',
  'ValidationError',
  'chain',
  'chord',
  'getScheduler',
  'group',
  'redactUrl',
  'signature',
  'signatureOptions',
];

describe('the public surface', () => {
  it('the root exports the client API, canvas and errors only: no stores, brokers or Redis key names', () => {
    expect(Object.keys(root).sort()).toEqual([...ROOT_RUNTIME].sort());
  });

  it('each subpath resolves by package name from the built package', () => {
    const cwd = fileURLToPath(new URL('../..', import.meta.url));
    const script = `
      const want = { stores: ['createStore', 'MemoryStore', 'RedisStore', 'SqliteStore', 'PostgresStore'], brokers: ['createBroker', 'RedisBroker', 'AmqpBroker'],
        dispatch: ['Dispatcher', 'DispatcherDaemon'], admin: ['listJobs', 'migrateJobs', 'migrateStoreSchema'], metrics: ['DispatcherMetrics', 'startMetricsServer'],
        protocol: ['buildTaskMessage', 'INDEX_KEY', 'resultKey'], testing: ['MemoryStore'], ui: ['createDashboardHandler', 'startDashboardServer'] };
      const missing = [];
      for (const [sub, names] of Object.entries(want)) {
        const m = await import('celery-longterm-scheduler/' + sub);
        for (const n of names) if (typeof m[n] === 'undefined') missing.push(sub + '.' + n);
      }
      const r = await import('celery-longterm-scheduler');
      if (typeof r.Celery !== 'function') missing.push('root.Celery');
      console.log(JSON.stringify(missing));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd, encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.trim())).toEqual([]);
  });
});
