/**
 * `dispatch --lockfile PATH` at its edges: a path that cannot be a lock file is a one-line usage
 * error (exit 2) naming the path and what to do, before anything is opened; and an existing file
 * that is not a lock file is never taken over (deleted) as if it were a stale lock.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { acquireLock } from '../../src/cli/lockfile.js';
import { ValidationError } from '../../src/util/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'cls-lockfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const dispatch = (lock: string) => cli(['--backend', 'sqlite://:memory:', 'dispatch', '--lockfile', lock]);

describe('dispatch --lockfile', () => {
  it.each([
    [
      'in a directory that does not exist',
      () => join(dir, 'missing', 'x.lock'),
      /^error: --lockfile ".*missing\/x\.lock": the directory .*missing does not exist; create it, or pass a path in a directory that exists\n$/,
    ],
    [
      'below a file, not a directory',
      () => (writeFileSync(join(dir, 'plain'), 'x'), join(dir, 'plain', 'x.lock')),
      /^error: --lockfile ".*plain\/x\.lock": .*plain is not a directory; pass a path in a directory that exists\n$/,
    ],
    [
      'a directory',
      () => (mkdirSync(join(dir, 'adir'), { recursive: true }), join(dir, 'adir')),
      /^error: --lockfile ".*adir" is a directory; pass a file path inside it, e.g. ".*adir\/celery-longterm-scheduler\.lock"\n$/,
    ],
    // sysfs refuses new files even to root
    [
      'where this user may not write',
      () => '/sys/cls-test.lock',
      /^error: --lockfile "\/sys\/cls-test\.lock" cannot be created \((EACCES|EROFS|EPERM)\): this user may not write to \/sys; pass a path it can write\n$/,
    ],
    ['empty', () => '', /^error: --lockfile is empty; pass the path of a file to create, e.g\. \/run\/celery-longterm-scheduler\.lock\n$/],
  ])('%s: exit 2, one line naming the path and the fix', async (_label, path, message) => {
    const r = await dispatch(path());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it('an existing file that holds no pid is refused and left as it was, not deleted as a stale lock', async () => {
    const precious = join(dir, 'precious.conf');
    writeFileSync(precious, 'root:x:0:0:root:/root:/bin/bash\n');
    const r = await dispatch(precious);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error: --lockfile ".*precious\.conf" exists and is not a lock file \(it holds no pid\); pass another path, or remove the file if it is a leftover\n$/,
    );
    expect(readFileSync(precious, 'utf8')).toBe('root:x:0:0:root:/root:/bin/bash\n');
  });

  it('a stale lock (a pid that is gone) and an empty file are still taken over, and released', async () => {
    for (const content of ['999999\n', '']) {
      const lock = join(dir, 'stale.lock');
      writeFileSync(lock, content);
      const l = acquireLock(lock);
      expect(readFileSync(lock, 'utf8')).toBe(`${process.pid}\n`);
      l.release();
      expect(existsSync(lock)).toBe(false);
    }
  });

  it('the library function throws ValidationError for these too', () => {
    expect(() => acquireLock(join(dir, 'missing', 'y.lock'))).toThrow(ValidationError);
  });
});
