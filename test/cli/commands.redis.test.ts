/**
 * The command line: output, exit codes (0 ok, 1 failure or not found, 2 usage), one-line errors
 * that change nothing, environment vs flags, the lock file. Most run `runCli` in-process; a few
 * run the built binary, as a user would.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { cli as runCli } from '../helpers/cli.js';
import { parseRedisEnvelope } from '../../src/celery/kombu-redis.js';
import { requireService, sharedRedis, uniquePrefix, type RedisService } from '../helpers/services.js';

const shared = await sharedRedis();
const skip = requireService(shared, 'Redis');
const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist/cli/main.js');

describe.skipIf(skip)('celery-longterm-scheduler CLI', () => {
  const prefix = uniquePrefix('cli');
  const queue = `${prefix}q`;
  let url: string;
  let raw: Redis;
  let env: Record<string, string>;

  const cli = (...argv: string[]) => runCli(argv, env);
  const keyCount = async () => (await raw.keys(`${prefix}*`)).length;

  beforeAll(() => {
    url = (shared as RedisService).urlFor(0);
    raw = new Redis(url);
    env = { CELERY_BROKER_URL: url, CELERY_LONGTERM_SCHEDULER_BACKEND: url, CELERY_LONGTERM_SCHEDULER_KEY_PREFIX: prefix };
    if (!existsSync(bin)) spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
  });
  afterAll(async () => {
    const keys = [...(await raw.keys(`${prefix}*`)), ...(await raw.keys(`_kombu.binding.${prefix}*`))];
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });

  it('schedule prints the task id alone, and the job is stored', async () => {
    const r = await cli('schedule', 'proj.add', '--args', '[1, 2]', '--kwargs', '{"y": 3}', '--countdown', '3600', '--queue', queue, '--priority', '5');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const id = r.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.stdout).toBe(`${id}\n`);
    const [[name], kw] = JSON.parse((await raw.get(`${prefix}${id}`)) ?? 'null') as [[string], Record<string, unknown>];
    expect(name).toBe('proj.add');
    expect(kw).toMatchObject({ args: [1, 2], kwargs: { y: 3 }, queue, priority: 5, task_id: id });
  });

  it('schedule takes --id, --eta with offset, --expires seconds', async () => {
    const r = await cli('schedule', 'proj.add', '--id', 'cli-fixed', '--eta', '2031-03-04T07:06:07+02:00', '--expires', '120');
    expect(r).toMatchObject({ code: 0, stdout: 'cli-fixed\n' });
    expect(Number(await raw.zscore(`${prefix}scheduled_task_id_by_time`, 'cli-fixed'))).toBe(Date.parse('2031-03-04T05:06:07Z') / 1000);
    expect(await raw.get(`${prefix}cli-fixed`)).toContain('"expires":120');
  });

  it.each([
    [['schedule', 'proj.add', '--eta', '2031-03-04T05:06:07'], /no UTC offset; add one/],
    [['schedule', 'proj.add', '--eta', 'tomorrow'], /not an ISO-8601 date-time/],
    [['schedule', 'proj.add', '--countdown', '-5'], /countdown must be a finite number of seconds >= 0/],
    [['schedule', 'proj.add', '--countdown', 'soon'], /--countdown "soon" is not a number/],
    [['schedule', 'proj.add', '--countdown', '5', '--args', '{"a": 1}'], /args must be an array/],
    [['schedule', 'proj.add', '--countdown', '5', '--kwargs', '[1]'], /kwargs must be an object/],
    [['schedule', 'proj.add', '--countdown', '5', '--args', '[1,'], /--args is not valid JSON/],
    [['schedule', '', '--countdown', '5'], /task name is empty/],
    [['schedule', 'proj.add', '--countdown', '5', '--priority', '300'], /priority must be an integer from 0 to 255/],
    [['schedule', 'proj.add'], /pass --eta ISO8601 or --countdown SECONDS/],
    [['schedule', 'proj.add', '--countdown', '5', '--bogus'], /unknown option '--bogus'/],
    [['dispatch', '--timestamp', 'yesterday'], /--timestamp "yesterday" is not an ISO-8601 date-time/],
  ])('bad input %j exits 2 with a one-line error and writes nothing', async (argv, message) => {
    const before = await keyCount();
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('error')).length).toBe(1);
    expect(r.stdout).toBe('');
    expect(await keyCount()).toBe(before);
  });

  it('revoke exits 0 when every id was removed, 1 naming each id that was not scheduled', async () => {
    const a = (await cli('schedule', 'proj.add', '--countdown', '60')).stdout.trim();
    const b = (await cli('schedule', 'proj.add', '--countdown', '60')).stdout.trim();
    expect(await cli('revoke', a)).toMatchObject({ code: 0, stdout: 'revoked 1 job\n' });
    const r = await cli('revoke', b, a, 'nope');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`not scheduled (unknown, or already sent): ${a}, nope\n`);
    const json = await cli('revoke', 'nope', '--json');
    expect(JSON.parse(json.stdout)).toEqual({ revoked: [], notFound: ['nope'] });
  });

  it('dispatch sends due jobs and prints a one-line summary (and JSON with --json)', async () => {
    const id = (await cli('schedule', 'proj.add', '--args', '[7]', '--countdown', '0', '--queue', queue)).stdout.trim();
    const r = await cli('dispatch');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^sent \d+, failed 0, dead letters 0, elapsed [\d.]+ m?s\n$/);
    const envelope = parseRedisEnvelope((await raw.rpop(queue)) ?? '');
    expect(envelope.headers.id).toBe(id);
    expect(envelope.body[0]).toEqual([7]);
    const json = await cli('dispatch', '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ sent: 0, failed: 0, corrupt: 0 });
  });

  it('flags override the environment', async () => {
    const otherPrefix = `${prefix}other:`;
    const r = await cli('--key-prefix', otherPrefix, 'schedule', 'proj.add', '--countdown', '60');
    expect(await raw.exists(`${otherPrefix}${r.stdout.trim()}`)).toBe(1);
  });

  it('an unreachable store exits 1 with its URL redacted', async () => {
    const r = await cli('--backend', 'redis://admin:s3cret@127.0.0.1:1/0', 'schedule', 'proj.add', '--countdown', '5');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot reach the long-term scheduler store \(Redis\) at redis:\/\/admin:\*\*\*@127\.0\.0\.1:1\/0/);
    expect(r.stderr).not.toContain('s3cret');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('an unreachable RabbitMQ broker exits 1 with its password redacted, and the job stays scheduled', async () => {
    const id = (await cli('schedule', 'proj.add', '--countdown', '0')).stdout.trim();
    const r = await cli('--broker', 'amqp://guest:pw@127.0.0.1:1//', 'dispatch');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach the Celery broker \(RabbitMQ\) at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1\/\//);
    expect(r.stderr).not.toContain(':pw@');
    expect(await raw.zscore(`${prefix}scheduled_task_id_by_time`, id)).not.toBeNull();
    await cli('revoke', id);
  });

  describe('the built binary', () => {
    const run = promisify(execFile);
    const exec = async (...argv: string[]) => {
      try {
        const { stdout, stderr } = await run(process.execPath, [bin, ...argv], { env: { ...process.env, ...env } });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    };

    it('prints help for every command and exits 0', async () => {
      for (const argv of [['--help'], ['schedule', '--help'], ['revoke', '--help'], ['dispatch', '--help']]) {
        const r = await exec(...argv);
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/Usage: celery-longterm-scheduler/);
      }
    });

    it('exits 2 on an unknown command', async () => {
      expect((await exec('frobnicate')).code).toBe(2);
    });

    it('refuses a second dispatch while another process holds the lock file', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'cls-lock-'));
      const lock = join(dir, 'dispatch.lock');
      writeFileSync(lock, `${process.pid}\n`); // this test process is alive: the lock is held
      const held = await exec('dispatch', '--lockfile', lock);
      expect(held.code).toBe(1);
      expect(held.stderr).toMatch(/another dispatch run holds the lock file .*dispatch\.lock \(pid \d+\)/);
      writeFileSync(lock, '999999\n'); // a pid that does not exist: stale lock, taken over
      const stale = await exec('dispatch', '--lockfile', lock);
      expect(stale.code).toBe(0);
      expect(existsSync(lock)).toBe(false); // released after the run
    });
  });
});
