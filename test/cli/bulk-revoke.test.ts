/**
 * `revoke` by query through the CLI in-process, on a SQLite file: --dry-run prints the count and
 * a sample and changes nothing; without --yes it asks on a terminal (and takes only "yes") and
 * refuses with exit 2 when there is none; --yes revokes exactly the matching jobs; bad queries are
 * one line and exit 2.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-bulk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
let g: string[] = [];
async function cli(argv: string[], answer?: string) {
  let stdout = '';
  let stderr = '';
  const asked: string[] = [];
  const code = await runCli([...g, ...argv], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    env: {},
    ...(answer !== undefined && {
      ask: async (q: string) => {
        asked.push(q);
        return answer;
      },
    }),
  });
  return { code, stdout, stderr, asked };
}
const scheduled = async (...flags: string[]) => Number(/would revoke (\d+)/.exec((await cli(['revoke', '--dry-run', ...flags])).stdout)?.[1]);

beforeEach(async () => {
  g = ['--backend', `sqlite:///${join(dir, `bulk-${++n}.db`)}`];
  for (let i = 0; i < 12; i++) {
    const tags = i % 3 === 0 ? ['--tag', 'tenant:42'] : ['--tag', 'tenant:7'];
    expect((await cli(['schedule', i % 2 ? 't.odd' : 't.even', '--countdown', String(3600 + i), '--id', `job-${i}`, ...tags])).code).toBe(0);
  }
});

describe('revoke by query', () => {
  it('--dry-run: the count and the first matches, nothing changed', async () => {
    const r = await cli(['revoke', '--tag', 'tenant:42', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^would revoke 4 jobs; the first:\n {2}job-0 {2}\S+ \S+ {2}t\.even\n {2}job-3 /);
    const json = JSON.parse((await cli(['revoke', '--tag', 'tenant:42', '--task', 't.odd', '--dry-run', '--json'])).stdout) as {
      matched: number;
      sample: { id: string }[];
    };
    expect(json.matched).toBe(2);
    expect(json.sample.map((j) => j.id)).toEqual(['job-3', 'job-9']);
    expect(await scheduled('--id-prefix', 'job-')).toBe(12);
  });

  it('without --yes and no terminal: exit 2 with one line naming the count, nothing revoked', async () => {
    const r = await cli(['revoke', '--tag', 'tenant:42']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: this would revoke 4 jobs and there is no terminal to ask on; pass --yes to go on (or --dry-run to see them first)\n');
    expect(await scheduled('--tag', 'tenant:42')).toBe(4);
  });

  it('on a terminal it asks; only "yes" goes on', async () => {
    const no = await cli(['revoke', '--tag', 'tenant:42'], 'y');
    expect(no.asked).toEqual(['revoke 4 jobs for good? type yes to go on: ']);
    expect(no.code).toBe(2);
    expect(no.stderr).toBe('not confirmed; nothing revoked\n');
    expect(await scheduled('--tag', 'tenant:42')).toBe(4);
    const yes = await cli(['revoke', '--tag', 'tenant:42'], 'yes');
    expect(yes.code).toBe(0);
    expect(yes.stdout).toMatch(/^revoked 4 jobs in \d+(\.\d+)? (ms|s)\n$/);
    expect(await scheduled('--tag', 'tenant:42')).toBe(0);
    expect((await cli(['revoke', '--dry-run', '--tag', 'tenant:42'])).stdout).toBe('would revoke 0 jobs\n');
  });

  it('--yes revokes exactly the matches (tag, task, due range together)', async () => {
    const r = await cli(['revoke', '--tag', 'tenant:7', '--task', 't.even', '--yes', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ matched: 4, revoked: 4, changed: 4, skipped: 0, missing: 0 });
    const left = (await cli(['list', '--json'])).stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { id: string }).id);
    expect(left).toEqual(['job-0', 'job-1', 'job-3', 'job-5', 'job-6', 'job-7', 'job-9', 'job-11']);
    expect(await cli(['revoke', '--tag', 'nobody', '--yes'])).toMatchObject({ code: 0, stdout: 'no scheduled jobs match; nothing revoked\n' });
    expect(JSON.parse((await cli(['revoke', '--tag', 'nobody', '--yes', '--json'])).stdout)).toEqual({
      matched: 0,
      changed: 0,
      revoked: 0,
      skipped: 0,
      missing: 0,
    });
  });

  it('bad queries are one line and exit 2, and change nothing', async () => {
    for (const [argv, message] of [
      [['revoke'], 'error: name the jobs to revoke: task ids, or a query (e.g. --tag tenant:42; see --help)\n'],
      [['revoke', 'job-1', '--tag', 'x'], 'error: pass task ids or a query, not both\n'],
      [['revoke', 'job-1', '--yes'], 'error: --dry-run, --yes and --after go with a query (e.g. --tag tenant:42), not with task ids\n'],
      [['revoke', '--tag', '', '--yes'], /^error: tags\[0\] is empty or only whitespace/],
      [['revoke', '--from', '2031-01-02T00:00:00Z', '--to', '2031-01-01T00:00:00Z', '--yes'], /^error: the range is inverted/],
      [['revoke', '--from', 'tomorrow', '--yes'], /^error: --from/],
    ] as const) {
      const r = await cli([...argv]);
      expect(r.code, argv.join(' ')).toBe(2);
      if (typeof message === 'string') expect(r.stderr).toBe(message);
      else expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(await scheduled('--id-prefix', 'job-')).toBe(12);
  });
});
