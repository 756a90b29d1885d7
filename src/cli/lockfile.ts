/**
 * `--lockfile PATH`: refuses to run while another live process holds the lock. The file holds
 * the holder's pid; a file left by a process that no longer exists is taken over. A path that
 * cannot be a lock file (no such directory, a directory, not writable, a file that holds no pid)
 * is a `ValidationError` naming it, and nothing is touched.
 */
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LockedError, ValidationError } from '../util/errors.js';

export interface Lock {
  release(): void;
}

export function acquireLock(path: string): Lock {
  if (typeof path !== 'string' || path.trim() === '') {
    throw new ValidationError(['--lockfile is empty; pass the path of a file to create, e.g. /run/celery-longterm-scheduler.lock']);
  }
  const flag = `--lockfile ${JSON.stringify(path)}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw unusable(flag, path, err);
      if (isDirectory(path))
        throw new ValidationError([`${flag} is a directory; pass a file path inside it, e.g. ${JSON.stringify(join(path, 'celery-longterm-scheduler.lock'))}`]);
      const holder = readHolder(path);
      if (holder === 'not-a-lock') {
        throw new ValidationError([`${flag} exists and is not a lock file (it holds no pid); pass another path, or remove the file if it is a leftover`]);
      }
      if (holder !== undefined && isAlive(holder)) throw new LockedError(path, String(holder));
      try {
        unlinkSync(path); // stale: its process is gone (or it died before writing its pid)
      } catch {
        /* someone else took it over first; the retry decides */
      }
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          /* already gone */
        }
      },
    };
  }
  throw new LockedError(path);
}

/** Why the lock file cannot be created, as a usage error when the path is the problem. */
function unusable(flag: string, path: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const dir = dirname(path);
  switch (code) {
    case 'ENOENT':
      return new ValidationError([`${flag}: the directory ${dir} does not exist; create it, or pass a path in a directory that exists`]);
    case 'ENOTDIR':
      return new ValidationError([`${flag}: ${firstFileAbove(path) ?? dir} is not a directory; pass a path in a directory that exists`]);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new ValidationError([`${flag} cannot be created (${code}): this user may not write to ${dir}; pass a path it can write`]);
    case 'ENAMETOOLONG':
      return new ValidationError([`${flag} is too long a path; pass a shorter one`]);
    default:
      return err;
  }
}

/** The ancestor of `path` that exists but is a file, not a directory (for ENOTDIR). */
function firstFileAbove(path: string): string | undefined {
  let found: string | undefined;
  for (let p = dirname(path); p !== dirname(p); p = dirname(p)) {
    try {
      if (!statSync(p).isDirectory()) found = p; // keep going: the highest one is the culprit
    } catch {
      /* does not exist (below a file): look higher */
    }
  }
  return found;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The holder's pid; undefined when unreadable or empty (a holder that died before writing it). */
function readHolder(path: string): number | 'not-a-lock' | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  if (text.trim() === '') return undefined;
  if (!/^\s*\d+\s*$/.test(text)) return 'not-a-lock';
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : 'not-a-lock';
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
