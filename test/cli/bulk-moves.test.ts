/**
 * Bulk reschedule, run-now and retag by query, and `stats --by`, through the CLI in-process on a
 * SQLite file: dry runs, the question, exact changes checked with `show --json`, an interrupted
 * run's `--after` cursor resuming it, and every bad input one line with exit 2, changing nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli, type CliIo } from '../../src/cli/program.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-moves-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
let g: string[] = [];
async function cli(argv: string[], extra: Partial<CliIo> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runCli([...g, ...argv], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: {}, ...extra });
  return { code, stdout, stderr };
}
const dueOf = async (id: string) => Date.parse((JSON.parse((await cli(['show', id, '--json'])).stdout) as { dueAt: string }).dueAt);
const tagsOf = async (id: string) => (JSON.parse((await cli(['show', id, '--json'])).stdout) as { tags?: string[] }).tags;
const BASE = Date.UTC(2030, 0, 1, 9, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

beforeEach(async () => {
  g = ['--backend', `sqlite:///${join(dir, `moves-${++n}.db`)}`];
  for (let i = 0; i < 12; i++) {
    const tags = i % 3 === 0 ? ['--tag', 'tenant:42'] : ['--tag', 'tenant:7'];
    const r = await cli(['schedule', i % 2 ? 't.odd' : 't.even', '--eta', iso(BASE + i * 60_000), '--id', `job-${i}`, '--kwargs', `{"n": ${i}}`, ...tags]);
    expect(r.code).toBe(0);
  }
});

describe('reschedule, run-now and retag by query', () => {
  it('reschedule --shift moves exactly the matches, after a dry run that changes nothing', async () => {
    const dry = await cli(['reschedule', '--tag', 'tenant:42', '--shift', '+2h', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^would reschedule 4 jobs; the first:\n {2}job-0 {2}2030-01-01 09:00:00 {2}t\.even\n/);
    expect(await dueOf('job-0')).toBe(BASE);
    const r = await cli(['reschedule', '--tag', 'tenant:42', '--shift', '+2h', '--yes', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ matched: 4, changed: 4, rescheduled: 4, skipped: 0, missing: 0 });
    for (const i of [0, 3, 6, 9]) expect(await dueOf(`job-${i}`)).toBe(BASE + i * 60_000 + 7_200_000);
    expect(await dueOf('job-1')).toBe(BASE + 60_000);
    expect(await tagsOf('job-3')).toEqual(['tenant:42']);
  });

  it('reschedule --eta moves every match to one time; --spread spreads a pile-up from --from', async () => {
    const to = iso(BASE + 86_400_000);
    expect((await cli(['reschedule', '--task', 't.odd', '--eta', to, '--yes'])).stdout).toMatch(/^rescheduled 6 jobs in /);
    for (const i of [1, 3, 5]) expect(await dueOf(`job-${i}`)).toBe(BASE + 86_400_000);
    const spread = await cli(['reschedule', '--from', to, '--to', to, '--spread', '30m', '--yes', '--json']);
    expect(JSON.parse(spread.stdout)).toMatchObject({ matched: 6, changed: 5, unchanged: 1 });
    // in due order, then id: job-1, job-11, job-3, job-5, job-7, job-9, 5 minutes apart
    const times = await Promise.all([1, 11, 3, 5, 7, 9].map((i) => dueOf(`job-${i}`)));
    expect(times).toEqual([0, 1, 2, 3, 4, 5].map((k) => BASE + 86_400_000 + k * 300_000));
  });

  it('an interrupted reschedule prints the --after cursor, and resuming finishes it with no job moved twice', async () => {
    for (const shift of ['+5m', '-5m']) {
      let stop: (() => void) | undefined;
      let err = '';
      // every job stays inside the range after its shift: the case where a job could be seen twice
      const range = ['--from', iso(BASE - 3_600_000), '--to', iso(BASE + 3_600_000)];
      const before = await Promise.all(Array.from({ length: 12 }, (_, i) => dueOf(`job-${i}`)));
      const r = await cli(['reschedule', ...range, '--shift', shift, '--yes', '--batch-size', '5'], {
        onSignal: (h) => {
          stop = () => h('SIGINT');
          return () => (stop = undefined);
        },
        stderr: (t) => {
          err += t;
          if (t.startsWith('rescheduled')) stop?.(); // SIGINT at the first progress line
        },
      });
      expect(r.code).toBe(1);
      const cursor = /interrupted; resume with --after '([^']+)'/.exec(err)?.[1];
      expect(cursor).toBeDefined();
      expect(r.stdout).toMatch(/^rescheduled 5 jobs in /);
      const resumed = await cli(['reschedule', ...range, '--shift', shift, '--yes', '--after', cursor as string]);
      expect(resumed.code).toBe(0);
      expect(resumed.stdout).toMatch(/^rescheduled 7 jobs in /);
      const delta = shift === '+5m' ? 300_000 : -300_000;
      for (let i = 0; i < 12; i++) expect(await dueOf(`job-${i}`)).toBe((before[i] as number) + delta);
    }
  });

  it('run-now by query makes the matches due now; retag by query and by id', async () => {
    const before = Date.now();
    expect((await cli(['run-now', '--tag', 'tenant:7', '--to', iso(BASE + 3 * 60_000), '--yes'])).stdout).toMatch(/^made due 2 jobs/);
    expect(await dueOf('job-1')).toBeGreaterThanOrEqual(before - 1000);
    expect(await dueOf('job-1')).toBeLessThanOrEqual(Date.now() + 1000);
    expect(await dueOf('job-4')).toBe(BASE + 4 * 60_000);
    const rt = await cli(['retag', '--tag', 'tenant:42', '--remove', 'tenant:42', '--add', 'tenant:43', '--yes']);
    expect(rt.stdout).toMatch(/^retagged 4 jobs/);
    expect(await tagsOf('job-9')).toEqual(['tenant:43']);
    const byId = await cli(['retag', 'job-1', 'nobody', '--add', 'vip', '--json']);
    expect(byId.code).toBe(1);
    expect(JSON.parse(byId.stdout)).toEqual({ retagged: ['job-1'], overLimit: [], notFound: ['nobody'] });
    expect(byId.stderr).toBe('not scheduled (unknown, claimed, or already sent): nobody\n');
    expect(await tagsOf('job-1')).toEqual(['tenant:7', 'vip']);
  });

  it('an args match narrows a bulk action and says it scans', async () => {
    const r = await cli(['reschedule', '--args-match', 'kwargs.n=5', '--shift', '-1m', '--yes']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('note: an args match reads every job the other filters let through (a scan)');
    expect(await dueOf('job-5')).toBe(BASE + 4 * 60_000);
    expect(await dueOf('job-4')).toBe(BASE + 4 * 60_000);
  });

  it('without --yes and no terminal: exit 2 naming the count; nothing changes', async () => {
    const r = await cli(['reschedule', '--tag', 'tenant:42', '--shift', '+1h']);
    expect(r).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr).toBe('error: this would reschedule 4 jobs and there is no terminal to ask on; pass --yes to go on (or --dry-run to see them first)\n');
    expect(await dueOf('job-0')).toBe(BASE);
  });

  it('bad input: one line, exit 2, nothing changed', async () => {
    const cases: [string[], RegExp][] = [
      [['reschedule', '--tag', 'tenant:42', '--spread', '30m', '--yes'], /--spread needs the pile-up to spread: pass --from and --to/],
      [['reschedule', '--tag', 'tenant:42', '--shift', '2x', '--yes'], /--shift "2x" is not a length of time/],
      [['reschedule', '--tag', 'tenant:42', '--shift', '+0h', '--yes'], /is zero/],
      [['reschedule', '--tag', 'tenant:42', '--spread', '-5m', '--from', iso(BASE), '--to', iso(BASE), '--yes'], /not a length of time/],
      [['reschedule', '--tag', 'tenant:42', '--shift', '+1h', '--eta', iso(BASE), '--yes'], /exactly one of/],
      [['reschedule', '--tag', 'tenant:42', '--yes'], /exactly one of/],
      [['reschedule', '--tag', 'tenant:42', '--jitter', '--shift', '+1h', '--yes'], /--jitter goes with --spread/],
      [['reschedule', 'job-0', '--shift', '+1h'], /go with a query/],
      [['reschedule', '--args-match', 'kwargs.n', '--shift', '+1h', '--yes'], /the args match "kwargs.n" is malformed/],
      [['reschedule', '--from', iso(BASE + 60_000), '--to', iso(BASE), '--shift', '+1h', '--yes'], /the range is inverted/],
      [['reschedule', '--whatever', '--shift', '+1h'], /unknown option/],
      [['run-now', '--tag', 'tenant:42', '--dry-run', '--yes'], /pass one of them/],
      [['retag', '--tag', 'tenant:42', '--yes'], /say what to change/],
      [['retag', '--tag', 'tenant:42', '--add', 'a\u0001', '--yes'], /control character/],
      [['retag', '--tag', 'tenant:42', '--add', 'x', '--remove', 'x', '--yes'], /both added and removed/],
      [['stats', '--by', 'week'], /--by must be minute, hour or day/],
      [['stats', '--tag', 'x'], /goes with --by/],
      [['stats', '--by', 'minute', '--from', iso(BASE), '--to', iso(BASE + 200 * 86_400_000)], /at most 100000/],
      [['revoke', '--tag', 'tenant:42', '--after', 'nonsense', '--yes'], /is not a list cursor/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(argv);
      expect([argv, r.code]).toEqual([argv, 2]);
      expect(
        r.stderr
          .trim()
          .split('\n')
          .filter((l) => !l.startsWith('(run with')),
      ).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    for (let i = 0; i < 12; i++) expect(await dueOf(`job-${i}`)).toBe(BASE + i * 60_000);
    expect(await tagsOf('job-0')).toEqual(['tenant:42']);
  });
});

describe('stats --by', () => {
  it('counts the matches per hour and per minute, the busiest first; JSON has every bucket', async () => {
    const r = await cli(['stats', '--by', 'minute', '--from', iso(BASE), '--to', iso(BASE + 11 * 60_000), '--tag', 'tenant:42']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^jobs due per minute \(UTC\), 2030-01-01T09:00:00\.000Z to 2030-01-01T09:11:00\.000Z: 4 in all\n/);
    expect(r.stdout).toContain('  2030-01-01 09:03  1  ');
    expect(r.stdout).toContain('(8 empty minutes left out)');
    const j = JSON.parse((await cli(['stats', '--by', 'hour', '--from', iso(BASE), '--to', iso(BASE + 3_600_000), '--json'])).stdout) as {
      total: number;
      buckets: { start: string; count: number }[];
      busiest: { start: string; count: number }[];
    };
    expect(j.total).toBe(12);
    expect(j.buckets).toEqual([
      { start: '2030-01-01T09:00:00.000Z', count: 12 },
      { start: '2030-01-01T10:00:00.000Z', count: 0 },
    ]);
    expect(j.busiest).toEqual([{ start: '2030-01-01T09:00:00.000Z', count: 12 }]);
  });
});
